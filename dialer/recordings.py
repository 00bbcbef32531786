"""Call recordings: signed links, streaming with HTTP ranges, listings, and retention.

A recording is named by its call's ChannelId; the file is `call_attempts.recording_path`.
`RecordingLinks` signs ``/recordings/{channel_id}?expires=EPOCH&sig=HMAC`` with the installation's
secret (`settings.http.recording_url_secret`), so a link can be handed to a CRM or a browser
without a bearer token and stops working at `expires`. A link whose signature or expiry does not
check out gets 403; a recording that retention removed gets 404.

Retention: `purge_recordings()` deletes the recordings of calls that ended more than the
retention period ago and clears their path; `keep_recordings()` runs it every hour as a daemon job.

Files are served only from inside the configured recording directories (`roots`), whatever the
database says: a path that resolves elsewhere is treated as missing. Range requests are answered
with 206 and ``Content-Range`` (players seek in long calls), by Starlette's `FileResponse`.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures at run time, and
# the dependencies are local to recordings_router().

import asyncio
import base64
import hashlib
import hmac
import logging
import mimetypes
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, Response
from sqlalchemy import func, select

from dialer.http.auth import Authenticate, Permission, allowed, authenticated
from dialer.http.control import Forbidden, NotFound
from dialer.http.schemas import Principal
from dialer.storage.db import Database
from dialer.storage.models import CallAttempt

log = logging.getLogger(__name__)

PURGE_BATCH: Final = 500
_MEDIA: Final = {
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".gsm": "audio/gsm",
}


class RecordingLinks:
    """Signs and checks recording links: HMAC-SHA256 over the ChannelId and the expiry.

    `now` is the daemon's clock; `ttl_s` the default lifetime of a link; `base_url` (e.g.
    ``https://obzvon.example``) is put in front of the path when links leave the building.
    """

    def __init__(
        self, *, secret: bytes, ttl_s: int, now: Callable[[], float], base_url: str = ""
    ) -> None:
        if len(secret) < 16:
            raise ValueError("a recording link secret needs at least 16 bytes")
        self._secret, self._ttl, self._now = secret, ttl_s, now
        self._base = base_url.rstrip("/")

    @classmethod
    def from_settings(
        cls, secret: str | None, *, ttl_s: int, now: Callable[[], float], base_url: str = ""
    ) -> "RecordingLinks":
        """Links signed with `secret`; without one, a random secret for this process only
        (links then stop working at the next start, which is logged)."""
        if not secret:
            log.warning("no http.recording_url_secret: recording links die with this process")
            key = secrets.token_bytes(32)
        else:
            key = secret.encode()
        return cls(secret=key, ttl_s=ttl_s, now=now, base_url=base_url)

    def _sign(self, channel_id: str, expires: int) -> str:
        mac = hmac.new(self._secret, f"{channel_id}\n{expires}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()

    def url(self, channel_id: str, *, ttl_s: int | None = None) -> str:
        """A link to the recording of `channel_id`, valid for `ttl_s` (default: the links')."""
        expires = int(self._now()) + (self._ttl if ttl_s is None else ttl_s)
        sig = self._sign(channel_id, expires)
        return f"{self._base}/recordings/{channel_id}?expires={expires}&sig={sig}"

    def valid(self, channel_id: str, expires: int, sig: str) -> bool:
        """Whether `sig` signs `channel_id` and `expires`, and `expires` is not past."""
        good = hmac.compare_digest(self._sign(channel_id, expires).encode(), sig.encode())
        return good and expires >= self._now()


@dataclass(frozen=True, slots=True, kw_only=True)
class Recording:
    channel_id: str
    order_id: int
    operator_id: str | None
    campaign_id: str
    started_at: datetime
    duration_s: float | None
    path: str


def within(path: str, roots: Sequence[Path]) -> Path | None:
    """The file `path` names (relative paths are relative to the first root), if it resolves
    inside one of `roots`; None otherwise."""
    if not roots:
        return None
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = roots[0] / candidate
    resolved = candidate.resolve()
    for root in roots:
        if resolved.is_relative_to(root.resolve()):
            return resolved
    return None


async def recordings(
    db: Database, *, order_id: int | None = None, operator_id: str | None = None, limit: int = 200
) -> list[Recording]:
    """Recorded calls of an order or of an operator (or both), newest first."""
    query = select(CallAttempt).where(CallAttempt.recording_path.is_not(None))
    if order_id is not None:
        query = query.where(CallAttempt.order_id == order_id)
    if operator_id is not None:
        query = query.where(CallAttempt.operator_id == operator_id)
    query = query.order_by(CallAttempt.queued_at.desc()).limit(limit)
    async with db.reading() as session:
        rows = (await session.scalars(query)).all()
    return [
        Recording(
            channel_id=a.channel_id,
            order_id=a.order_id,
            operator_id=a.operator_id,
            campaign_id=a.campaign_id,
            started_at=a.connected_at or a.answered_at or a.queued_at,
            duration_s=(
                (a.ended_at - a.connected_at).total_seconds()
                if a.ended_at is not None and a.connected_at is not None
                else None
            ),
            path=a.recording_path or "",
        )
        for a in rows
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class PurgeResult:
    cleared: int  # rows whose recording_path was cleared
    deleted: int  # files removed
    missing: int  # files already gone (or outside the roots), their rows cleared all the same


async def purge_recordings(
    db: Database, *, older_than_days: float, now: float, roots: Sequence[Path]
) -> PurgeResult:
    """Delete the recordings of calls that ended more than `older_than_days` before `now`, and
    clear their `recording_path`. Files outside `roots` are never touched. Safe to repeat."""
    cutoff = datetime.fromtimestamp(now, UTC) - timedelta(days=older_than_days)
    age = func.coalesce(CallAttempt.ended_at, CallAttempt.queued_at)
    cleared = deleted = missing = 0
    while True:
        async with db.session() as session:
            query = (
                select(CallAttempt)
                .where(CallAttempt.recording_path.is_not(None), age < cutoff)
                .limit(PURGE_BATCH)
            )
            batch = (await session.scalars(query)).all()
            paths = [within(a.recording_path or "", roots) for a in batch]
            gone = await asyncio.to_thread(_unlink_all, paths)
            for attempt in batch:
                attempt.recording_path = None
        cleared += len(batch)
        deleted += gone
        missing += len(batch) - gone
        if len(batch) < PURGE_BATCH:
            return PurgeResult(cleared=cleared, deleted=deleted, missing=missing)


async def keep_recordings(
    db: Database,
    *,
    retention_days: float,
    roots: Sequence[Path],
    now: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
    interval_s: float = 3600.0,
) -> None:
    """Purge the recordings older than `retention_days` now and every `interval_s`, until
    cancelled (a daemon job). `now` and `sleep` are the daemon's clock. A purge that fails is
    logged and tried again at the next round; the files stay until one succeeds."""
    if retention_days <= 0:
        raise ValueError("retention_days must be positive (without retention, run no job)")
    while True:
        try:
            result = await purge_recordings(
                db, older_than_days=retention_days, now=now(), roots=roots
            )
        except Exception:  # a broken disk or database must not stop the daemon
            log.exception("recording retention failed; trying again in %.0f s", interval_s)
        else:
            if result.cleared:
                log.info(
                    "recording retention (%g days): %d removed, %d already gone",
                    retention_days,
                    result.deleted,
                    result.missing,
                )
        await sleep(interval_s)


def _unlink_all(paths: Sequence[Path | None]) -> int:
    removed = 0
    for path in paths:
        if path is None:
            continue
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def recordings_router(
    *, db: Database, links: RecordingLinks, authenticate: Authenticate, roots: Sequence[Path]
) -> APIRouter:
    """``GET /recordings/{channel_id}`` (signed link, no token), ``GET
    /api/orders/{order_id}/recordings`` (supervisors and admins) and ``GET
    /api/operators/{operator_id}/recordings`` (supervisors, admins, and the operator themself,
    also as ``/api/operators/me/recordings``);
    listings carry a signed ``url`` per recording."""
    router = APIRouter()
    Who = Annotated[Principal, Depends(authenticated(authenticate))]
    Limit = Annotated[int, Query(ge=1, le=1000)]

    def listing(found: list[Recording]) -> list[dict[str, Any]]:
        return [
            {
                "channel_id": r.channel_id,
                "order_id": r.order_id,
                "operator_id": r.operator_id,
                "campaign_id": r.campaign_id,
                "started_at": r.started_at.isoformat(),
                "duration_s": r.duration_s,
                "url": links.url(r.channel_id),
            }
            for r in found
        ]

    @router.get("/recordings/{channel_id}", include_in_schema=False)
    async def recording(
        channel_id: str,
        expires: Annotated[int, Query(ge=0)],
        sig: Annotated[str, Query(max_length=64)],
    ) -> Response:
        if len(channel_id) > 64 or not links.valid(channel_id, expires, sig):
            raise Forbidden("this recording link is invalid or has expired")
        async with db.reading() as session:
            attempt = await session.get(CallAttempt, channel_id)
        path = within(attempt.recording_path, roots) if attempt and attempt.recording_path else None
        if path is None or not path.is_file():
            raise NotFound("no such recording")
        media = _MEDIA.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
        return FileResponse(
            path,
            media_type=media or "application/octet-stream",
            headers={"Cache-Control": "private, max-age=3600"},
        )

    @router.get("/api/orders/{order_id}/recordings")
    async def of_order(order_id: int, who: Who, limit: Limit = 200) -> list[dict[str, Any]]:
        if not allowed(who, Permission.RECORDINGS):
            raise Forbidden(f"the {who.role} role may not use recordings")
        return listing(await recordings(db, order_id=order_id, limit=limit))

    @router.get("/api/operators/{operator_id}/recordings")
    async def of_operator(operator_id: str, who: Who, limit: Limit = 200) -> list[dict[str, Any]]:
        if operator_id == "me":
            operator_id = who.id
        if who.id != operator_id and not allowed(who, Permission.RECORDINGS):
            raise Forbidden("only your own recordings")
        return listing(await recordings(db, operator_id=operator_id, limit=limit))

    return router
