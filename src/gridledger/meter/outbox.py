"""The meter daemon's durable state: a SQLite file (WAL, ``synchronous=FULL``: every commit is fsync'd).

* ``readings``: every signed, encrypted transaction the daemon made — a READING of one minute, or a READING_BATCH of
  minutes ``first_minute..minute`` — keyed by its last minute, until the node acknowledges it (``queued`` → ``sent``
  → ``committed`` at a height, or ``rejected`` with the reject code). Committed rows are kept: the highest minute
  ever sealed is where the meter's device resumes, so no minute is encrypted or sent twice. (An outbox of a daemon
  from before batches has no ``first_minute`` column: opening it adds the column, each old row a single minute.)
* ``held``: the values of sealed minutes not yet in a transaction (the daemon's batch being collected), plain.
* ``meter``: the energy accumulated for minutes not yet sealed and the last measurement's time (one JSON row).
* ``counters``: what was received, dropped (by reason), committed and rejected (by code), across restarts.

Every change that follows an MQTT message — the accumulation state, the held minutes, a new transaction — is one
transaction, committed before the message is acknowledged to the
broker: a daemon killed at any point either has the message's effect on disk or gets the message again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

QUEUED, SENT, COMMITTED, REJECTED = "queued", "sent", "committed", "rejected"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    minute INTEGER PRIMARY KEY, first_minute INTEGER NOT NULL, txid BLOB NOT NULL, raw BLOB NOT NULL,
    status TEXT NOT NULL, code TEXT, height INTEGER, created REAL NOT NULL, sent REAL,
    attempts INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS readings_open ON readings (status, minute);
CREATE TABLE IF NOT EXISTS meter (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS held (minute INTEGER PRIMARY KEY, "values" TEXT NOT NULL);
"""
_COLUMNS = "minute, first_minute, txid, raw, status, code, height, sent, attempts"


@dataclass(frozen=True)
class Row:
    """One transaction of the outbox: the readings of minutes ``first_minute..minute``."""

    minute: int
    first_minute: int
    txid: bytes
    raw: bytes
    status: str
    code: str | None
    height: int | None
    sent: float | None
    attempts: int

    @property
    def minutes(self) -> int:
        return self.minute - self.first_minute + 1

    @property
    def span(self) -> str:
        """``minute 7`` or ``minutes 3..7`` (for log lines)."""
        return f"minute {self.minute}" if self.minutes == 1 else f"minutes {self.first_minute}..{self.minute}"


class Outbox:
    """The durable state of one meter daemon (thread-safe: one connection behind a lock)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._migrate()
        self._db.executescript(_SCHEMA)

    def _migrate(self) -> None:
        """An outbox from before READING_BATCHes: add ``first_minute`` (every old row is one minute)."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            columns = [r[1] for r in self._db.execute("PRAGMA table_info(readings)")]
            if columns and "first_minute" not in columns:
                self._db.execute("ALTER TABLE readings ADD COLUMN first_minute INTEGER")
                self._db.execute("UPDATE readings SET first_minute = minute")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ reads
    def state(self) -> dict:
        """The accumulation state saved by the last ``record`` (empty before the first)."""
        with self._lock:
            row = self._db.execute("SELECT state FROM meter WHERE id = 1").fetchone()
        return json.loads(row[0]) if row else {}

    def last_minute(self) -> int:
        """The highest minute ever sealed (−1: none)."""
        with self._lock:
            (m,) = self._db.execute("SELECT COALESCE(MAX(minute), -1) FROM readings").fetchone()
        return m

    def held(self) -> list[tuple[int, dict]]:
        """The minutes sealed but not yet in a transaction (minute, values as saved), in minute order."""
        with self._lock:
            rows = self._db.execute('SELECT minute, "values" FROM held ORDER BY minute').fetchall()
        return [(m, json.loads(v)) for m, v in rows]

    def next_open(self) -> Row | None:
        """The oldest transaction the node has not acknowledged (``queued`` or ``sent``), or None."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM readings WHERE status IN (?, ?) ORDER BY minute LIMIT 1",
                (QUEUED, SENT),
            ).fetchone()
        return Row(*row) if row else None

    def rows(self) -> list[Row]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM readings ORDER BY minute").fetchall()
        return [Row(*r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Minutes ``held`` and minutes by status (a batch counts each of its minutes), then the counters
        (``dropped:<reason>``, ``rejected:<code>``, ``flushed:<why>`` …; ``committed`` / ``rejected`` count minutes)."""
        with self._lock:
            by_status = dict(
                self._db.execute(
                    "SELECT status, SUM(minute - first_minute + 1) FROM readings GROUP BY status"
                ).fetchall()
            )
            (held,) = self._db.execute("SELECT COUNT(*) FROM held").fetchone()
            counters = dict(self._db.execute("SELECT name, n FROM counters").fetchall())
        return {"held": held, **{s: by_status.get(s, 0) for s in (QUEUED, SENT, COMMITTED, REJECTED)}, **counters}

    def transactions(self) -> dict[str, int]:
        """Transactions (READINGs and READING_BATCHes) by status."""
        with self._lock:
            by_status = dict(self._db.execute("SELECT status, COUNT(*) FROM readings GROUP BY status").fetchall())
        return {s: by_status.get(s, 0) for s in (QUEUED, SENT, COMMITTED, REJECTED)}

    # ------------------------------------------------------------------ writes (one fsync'd transaction each)
    def record(
        self,
        state: dict,
        readings: Iterable[tuple[int, int, bytes, bytes]],
        counters: Iterable[str],
        held: Iterable[tuple[int, dict]] = (),
    ) -> None:
        """Save the accumulation ``state``, add signed transactions ``readings`` (first minute, last minute, txid,
        raw), replace the held minutes by ``held`` (minute, values) and bump ``counters``."""
        now = time.time()
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT OR REPLACE INTO meter (id, state) VALUES (1, ?)", (json.dumps(state),))
            self._db.executemany(
                "INSERT INTO readings (minute, first_minute, txid, raw, status, created) VALUES (?, ?, ?, ?, ?, ?)",
                [(last, first, txid, raw, QUEUED, now) for first, last, txid, raw in readings],
            )
            self._db.execute("DELETE FROM held")
            self._db.executemany(
                'INSERT INTO held (minute, "values") VALUES (?, ?)', [(m, json.dumps(v)) for m, v in held]
            )
            self._bump(counters)

    def count(self, *names: str) -> None:
        """Bump counters only (a message dropped, a node refusal that is retried)."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._bump(names)

    def mark_sent(self, minute: int) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "UPDATE readings SET status = ?, sent = ?, attempts = attempts + 1 WHERE minute = ?",
                (SENT, time.time(), minute),
            )

    def finish(self, minute: int, height: int | None = None, code: str | None = None) -> None:
        """The node acknowledged the transaction ending with ``minute``: committed at ``height``, or rejected with
        ``code`` (the counter counts its minutes)."""
        status = COMMITTED if code is None else REJECTED
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "UPDATE readings SET status = ?, height = ?, code = ? WHERE minute = ?", (status, height, code, minute)
            )
            row = self._db.execute("SELECT minute - first_minute + 1 FROM readings WHERE minute = ?", (minute,))
            (minutes,) = row.fetchone() or (1,)
            self._bump([status if code is None else f"rejected:{code}"], minutes)

    def _bump(self, names: Iterable[str], by: int = 1) -> None:
        self._db.executemany(
            "INSERT INTO counters (name, n) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET n = n + excluded.n",
            [(n, by) for n in names],
        )
