"""Attended transfers end to end: the daemon against `pbx.sim` over AMI on a real TCP socket.

A caller reaches the cosmetics operator; the operator consults a supervisor over the HTTP API
(the customer on music on hold, the operator's own leg ringing the supervisor), then hands the
customer over: the customer ends up bridged with the supervisor, the operator's leg is hung up,
and the transfer is stored as attended. A second caller's consultation is called off: the
customer is bridged with their operator again and the supervisor is free.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from sqlalchemy import select

from dialer.storage.models import CallTransfer
from pbx.sim import AsteriskSim
from pbx.sim.hangup import hangup as hang_up
from tests.floor import Floor, play
from tests.test_e2e_inbound import SHOP_NUMBER, Desk, eventually, inbound_floor


def _bridged_with(sim: AsteriskSim, uniqueid: str) -> set[str]:
    """The endpoints (``PJSIP/2003``) of the channels in a bridge with the channel `uniqueid`."""
    channels = list(sim.switch.channels.values())
    mine = next((c for c in channels if c.uniqueid == uniqueid), None)
    if mine is None or mine.bridge is None:
        return set()
    return {c.device for c in channels if c.bridge is mine.bridge and c is not mine}


def _legs_of(sim: AsteriskSim, device: str) -> int:
    return sum(1 for c in sim.switch.channels.values() if c.device == device)


async def _connected_caller(f: Floor, desk: Desk, phone: str, operator: str = "2001") -> str:
    call = f.sim.call_in(phone, SHOP_NUMBER)

    async def card() -> bool:
        current = await desk.call()
        assert current is not None and current["call_id"] == call
        return True

    await eventually(card)
    await eventually(lambda: f.rt.board.get(operator).state.value == "talking")
    await eventually(lambda: _bridged_with(f.sim, call) == {f"PJSIP/{operator}"})
    return call


async def test_an_attended_transfer_is_handed_over_or_called_off_over_ami(
    tmp_path: Path,
) -> None:
    async with inbound_floor(tmp_path) as f:

        async def scenario() -> None:
            await f.rt.add_order(
                crm="test",
                external_id="c-1",
                phone_e164="+79001110002",
                campaign_id="confirm",
                timezone="Europe/Moscow",
                category="cosmetics",
                amount=Decimal(1990),
            )
            await f.rt.add_order(
                crm="test",
                external_id="g-1",
                phone_e164="+79001110003",
                campaign_id="confirm",
                timezone="Europe/Moscow",
                category="gadgets",
                amount=Decimal(4990),
            )
            desks = {op: Desk(f, op) for op in ("2001", "2002", "2003")}
            for desk in desks.values():
                await desk.ready()
            operator, supervisor = desks["2001"], desks["2003"]

            # 1. consult the supervisor, then hand the customer over
            first = await _connected_caller(f, operator, "79001110002")
            response = await operator.http.post(
                f"/api/calls/{first}/transfer",
                json={"supervisor": True, "mode": "attended", "reason": "a refund"},
            )
            assert response.status_code == 202, response.text
            # the customer holds (music), the operator talks to the supervisor
            await eventually(lambda: f.rt.board.get("2003").state.value == "talking")
            await eventually(lambda: ("MusicOnHold", "default,30") in f.sim.heard(first))
            assert _bridged_with(f.sim, first) == set()
            assert f.rt.board.get("2001").state.value == "talking"
            card = await supervisor.call()
            assert card is not None and card["call_id"] == first  # their screen pop

            response = await operator.http.post(f"/api/calls/{first}/transfer/complete")
            assert response.status_code == 202, response.text
            await eventually(lambda: _bridged_with(f.sim, first) == {"PJSIP/2003"})
            await eventually(lambda: _legs_of(f.sim, "PJSIP/2001") == 0)  # leg hung up
            assert f.rt.board.get("2001").state.value == "wrap-up"
            assert f.rt.engine.call(first).operator_id == "2003"  # type: ignore[union-attr]

            # the customer leaves; the supervisor confirms: the outcome is theirs
            hang_up(
                f.sim.switch,
                next(c for c in f.sim.switch.channels.values() if c.uniqueid == first),
            )
            await eventually(lambda: f.rt.board.get("2003").state.value == "wrap-up")
            response = await supervisor.http.post(
                f"/api/calls/{first}/disposition", json={"outcome": "confirmed"}
            )
            assert response.status_code == 202, response.text
            await eventually(lambda: f.rt.board.get("2003").state.value == "ready")

            # 2. the gadgets operator consults the supervisor and calls it off
            second = await _connected_caller(f, desks["2002"], "79001110003", "2002")
            response = await desks["2002"].http.post(f"/api/calls/{second}/transfer/complete")
            assert response.status_code == 409, response.text  # no consultation yet
            response = await desks["2002"].http.post(
                f"/api/calls/{second}/transfer",
                json={"supervisor": True, "mode": "attended"},
            )
            assert response.status_code == 202, response.text
            await eventually(lambda: f.rt.board.get("2003").state.value == "talking")
            response = await desks["2002"].http.post(f"/api/calls/{second}/transfer/cancel")
            assert response.status_code == 202, response.text
            await eventually(lambda: _bridged_with(f.sim, second) == {"PJSIP/2002"})
            await eventually(lambda: f.rt.board.get("2003").state.value == "ready")
            await eventually(lambda: _legs_of(f.sim, "PJSIP/2003") == 0)
            assert f.rt.engine.call(second).operator_id == "2002"  # type: ignore[union-attr]

            async def stored() -> bool:
                async with f.rt.db.session() as s:
                    rows = list(await s.scalars(select(CallTransfer)))
                assert [(r.channel_id, r.mode, r.to_operator_id) for r in rows] == [
                    (first, "attended", "2003"),
                    (second, "attended", None),
                ]
                assert rows[0].from_operator_id == "2001" and rows[0].reason == "a refund"
                return True

            await eventually(stored)
            for desk in desks.values():
                await desk.http.aclose()

        await play(f, scenario)
