"""Schema migrations (alembic), configured in code: no alembic.ini is needed.

`upgrade(url)` brings an empty or older database up to the newest schema and does nothing on
an up-to-date one. The synchronous functions run their own event loop, so call them from
plain code (the CLI); inside a running loop use the ``*_async`` versions. A database that
cannot be reached raises `DatabaseUnavailable`.

A schema change is a new file in ``migrations/versions``; alembic's own commands take
`alembic_config(url)`, e.g. ``command.revision(alembic_config(url), "add x",
autogenerate=True)`` against an up-to-date database drafts one from the models.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from dialer.storage.db import make_engine
from dialer.storage.errors import DatabaseUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    """The alembic configuration for obzvon's migrations, optionally pointed at `url`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        # configparser treats % as interpolation; a URL-encoded password has them.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head() -> str:
    """The newest revision the code knows."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert revision is not None, "the migrations directory has no revision"
    return revision


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` up to `revision` (the newest by default)."""
    asyncio.run(upgrade_async(url, revision))


def current(url: str) -> str | None:
    """The revision the database at `url` is at; `None` for a database without obzvon's schema."""
    return asyncio.run(current_async(url))


async def upgrade_async(url: str, revision: str = "head") -> None:
    """`upgrade` for code that runs inside an event loop."""
    async with _connected(url) as connection, connection.begin():
        await connection.run_sync(_upgrade, alembic_config(url), revision)


async def current_async(url: str) -> str | None:
    """`current` for code that runs inside an event loop."""
    async with _connected(url) as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


@asynccontextmanager
async def _connected(url: str) -> AsyncIterator[AsyncConnection]:
    engine = make_engine(url)
    try:
        connection = engine.connect()
        try:
            await connection.start()
        except (OSError, SQLAlchemyError) as exc:
            raise DatabaseUnavailable(f"cannot use the database: {exc}") from exc
        try:
            yield connection
        finally:
            await connection.close()
    finally:
        await engine.dispose()


def _upgrade(connection: Connection, config: Config, revision: str) -> None:
    # env.py runs the migrations on this connection instead of opening its own.
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
