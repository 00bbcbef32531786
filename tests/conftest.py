"""Shared fixtures: an empty database for every test, on SQLite and on PostgreSQL.

`db_url` is parametrised over ``sqlite`` (a new file in the test's temporary directory) and
``postgres`` (a new schema in the server's ``test`` database, reached through
``?search_path=``, dropped afterwards). PostgreSQL tests are skipped when the server cannot be
reached, except when ``CI=true``: then they fail. ``OBZVON_TEST_PG_URL`` points them at another
server.

`database`, parametrised the same way, is an open `Database` on a schema migrated to the newest
revision and holding no rows: a new SQLite file per test; on PostgreSQL one schema per session,
emptied before each test (making and dropping a schema costs more than most tests). It runs
the SQL the migrations render (alembic's offline mode) rather than alembic itself; tests of the
migration path use `db_url` and `dialer.storage.migrate`.
"""

from __future__ import annotations

import asyncio
import io
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from pathlib import Path

import asyncpg
import pytest
from alembic import command
from sqlalchemy.engine import URL, make_url

from dialer.storage.db import Database
from dialer.storage.migrate import alembic_config
from dialer.storage.models import Base

PG_URL = os.environ.get("OBZVON_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def _dsn(url: URL) -> str:
    plain = url.set(drivername="postgresql").difference_update_query(["search_path"])
    return plain.render_as_string(hide_password=False)


async def _pg_admin() -> asyncpg.Connection:
    try:
        # A lock held by a test that went wrong fails the next one instead of hanging it.
        return await asyncpg.connect(
            _dsn(make_url(PG_URL)), timeout=5, server_settings={"lock_timeout": "5s"}
        )
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        message = f"PostgreSQL at {make_url(PG_URL).render_as_string()} unreachable: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of an empty database that no other test uses."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'obzvon.db'}"
        return
    admin = await _pg_admin()
    schema = f"test_{uuid.uuid4().hex[:16]}"
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        yield f"{PG_URL}?search_path={schema}"
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


@pytest.fixture(scope="session")
def schema_sql() -> dict[str, str]:
    """The migrations to the newest revision as SQL, per database kind."""
    scripts = {}
    for kind, url in (("sqlite", "sqlite+aiosqlite:///"), ("postgres", PG_URL)):
        config = alembic_config(url)
        config.output_buffer = io.StringIO()
        command.upgrade(config, "head", sql=True)
        scripts[kind] = config.output_buffer.getvalue()
    return scripts


@pytest.fixture(scope="session")
def pg_schema() -> Iterator[dict[str, str]]:
    """Holds the name of this session's migrated PostgreSQL schema once one is made."""
    made: dict[str, str] = {}
    yield made
    if "name" in made:
        asyncio.run(_pg_execute(f'DROP SCHEMA IF EXISTS "{made["name"]}" CASCADE'))


async def _pg_execute(sql: str) -> None:
    connection = await _pg_admin()
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    schema_sql: dict[str, str],
    pg_schema: dict[str, str],
) -> AsyncIterator[Database]:
    """An open `Database` on a migrated schema holding no rows, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "obzvon.db"
        with closing(sqlite3.connect(path)) as connection:
            # One transaction: SQLite would otherwise sync the file after every statement.
            connection.executescript(f"BEGIN;\n{schema_sql['sqlite']}\nCOMMIT;")
        url = f"sqlite+aiosqlite:///{path}"
    else:
        admin = await _pg_admin()  # skips, or fails under CI, when the server is away
        try:
            if "name" not in pg_schema:
                name = f"test_{uuid.uuid4().hex[:16]}"
                await admin.execute(f'CREATE SCHEMA "{name}"')
                pg_schema["name"] = name
                await admin.execute(f'SET search_path TO "{name}"')
                await admin.execute(schema_sql["postgres"])
            # DELETE, not TRUNCATE: on a few rows it is many times faster.
            await admin.execute(f'SET search_path TO "{pg_schema["name"]}"')
            await admin.execute(
                ";".join(f"DELETE FROM {t.name}" for t in reversed(Base.metadata.sorted_tables))
            )
        finally:
            await admin.close()
        url = f"{PG_URL}?search_path={pg_schema['name']}"
    async with Database(url) as db:
        yield db
