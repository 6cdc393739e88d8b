"""The meter daemon's durable state: a SQLite file (WAL, ``synchronous=FULL``: every commit is fsync'd).

* ``readings``: every signed, encrypted reading the daemon made, by minute, until the node acknowledges it
  (``queued`` → ``sent`` → ``committed`` at a height, or ``rejected`` with the reject code). Committed rows are kept:
  the highest minute ever sealed is where the meter's device resumes, so no minute is encrypted or sent twice.
* ``meter``: the energy accumulated for minutes not yet sealed and the last measurement's time (one JSON row).
* ``counters``: what was received, dropped (by reason), committed and rejected (by code), across restarts.

Every change that follows an MQTT message is one transaction, committed before the message is acknowledged to the
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
    minute INTEGER PRIMARY KEY, txid BLOB NOT NULL, raw BLOB NOT NULL, status TEXT NOT NULL,
    code TEXT, height INTEGER, created REAL NOT NULL, sent REAL, attempts INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS readings_open ON readings (status, minute);
CREATE TABLE IF NOT EXISTS meter (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Row:
    """One reading of the outbox."""

    minute: int
    txid: bytes
    raw: bytes
    status: str
    code: str | None
    height: int | None
    sent: float | None
    attempts: int


class Outbox:
    """The durable state of one meter daemon (thread-safe: one connection behind a lock)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

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

    def next_open(self) -> Row | None:
        """The oldest reading the node has not acknowledged (``queued`` or ``sent``), or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT minute, txid, raw, status, code, height, sent, attempts FROM readings "
                "WHERE status IN (?, ?) ORDER BY minute LIMIT 1",
                (QUEUED, SENT),
            ).fetchone()
        return Row(*row) if row else None

    def rows(self) -> list[Row]:
        with self._lock:
            rows = self._db.execute(
                "SELECT minute, txid, raw, status, code, height, sent, attempts FROM readings ORDER BY minute"
            ).fetchall()
        return [Row(*r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Readings by status and the counters (``dropped:<reason>``, ``rejected:<code>`` …)."""
        with self._lock:
            by_status = dict(self._db.execute("SELECT status, COUNT(*) FROM readings GROUP BY status").fetchall())
            counters = dict(self._db.execute("SELECT name, n FROM counters").fetchall())
        return {**{s: by_status.get(s, 0) for s in (QUEUED, SENT, COMMITTED, REJECTED)}, **counters}

    # ------------------------------------------------------------------ writes (one fsync'd transaction each)
    def record(self, state: dict, readings: Iterable[tuple[int, bytes, bytes]], counters: Iterable[str]) -> None:
        """Save the accumulation ``state``, add sealed ``readings`` (minute, txid, raw) and bump ``counters``."""
        now = time.time()
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT OR REPLACE INTO meter (id, state) VALUES (1, ?)", (json.dumps(state),))
            self._db.executemany(
                "INSERT INTO readings (minute, txid, raw, status, created) VALUES (?, ?, ?, ?, ?)",
                [(m, txid, raw, QUEUED, now) for m, txid, raw in readings],
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
        """The node acknowledged the reading: committed at ``height``, or rejected with ``code``."""
        status = COMMITTED if code is None else REJECTED
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "UPDATE readings SET status = ?, height = ?, code = ? WHERE minute = ?", (status, height, code, minute)
            )
            self._bump([status if code is None else f"rejected:{code}"])

    def _bump(self, names: Iterable[str]) -> None:
        self._db.executemany(
            "INSERT INTO counters (name, n) VALUES (?, 1) ON CONFLICT (name) DO UPDATE SET n = n + 1",
            [(n,) for n in names],
        )
