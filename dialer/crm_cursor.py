"""Where the CRM poll keeps its cursor between runs.

The cursor is opaque text from the adapter (`OrderBatch.cursor`), saved only after the orders
it covers are stored. It lives in a small JSON file rather than the database: no table has a
clean place for it, and a cursor that lags the orders is harmless (intake is idempotent).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol


class CursorStore(Protocol):
    """Where `run_pull` keeps the CRM's cursor between runs."""

    def load(self) -> str | None: ...

    def save(self, cursor: str | None) -> None: ...


class CursorFile:
    """The cursor in a JSON file, replaced atomically (write, fsync, rename): after a crash
    the file holds the old cursor or the new one, never half of either.

    `initial` is the cursor while no file exists yet, e.g. "from a day before the first
    start" (`crm_factory.first_cursor`), so a first run does not read years of history.
    """

    def __init__(self, path: str | os.PathLike[str], *, initial: str | None = None) -> None:
        self.path = Path(path)
        self.initial = initial

    def load(self) -> str | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return self.initial
        cursor = data.get("cursor") if isinstance(data, dict) else None
        if cursor is not None and not isinstance(cursor, str):
            raise ValueError(f"{self.path}: the cursor is not text")
        return cursor

    def save(self, cursor: str | None) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as out:
            json.dump({"cursor": cursor}, out)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(self.path)
