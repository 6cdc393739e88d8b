"""The DT controller's store: registry of twin objects, historical sensor values, events and alarms (SQLite).

One SQLite file (or ``:memory:``) per controller. Tables:

* ``objects``  -- one row per physical or virtual object: its twin JSON (the paper's mapping), and for a
  physical device its hardware identity (serial, Ed25519 key), provisioned AES key and last accepted counter;
* ``readings`` -- every sensor value received: (serial, counter, t, field, value), unique per
  (serial, counter, field), so a replicated or replayed reading is never stored twice;
* ``events``   -- events and alarms, in order;
* ``grants``   -- parties allowed to read / export data (sensitive-data protection).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    object_id TEXT PRIMARY KEY, kind TEXT NOT NULL, serial TEXT, twin TEXT NOT NULL,
    verify_key BLOB, aes_key BLOB, counter INTEGER NOT NULL DEFAULT -1, mirror_of TEXT);
CREATE TABLE IF NOT EXISTS readings (
    serial TEXT NOT NULL, counter INTEGER NOT NULL, t REAL NOT NULL, field TEXT NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (serial, counter, field));
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, t REAL NOT NULL, severity TEXT NOT NULL, kind TEXT NOT NULL,
    source TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS grants (
    party TEXT PRIMARY KEY, verify_key BLOB NOT NULL, serials TEXT NOT NULL, actions TEXT NOT NULL);
"""


@dataclass(frozen=True)
class TwinObject:
    """A registry row: ``kind`` is physical or virtual; ``mirror_of`` links a virtual twin to its device."""

    object_id: str
    kind: str
    serial: str | None
    twin: dict[str, Any]
    verify_key: bytes | None
    aes_key: bytes | None
    counter: int
    mirror_of: str | None


@dataclass(frozen=True)
class Event:
    seq: int
    t: float
    severity: str
    kind: str
    source: str
    detail: str


class TwinStore:
    """Thread-safe SQLite store of one DT controller."""

    def __init__(self, path: str = ":memory:") -> None:
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        with self._lock:
            if path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- registry --------------------------------------------------------------------------------------------
    def put_object(self, obj: TwinObject) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO objects VALUES (?,?,?,?,?,?,?,?)",
                (
                    obj.object_id,
                    obj.kind,
                    obj.serial,
                    json.dumps(obj.twin, sort_keys=True),
                    obj.verify_key,
                    obj.aes_key,
                    obj.counter,
                    obj.mirror_of,
                ),
            )

    def get_object(self, object_id: str) -> TwinObject | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM objects WHERE object_id = ?", (object_id,)).fetchone()
        return _object(row) if row else None

    def by_serial(self, serial: str) -> TwinObject | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM objects WHERE serial = ? AND kind = 'physical'", (serial,)).fetchone()
        return _object(row) if row else None

    def objects(self) -> list[TwinObject]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM objects ORDER BY object_id").fetchall()
        return [_object(r) for r in rows]

    def set_twin(self, object_id: str, twin: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE objects SET twin = ? WHERE object_id = ?",
                (json.dumps(twin, sort_keys=True), object_id),
            )

    def advance_counter(self, serial: str, counter: int) -> bool:
        """Set the device's last counter to ``counter`` if it is larger; False if it is a replay."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE objects SET counter = ? WHERE serial = ? AND kind = 'physical' AND counter < ?",
                (counter, serial, counter),
            )
            return cur.rowcount == 1

    # -- history ---------------------------------------------------------------------------------------------
    def add_readings(self, serial: str, counter: int, t: float, values: dict[str, float]) -> int:
        """Store one report's sensor values; returns how many were new."""
        with self._lock:
            before = self._db.total_changes
            self._db.executemany(
                "INSERT OR IGNORE INTO readings VALUES (?,?,?,?,?)",
                [(serial, counter, t, k, v) for k, v in sorted(values.items())],
            )
            return self._db.total_changes - before

    def history(self, serial: str, field: str | None = None) -> list[tuple[int, float, str, float]]:
        """(counter, t, field, value) rows of one device, oldest first."""
        sql = "SELECT counter, t, field, value FROM readings WHERE serial = ?"
        args: tuple[Any, ...] = (serial,)
        if field is not None:
            sql += " AND field = ?"
            args += (field,)
        with self._lock:
            return list(self._db.execute(sql + " ORDER BY counter, field", args).fetchall())

    def stored_counters(self, serial: str) -> set[int]:
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT counter FROM readings WHERE serial = ?", (serial,)).fetchall()
        return {r[0] for r in rows}

    def reading_count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM readings").fetchone()[0]

    def readings_after(self, rowid: int, limit: int = 500) -> list[tuple[int, str, int, float, str, float]]:
        """Replication feed: (rowid, serial, counter, t, field, value) rows with rowid > ``rowid``."""
        with self._lock:
            return list(
                self._db.execute(
                    "SELECT rowid, serial, counter, t, field, value FROM readings WHERE rowid > ? "
                    "ORDER BY rowid LIMIT ?",
                    (rowid, limit),
                ).fetchall()
            )

    def add_reading_rows(self, rows: Iterable[tuple[str, int, float, str, float]]) -> int:
        with self._lock:
            before = self._db.total_changes
            self._db.executemany("INSERT OR IGNORE INTO readings VALUES (?,?,?,?,?)", list(rows))
            return self._db.total_changes - before

    # -- events ----------------------------------------------------------------------------------------------
    def add_event(self, t: float, severity: str, kind: str, source: str, detail: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO events (t, severity, kind, source, detail) VALUES (?,?,?,?,?)",
                (t, severity, kind, source, detail),
            )

    def events(self, severity: str | None = None) -> list[Event]:
        sql, args = "SELECT * FROM events", ()
        if severity is not None:
            sql, args = sql + " WHERE severity = ?", (severity,)
        with self._lock:
            return [Event(*r) for r in self._db.execute(sql + " ORDER BY seq", args).fetchall()]

    # -- grants ----------------------------------------------------------------------------------------------
    def put_grant(self, party: str, verify_key: bytes, serials: list[str], actions: list[str]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO grants VALUES (?,?,?,?)",
                (party, verify_key, json.dumps(sorted(serials)), json.dumps(sorted(actions))),
            )

    def grant(self, party: str) -> tuple[bytes, list[str], list[str]] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM grants WHERE party = ?", (party,)).fetchone()
        return (row[1], json.loads(row[2]), json.loads(row[3])) if row else None


def _object(row: tuple[Any, ...]) -> TwinObject:
    return TwinObject(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5], row[6], row[7])
