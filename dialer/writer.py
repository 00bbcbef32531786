"""The daemon's database writes on a thread and an event loop of their own.

The daemon's writer stores in order, one transaction per batch, but every statement of a batch
is a round trip, and on the daemon's loop each one waits its turn behind the HTTP requests, AMI
events and engine steps that share it: at tens of calls a second the writes fell behind the
calls. `WriterThread` runs `Store.store_many` on a second loop, in a thread, with connections of
its own, so a round trip waits only for the database; the daemon awaits the result and then
tells metrics and learning (`Stored.announce`) on its own loop, where they live.

Reads stay on the daemon's loop and its own connections (`Database.reading`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any, TypeVar

from dialer.storage.db import Database
from dialer.store import Store, Stored, Write

T = TypeVar("T")


class WriterThread:
    """``async with WriterThread(url, make_store) as writer: await writer.store_many(...)``.

    `make_store` builds the thread's `Store` on the thread's own `Database` at `url` (same
    settings as the daemon's store). Leaving closes the connections and ends the thread.
    """

    def __init__(self, url: str, make_store: Callable[[Database], Store]) -> None:
        self._url = url
        self._make_store = make_store
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._db: Database | None = None
        self._store: Store | None = None

    async def __aenter__(self) -> WriterThread:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="obzvon-db-writer", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        db = Database(self._url)
        try:
            await self._on_thread(db.__aenter__())
        except BaseException:
            await self._stop()
            raise
        self._db, self._store = db, self._make_store(db)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._db is not None:
                await self._on_thread(self._db.__aexit__(None, None, None))
        finally:
            self._db = self._store = None
            await self._stop()

    async def store_many(self, writes: Sequence[Write]) -> Stored:
        """`Store.store_many` on the writer's thread; the caller announces the result."""
        if self._store is None:
            raise RuntimeError("the WriterThread is not running; use `async with`")
        return await self._on_thread(self._store.store_many(writes))

    async def _on_thread(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    async def _stop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join)
        loop.close()
