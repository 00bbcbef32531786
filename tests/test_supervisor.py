"""Supervisor actions over HTTP: who may act, what reaches the engine, what the audit log keeps,
and listening in through the Asterisk simulator.

The engine and the board are real; `submit` drives the engine directly (the daemon's job),
which is all `EngineSupervision` needs for operator and campaign control.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from acd.board import OperatorBoard
from acd.profile import OperatorProfile
from acd.routing import LongestIdle
from acd.states import OperatorState
from dialer.engine import events as ev
from dialer.engine.campaign import CampaignRules
from dialer.engine.engine import DialerEngine
from dialer.http.app import create_app
from dialer.http.supervisor import EngineSupervision, supervisor_router
from dialer.storage.db import Database
from dialer.storage.models import AuditEntry
from pbx.client import AmiClient
from pbx.dialplan import CONTEXT_CONNECT
from pbx.sim import AsteriskSim, NumberScript, OperatorScript
from tests.test_sim_model import SCALE, AmiTestClient
from tests.test_wallboard import T0, TokenControl, bearer, serve

OPERATOR = "1001"
COLLEAGUE = "1002"
SUPERVISOR = "9001"


class Floor:
    """A real engine and board, driven the way the daemon drives them."""

    def __init__(self) -> None:
        self.board = OperatorBoard()
        for op in (OPERATOR, COLLEAGUE):
            profile = OperatorProfile(
                id=op, endpoint=f"PJSIP/{op}", campaigns=frozenset({"confirm"})
            )
            self.board.add(profile, T0)
        self.engine = DialerEngine(
            campaigns=[CampaignRules(id="confirm", shop_name="Shop")],
            board=self.board,
            router=LongestIdle(),
            id_factory=lambda: str(uuid.uuid4()),
        )
        self.now = T0 + 10

    async def submit(self, event: ev.Event) -> None:
        self.engine.handle(event)

    def supervision(self, **options: Any) -> EngineSupervision:
        defaults: dict[str, Any] = {
            "board": self.board,
            "submit": self.submit,
            "now": lambda: self.now,
            "spy": _no_pbx,
            "endpoints": {SUPERVISOR: f"PJSIP/{SUPERVISOR}"},
        }
        return EngineSupervision(**{**defaults, **options})


async def _no_pbx(_: Any) -> Any:
    raise AssertionError("no PBX in this test")


@pytest.fixture
async def floor_api(database: Database) -> AsyncIterator[tuple[Floor, str, Database]]:
    floor = Floor()
    app = create_app(TokenControl())
    app.include_router(
        supervisor_router(
            supervision=floor.supervision(),
            authenticate=TokenControl().authenticate,
            db=database,
            now=lambda: floor.now,
        )
    )
    async with serve(app) as base:
        yield floor, base, database


async def audit_rows(db: Database) -> list[AuditEntry]:
    async with db.session() as session:
        return list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


async def test_an_operator_cannot_listen_to_a_colleague(
    floor_api: tuple[Floor, str, Database],
) -> None:
    _, base, db = floor_api
    async with httpx.AsyncClient() as c:
        r = await c.post(
            f"{base}/api/floor/operators/{COLLEAGUE}/spy",
            json={"mode": "listen"},
            headers=bearer("op-token"),
        )
    assert r.status_code == 403
    assert "operator role" in r.json()["error"]
    assert await audit_rows(db) == []


async def test_a_supervisor_pauses_a_ready_operator_and_the_audit_log_says_who_and_when(
    floor_api: tuple[Floor, str, Database],
) -> None:
    floor, base, db = floor_api
    floor.board.login(OPERATOR, T0)
    floor.board.ready(OPERATOR, T0)
    async with httpx.AsyncClient() as c:
        r = await c.post(
            f"{base}/api/floor/operators/{OPERATOR}/pause",
            json={"reason": "coaching"},
            headers=bearer("sup-token"),
        )
    assert r.status_code == 200, r.text
    view = floor.board.get(OPERATOR)
    assert (view.state, view.pause_reason) == (OperatorState.PAUSED, "coaching")
    [row] = await audit_rows(db)
    assert (row.who, row.action, row.at.timestamp()) == (SUPERVISOR, "operator.pause", T0 + 10)
    assert row.details == {
        "role": "supervisor",
        "operator_id": OPERATOR,
        "reason": "coaching",
        "result": "ok",
    }


async def test_a_refused_action_is_audited_with_its_reason(
    floor_api: tuple[Floor, str, Database],
) -> None:
    _, base, db = floor_api
    async with httpx.AsyncClient() as c:
        offline = await c.post(
            f"{base}/api/floor/operators/{OPERATOR}/pause", headers=bearer("sup-token")
        )
        unknown = await c.post(
            f"{base}/api/floor/operators/7777/logout", headers=bearer("sup-token")
        )
        idle = await c.post(
            f"{base}/api/floor/operators/{OPERATOR}/spy", json={}, headers=bearer("sup-token")
        )
    assert (offline.status_code, unknown.status_code, idle.status_code) == (409, 404, 409)
    assert "on no call" in idle.json()["error"]
    rows = await audit_rows(db)
    assert [(r.action, r.details["result"]) for r in rows] == [
        ("operator.pause", "refused"),
        ("operator.logout", "refused"),
        ("call.listen", "refused"),
    ]
    assert "offline" in rows[0].details["reason"]


async def test_pausing_a_campaign_reaches_the_engine_and_resuming_undoes_it(
    floor_api: tuple[Floor, str, Database],
) -> None:
    floor, base, _ = floor_api
    async with httpx.AsyncClient() as c:
        paused = await c.post(
            f"{base}/api/floor/campaigns/confirm/pause", headers=bearer("sup-token")
        )
        assert paused.status_code == 200
        assert floor.engine.statistics(floor.now).campaigns["confirm"].paused
        resumed = await c.post(
            f"{base}/api/floor/campaigns/confirm/resume", headers=bearer("adm-token")
        )
        assert resumed.status_code == 200
        assert not floor.engine.statistics(floor.now).campaigns["confirm"].paused
        missing = await c.post(
            f"{base}/api/floor/campaigns/nope/pause", headers=bearer("sup-token")
        )
        assert missing.status_code == 404


async def test_only_an_admin_changes_a_campaigns_abandon_target_or_pacing(
    floor_api: tuple[Floor, str, Database],
) -> None:
    floor, base, db = floor_api
    url = f"{base}/api/floor/campaigns/confirm"
    async with httpx.AsyncClient() as c:
        supervisor = await c.patch(url, json={"abandon_target": 0.02}, headers=bearer("sup-token"))
        too_high = await c.patch(url, json={"abandon_target": 0.2}, headers=bearer("adm-token"))
        empty = await c.patch(url, json={}, headers=bearer("adm-token"))
        admin = await c.patch(
            url, json={"abandon_target": 0.02, "pacing": "adaptive"}, headers=bearer("adm-token")
        )
        log = await c.get(f"{base}/api/audit", headers=bearer("adm-token"))
        log_for_supervisor = await c.get(f"{base}/api/audit", headers=bearer("sup-token"))
    assert supervisor.status_code == 403
    assert too_high.status_code == 422 and too_high.json()["errors"][0]["field"] == "abandon_target"
    assert empty.status_code == 422
    # the engine takes the new rules for its next pacing decision, and the change is on record
    assert admin.status_code == 200, admin.text
    stats = floor.engine.statistics(floor.now).campaigns["confirm"]
    assert stats.pacer.name == "adaptive"
    [row] = await audit_rows(db)
    assert row.action == "campaign.configure" and row.details["pacing"] == "adaptive"
    assert log.status_code == 200 and log.json()[0]["who"] == "9002"
    assert log_for_supervisor.status_code == 403


async def test_listening_in_rings_the_supervisors_phone_into_chanspy_on_the_operators_call() -> (
    None
):
    async with AsteriskSim(time_scale=SCALE, seed=1) as sim:
        sim.add_operator(OPERATOR, OperatorScript(ring_s=0.5, talk_s=60.0))
        sim.add_operator(SUPERVISOR, OperatorScript(ring_s=0.5))
        sim.script_number("79001234567", NumberScript("answer", ring_s=0.5, talk_s=60.0))
        watcher = await AmiTestClient.connect(sim)
        call = await watcher.originate("PJSIP/79001234567@trunk")
        answered = await watcher.event("UserEvent", UserEvent="ObzvonAnswered", Call=call)
        await watcher.action(
            "Redirect",
            ("Channel", answered.get("Channel") or ""),
            ("Context", CONTEXT_CONNECT),
            ("Exten", OPERATOR),
        )
        await watcher.event("DialEnd", DialStatus="ANSWER")
        floor = Floor()
        for step in (floor.board.login, floor.board.ready):
            step(OPERATOR, T0)
        floor.board.reserve(OPERATOR, call, T0)
        floor.board.answered(OPERATOR, T0)
        async with AmiClient(
            host="127.0.0.1", port=sim.port, username="obzvon", secret="obzvon"
        ) as ami:
            supervision = floor.supervision(spy=ami.spy)
            await supervision.spy(SUPERVISOR, OPERATOR, "whisper")
        started = await watcher.event("ChanSpyStart")
        assert (started.get("SpyerChannel") or "").startswith(f"PJSIP/{SUPERVISOR}-")
        assert (started.get("SpyeeChannel") or "").startswith(f"PJSIP/{OPERATOR}-")
        await watcher.close()
