"""`AsteriskSim`: an AMI server on TCP that behaves like Asterisk 22 driving simulated calls.

    sim = AsteriskSim(user="obzvon", secret="obzvon", model=CallModel(), time_scale=60, seed=1)
    await sim.start(host="127.0.0.1", port=0)
    sim.script_number("79001234561", NumberScript("busy"))
    sim.add_operator("1001", OperatorScript(ring_s=2, talk_s=90))
    uniqueid = sim.call_in("79001234567", "74950000000", patience_s=120)
    ...
    await sim.stop(keep_calls=True)   # drop every AMI connection; calls go on
    await sim.start(port=sim.port)    # listen again: the same calls are still there
    await sim.close()

Several clients may be connected at once; each receives every event.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType

from pbx.protocol import Frame

from .clock import SimClock
from .connection import AmiSession, FrameObserver
from .inbound import call_in
from .model import CallModel, NumberScript, OperatorScript
from .switch import Switch

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SimStatistics:
    """A snapshot: AMI connections open, live channels and bridges, Originates received and
    their outcomes (``answer``, ``busy``, ``no_answer``, ``congestion``, ``fail``,
    ``cancelled``), incoming calls placed with `AsteriskSim.call_in`."""

    listening: bool
    connections: int
    live_channels: int
    bridges: int
    calls_originated: int
    outcomes: Mapping[str, int] = field(default_factory=dict)
    calls_in: int = 0


class AsteriskSim:
    """A stand-in for Asterisk 22 on the AMI socket (see the module docstring).

    `time_scale` is simulated seconds per real second: every ring, talk and wait in the sim
    divides by it. `seed` makes the call model's draws reproducible (None: a random seed,
    readable as `seed`). `login_failure_delay` is in real seconds. `observer`, if given, sees
    every action each connection reads and every event it writes (`FrameObserver`).
    """

    def __init__(
        self,
        *,
        user: str = "obzvon",
        secret: str = "obzvon",
        model: CallModel | None = None,
        time_scale: float = 1.0,
        seed: int | None = None,
        login_failure_delay: float = 1.0,
        observer: FrameObserver | None = None,
    ) -> None:
        self.user = user
        self.secret = secret
        self.model = model if model is not None else CallModel()
        self.clock = SimClock(time_scale)
        self.seed = seed if seed is not None else random.SystemRandom().randrange(1 << 31)
        self.login_failure_delay = login_failure_delay
        self.observer = observer
        self.switch = Switch(
            clock=self.clock, model=self.model, seed=self.seed, emit=self._broadcast
        )
        self.host = "127.0.0.1"
        self._port = 0
        self._server: asyncio.Server | None = None
        self._sessions: dict[AmiSession, asyncio.Task[None]] = {}

    @property
    def time_scale(self) -> float:
        return self.clock.time_scale

    @property
    def port(self) -> int:
        """The port listened on (the one chosen by the system after ``start(port=0)``)."""
        return self._port

    # -- configuration ----------------------------------------------------------------------

    def script_number(self, number: str, script: NumberScript) -> None:
        """Every later call to `number` (``Local/<number>@sim-customer`` or
        ``PJSIP/<number>@<trunk>``) follows `script`."""
        self.switch.scripts[number] = script

    def add_operator(self, endpoint: str, script: OperatorScript | None = None) -> None:
        """An operator's softphone at ``PJSIP/<endpoint>``; adding it again replaces its script
        (e.g. to unregister it)."""
        self.switch.operators[endpoint] = script if script is not None else OperatorScript()

    # -- calls from outside ---------------------------------------------------------------------

    def call_in(
        self,
        caller: str,
        number: str,
        *,
        patience_s: float | None = None,
        accept_callback: bool | None = None,
        talk_s: float | None = None,
    ) -> str:
        """A customer calling from `caller` dials the shop's `number` on the trunk now; returns
        the Uniqueid of the new channel (``PJSIP/trunk-...``), which enters ``CONTEXT_INBOUND``
        at extension `number`. Call it from within the running event loop.

        The caller hangs up after `patience_s` unless bridged to someone by then (None: waits
        for ever), and `talk_s` after first being bridged (None: leaves hanging up to the other
        side). At a callback offer they press 1 (`accept_callback` true), 2 (false) or nothing
        (None). Times are simulated seconds.
        """
        keypress = {True: "1", False: "2", None: ""}[accept_callback]
        ch = call_in(
            self.switch, caller, number, patience_s=patience_s, talk_s=talk_s, keypress=keypress
        )
        return ch.uniqueid

    def heard(self, uniqueid: str) -> tuple[tuple[str, str], ...]:
        """What the live channel with this Uniqueid has heard so far, oldest first, as
        (application, data): ``("MusicOnHold", "default,30")``, ``("SayNumber", "3")``,
        ``("Playback", "queue-thereare")``, ``("Read", "obzvon/callback-offer")``. Only the
        latest few hundred are kept. Raises KeyError for a channel that is not live."""
        for ch in self.switch.channels.values():
            if ch.uniqueid == uniqueid:
                return tuple(ch.heard)
        raise KeyError(uniqueid)

    # -- lifetime ------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen for AMI clients on `host`:`port`. Already listening there (or anywhere, for
        ``port=0``) it does nothing, so ``async with`` followed by ``start()`` is fine."""
        if self._server is not None:
            if host == self.host and port in (0, self._port):
                return
            raise RuntimeError(f"the simulator is already listening on {self.host}:{self._port}")
        self._server = await asyncio.start_server(self._on_client, host, port)
        self.host = host
        self._port = self._server.sockets[0].getsockname()[1]

    async def stop(self, *, keep_calls: bool = True) -> None:
        """Stop listening and close every AMI connection; calls go on unless `keep_calls` is
        false (then they vanish without events: no one is connected to hear them)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        sessions = list(self._sessions.items())
        for session, task in sessions:
            session.close()
            task.cancel()
        await asyncio.gather(*(task for _, task in sessions), return_exceptions=True)
        if server is not None:
            await server.wait_closed()
        if not keep_calls:
            await self.switch.close()

    async def close(self) -> None:
        """Stop everything. Raises if a simulator task failed while running."""
        await self.stop(keep_calls=False)
        errors, self.switch.errors = self.switch.errors, []
        if errors:
            raise ExceptionGroup(
                "simulator tasks failed", [e for e in errors if isinstance(e, Exception)]
            )

    async def __aenter__(self) -> AsteriskSim:
        """Starts listening (on `host`, an ephemeral port) unless already listening."""
        if self._server is None:
            await self.start(self.host, self._port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def statistics(self) -> SimStatistics:
        channels = list(self.switch.channels.values())
        bridges = {id(c.bridge) for c in channels if c.bridge is not None}
        return SimStatistics(
            listening=self._server is not None,
            connections=len(self._sessions),
            live_channels=len(channels),
            bridges=len(bridges),
            calls_originated=self.switch.originated,
            outcomes=MappingProxyType(dict(self.switch.outcomes)),
            calls_in=self.switch.calls_in,
        )

    # -- internals -----------------------------------------------------------------------------

    def _uptime(self) -> int:
        return int(self.clock.now())

    def _broadcast(self, frame: Frame) -> None:
        data = frame.encode()
        for session in list(self._sessions):
            session.deliver(frame, data)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = AmiSession(
            reader,
            writer,
            switch=self.switch,
            user=self.user,
            secret=self.secret,
            login_failure_delay=self.login_failure_delay,
            uptime=self._uptime,
            observer=self.observer,
        )
        task = asyncio.current_task()
        assert task is not None
        self._sessions[session] = task
        try:
            await session.serve()
        except asyncio.CancelledError:
            # `stop()` ends sessions by cancelling them; this is the top of the session's task,
            # and asyncio's stream server would log a cancelled connection task as an error
            pass
        finally:
            self._sessions.pop(session, None)
            session.close()


async def serve_forever(
    *,
    host: str = "127.0.0.1",
    port: int = 5038,
    user: str = "obzvon",
    secret: str = "obzvon",
    time_scale: float = 1.0,
    seed: int | None = None,
    model: CallModel | None = None,
) -> None:
    """Run a simulator until cancelled (the ``obzvon sim`` command)."""
    sim = AsteriskSim(user=user, secret=secret, model=model, time_scale=time_scale, seed=seed)
    await sim.start(host=host, port=port)
    print(
        f"AMI simulator listening on {host}:{sim.port}"
        f" (time scale {time_scale:g}, seed {sim.seed})",
        file=sys.stderr,
    )
    try:
        await asyncio.Event().wait()
    finally:
        await sim.close()
