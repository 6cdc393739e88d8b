"""The real broker, real device processes and the controller node: authentication, ACL, connection watch,
encrypted traffic, two-way sync, discovery, and fail-over to a backup controller."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests import requires

from gridledger.twin import mqtt
from gridledger.twin.identity import Credentials
from gridledger.twin.node import ControllerNode, NodeConfig
from gridledger.twin.scenarios.harness import DEFAULT_COMMUNITY
from gridledger.twin.scenarios.sniffing import readable
from gridledger.twin.twin_controller import TwinController
from gridledger.twin.twin_store import TwinStore

pytestmark = [
    pytest.mark.mqtt,
    requires.needs_mosquitto,
]


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_authentication_and_acl() -> None:
    users = {"dtfc": "a", "m1": "b"}
    with mqtt.Broker(allow_anonymous=False, users=users, admin="dtfc") as broker:
        got: list[str] = []
        admin = mqtt.connect(broker.port, "dtfc", username="dtfc", password="a")
        admin.on_message = lambda _c, _u, m: got.append(m.topic)
        admin.subscribe(f"{mqtt.ROOT}/#", qos=1)
        device = mqtt.connect(broker.port, "m1", username="m1", password="b")
        time.sleep(0.2)
        device.publish(mqtt.uplink("m1"), b"own", qos=1).wait_for_publish()
        device.publish(mqtt.uplink("m2"), b"someone else's", qos=1).wait_for_publish()
        with pytest.raises(mqtt.MqttError, match="refused"):
            mqtt.connect(broker.port, "intruder", username="m1", password="wrong")
        with pytest.raises(mqtt.MqttError, match="refused"):
            mqtt.connect(broker.port, "anonymous")
        assert wait_for(lambda: mqtt.uplink("m1") in got)
        time.sleep(0.2)
        assert got == [mqtt.uplink("m1")]
        events = broker.connection_events()
        assert [(e.client_id, e.accepted) for e in events if e.accepted] == [("dtfc", True), ("m1", True)]
        assert sum(not e.accepted for e in events) == 2
        mqtt.close(admin)
        mqtt.close(device)
    assert not broker.running


def test_broker_unavailable_without_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mqtt, "mosquitto_binary", lambda: None)
    with pytest.raises(mqtt.BrokerUnavailable, match="not installed"):
        mqtt.Broker().start()


HOUSEHOLD = {  # MI002 of the example community (an iron and a blender), from an evening of its first day
    "community": str(DEFAULT_COMMUNITY),
    "home": "MI002",
    "days": 2,
    "start": "2024-04-11T18:00:00-06:00",
    "interval_s": 120,
    "history_reports": 0,
}


def spawn(tmp: Path, broker: mqtt.Broker, creds: dict, controller_key: bytes, **extra: object):
    spec = {
        "credentials": creds,
        "controller_key": controller_key.hex(),
        "port": broker.port,
        "period_s": 0.05,
        "start_at": None,
        "duration_s": extra.pop("duration_s", 2.0),
        "household": HOUSEHOLD,
        "stats": str(tmp / f"{creds['serial']}.stats.json"),
        **extra,
    }
    path = tmp / f"{creds['serial']}.json"
    path.write_text(json.dumps(spec))
    return subprocess.Popen(
        [sys.executable, "-m", "gridledger.twin.device_process", str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )


def close(proc: subprocess.Popen) -> None:
    for stream in (proc.stdin, proc.stdout):
        if not stream.closed:
            stream.close()


def started(proc: subprocess.Popen) -> bool:
    """Wait for the device to be connected, then start its schedule now."""
    if proc.stdout.readline().strip() != b"ready":
        return False
    proc.stdin.write(f"{time.time()!r}\n".encode())
    proc.stdin.close()
    return True


@pytest.fixture
def node(broker: mqtt.Broker) -> Iterator[ControllerNode]:
    store = TwinStore()
    controller = TwinController(store, os.urandom(32))
    with ControllerNode(controller, NodeConfig(port=broker.port), broker=broker) as n:
        yield n
    store.close()


def test_device_process_sync_and_sniffer(tmp_path: Path, broker: mqtt.Broker, node: ControllerNode) -> None:
    controller = node.controller
    device = Credentials.generate("m1")
    key = controller.register_physical(device.identity, {"ID": 1, "Name": "Smart_Meter", "On": 1})
    captured: list[bytes] = []
    sniffer = mqtt.connect(broker.port, "sniffer")
    sniffer.on_message = lambda _c, _u, m: captured.append(m.payload)
    sniffer.subscribe("#")
    proc = spawn(tmp_path, broker, Credentials("m1", device.seed, key).to_hex(), controller.verify_key)
    try:
        assert started(proc)
        assert wait_for(lambda: len(controller.store.stored_counters("m1")) >= 5)
        node.set_virtual("V-m1", {"Iron": 4})  # virtual -> physical: the home's iron on cotton
        assert wait_for(lambda: controller.twin("m1")["Iron"] == 4)  # ... and back
        node.set_virtual("V-m1", {"On": 0})
        assert wait_for(lambda: controller.twin("m1")["On"] == 0)
        proc.wait(timeout=20)
    finally:
        proc.kill()
        close(proc)
    time.sleep(0.3)
    stats = json.loads((tmp_path / "m1.stats.json").read_text())
    assert stats["commands"] == [{"Iron": 4}, {"On": 0}]
    assert set(stats["sent"]) == controller.store.stored_counters("m1")
    assert "command-applied" in [e.kind for e in controller.store.events("event")]
    assert "new-connection" in [a.kind for a in controller.alarms() if a.source == "sniffer"]
    assert captured and not any(readable(raw) for raw in captured)
    mqtt.close(sniffer)


def test_discovery_over_mqtt(tmp_path: Path, broker: mqtt.Broker, node: ControllerNode) -> None:
    controller = node.controller
    device = Credentials.generate("iron-1")
    controller.allow_hardware(device.identity)
    creds = {"serial": "iron-1", "seed": device.seed.hex()}
    proc = spawn(tmp_path, broker, creds, controller.verify_key, duration_s=0.5)
    try:
        assert started(proc)
        proc.wait(timeout=20)
    finally:
        proc.kill()
        close(proc)
    assert wait_for(lambda: len(controller.store.stored_counters("iron-1")) > 0)
    assert "discovered" in [e.kind for e in controller.store.events("event")]


def test_unknown_hardware_is_not_provisioned(tmp_path: Path, broker: mqtt.Broker, node: ControllerNode) -> None:
    device = Credentials.generate("rogue-1")
    creds = {"serial": "rogue-1", "seed": device.seed.hex()}
    proc = spawn(tmp_path, broker, creds, node.controller.verify_key, provision_timeout_s=1.0)
    assert proc.wait(timeout=20) != 0
    close(proc)
    assert "unknown-device" in [a.kind for a in node.controller.alarms()]


def test_backup_takes_over_without_losing_readings(tmp_path: Path, broker: mqtt.Broker) -> None:
    seed, replication_key = os.urandom(32), os.urandom(16)
    primary_store, backup_store = TwinStore(), TwinStore()
    primary = TwinController(primary_store, seed)
    backup = TwinController(backup_store, seed, name="dtfc-backup")
    device = Credentials.generate("m1")
    key = primary.register_physical(device.identity, {"ID": 1, "Name": "Smart_Meter", "On": 1})
    config = NodeConfig(port=broker.port, replication_key=replication_key)
    backup_node = ControllerNode(
        backup,
        NodeConfig(port=broker.port, client_id="dtfc-backup", replication_key=replication_key, primary_timeout_s=0.5),
        standby=True,
    ).start()
    primary_node = ControllerNode(primary, config).start()
    proc = spawn(tmp_path, broker, Credentials("m1", device.seed, key).to_hex(), primary.verify_key, duration_s=2.5)
    try:
        assert started(proc)
        assert wait_for(lambda: backup_store.by_serial("m1") is not None)  # registry replicated
        assert wait_for(lambda: len(backup_store.stored_counters("m1")) >= 5)  # history replicated
        assert backup_node.role == "standby"
        primary_node.stop()  # the primary fails
        assert wait_for(lambda: backup_node.role == "primary")
        proc.wait(timeout=20)
        time.sleep(0.5)
    finally:
        proc.kill()
        close(proc)
        backup_node.stop()
    sent = set(json.loads((tmp_path / "m1.stats.json").read_text())["sent"])
    assert sent == backup_store.stored_counters("m1")
    kinds = [a.kind for a in backup.alarms()]
    assert kinds[0] == "controller-failure" and kinds.count("controller-failure") == 1
