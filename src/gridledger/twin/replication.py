"""Replication of the DT controller's store to a backup controller (paper, section 4.5, fault tolerance:
"the auxiliary DT controllers keep the database with all the information up to date").

The primary publishes, as envelopes signed with the controller key and encrypted with a replication key
shared only by the controllers: a heartbeat every ``heartbeat_s``; the registry snapshot (retained) whenever it
changes; and the readings it stored since the last batch, in store order (``rowid``), each batch with the
row id it ends at. The backup applies them idempotently (a reading is unique per serial, counter and field).
"""

from __future__ import annotations

from typing import Any

from gridledger.twin.twin_store import TwinObject, TwinStore


def registry_snapshot(store: TwinStore) -> dict[str, Any]:
    """The registry as JSON (keys in hex); the AES keys travel only inside the encrypted replica envelope."""
    return {
        "objects": [
            {
                "object_id": o.object_id,
                "kind": o.kind,
                "serial": o.serial,
                "twin": o.twin,
                "verify_key": o.verify_key.hex() if o.verify_key else None,
                "aes_key": o.aes_key.hex() if o.aes_key else None,
                "mirror_of": o.mirror_of,
            }
            for o in store.objects()
        ]
    }


def apply_registry(store: TwinStore, snapshot: dict[str, Any]) -> int:
    """Upsert every object of a snapshot, keeping each device's replay counter; returns the object count."""
    objects = snapshot["objects"]
    for o in objects:
        existing = store.get_object(o["object_id"])
        store.put_object(
            TwinObject(
                o["object_id"],
                o["kind"],
                o["serial"],
                o["twin"],
                bytes.fromhex(o["verify_key"]) if o["verify_key"] else None,
                bytes.fromhex(o["aes_key"]) if o["aes_key"] else None,
                existing.counter if existing else -1,
                o["mirror_of"],
            )
        )
    return len(objects)


def readings_batch(store: TwinStore, after_rowid: int, limit: int = 500) -> tuple[dict[str, Any], int]:
    """The next batch of stored readings after ``after_rowid`` and the row id it ends at."""
    rows = store.readings_after(after_rowid, limit)
    upto = rows[-1][0] if rows else after_rowid
    return {"upto": upto, "rows": [list(r[1:]) for r in rows]}, upto


def apply_readings(store: TwinStore, batch: dict[str, Any]) -> dict[str, int]:
    """Store a batch of replicated readings and advance each device's replay counter past them.

    Returns the highest counter seen per serial in the batch.
    """
    rows = [(str(s), int(c), float(t), str(f), float(v)) for s, c, t, f, v in batch["rows"]]
    store.add_reading_rows(rows)
    highest: dict[str, int] = {}
    for serial, counter, *_ in rows:
        highest[serial] = max(highest.get(serial, -1), counter)
    for serial, counter in highest.items():
        store.advance_counter(serial, counter)
    return highest
