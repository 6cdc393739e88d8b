"""The DT controller core, without a network: registry, sync, history, alarms, access control."""

from __future__ import annotations

import json
from typing import Any

import pytest
from nacl.signing import SigningKey

from gridledger.twin import envelope
from gridledger.twin.identity import Credentials, IdentityError, unseal
from gridledger.twin.mapping import MappingError
from gridledger.twin.messages import AccessRequest, Announce
from gridledger.twin.physical import HouseholdSignal
from gridledger.twin.twin_controller import TwinController


def report(creds: Credentials, counter: int, signal: HouseholdSignal) -> bytes:
    return envelope.seal(creds.signing_key, creds.aes_key, creds.serial, counter, "report", signal.step())


@pytest.fixture
def signal(home_signal) -> HouseholdSignal:
    """The meter m1's home."""
    return home_signal("m1")


def alarm_kinds(controller: TwinController) -> list[str]:
    return [a.kind for a in controller.alarms()]


def test_registration_creates_physical_and_virtual_objects(controller: TwinController, meter: Credentials) -> None:
    kinds = {o.object_id: (o.kind, o.mirror_of) for o in controller.objects()}
    assert kinds == {"m1": ("physical", None), "V-m1": ("virtual", "m1")}
    with pytest.raises(IdentityError, match="another key"):
        controller.register_physical(Credentials.generate("m1").identity, {"ID": 1, "Name": "x"})


def test_report_is_stored_and_mirrored(controller: TwinController, meter: Credentials, signal) -> None:
    outcome = controller.receive(report(meter, 1, signal))
    assert outcome.accepted and outcome.kind == "report"
    fields = {row[2] for row in controller.store.history("m1")}
    assert {"Voltage", "Current", "Power", "Consumption", "Frequency", "On"} <= fields
    assert controller.twin("V-m1") == controller.twin("m1")
    assert 120 < controller.twin("m1")["Voltage"] < 135  # 127 V service


def test_replay_is_rejected_and_alarmed(controller: TwinController, meter: Credentials, signal) -> None:
    raw = report(meter, 5, signal)
    assert controller.receive(raw).accepted
    outcome = controller.receive(raw)
    assert not outcome.accepted and outcome.code == envelope.REPLAYED
    assert not controller.receive(report(meter, 4, signal)).accepted  # older counter
    assert alarm_kinds(controller) == ["replay"]
    assert controller.store.stored_counters("m1") == {5}


def test_spoofed_and_unregistered_messages(controller: TwinController, meter: Credentials, signal) -> None:
    forger = Credentials("m1", Credentials.generate("m1").seed, meter.aes_key)
    assert controller.receive(report(forger, 1, signal)).code == envelope.BAD_SIGNATURE
    assert controller.receive(report(Credentials.generate("ghost"), 1, signal)).code == envelope.UNREGISTERED
    assert controller.receive(b"garbage").code == envelope.MALFORMED
    assert sorted(alarm_kinds(controller)) == ["malformed-message", "spoofing", "unregistered-device"]
    assert controller.store.history("m1") == []


def test_report_that_does_not_map(controller: TwinController, meter: Credentials) -> None:
    raw = envelope.seal(meter.signing_key, meter.aes_key, "m1", 1, "report", {"twin": {"Name": "no id"}})
    assert controller.receive(raw).code == envelope.MALFORMED_PAYLOAD
    assert alarm_kinds(controller) == ["malformed-message"]


def test_two_way_sync(controller: TwinController, meter: Credentials, signal) -> None:
    controller.receive(report(meter, 1, signal))
    serial, raw = controller.set_virtual("V-m1", {"On": 0})
    assert serial == "m1"
    env = envelope.parse(raw)
    env.verify(controller.verify_key)  # the device checks the controller's signature
    changes = env.decrypt(meter.aes_key)["changes"]
    assert controller.twin("V-m1")["On"] == 0 and controller.twin("m1")["On"] == 1  # pending
    controller.receive(report(meter, 2, signal))  # device not yet switched: the mirror keeps the target
    assert controller.twin("V-m1")["On"] == 0
    signal.apply(changes)
    controller.receive(report(meter, 3, signal))
    assert controller.twin("m1")["On"] == 0 and controller.twin("V-m1")["On"] == 0
    assert "synced" in [e.kind for e in controller.store.events("event")]
    assert "energy-outlier" not in alarm_kinds(controller)  # switching off is not tampering


def test_set_virtual_validation(controller: TwinController, meter: Credentials) -> None:
    with pytest.raises(KeyError):
        controller.set_virtual("m1", {"On": 0})  # physical objects change only by their device
    with pytest.raises(MappingError):
        controller.set_virtual("V-m1", {"ID": 9})
    with pytest.raises(MappingError):
        controller.set_virtual("V-m1", {"On": -2})
    controller.register_virtual("sim-iron", {"ID": 7, "Name": "Iron", "On": 0})
    assert controller.set_virtual("sim-iron", {"On": 3}) is None
    assert controller.twin("sim-iron")["On"] == 3


def test_discovery_only_for_allowlisted_hardware(controller: TwinController) -> None:
    device = Credentials.generate("iron-1")
    announce = Announce.make(device.signing_key, "iron-1", {"ID": 2, "Name": "Iron", "On": 0})
    assert controller.discover(announce) is None
    assert alarm_kinds(controller) == ["unknown-device"]
    controller.allow_hardware(device.identity)
    serial, sealed = controller.discover(announce)
    key = unseal(device.seed, sealed)
    assert serial == "iron-1" and controller.store.by_serial("iron-1").aes_key == key
    impostor = Credentials.generate("iron-1")
    assert controller.discover(Announce.make(impostor.signing_key, "iron-1", {"ID": 2, "Name": "Iron"})) is None


def test_rate_firewall_quarantines(clock: Any, controller: TwinController, meter: Credentials, signal) -> None:
    limit = controller.thresholds.rate_max_messages
    outcomes = [controller.receive(report(meter, i, signal)) for i in range(1, limit + 5)]
    assert all(o.accepted for o in outcomes[:limit])
    assert not any(o.accepted for o in outcomes[limit:])
    assert alarm_kinds(controller) == ["message-rate"]
    controller.release("m1")
    clock.advance(5)
    assert controller.receive(report(meter, 1000, signal)).accepted


def test_heartbeat_and_alarm_holdoff(clock: Any, controller: TwinController, meter: Credentials, signal) -> None:
    controller.receive(report(meter, 1, signal))
    clock.advance(controller.thresholds.heartbeat_timeout_s + 0.1)
    assert [a.kind for a in controller.tick()] == ["heartbeat-timeout"]
    controller.receive(report(meter, 2, signal))
    clock.advance(controller.thresholds.heartbeat_timeout_s + 0.1)
    controller.tick()  # raised again, within the hold-off: counted, not stored twice
    assert alarm_kinds(controller) == ["heartbeat-timeout"] and controller.stats.suppressed_alarms == 1


def test_connections(controller: TwinController, meter: Credentials) -> None:
    assert controller.observe_connection("m1", True) == ()
    assert controller.observe_connection("dtfc", True) == ()
    assert controller.observe_connection("sniffer", True)[0].kind == "new-connection"


def test_access_control(controller: TwinController, meter: Credentials, signal) -> None:
    controller.receive(report(meter, 1, signal))
    analyst, outsider = SigningKey.generate(), SigningKey.generate()
    controller.grant("analyst", analyst.verify_key.encode(), ["m1"], ["read"])
    ok, answer = controller.access(AccessRequest.make(analyst, "analyst", "read", "m1"))
    assert ok and json.loads(unseal(bytes(analyst), answer))["data"]["Name"] == "Smart_Meter"
    denied = [
        AccessRequest.make(analyst, "analyst", "export", "m1"),  # action not granted
        AccessRequest.make(outsider, "outsider", "read", "m1"),  # no grant
        AccessRequest.make(outsider, "analyst", "read", "m1"),  # forged signature
        b"{}",
    ]
    for raw in denied:
        ok, answer = controller.access(raw)
        assert not ok and b"denied" in answer
    replay = AccessRequest.make(analyst, "analyst", "read", "m1")
    assert controller.access(replay)[0] and not controller.access(replay)[0]
    assert alarm_kinds(controller).count("unauthorized-access") >= 2
    with pytest.raises(ValueError):
        controller.grant("x", analyst.verify_key.encode(), ["m1"], ["delete"])


def test_export_returns_history(controller: TwinController, meter: Credentials, signal) -> None:
    for i in range(1, 4):
        controller.receive(report(meter, i, signal))
    key = SigningKey.generate()
    controller.grant("dso", key.verify_key.encode(), ["*"], ["export"])
    ok, answer = controller.access(AccessRequest.make(key, "dso", "export", "m1"))
    rows = json.loads(unseal(bytes(key), answer))["data"]
    assert ok and {r[0] for r in rows} == {1, 2, 3}
