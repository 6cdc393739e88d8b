"""The DT controller on the network: a ``TwinController`` wired to the MQTT broker.

A node subscribes to every device uplink, announce and access request, and runs a tick loop for the
time-driven checks (device heartbeats, new broker connections) and, when it has a replication key, for
replication to a backup. A node is ``primary`` (it processes messages) or ``standby`` (``backup``: it
applies the primary's replication feed, keeps device messages in a buffer, and takes over when the
heartbeat of a primary it has heard stops). Run a primary as its own process with
``python -m gridledger.twin.node SPEC``.
"""

from __future__ import annotations

import hashlib
import json
import signal
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from gridledger.twin import envelope, mqtt, replication
from gridledger.twin.detectors import Alarm
from gridledger.twin.envelope import EnvelopeRejected
from gridledger.twin.twin_controller import Thresholds, TwinController
from gridledger.twin.twin_store import TwinStore


@dataclass
class NodeConfig:
    """Network settings of a controller node. Times in seconds."""

    port: int
    client_id: str = "dtfc"
    username: str | None = None
    password: str | None = None
    tick_s: float = 0.05
    heartbeat_s: float = 0.1
    primary_timeout_s: float = 1.0
    replication_key: bytes | None = None
    known_clients: set[str] = field(default_factory=set)


class ControllerNode:
    """A DT controller node (primary or standby) on one broker."""

    def __init__(
        self,
        controller: TwinController,
        config: NodeConfig,
        *,
        broker: mqtt.Broker | None = None,
        standby: bool = False,
    ) -> None:
        self.controller = controller
        self.config = config
        self.broker = broker
        self.role = "standby" if standby else "primary"
        self.takeover_at: float | None = None
        self._client: paho.Client | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._buffer: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
        self._replica_counter = time.time_ns() // 1000
        self._replica_seen = -1
        self._replicated_rowid = 0
        self._registry_digest = b""
        self._last_beat = time.time()
        self._last_heartbeat_sent = 0.0
        controller.connections.known |= {config.client_id, *config.known_clients}

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> ControllerNode:
        cfg = self.config
        self._last_beat = time.time()
        self._client = mqtt.connect(cfg.port, cfg.client_id, username=cfg.username, password=cfg.password)
        self._client.on_message = self._on_message
        topics = [
            (f"{mqtt.ROOT}/+/up", 1),
            (mqtt.ANNOUNCE, 1),
            (mqtt.ACCESS_REQUEST, 1),
        ]
        if self.role == "standby":
            topics += [(mqtt.REPLICA_HEARTBEAT, 1), (mqtt.REPLICA_LOG, 1), (mqtt.REPLICA_REGISTRY, 1)]
        self._client.subscribe(topics)
        self._thread = threading.Thread(target=self._loop, name=f"{cfg.client_id}-tick", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._client is not None:
            mqtt.close(self._client)
            self._client = None

    def __enter__(self) -> ControllerNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- inbound ---------------------------------------------------------------------------------------------
    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        topic, payload = msg.topic, msg.payload
        with self._lock:
            if topic.endswith("/up"):
                if self.role == "primary":
                    self.controller.receive(payload)
                else:
                    self._buffer_uplink(payload)
            elif topic.startswith(f"{mqtt.ROOT}/announce/") and self.role == "primary":
                answer = self.controller.discover(payload)
                if answer is not None:
                    self._publish(mqtt.provision(answer[0]), answer[1])
            elif topic == mqtt.ACCESS_REQUEST and self.role == "primary":
                self._serve_access(payload)
            elif topic.startswith(f"{mqtt.ROOT}/replica/") and self.role == "standby":
                self._apply_replica(topic, payload)

    def _buffer_uplink(self, raw: bytes) -> None:
        try:
            env = envelope.parse(raw)
        except EnvelopeRejected:
            return
        self._buffer[env.serial].append((env.counter, raw))

    def _serve_access(self, raw: bytes) -> None:
        granted, response = self.controller.access(raw)
        try:
            party = json.loads(raw).get("party")
        except (ValueError, AttributeError):
            return
        if isinstance(party, str) and mqtt.SERIAL_SAFE.match(party):
            self._publish(mqtt.access_response(party), response)

    def _apply_replica(self, topic: str, raw: bytes) -> None:
        key = self.config.replication_key
        if key is None:
            return
        try:
            env = envelope.parse(raw)
            env.verify(self.controller.verify_key)
            if env.counter <= self._replica_seen:
                return
            payload = env.decrypt(key)
        except EnvelopeRejected as exc:
            self.controller.raise_alarm(Alarm("spoofing", "replica", exc.detail, time.time()))
            return
        self._replica_seen = env.counter
        if topic == mqtt.REPLICA_HEARTBEAT:
            self._last_beat = time.time()
        elif topic == mqtt.REPLICA_REGISTRY:
            replication.apply_registry(self.controller.store, payload)
        else:
            highest = replication.apply_readings(self.controller.store, payload)
            for serial, counter in highest.items():
                self._buffer[serial] = [(c, r) for c, r in self._buffer[serial] if c > counter]

    # -- outbound --------------------------------------------------------------------------------------------
    def _publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        if self._client is not None:
            self._client.publish(topic, payload, qos=1, retain=retain)

    def set_virtual(self, object_id: str, changes: dict[str, Any]) -> None:
        """Change a virtual object; a mirror's change is sent to its device (virtual -> physical)."""
        command = self.controller.set_virtual(object_id, changes)
        if command is not None:
            self._publish(mqtt.downlink(command[0]), command[1])

    def _replica(self, kind: str, payload: dict[str, Any]) -> bytes:
        assert self.config.replication_key is not None
        self._replica_counter += 1
        return envelope.seal(
            self.controller.signing_key,
            self.config.replication_key,
            self.controller.name,
            self._replica_counter,
            kind,
            payload,
        )

    def _replicate(self, now: float) -> None:
        if now - self._last_heartbeat_sent >= self.config.heartbeat_s:
            self._last_heartbeat_sent = now
            self._publish(mqtt.REPLICA_HEARTBEAT, self._replica("heartbeat", {"t": now}))
        snapshot = replication.registry_snapshot(self.controller.store)
        digest = hashlib.sha256(envelope.canonical(snapshot)).digest()
        if digest != self._registry_digest:
            self._registry_digest = digest
            self._publish(mqtt.REPLICA_REGISTRY, self._replica("replica", snapshot), retain=True)
        while True:
            batch, upto = replication.readings_batch(self.controller.store, self._replicated_rowid)
            if upto == self._replicated_rowid:
                break
            self._publish(mqtt.REPLICA_LOG, self._replica("replica", batch))
            self._replicated_rowid = upto

    # -- time ------------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.wait(self.config.tick_s):
            now = time.time()
            with self._lock:
                if self.role == "standby":
                    # armed once a primary has been heard: a backup with nothing replicated never takes over
                    if self._replica_seen >= 0 and now - self._last_beat > self.config.primary_timeout_s:
                        self.take_over(now)
                    continue
                self.controller.tick()
                if self.broker is not None:
                    for event in self.broker.connection_events():
                        self.controller.observe_connection(event.client_id, event.accepted)
                if self.config.replication_key is not None:
                    self._replicate(now)

    def take_over(self, now: float) -> None:
        """Become primary: raise the controller-failure alarm and process buffered device messages."""
        with self._lock:
            if self.role == "primary":
                return
            silent = now - self._last_beat
            self.controller.raise_alarm(
                Alarm("controller-failure", "primary", f"no primary heartbeat for {silent:.2f} s", now)
            )
            self.role = "primary"
            self.takeover_at = now
            self.controller.event("takeover", self.config.client_id, "backup controller is now primary", now)
            for serial, entries in sorted(self._buffer.items()):
                obj = self.controller.store.by_serial(serial)
                done = obj.counter if obj else -1
                for counter, raw in sorted(entries):
                    if counter > done:
                        self.controller.receive(raw)
            self._buffer.clear()


def main(argv: list[str]) -> int:
    """Run a primary controller node from a JSON spec until SIGTERM (used by the fault-tolerance scenario)."""
    if len(argv) != 1:
        print("usage: python -m gridledger.twin.node SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    store = TwinStore(spec["store"])
    controller = TwinController(
        store, bytes.fromhex(spec["controller_seed"]), thresholds=Thresholds(**spec.get("thresholds", {}))
    )
    config = NodeConfig(
        port=spec["port"],
        client_id=spec.get("client_id", "dtfc"),
        username=spec.get("username"),
        password=spec.get("password"),
        replication_key=bytes.fromhex(spec["replication_key"]) if spec.get("replication_key") else None,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with ControllerNode(controller, config):
        print("ready", flush=True)
        stop.wait()
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
