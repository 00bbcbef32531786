"""Shared fixtures: a fresh database per test, on SQLite and on PostgreSQL.

`db_url` is parametrised over ``sqlite`` (a new file in the test's temporary directory) and
``postgres`` (a new schema in the server's ``test`` database, reached through
``?search_path=``, dropped afterwards). PostgreSQL tests are skipped when the server cannot be
reached, except when ``CI=true``: then they fail. ``OBZVON_TEST_PG_URL`` points them at another
server.

`database` is an open `Database` on such a fresh schema, migrated to the newest revision. It
runs the SQL the migrations render (alembic's offline mode, rendered once per session) rather
than alembic itself for every test, which is several times faster; tests of the migration
path itself use `db_url` and `dialer.storage.migrate`.
"""

from __future__ import annotations

import io
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import asyncpg
import pytest
from alembic import command
from sqlalchemy.engine import URL, make_url

from dialer.storage.db import Database
from dialer.storage.migrate import alembic_config

PG_URL = os.environ.get("OBZVON_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def _dsn(url: URL) -> str:
    plain = url.set(drivername="postgresql").difference_update_query(["search_path"])
    return plain.render_as_string(hide_password=False)


async def _pg_admin() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(_dsn(make_url(PG_URL)), timeout=5)
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
    for kind, url in (("sqlite", "sqlite+aiosqlite:///"), ("postgresql", PG_URL)):
        config = alembic_config(url)
        config.output_buffer = io.StringIO()
        command.upgrade(config, "head", sql=True)
        scripts[kind] = config.output_buffer.getvalue()
    return scripts


@pytest.fixture
async def database(db_url: str, schema_sql: dict[str, str]) -> AsyncIterator[Database]:
    """An open `Database` on a fresh, fully migrated schema."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        with closing(sqlite3.connect(str(url.database))) as connection:
            # One transaction: SQLite would otherwise sync the file after every statement.
            connection.executescript(f"BEGIN;\n{schema_sql['sqlite']}\nCOMMIT;")
    else:
        search_path = {"search_path": str(url.query["search_path"])}
        connection = await asyncpg.connect(_dsn(url), server_settings=search_path)
        try:
            await connection.execute(schema_sql["postgresql"])
        finally:
            await connection.close()
    async with Database(db_url) as db:
        yield db
