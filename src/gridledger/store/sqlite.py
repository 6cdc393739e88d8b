"""SQLite store: the embedded default (one file, no server).

WAL journal with ``synchronous=FULL``: a committed block survives a crash of the process or of the machine.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path

from gridledger.store.base import SCHEMA, Store, StoreError


class SqliteStore(Store):
    PARAM = "?"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            for stmt in SCHEMA:
                self.db.execute(stmt.format(B="BLOB", W=" WITHOUT ROWID"))
        except (sqlite3.DatabaseError, OSError) as e:
            raise StoreError(f"cannot open SQLite store {self.path}: {e}") from None

    def _cursor(self):
        return self.db.cursor()

    @contextmanager
    def _transaction(self):
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    def close(self) -> None:
        self.db.close()
