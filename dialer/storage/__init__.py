"""obzvon's state in SQLite or PostgreSQL (SQLAlchemy 2, async).

- `db`: `Database`, the connection and its transactional sessions;
- `models`: the tables; `migrate`: creating and upgrading the schema (alembic);
- `repo`: the queries the daemon runs (orders, call attempts), re-exporting those of
  `outcomes` (operators' outcomes) and `outbox` (messages for the CRM);
- `errors`: the package's one exception tree.
"""

from __future__ import annotations

from dialer.storage.db import Database, make_engine
from dialer.storage.errors import (
    ChannelIdInUse,
    DatabaseUnavailable,
    DispositionExists,
    LiveAttemptExists,
    NotFound,
    OrderClosed,
    OrderExists,
    StorageError,
)

__all__ = [
    "ChannelIdInUse",
    "Database",
    "DatabaseUnavailable",
    "DispositionExists",
    "LiveAttemptExists",
    "NotFound",
    "OrderClosed",
    "OrderExists",
    "StorageError",
    "make_engine",
]
