"""A dialer floor for tests: the runtime against `pbx.sim` over real TCP, with operators.

`floor()` builds settings for `operators` operators (tokens generated), starts the simulator
with their softphones on auto-answer, and opens the runtime on a SQLite file in `tmp_path`.
`bots()` gives simulated operator desktops that drive the real HTTP API.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from dialer.app import Runtime, background_jobs, open_runtime
from dialer.clock import ScaledClock
from dialer.config import CampaignSettings, OperatorSettings, Settings
from dialer.config.models import CrmSettings, DatabaseSettings, HttpSettings, IntakeSettings
from dialer.demo_feed import OperatorBot, operator_bots
from dialer.telephony import DialSettings
from pbx.sim import AsteriskSim, CallModel, OperatorScript


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Floor:
    rt: Runtime
    sim: AsteriskSim
    settings: Settings
    base_url: str

    def bots(self, *, poll_s: float = 0.1, conversion: float = 0.7) -> list[OperatorBot]:
        return operator_bots(
            self.settings.operators,
            base_url=self.base_url,
            clock=self.rt.clock,
            conversion=lambda _: {"cosmetics": conversion},
            rng=random.Random(0),
            poll_s=poll_s,
        )

    def token(self, operator_id: str) -> str:
        return self.settings.operator(operator_id).token.get_secret_value()  # type: ignore[union-attr]

    async def order(self, i: int, *, digits: str, zone: str = "Europe/Moscow") -> int:
        """Store an order and hand it to the engine, as intake does; returns its id."""
        return await self.rt.add_order(
            crm="test",
            external_id=f"t-{i}",
            phone_e164=f"+{digits}",
            campaign_id=self.settings.campaigns[0].id,
            timezone=zone,
            category="cosmetics",
            amount=Decimal(1990),
        )


def floor_settings(
    tmp_path: Path, *, operators: int, campaign: CampaignSettings, port: int, first_id: int
) -> Settings:
    ops = tuple(
        OperatorSettings(
            id=str(first_id + i),
            name=f"op{i}",
            endpoint=f"PJSIP/{first_id + i}",
            token=secrets.token_urlsafe(12),  # type: ignore[arg-type]
        )
        for i in range(operators)
    )
    return Settings(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'floor.db'}"),
        http=HttpSettings(listen=f"127.0.0.1:{port}"),
        campaigns=(campaign,),
        operators=ops,
    )


@asynccontextmanager
async def floor(
    tmp_path: Path,
    *,
    operators: int,
    campaign: CampaignSettings,
    scale: float,
    start: float,
    talk_s: float = 10.0,
    first_id: int = 2001,
    sim: AsteriskSim | None = None,
    settings: Settings | None = None,
    crm: CrmSettings | None = None,
) -> AsyncIterator[Floor]:
    """The runtime against a simulator (a new one, or `sim` to reuse one across restarts)."""
    port = free_port()
    if settings is None:
        settings = floor_settings(
            tmp_path, operators=operators, campaign=campaign, port=port, first_id=first_id
        )
    else:
        settings = settings.model_copy(update={"http": HttpSettings(listen=f"127.0.0.1:{port}")})
    if crm is not None:
        intake = IntakeSettings(cursor_file=tmp_path / "crm-cursor.json")
        settings = settings.model_copy(update={"crm": crm, "intake": intake})
    model = CallModel(patience_median_s=None, machine_rate=0.0, notsure_rate=0.0)
    own = sim is None
    the_sim = sim or AsteriskSim(time_scale=scale, seed=3, model=model)
    if own:
        await the_sim.start()
    try:
        for o in settings.operators:
            script = OperatorScript(ring_s=0.2, talk_s=talk_s)
            the_sim.add_operator(o.endpoint.split("/")[1], script)
        clock = ScaledClock(scale=scale, start=start)
        dial = DialSettings(dial_template="PJSIP/{digits}@trunk", recordings_dir=str(tmp_path))
        async with open_runtime(settings, clock=clock, ami_port=the_sim.port, dial=dial) as rt:
            yield Floor(rt=rt, sim=the_sim, settings=settings, base_url=f"http://127.0.0.1:{port}")
    finally:
        if own:
            await the_sim.close()


async def play(f: Floor, scenario: Callable[[], Awaitable[None]], *, within: float = 90) -> None:
    """Run the daemon (and its background jobs) with `scenario` beside it until the scenario
    ends, then stop it; whatever the scenario raised is raised here."""
    failed: list[BaseException] = []

    async def scene() -> None:
        try:
            await scenario()
        except BaseException as exc:
            failed.append(exc)
        finally:
            f.rt.daemon.stop()

    async with asyncio.timeout(within):
        await f.rt.daemon.run(extra=[*background_jobs(f.rt), scene])
    if failed:
        raise failed[0]
