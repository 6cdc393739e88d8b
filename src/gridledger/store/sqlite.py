"""SQLite store: the embedded default (one file, no server).

WAL journal with ``synchronous=FULL``: a committed block survives a crash of the process or of the machine,
and a block whose transaction did not commit leaves no trace (SQLite's atomic commit). A store opened with
``durable=False`` (``synchronous=NORMAL``, for simulations) still survives a killed process, but a crash of the
machine may lose its last commits. ``STRICT`` tables
refuse values of the wrong type. Writers take the database's write lock at ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path

from gridledger.store.base import SCHEMA, Store, StoreError

#: How long a writer waits for another process's write lock before giving up (s).
BUSY_TIMEOUT_S = 30.0


class SqliteStore(Store):
    PARAM = "?"
    DB_ERRORS = (sqlite3.Error,)

    def __init__(self, path: str | Path, *, durable: bool = True) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
            )
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            for stmt in SCHEMA:
                self.db.execute(stmt.format(B="BLOB", I="INTEGER", T=" STRICT", K=" WITHOUT ROWID, STRICT"))
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"cannot open SQLite store {self.path}: {e}") from None

    def _cursor(self):
        return self.db.cursor()

    @contextmanager
    def _transaction(self, *, write: bool = True):
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield cur
            cur.execute("COMMIT")
        except BaseException:
            # SQLite may already have rolled back by itself (e.g. on a full disk); a failed COMMIT has not.
            if self.db.in_transaction:
                cur.execute("ROLLBACK")
            raise

    def integrity_problems(self) -> list[str]:
        """``PRAGMA integrity_check``: every page, b-tree, index entry and constraint of the file."""
        rows = self._fetch("PRAGMA integrity_check")
        return [] if rows == [("ok",)] else [str(r[0]) for r in rows]

    def close(self) -> None:
        self.db.close()
