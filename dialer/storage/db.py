"""The database connection: one `Database` per process, sessions that are transactions.

URLs are SQLAlchemy's: ``sqlite+aiosqlite:///obzvon.db`` or
``postgresql+asyncpg://user@host/db``. On PostgreSQL, ``?search_path=SCHEMA`` puts obzvon's
tables in that (existing) schema.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from dialer.storage.errors import DatabaseUnavailable, StorageError

# How long a SQLite connection waits for another one's write transaction before giving up.
SQLITE_BUSY_TIMEOUT_MS = 5000
# The execution option that marks a transaction as reading only (see `Database.reading`).
READ_ONLY = "obzvon_read_only"


def make_engine(url: str, **options: Any) -> AsyncEngine:
    """An async engine for `url`, set up the way obzvon needs it on either database.

    On SQLite: write-ahead logging (readers do not block the writer), foreign keys enforced,
    and writing transactions that begin with ``BEGIN IMMEDIATE``. Raises `StorageError` for a URL
    that is not one, `DatabaseUnavailable` for a SQLite file in a directory that does not
    exist.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StorageError(f"not a database URL: {exc}") from None
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql" and "search_path" in parsed.query:
        # asyncpg takes server settings only as an argument, not in the URL.
        connect_args["server_settings"] = {"search_path": str(parsed.query["search_path"])}
        parsed = parsed.difference_update_query(["search_path"])
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        # Caught here rather than on connect: a failed aiosqlite connect leaves its worker
        # thread behind, and "unable to open database file" does not say why.
        directory = Path(parsed.database).absolute().parent
        if not directory.is_dir():
            raise DatabaseUnavailable(f"cannot use the database: no directory {directory}")
    engine = create_async_engine(parsed, connect_args=connect_args, **options)
    if parsed.get_backend_name() == "sqlite":
        _tune_sqlite(engine, parsed)
    return engine


def _tune_sqlite(engine: AsyncEngine, url: URL) -> None:
    in_memory = url.database in (None, "", ":memory:")

    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The sqlite3 driver's own transaction handling skips BEGIN before SELECTs and
        # SAVEPOINTs, which breaks nested transactions; obzvon emits BEGIN itself (below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front: two transactions that read and then write
        # would otherwise deadlock, and SQLite fails one at once instead of waiting. A reading
        # transaction (`Database.reading`) needs no lock: with write-ahead logging it sees a
        # snapshot while the writer goes on.
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN DEFERRED")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """The database at `url`, usable inside ``async with Database(url) as db:``.

    Entering connects once to check that the database is reachable (`DatabaseUnavailable`
    otherwise); leaving closes every connection. It does not create or upgrade the schema:
    see `dialer.storage.migrate`.
    """

    def __init__(self, url: str, **engine_options: Any) -> None:
        self.url = url
        self._options = engine_options
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._readers: async_sessionmaker[AsyncSession] | None = None

    async def __aenter__(self) -> Database:
        if self._engine is not None:
            raise RuntimeError("this Database is already open")
        engine = make_engine(self.url, **self._options)
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except (OSError, SQLAlchemyError) as exc:
            await engine.dispose()
            raise DatabaseUnavailable(f"cannot use the database: {exc}") from exc
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._readers = async_sessionmaker(
            engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._engine is not None:
            await self._engine.dispose()
        self._engine = self._sessions = self._readers = None

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy engine; only while the database is open."""
        if self._engine is None:
            raise RuntimeError("the Database is not open; use `async with Database(url)`")
        return self._engine

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed when the block ends, rolled back if it
        raises. Objects stay usable after the commit (they are not expired)."""
        if self._sessions is None:
            raise RuntimeError("the Database is not open; use `async with Database(url)`")
        async with self._sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A session for reads only: on SQLite it takes no write lock, so it neither waits for
        the writer nor holds it up (it reads the last committed state). Write with `session()`."""
        if self._readers is None:
            raise RuntimeError("the Database is not open; use `async with Database(url)`")
        async with self._readers() as session, session.begin():
            yield session


# `AsyncSession.info` key: the session's writes go straight through, without savepoints.
STRAIGHT_THROUGH: Final = "straight_through"


def savepoint(session: AsyncSession) -> contextlib.AbstractAsyncContextManager[object]:
    """A savepoint around a write the database may refuse, so that a refusal undoes that write
    alone. None in a session whose `info[STRAIGHT_THROUGH]` is set: its caller undoes a
    refusal by writing the whole transaction again, write by write (a savepoint is two more
    statements on every write, and refusals are rare)."""
    if session.info.get(STRAIGHT_THROUGH):
        return contextlib.nullcontext()
    return session.begin_nested()
