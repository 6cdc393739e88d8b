"""Replication of the registry and the history to a backup store."""

from __future__ import annotations

import os

from gridledger.twin import envelope
from gridledger.twin.identity import Credentials
from gridledger.twin.replication import apply_readings, apply_registry, readings_batch, registry_snapshot
from gridledger.twin.twin_controller import TwinController
from gridledger.twin.twin_store import TwinStore


def test_backup_store_catches_up_idempotently(controller: TwinController, meter: Credentials, home_signal) -> None:
    signal = home_signal("m1")
    for i in range(1, 6):
        controller.receive(envelope.seal(meter.signing_key, meter.aes_key, "m1", i, "report", signal.step()))
    backup = TwinStore()
    assert apply_registry(backup, registry_snapshot(controller.store)) == 2
    assert backup.by_serial("m1").aes_key == meter.aes_key
    rowid = 0
    while True:
        batch, upto = readings_batch(controller.store, rowid, limit=7)
        if upto == rowid:
            break
        assert apply_readings(backup, batch)["m1"] <= 5
        apply_readings(backup, batch)  # a duplicate batch changes nothing
        rowid = upto
    assert backup.history("m1") == controller.store.history("m1")
    assert backup.by_serial("m1").counter == 5
    # the replicated counter protects the backup against replays of what the primary already stored
    backup_controller = TwinController(backup, os.urandom(32))
    old = envelope.seal(meter.signing_key, meter.aes_key, "m1", 3, "report", signal.step())
    assert backup_controller.receive(old).code == envelope.REPLAYED


def test_registry_replication_keeps_the_backup_counter() -> None:
    primary, backup = TwinStore(), TwinStore()
    ctl = TwinController(primary, os.urandom(32))
    ctl.register_physical(Credentials.generate("m2").identity, {"ID": 2, "Name": "Blender", "On": 0})
    apply_registry(backup, registry_snapshot(primary))
    backup.advance_counter("m2", 40)
    apply_registry(backup, registry_snapshot(primary))
    assert backup.by_serial("m2").counter == 40
