"""Supervisor actions over HTTP: listen in on a call, control operators and campaigns.

The routes (`supervisor_router()`) ask a `Supervision` to act; the daemon implements it
(`EngineSupervision` below carries it out through the engine and the AMI link). Every action is
written to the audit log, whether it succeeded or was refused, with who asked, what, on whom and
when. Permissions (`dialer.http.auth.GRANTS`): listening in and operator and campaign control
need a supervisor or an admin; a campaign's abandon target and pacing are an admin's. An
operator gets 403 for all of them, so an operator cannot listen to a colleague.

Routes, all under ``/api/floor``: ``POST operators/{id}/spy`` (body ``{"mode": "listen" |
"whisper" | "barge"}``: the supervisor's own phone rings and, once answered, hears the call),
``POST operators/{id}/pause`` (optional ``{"reason": ...}``), ``POST operators/{id}/logout``,
``POST campaigns/{id}/pause``, ``POST campaigns/{id}/resume``, ``PATCH campaigns/{id}`` (body
``{"abandon_target": 0.02, "pacing": "progressive"}``, either or both); and ``GET /api/audit``
for admins.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures at run time, and
# the dependencies are local to supervisor_router().

import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Literal, Protocol

from fastapi import APIRouter, Depends, Path, Query
from pydantic import Field, model_validator

from acd.board import OperatorBoard
from acd.errors import AcdError
from acd.states import OperatorState
from dialer.engine import events as ev
from dialer.engine.errors import EngineError, UnknownCampaign
from dialer.http.auth import Authenticate, Permission, audit, audit_entries, require
from dialer.http.control import Conflict, ControlError, NotFound
from dialer.http.schemas import PauseIn, Principal, Strict
from dialer.storage.db import Database
from pbx.commands import Spy
from pbx.errors import PbxError
from pbx.events import OriginateResponse

SpyMode = Literal["listen", "whisper", "barge"]
Pacing = Literal["progressive", "adaptive", "predictive"]
ORIGINATE_ANSWERED = 4


class Unavailable(ControlError):
    """The PBX could not be reached for the action."""

    status = 503


class Unsupported(ControlError):
    """The daemon cannot make this change while running."""

    status = 501


class Supervision(Protocol):
    """What supervisors may ask of the daemon. Each method returns once the change is made
    (or the supervisor's phone answered) and raises a `ControlError`: `NotFound` for an
    unknown operator or campaign, `Conflict` for a request that does not fit now (the operator
    is on no call, or busy with one when asked to pause), `Unavailable` when the PBX cannot be
    reached."""

    async def spy(self, supervisor_id: str, operator_id: str, mode: SpyMode) -> None:
        """Ring the supervisor's own endpoint into ChanSpy on the operator's current call."""
        ...

    async def pause_operator(self, operator_id: str, reason: str) -> None: ...

    async def logout_operator(self, operator_id: str) -> None: ...

    async def pause_campaign(self, campaign_id: str) -> None: ...

    async def resume_campaign(self, campaign_id: str) -> None: ...

    async def configure_campaign(
        self, campaign_id: str, *, abandon_target: float | None, pacing: Pacing | None
    ) -> None:
        """Change the campaign's abandon target and/or pacing mode (None leaves it)."""
        ...


class SpyIn(Strict):
    mode: SpyMode = "listen"


class CampaignChange(Strict):
    abandon_target: float | None = Field(default=None, ge=0, le=0.05)
    pacing: Pacing | None = None

    @model_validator(mode="after")
    def _something(self) -> "CampaignChange":
        if self.abandon_target is None and self.pacing is None:
            raise ValueError("body: give abandon_target, pacing or both")
        if self.abandon_target == 0 and self.pacing not in (None, "progressive"):
            raise ValueError("pacing: abandon_target = 0 allows progressive pacing only")
        return self


def supervisor_router(
    *,
    supervision: Supervision,
    authenticate: Authenticate,
    db: Database,
    now: Callable[[], float],
) -> APIRouter:
    """The supervisor's routes (see the module docstring); audit rows go to `db`, stamped with
    the daemon's clock `now`."""
    router = APIRouter(prefix="/api")
    Spier = Annotated[Principal, Depends(require(authenticate, Permission.SPY))]
    Floor = Annotated[Principal, Depends(require(authenticate, Permission.OPERATORS))]
    Campaigns = Annotated[Principal, Depends(require(authenticate, Permission.CAMPAIGN_CONTROL))]
    Config = Annotated[Principal, Depends(require(authenticate, Permission.CAMPAIGN_CONFIG))]
    Auditor = Annotated[Principal, Depends(require(authenticate, Permission.AUDIT))]
    OperatorId = Annotated[str, Path(min_length=1, max_length=64)]
    CampaignId = Annotated[str, Path(min_length=1, max_length=64)]

    async def audited(
        who: Principal, action: str, details: Mapping[str, Any], act: Awaitable[None]
    ) -> dict[str, str]:
        try:
            await act
        except ControlError as exc:
            result = {**details, "result": "refused", "reason": str(exc)}
            await audit(db, who=who, action=action, details=result, now=now())
            raise
        await audit(db, who=who, action=action, details={**details, "result": "ok"}, now=now())
        return {"status": "ok"}

    @router.post("/floor/operators/{operator_id}/spy")
    async def spy(operator_id: OperatorId, body: SpyIn, who: Spier) -> dict[str, str]:
        details = {"operator_id": operator_id, "mode": body.mode}
        if operator_id == who.id:
            act: Awaitable[None] = _refuse(Conflict("you cannot listen to your own calls"))
        else:
            act = supervision.spy(who.id, operator_id, body.mode)
        return await audited(who, f"call.{body.mode}", details, act)

    @router.post("/floor/operators/{operator_id}/pause")
    async def pause_operator(
        operator_id: OperatorId, who: Floor, body: PauseIn | None = None
    ) -> dict[str, str]:
        reason = body.reason if body is not None else "supervisor"
        details = {"operator_id": operator_id, "reason": reason}
        act = supervision.pause_operator(operator_id, reason)
        return await audited(who, "operator.pause", details, act)

    @router.post("/floor/operators/{operator_id}/logout")
    async def logout_operator(operator_id: OperatorId, who: Floor) -> dict[str, str]:
        act = supervision.logout_operator(operator_id)
        return await audited(who, "operator.logout", {"operator_id": operator_id}, act)

    @router.post("/floor/campaigns/{campaign_id}/pause")
    async def pause_campaign(campaign_id: CampaignId, who: Campaigns) -> dict[str, str]:
        act = supervision.pause_campaign(campaign_id)
        return await audited(who, "campaign.pause", {"campaign_id": campaign_id}, act)

    @router.post("/floor/campaigns/{campaign_id}/resume")
    async def resume_campaign(campaign_id: CampaignId, who: Campaigns) -> dict[str, str]:
        act = supervision.resume_campaign(campaign_id)
        return await audited(who, "campaign.resume", {"campaign_id": campaign_id}, act)

    @router.patch("/floor/campaigns/{campaign_id}")
    async def configure_campaign(
        campaign_id: CampaignId, body: CampaignChange, who: Config
    ) -> dict[str, str]:
        details = {"campaign_id": campaign_id, **body.model_dump(exclude_none=True)}
        act = supervision.configure_campaign(
            campaign_id, abandon_target=body.abandon_target, pacing=body.pacing
        )
        return await audited(who, "campaign.configure", details, act)

    @router.get("/audit")
    async def audit_log(
        _: Auditor, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> list[dict[str, Any]]:
        return await audit_entries(db, limit=limit)

    return router


async def _refuse(error: ControlError) -> None:
    raise error


class EngineSupervision:
    """`Supervision` carried out through the daemon: operator and campaign changes become
    engine events passed to `submit` (the daemon's `submit`, which waits until the engine has
    handled them), and listening in is a `Spy` sent with `spy` (the AMI client's `spy`).

    `endpoints` maps a supervisor's id to their own endpoint (``PJSIP/9001``). ChanSpy is given
    the operator's endpoint followed by ``-`` (``PJSIP/1001-``), which matches the channels of
    that endpoint only. A campaign's abandon target or pacing mode changes for the next pacing
    decision; calls already placed go on.
    """

    def __init__(
        self,
        *,
        board: OperatorBoard,
        submit: Callable[[ev.Event], Awaitable[None]],
        now: Callable[[], float],
        spy: Callable[[Spy], Awaitable[OriginateResponse]],
        endpoints: Mapping[str, str],
        caller_id: str = "",
    ) -> None:
        self._board, self._submit, self._now, self._spy = board, submit, now, spy
        self._endpoints = dict(endpoints)
        self._caller_id = caller_id

    async def spy(self, supervisor_id: str, operator_id: str, mode: SpyMode) -> None:
        view = self._operator(operator_id)
        if view.state is not OperatorState.TALKING or view.call_id is None:
            raise Conflict(f"operator {operator_id} is on no call ({view.state.value})")
        phone = self._endpoints.get(supervisor_id)
        if not phone:
            raise Conflict(f"supervisor {supervisor_id} has no phone to listen on")
        command = Spy(
            supervisor_channel=phone,
            target_channel=f"{view.profile.endpoint}-",
            mode=mode,
            channel_id=str(uuid.uuid4()),
            caller_id=self._caller_id,
        )
        try:
            response = await self._spy(command)
        except PbxError as exc:
            raise Unavailable(f"Asterisk did not take the call: {exc}") from None
        if response.reason != ORIGINATE_ANSWERED:
            raise Conflict(f"your phone {phone} did not answer")

    async def pause_operator(self, operator_id: str, reason: str) -> None:
        self._operator(operator_id)
        await self._run(ev.OperatorPause(operator_id=operator_id, reason=reason, now=self._now()))

    async def logout_operator(self, operator_id: str) -> None:
        self._operator(operator_id)
        await self._run(ev.OperatorLogout(operator_id=operator_id, now=self._now()))

    async def pause_campaign(self, campaign_id: str) -> None:
        await self._run(ev.CampaignPaused(campaign_id=campaign_id, now=self._now()))

    async def resume_campaign(self, campaign_id: str) -> None:
        await self._run(ev.CampaignResumed(campaign_id=campaign_id, now=self._now()))

    async def configure_campaign(
        self, campaign_id: str, *, abandon_target: float | None, pacing: Pacing | None
    ) -> None:
        await self._run(
            ev.CampaignConfigured(
                campaign_id=campaign_id,
                abandon_target=abandon_target,
                pacing=pacing,
                now=self._now(),
            )
        )

    def _operator(self, operator_id: str) -> Any:
        try:
            return self._board.get(operator_id)
        except AcdError:
            raise NotFound(f"no operator {operator_id}") from None

    async def _run(self, event: ev.Event) -> None:
        try:
            await self._submit(event)
        except UnknownCampaign as exc:
            raise NotFound(str(exc)) from None
        except (EngineError, AcdError) as exc:
            raise Conflict(str(exc)) from None
