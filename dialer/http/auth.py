"""Who may do what over HTTP, and the audit trail of what supervisors and admins did.

Three roles, each a bearer token's `Principal.role`:

- ``operator``: their own state and their own calls only;
- ``supervisor``: the floor (wallboard and its stream), listen / whisper / barge, pausing or
  logging out an operator, pausing or resuming a campaign, recordings, reports;
- ``admin``: everything a supervisor may, plus campaign configuration (abandon target, pacing)
  and the audit log.

The grants are data (`GRANTS`), so a test or a reader sees the whole policy in one place.
`require()` builds the FastAPI dependency a route declares; it answers 401 for a missing or
unknown token and 403 for a role without the permission, in the API's ``{"error": ...}`` shape
(both are `ControlError`s, rendered by the app's handler). `audit()` writes one row of
`audit_log`.
"""

# No `from __future__ import annotations`: FastAPI reads the dependencies' signatures at run
# time, and they are built inside `require()`.

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select

from dialer.http.control import ControlError, Forbidden
from dialer.http.schemas import Principal, Role
from dialer.storage.db import Database
from dialer.storage.models import AuditEntry

log = logging.getLogger(__name__)

Authenticate = Callable[[str], Principal | None]
"""Returns the principal owning a bearer token, or None (`Control.authenticate`)."""


class Permission(StrEnum):
    FLOOR = "floor"  # the wallboard, its snapshot and its event stream
    SPY = "spy"  # listen, whisper or barge on an operator's call
    OPERATORS = "operators"  # pause or log out another operator
    CAMPAIGN_CONTROL = "campaign-control"  # pause or resume a campaign
    CAMPAIGN_CONFIG = "campaign-config"  # change a campaign's abandon target or pacing
    RECORDINGS = "recordings"  # any operator's recordings
    REPORTS = "reports"
    AUDIT = "audit"  # read the audit log


_SUPERVISOR: Final = frozenset(
    {
        Permission.FLOOR,
        Permission.SPY,
        Permission.OPERATORS,
        Permission.CAMPAIGN_CONTROL,
        Permission.RECORDINGS,
        Permission.REPORTS,
    }
)

GRANTS: Final[Mapping[Role, frozenset[Permission]]] = {
    "operator": frozenset(),
    "supervisor": _SUPERVISOR,
    "admin": frozenset(Permission),
}


class Unauthorized(ControlError):
    """No bearer token, or one nobody owns."""

    status = 401


def allowed(who: Principal, permission: Permission) -> bool:
    """Whether `who`'s role grants `permission`."""
    return permission in GRANTS.get(who.role, frozenset())


_bearer = HTTPBearer(auto_error=False)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def authenticated(authenticate: Authenticate) -> Callable[..., Awaitable[Principal]]:
    """A dependency returning the request's principal; 401 without a valid bearer token."""

    async def principal(creds: Credentials) -> Principal:  # on the loop, not a worker thread
        who = authenticate(creds.credentials) if creds is not None else None
        if who is None:
            raise Unauthorized("missing or invalid bearer token")
        return who

    return principal


def require(
    authenticate: Authenticate, permission: Permission
) -> Callable[..., Awaitable[Principal]]:
    """A dependency returning the principal if their role grants `permission`, else 403."""

    async def permitted(creds: Credentials) -> Principal:  # on the loop, not a worker thread
        who = authenticate(creds.credentials) if creds is not None else None
        if who is None:
            raise Unauthorized("missing or invalid bearer token")
        if not allowed(who, permission):
            log.warning("%s %s was refused %s", who.role, who.id, permission.value)
            raise Forbidden(f"the {who.role} role may not use {permission.value}")
        return who

    return permitted


async def audit(
    db: Database,
    *,
    who: Principal,
    action: str,
    details: Mapping[str, Any],
    now: float,
) -> None:
    """Append one row to `audit_log`: `who` did `action` at `now` (epoch seconds).

    `details` must be JSON-serialisable; the principal's role is stored with it.
    """
    async with db.session() as session:
        session.add(
            AuditEntry(
                at=datetime.fromtimestamp(now, UTC),
                who=who.id,
                action=action,
                details={"role": who.role, **details},
            )
        )


async def audit_entries(db: Database, *, limit: int = 100) -> list[dict[str, Any]]:
    """The newest `limit` rows of `audit_log`, newest first."""
    query = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)
    async with db.reading() as session:
        rows = (await session.scalars(query)).all()
    return [
        {"at": r.at.isoformat(), "who": r.who, "action": r.action, "details": r.details}
        for r in rows
    ]
