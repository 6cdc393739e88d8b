"""A SQLite store syncs every commit to disk (FULL) unless opened for a simulation (NORMAL: survives a killed
process, not a crash of the machine)."""

from __future__ import annotations

from gridledger.store.sqlite import SqliteStore

FULL, NORMAL = 2, 1


def test_durable_by_default_normal_for_simulations(tmp_path):
    for durable, level in ((True, FULL), (False, NORMAL)):
        store = SqliteStore(tmp_path / f"{durable}.sqlite", durable=durable)
        try:
            assert store.db.execute("PRAGMA synchronous").fetchone()[0] == level
            assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        finally:
            store.close()
    default = SqliteStore(tmp_path / "default.sqlite")
    try:
        assert default.db.execute("PRAGMA synchronous").fetchone()[0] == FULL
    finally:
        default.close()
