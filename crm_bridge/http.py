"""HTTP plumbing shared by the adapters: rate limits, retries, error translation.

Every request goes through `CrmHttp.request`, which

1. waits for its rate-limit bucket (aiolimiter), spacing requests evenly a little under the
   CRM's published limit: the CRM counts arrival times, and the network can squeeze two
   evenly sent requests together;
2. sends it with httpx under a timeout;
3. classifies the answer: success, "try again" (network errors, 429, 5xx), or a final
   refusal that the adapter turns into `CrmRejected`/`CrmAuthError`;
4. retries "try again" with tenacity: exponential backoff with jitter, or exactly the
   ``Retry-After`` the CRM asked for; after the last attempt, `CrmUnavailable`.

A request the CRM does not recognise when it comes again (``idempotent=False``) is retried
only when it surely never reached the CRM (no connection, or 429 and the like). When it may
have been processed with its answer lost (a timeout or a reset while waiting for the answer,
a 5xx), `CrmInDoubt` is raised at once: the adapter finds out what the CRM has before sending
again.

Sleeping goes through an injected function, so tests can run retries without waiting.
"""

from __future__ import annotations

import asyncio
import email.utils
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from aiolimiter import AsyncLimiter
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from crm_bridge.errors import CrmInDoubt, CrmProtocolError, CrmUnavailable

Sleep = Callable[[float], Awaitable[None]]
# Failures that happen before a request leaves: it surely was not processed.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How hard to try before reporting the CRM unavailable.

    With the defaults a request is tried 6 times over about 30 s; the outbox retries the
    message later anyway, so longer here would only hold up other messages.
    """

    attempts: int = 6
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 15.0
    # A CRM asking to come back in an hour is treated as down now; the outbox comes back.
    retry_after_max_s: float = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimit:
    """Requests per second allowed in one bucket, and the share of it we use."""

    per_second: float
    headroom: float = 0.9

    def limiter(self) -> AsyncLimiter:
        # One request per slot: an even spacing, never a burst.
        return AsyncLimiter(1, 1.0 / (self.per_second * self.headroom))


class _TryAgain(Exception):
    """A response or failure worth retrying; `retry_after` in seconds when the CRM said."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    params: Any
    data: Mapping[str, str] | None
    json: Any
    content: bytes | None
    headers: Mapping[str, str] | None
    idempotent: bool


@dataclass(frozen=True, slots=True)
class Reply:
    """A response that is not worth retrying: its status and, when it parsed, JSON body."""

    status: int
    body: Mapping[str, Any] | None
    text: str


class CrmHttp:
    """One CRM's HTTP client. Owns an httpx client; close it with `aclose`."""

    def __init__(
        self,
        *,
        crm: str,
        base_url: str,
        headers: Mapping[str, str],
        limits: Mapping[str, RateLimit],
        retry: RetryPolicy,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        retry_statuses: frozenset[int] = frozenset({429}),
    ) -> None:
        """`retry_statuses` are the 4xx answers that mean "not now" rather than "no" (429
        always; a shop's webhook may also answer 408, 409 or 425)."""
        self.crm = crm
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers=dict(headers),
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            transport=transport,
        )
        self._limiters = {name: limit.limiter() for name, limit in limits.items()}
        self._retry = retry
        self._sleep = sleep
        self._retry_statuses = retry_statuses | {429}
        self.requests_sent = 0

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        bucket: str = "default",
        params: Any = None,
        data: Mapping[str, str] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
    ) -> Reply:
        """Send with rate limiting and retries; return the first non-retryable reply.

        Raises `CrmUnavailable` when every attempt failed in a retryable way, and for a
        request that is not `idempotent`, `CrmInDoubt` as soon as an attempt may have been
        processed without its answer reaching us.
        """
        send = _Request(method, path, params, data, json, content, headers, idempotent)
        limiter = self._limiters[bucket]
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._retry.attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_TryAgain),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    async with limiter:
                        return await self._once(send)
        except _TryAgain as exc:
            raise CrmUnavailable(
                f"{method} {path}: {exc} (after {self._retry.attempts} attempts)", crm=self.crm
            ) from exc
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _once(self, r: _Request) -> Reply:
        self.requests_sent += 1
        try:
            response = await self._client.request(
                r.method,
                r.path,
                params=r.params,
                data=r.data,
                json=r.json,
                content=r.content,
                headers=r.headers,
            )
        except _NOT_SENT as exc:
            raise _TryAgain(f"{type(exc).__name__}: {exc}") from exc
        except httpx.TransportError as exc:
            # A timeout or a connection dropped while the CRM had the request: it may have
            # been processed.
            if not r.idempotent:
                raise self._in_doubt(r, f"{type(exc).__name__}: {exc}") from exc
            raise _TryAgain(f"{type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise CrmProtocolError(f"{r.method} {r.path}: {exc}", crm=self.crm) from exc
        status = response.status_code
        if status >= 500 and not r.idempotent:
            raise self._in_doubt(r, f"HTTP {status}")
        if status in self._retry_statuses or status >= 500:
            raise _TryAgain(
                f"HTTP {status}", retry_after=_retry_after(response.headers.get("Retry-After"))
            )
        text = response.text
        try:
            body = response.json()
        except ValueError:
            body = None
        return Reply(status, body if isinstance(body, Mapping) else None, text[:2000])

    def _in_doubt(self, r: _Request, reason: str) -> CrmInDoubt:
        return CrmInDoubt(
            f"{r.method} {r.path}: {reason}; the CRM may have processed it", crm=self.crm
        )

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, _TryAgain) and exc.retry_after is not None:
            return min(exc.retry_after, self._retry.retry_after_max_s)
        backoff = wait_exponential_jitter(
            multiplier=self._retry.backoff_initial_s,
            max=self._retry.backoff_max_s,
            jitter=self._retry.backoff_initial_s,
        )
        return float(backoff(state))


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    # The one wall-clock read in crm_bridge: an HTTP date can only be turned into a delay
    # against the current time.
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
