"""The simulated PBX core: live channels and bridges, the tasks that drive them, the event stream.

Everything runs on one event loop and mutates state only from synchronous code, so a sequence of
events emitted without an ``await`` in between reaches every client in exactly that order.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from pbx.protocol import Frame

from . import frames
from .channel import RING, Bridge, Channel, Naming
from .clock import SimClock
from .model import (
    GOLDEN_AGENT,
    CallModel,
    FarEnd,
    NumberScript,
    OperatorScript,
    golden_customer,
    seeded_rng,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

TRUNK_CONTEXT = "from-trunk"
"""The context of the trunk endpoint: where a PJSIP customer channel starts, as in the capture."""
ENDPOINT_CONTEXT = "from-operators"
"""The context of operators' and supervisors' endpoints."""
GOLDEN_CUSTOMER_CONTEXT = "sim-customer"
GOLDEN_AGENT_CONTEXT = "sim-agent"


class Switch:
    """Channels, bridges, scripts and statistics of one simulated Asterisk."""

    def __init__(
        self,
        *,
        clock: SimClock,
        model: CallModel,
        seed: int,
        emit: Callable[[Frame], None],
    ) -> None:
        self.clock = clock
        self.model = model
        self.seed = seed
        self.names = Naming(seeded_rng(seed, "ids"))
        self.channels: dict[str, Channel] = {}
        self.scripts: dict[str, NumberScript] = {}
        self.operators: dict[str, OperatorScript] = {}
        self.originated = 0
        self.calls_in = 0
        self.outcomes: Counter[str] = Counter()
        self.errors: list[BaseException] = []
        self._emit = emit
        self._attempts: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- events and tasks ------------------------------------------------------------------

    def emit(self, frame: Frame) -> None:
        self._emit(frame)

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
        """Run `coro` as a task the switch owns: cancelled by `close()`, errors recorded."""
        task = asyncio.get_running_loop().create_task(coro, name=f"sim: {name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("simulator task %s failed", task.get_name(), exc_info=exc)
            self.errors.append(exc)

    async def close(self) -> None:
        """Stop every call silently (no events): cancel every task and forget every channel."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for ch in self.channels.values():
            ch.gone = True
        self.channels.clear()

    # -- channels -------------------------------------------------------------------------

    def find(self, name: str) -> Channel | None:
        return self.channels.get(name)

    def new_local(
        self,
        exten: str,
        context: str,
        *,
        uniqueid: str | None,
        uniqueid2: str | None,
        linkedid: str | None,
    ) -> tuple[Channel, Channel]:
        """Both halves of ``Local/<exten>@<context>``: ``;1`` Down, ``;2`` Ring."""
        base = self.names.local(exten, context)
        uid1 = uniqueid or self.names.uniqueid()
        if uniqueid2 is None:
            uniqueid2 = f"{uniqueid};2" if uniqueid else self.names.uniqueid()
        link = linkedid or uid1
        device = f"Local/{exten}@{context}"
        now = self.clock.now()
        one = Channel(f"{base};1", uid1, link, "Local", device, now, context, exten, half=1)
        two = Channel(f"{base};2", uniqueid2, link, "Local", device, now, context, exten, half=2)
        two.state = RING
        one.peer, two.peer = two, one
        self.channels[one.name] = one
        self.channels[two.name] = two
        return one, two

    def new_pjsip(
        self,
        endpoint: str,
        *,
        context: str,
        uniqueid: str | None,
        linkedid: str | None,
    ) -> Channel:
        uid = uniqueid or self.names.uniqueid()
        ch = Channel(
            self.names.pjsip(endpoint),
            uid,
            linkedid or uid,
            "PJSIP",
            f"PJSIP/{endpoint}",
            self.clock.now(),
            context,
            "s",
        )
        self.channels[ch.name] = ch
        return ch

    def forget(self, ch: Channel) -> None:
        ch.gone = True
        self.channels.pop(ch.name, None)

    def set_state(self, ch: Channel, state: int) -> None:
        ch.state = state
        self.emit(frames.newstate(ch))

    def device_state(self, ch: Channel, state: str) -> None:
        self.emit(frames.device_state(ch.device, state))

    def endpoint_in_use(self, endpoint: str) -> bool:
        device = f"PJSIP/{endpoint}"
        return any(ch.device == device and not ch.hanging for ch in self.channels.values())

    # -- bridges --------------------------------------------------------------------------

    def new_bridge(self) -> Bridge:
        bridge = Bridge(self.names.bridge_id())
        self.emit(frames.bridge_create(bridge))
        return bridge

    def enter(self, bridge: Bridge, ch: Channel) -> None:
        bridge.channels.append(ch)
        ch.bridge = bridge
        self.emit(frames.bridge_enter(bridge, ch))
        if len(bridge.channels) == 2 and all(c.tech == "PJSIP" for c in bridge.channels):
            # two SIP legs: Asterisk moves the media to a native RTP bridge after both entered
            bridge.technology = "native_rtp"
        for hook in list(ch.on_enter):
            hook()

    def leave(self, ch: Channel, *, staying: bool = False) -> Bridge | None:
        """Take `ch` out of its bridge (BridgeLeave). An emptied bridge is destroyed once `ch`
        has hung up, or at once when `staying` (the channel lives on elsewhere)."""
        bridge = ch.bridge
        if bridge is None:
            return None
        bridge.channels.remove(ch)
        ch.bridge = None
        ch.left_bridge = bridge
        self.emit(frames.bridge_leave(bridge, ch))
        if not bridge.channels:
            bridge.destroy_after = ch
            if staying:
                self.bridge_gone(ch)
        return bridge

    def bridge_gone(self, ch: Channel) -> None:
        """Emit BridgeDestroy if `ch` was the last to leave its former bridge."""
        bridge = ch.left_bridge
        if bridge is not None and bridge.destroy_after is ch:
            bridge.destroy_after = None
            self.emit(frames.bridge_destroy(bridge))
        ch.left_bridge = None

    # -- who is at the far end ----------------------------------------------------------------

    def _rng_for(self, kind: str, key: str) -> Any:
        self._attempts[f"{kind}:{key}"] += 1
        return seeded_rng(self.seed, kind, key, str(self._attempts[f"{kind}:{key}"]))

    def customer_plan(self, number: str, *, golden: bool) -> FarEnd:
        """A script for `number` first; else the golden last-digit rule or the call model."""
        rng = self._rng_for("customer", number)
        script = self.scripts.get(number)
        if script is not None:
            return self.model.scripted_customer(script)
        if golden:
            return golden_customer(number)
        plan: FarEnd = self.model.customer(rng)
        return plan

    def operator_plan(self, endpoint: str) -> FarEnd | None:
        """The softphone's behaviour on this call; None for an endpoint never added."""
        script = self.operators.get(endpoint)
        if script is None:
            return None
        plan: FarEnd = self.model.operator(self._rng_for("operator", endpoint), script)
        return plan

    def agent_plan(self, exten: str) -> FarEnd:
        """``Local/<exten>@sim-agent``: an added operator's script, else the golden agent."""
        if exten in self.operators:
            plan = self.operator_plan(exten)
            assert plan is not None
            return plan
        return GOLDEN_AGENT

    def softphone_plan(self, endpoint: str) -> FarEnd:
        """An endpoint reached by Originate: an added operator, else a softphone that answers
        (a supervisor's phone for ChanSpy). It stays until hung up."""
        plan = self.operator_plan(endpoint)
        if plan is None:
            plan = self.model.operator(self._rng_for("operator", endpoint))
        return FarEnd(plan.outcome, ring_s=plan.ring_s)
