"""Recordings: signed links with expiry, HTTP range requests, listings by order and operator,
and retention; over a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from time import time

import httpx
import pytest

from dialer.http.app import create_app
from dialer.recordings import (
    RecordingLinks,
    keep_recordings,
    purge_recordings,
    recordings_router,
)
from dialer.storage import repo
from dialer.storage.db import Database
from dialer.storage.models import CallAttempt
from tests.test_wallboard import T0, TokenControl, bearer, serve

SECRET = b"0123456789abcdef-test-secret"
AUDIO = bytes(range(256)) * 40  # 10,240 bytes


@dataclass
class Clock:
    now: float = T0


async def recorded_call(
    db: Database,
    *,
    path: str | None,
    operator_id: str = "1001",
    ended: float = T0 - 60,
    external_id: str | None = None,
) -> tuple[int, str]:
    """An order with one connected, recorded call; returns (order id, channel id)."""
    channel = str(uuid.uuid4())
    at = datetime.fromtimestamp(ended - 120, UTC)
    async with db.session() as session:
        order = await repo.add_order(
            session,
            crm="test",
            external_id=external_id or channel,
            phone_e164="+79001234567",
            campaign_id="confirm",
            timezone="Europe/Moscow",
            created_at=at,
            now=at,
            amount=Decimal(1990),
        )
        await repo.start_attempt(
            session, order_id=order.id, channel_id=channel, now=at, operator_id=operator_id
        )
        await repo.update_attempt(
            session,
            channel,
            answered_at=at + timedelta(seconds=5),
            connected_at=at + timedelta(seconds=6),
            recording_path=path,
        )
        await repo.finish_attempt(
            session, channel, ended_at=datetime.fromtimestamp(ended, UTC), outcome="connected"
        )
        return order.id, channel


@pytest.fixture
async def api(
    database: Database, tmp_path: Path
) -> AsyncIterator[tuple[str, RecordingLinks, Clock]]:
    clock = Clock()
    links = RecordingLinks(secret=SECRET, ttl_s=3600, now=lambda: clock.now)
    app = create_app(TokenControl())
    app.include_router(
        recordings_router(
            db=database, links=links, authenticate=TokenControl().authenticate, roots=[tmp_path]
        )
    )
    async with serve(app) as base:
        yield base, links, clock


async def test_a_signed_link_streams_the_recording_and_answers_ranges(
    api: tuple[str, RecordingLinks, Clock], database: Database, tmp_path: Path
) -> None:
    base, links, _ = api
    (tmp_path / "call.wav").write_bytes(AUDIO)
    _, channel = await recorded_call(database, path="call.wav")
    url = base + links.url(channel)
    async with httpx.AsyncClient() as c:
        whole = await c.get(url)
        part = await c.get(url, headers={"Range": "bytes=100-199"})
        tail = await c.get(url, headers={"Range": "bytes=-40"})
        beyond = await c.get(url, headers={"Range": f"bytes={len(AUDIO)}-"})
    assert whole.status_code == 200 and whole.content == AUDIO
    assert whole.headers["content-type"] == "audio/wav"
    assert whole.headers["accept-ranges"] == "bytes"
    assert part.status_code == 206 and part.content == AUDIO[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(AUDIO)}"
    assert tail.status_code == 206 and tail.content == AUDIO[-40:]
    assert beyond.status_code == 416


async def test_a_tampered_or_expired_link_is_refused(
    api: tuple[str, RecordingLinks, Clock], database: Database, tmp_path: Path
) -> None:
    base, links, clock = api
    (tmp_path / "call.wav").write_bytes(AUDIO)
    _, channel = await recorded_call(database, path="call.wav")
    _, other = await recorded_call(database, path="call.wav")
    good = links.url(channel)
    forged_sig = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    other_call = good.replace(channel, other)
    longer = good.replace("expires=", "expires=9")
    async with httpx.AsyncClient() as c:
        for link in (forged_sig, other_call, longer):
            r = await c.get(base + link)
            assert r.status_code == 403, link
            assert "invalid or has expired" in r.json()["error"]
        assert (await c.get(base + good)).status_code == 200
        clock.now += 3601
        assert (await c.get(base + good)).status_code == 403


async def test_a_path_outside_the_recording_directories_is_never_served(
    api: tuple[str, RecordingLinks, Clock], database: Database, tmp_path: Path
) -> None:
    base, links, _ = api
    outside = tmp_path.parent / f"secret-{uuid.uuid4().hex}.wav"
    outside.write_bytes(b"not yours")
    try:
        _, absolute = await recorded_call(database, path=str(outside))
        _, climbing = await recorded_call(database, path=f"../{outside.name}")
        _, removed = await recorded_call(database, path="gone.wav")
        async with httpx.AsyncClient() as c:
            for channel in (absolute, climbing, removed):
                assert (await c.get(base + links.url(channel))).status_code == 404
    finally:
        outside.unlink()


async def test_listings_by_order_and_operator_carry_signed_links_for_those_allowed(
    api: tuple[str, RecordingLinks, Clock], database: Database, tmp_path: Path
) -> None:
    base, _, _ = api
    (tmp_path / "a.wav").write_bytes(AUDIO)
    order, channel = await recorded_call(database, path="a.wav", operator_id="1001")
    await recorded_call(database, path="b.wav", operator_id="1002")
    await recorded_call(database, path=None, operator_id="1001")  # not recorded: not listed
    async with httpx.AsyncClient() as c:
        by_order = await c.get(f"{base}/api/orders/{order}/recordings", headers=bearer("sup-token"))
        own = await c.get(f"{base}/api/operators/1001/recordings", headers=bearer("op-token"))
        mine = await c.get(f"{base}/api/operators/me/recordings", headers=bearer("op-token"))
        colleague = await c.get(f"{base}/api/operators/1002/recordings", headers=bearer("op-token"))
        order_as_operator = await c.get(
            f"{base}/api/orders/{order}/recordings", headers=bearer("op-token")
        )
        [item] = by_order.json()
        fetched = await c.get(base + item["url"])
    assert by_order.status_code == 200 and item["channel_id"] == channel
    assert item["duration_s"] == pytest.approx(114.0)
    assert (
        [r["channel_id"] for r in own.json()] == [channel] == [r["channel_id"] for r in mine.json()]
    )
    assert colleague.status_code == 403 and order_as_operator.status_code == 403
    assert fetched.status_code == 200 and fetched.content == AUDIO


async def test_retention_deletes_old_recordings_and_clears_their_paths(
    database: Database, tmp_path: Path
) -> None:
    day = 86400.0
    old_file, new_file = tmp_path / "old.wav", tmp_path / "new.wav"
    old_file.write_bytes(AUDIO)
    new_file.write_bytes(AUDIO)
    keep_outside = tmp_path.parent / f"outside-{uuid.uuid4().hex}.wav"
    keep_outside.write_bytes(b"x")
    try:
        _, old = await recorded_call(database, path="old.wav", ended=T0 - 40 * day)
        _, vanished = await recorded_call(database, path="vanished.wav", ended=T0 - 40 * day)
        _, outside = await recorded_call(database, path=str(keep_outside), ended=T0 - 40 * day)
        _, recent = await recorded_call(database, path="new.wav", ended=T0 - 2 * day)
        result = await purge_recordings(database, older_than_days=30, now=T0, roots=[tmp_path])
        again = await purge_recordings(database, older_than_days=30, now=T0, roots=[tmp_path])
        assert (result.cleared, result.deleted, result.missing) == (3, 1, 2)
        assert again.cleared == 0
        assert not old_file.exists() and new_file.exists() and keep_outside.exists()
        async with database.session() as session:
            paths = {
                c: (await session.get(CallAttempt, c)).recording_path  # type: ignore[union-attr]
                for c in (old, vanished, outside, recent)
            }
        assert paths == {old: None, vanished: None, outside: None, recent: "new.wav"}
    finally:
        keep_outside.unlink()


async def test_the_retention_job_purges_every_interval_on_the_daemons_clock(
    database: Database, tmp_path: Path
) -> None:
    day = 86400.0
    clock = Clock()
    files = {name: tmp_path / f"{name}.wav" for name in ("old", "ageing")}
    for f in files.values():
        f.write_bytes(AUDIO)
    await recorded_call(database, path="old.wav", ended=T0 - 100 * day)
    await recorded_call(database, path="ageing.wav", ended=T0 - 90 * day + 1800)
    rounds: list[tuple[bool, bool]] = []

    async def sleep(seconds: float) -> None:  # a virtual hour passes at each round
        rounds.append((files["old"].exists(), files["ageing"].exists()))
        if len(rounds) == 2:
            raise asyncio.CancelledError
        clock.now += seconds

    job = keep_recordings(
        database, retention_days=90, roots=[tmp_path], now=lambda: clock.now, sleep=sleep
    )
    with pytest.raises(asyncio.CancelledError):
        await job
    # the first round removes what is past 90 days; the next, an hour later, what aged past it
    assert rounds == [(False, True), (False, False)]
    with pytest.raises(ValueError, match="retention_days"):
        await keep_recordings(database, retention_days=0, roots=[tmp_path], now=time, sleep=sleep)


def test_without_a_configured_secret_links_work_until_the_process_ends() -> None:
    first = RecordingLinks.from_settings(None, ttl_s=60, now=lambda: T0)
    second = RecordingLinks.from_settings(None, ttl_s=60, now=lambda: T0)
    url = first.url("c-1")
    expires, sig = (p.split("=", 1)[1] for p in url.split("?", 1)[1].split("&"))
    assert first.valid("c-1", int(expires), sig)
    assert not second.valid("c-1", int(expires), sig)
