"""A "physical" twin device as its own process: ``python -m gridledger.twin.device_process SPEC.json``.

The process plays the paper's Processing and Communication Module (MPC) of one home's meter. It builds the home
from the community file (``physical.HouseholdSignal`` over ``devices.Household``), steps it through the history
the controller would hold of it (written to ``history`` as ``[minute, import Wh]`` pairs), connects to the broker
with its own credentials and gets its AES key (given in the spec = manual registration, or by discovery: it
announces its hardware identity and waits for the key sealed to it). Then every ``period_s`` wall-clock seconds
it measures one ``interval_s`` report of its home, wraps the SmartPi measurement in a signed, encrypted envelope
and publishes it on its uplink. It applies signed commands from the controller (virtual -> physical: the meter's
``On``, the iron's and blender's positions) and acknowledges them. Physical attacks from the spec start at
``start_at + at_s``.

Spec keys: ``credentials`` (serial, seed, aes_key hex; without aes_key the device is discovered),
``controller_key`` (hex), ``port``, ``username``/``password`` (optional), ``period_s``, ``start_at``
(epoch s; null: read it from stdin after printing ``ready``, or from the pipe of ``serve``), ``duration_s``,
``household`` (``community`` file, ``home`` id, ``days`` of profiles from the community's start, ``start``: ISO
local time of the first report's interval, ``interval_s``, ``history_reports`` before it, ``seed``),
``history`` (path, optional), ``attack`` (optional: ``kind`` one of ``Tamper.KINDS`` or ``power-off`` /
``flood``, ``at_s``, and its parameters), ``stats`` (path of the JSON written at exit: counters sent, injection
time, commands).

The lab starts devices with :func:`serve` from a forkserver that has imported this module (and the device
models) once; ``python -m`` runs one device on its own.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pandas as pd
from nacl.exceptions import CryptoError
from nacl.signing import SigningKey

from gridledger.devices import Household, households
from gridledger.profiles import load_community
from gridledger.twin import envelope, mqtt
from gridledger.twin.detectors import minute_of
from gridledger.twin.envelope import EnvelopeRejected
from gridledger.twin.identity import Credentials, unseal
from gridledger.twin.messages import Announce
from gridledger.twin.physical import HouseholdSignal, Tamper

PROCESS_ATTACKS = ("power-off", "flood")


@dataclass
class DeviceStats:
    sent: list[int] = field(default_factory=list)
    flood_sent: int = 0
    injected_at: float | None = None
    sent_before_injection: int | None = None
    commands: list[dict[str, Any]] = field(default_factory=list)
    rejected_commands: int = 0


@lru_cache(maxsize=2)
def community_homes(path: str, days: int) -> dict[str, Household]:
    """The community's homes (``devices.households``) over its first ``days`` days; callers copy before use."""
    community = load_community(path)
    community = dataclasses.replace(community, days=max(community.days, days))
    return {home.home_id: home for home in households(community)}


def prepare(serial: str, spec: dict[str, Any]) -> tuple[HouseholdSignal, list[tuple[int, float]]]:
    """The home of a ``household`` spec, stepped through its history: (the signal at ``start``, the history as
    (minute, import register Wh) pairs, what the controller would hold of this meter)."""
    homes = community_homes(str(spec["community"]), int(spec["days"]))
    if spec["home"] not in homes:
        raise ValueError(f"{serial}: no home {spec['home']!r} in {spec['community']}")
    interval_s, reports = int(spec["interval_s"]), int(spec["history_reports"])
    first = pd.Timestamp(spec["start"]) - pd.Timedelta(seconds=interval_s * reports)
    home = HouseholdSignal(serial, copy.deepcopy(homes[spec["home"]]), first, interval_s, int(spec.get("seed", 0)))
    return home, [(minute_of(when), wh) for when, wh in home.history(reports)]


class Device:
    """One device: its credentials, its home, its MQTT client."""

    def __init__(self, spec: dict[str, Any], home: HouseholdSignal | None = None) -> None:
        self.spec = spec
        self.creds_hex = dict(spec["credentials"])
        self.serial = self.creds_hex["serial"]
        self.controller_key = bytes.fromhex(spec["controller_key"])
        if home is None:
            home, history = prepare(self.serial, spec["household"])
            if spec.get("history"):
                Path(spec["history"]).write_text(json.dumps(history))
        self.signal = home
        self.attack = spec.get("attack") or None
        self.stats = DeviceStats()
        self.stop = threading.Event()
        self.key_ready = threading.Event()
        self.lock = threading.Lock()
        self.counter = time.time_ns() // 1000
        self.last_command = -1
        self.credentials: Credentials | None = None
        self.client: paho.Client | None = None

    @property
    def signing_key(self) -> SigningKey:
        return SigningKey(bytes.fromhex(self.creds_hex["seed"]))

    # -- messages in ----------------------------------------------------------------------------------------
    def on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        if msg.topic == mqtt.provision(self.serial):
            try:
                key = unseal(bytes.fromhex(self.creds_hex["seed"]), msg.payload)
            except (CryptoError, ValueError):
                return  # not for us: keep waiting
            self.credentials = Credentials(self.serial, bytes.fromhex(self.creds_hex["seed"]), key)
            self.key_ready.set()
        elif msg.topic == mqtt.downlink(self.serial) and self.credentials is not None:
            self.command(msg.payload)

    def command(self, raw: bytes) -> None:
        """Verify, decrypt and apply a controller command; acknowledge it."""
        assert self.credentials is not None
        try:
            env = envelope.parse(raw)
            env.verify(self.controller_key)
            if env.counter <= self.last_command or env.serial != self.serial or env.kind != "command":
                raise EnvelopeRejected(envelope.REPLAYED, "stale or misaddressed command")
            changes = env.decrypt(self.credentials.aes_key).get("changes")
            with self.lock:
                applied = self.signal.apply(changes if isinstance(changes, dict) else {})
            self.last_command = env.counter
        except (EnvelopeRejected, ValueError):
            self.stats.rejected_commands += 1
            return
        self.stats.commands.append(applied)
        self.publish("ack", {"changes": applied})

    # -- messages out ---------------------------------------------------------------------------------------
    def publish(self, kind: str, payload: dict[str, Any]) -> int:
        assert self.credentials is not None and self.client is not None
        with self.lock:
            self.counter += 1
            counter = self.counter
            raw = envelope.seal(self.signing_key, self.credentials.aes_key, self.serial, counter, kind, payload)
        self.client.publish(mqtt.uplink(self.serial), raw, qos=1)
        return counter

    def connect(self) -> None:
        spec = self.spec
        self.client = mqtt.connect(
            spec["port"], self.serial, username=spec.get("username"), password=spec.get("password")
        )
        self.client.on_message = self.on_message
        self.client.subscribe([(mqtt.downlink(self.serial), 1), (mqtt.provision(self.serial), 1)])
        if self.creds_hex.get("aes_key"):
            self.credentials = Credentials.from_hex(self.creds_hex)
            self.key_ready.set()
        else:
            time.sleep(0.1)  # let the subscription settle before announcing
            self.client.publish(
                mqtt.announce(self.serial),
                Announce.make(self.signing_key, self.serial, self.signal.to_twin()),
                qos=1,
            )
            if not self.key_ready.wait(spec.get("provision_timeout_s", 10.0)):
                raise SystemExit(f"{self.serial}: not provisioned (discovery refused or no controller)")

    def run(self, ready: Callable[[], float]) -> None:
        """Report on the schedule; ``ready()`` tells the launcher the device is connected and returns the start
        (epoch s)."""
        spec = self.spec
        period = float(spec["period_s"])
        start = ready()
        end = start + float(spec["duration_s"])
        attack_at = start + float(self.attack["at_s"]) if self.attack else None
        while not self.stop.is_set() and time.time() < start:
            time.sleep(min(0.01, max(0.0, start - time.time())))
        step = 0
        while not self.stop.is_set():
            now = time.time()
            if now >= end:
                break
            if attack_at is not None and now >= attack_at and self.stats.injected_at is None:
                self.inject(now)
            unplugged = self.stats.injected_at is not None and self.attack["kind"] == "power-off"
            if not unplugged:
                with self.lock:
                    payload = self.signal.step()
                self.stats.sent.append(self.publish("report", payload))
            step += 1
            self.stop.wait(max(0.0, start + step * period - time.time()))

    def inject(self, now: float) -> None:
        """Start the configured attack."""
        assert self.attack is not None
        self.stats.injected_at = now
        self.stats.sent_before_injection = len(self.stats.sent)
        kind = self.attack["kind"]
        if kind in Tamper.KINDS:
            params = {k: v for k, v in self.attack.items() if k not in ("kind", "at_s")}
            with self.lock:
                self.signal.tamper = Tamper(kind, **params)
        elif kind == "flood":
            self.flood(int(self.attack.get("messages", 1500)), float(self.attack.get("rate", 1500.0)))

    def flood(self, messages: int, rate: float) -> None:
        """A compromised device floods the controller with valid messages (bounded count and rate): its last
        report again and again, each in a fresh envelope."""
        t0 = time.time()
        with self.lock:
            payload = self.signal.step()
        for i in range(messages):
            if self.stop.is_set():
                break
            self.publish("report", payload)
            self.stats.flood_sent += 1
            delay = t0 + (i + 1) / rate - time.time()
            if delay > 0:
                time.sleep(delay)

    def write_stats(self) -> None:
        path = self.spec.get("stats")
        if path:
            Path(path).write_text(json.dumps(self.stats.__dict__))

    def close(self) -> None:
        if self.client is not None:
            time.sleep(0.1)  # let QoS-1 publishes drain
            mqtt.close(self.client)


def run(spec: dict[str, Any], ready: Callable[[], float], home: HouseholdSignal | None = None) -> int:
    """Build the device's home (or take ``home``, already at its start), connect and run the device until its
    schedule ends (or SIGTERM); writes its stats at the end."""
    device = Device(spec, home)
    signal.signal(signal.SIGTERM, lambda *_: device.stop.set())
    try:
        device.connect()
        device.run(ready)
    finally:
        device.write_stats()
        device.close()
    return 0


def serve(spec: dict[str, Any], conn: Connection, home: HouseholdSignal | None = None) -> None:
    """Run a device as a ``multiprocessing`` child (the lab forks them from a preloaded server): it sends
    ``"ready"`` on ``conn`` and then receives the start (epoch s) unless the spec sets ``start_at``. Its output
    (a crash's traceback) goes to the spec's ``log`` file, if given. ``home``: see :func:`run`."""
    if spec.get("log"):
        with open(spec["log"], "ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)

    def ready() -> float:
        conn.send("ready")
        return float(spec["start_at"]) if spec.get("start_at") is not None else float(conn.recv())

    raise SystemExit(run(spec, ready, home))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m gridledger.twin.device_process SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())

    def ready() -> float:
        print("ready", flush=True)
        # the schedule's start: from the spec, or (start_at null) the epoch time the launcher writes to stdin
        return float(spec["start_at"]) if spec.get("start_at") is not None else float(sys.stdin.readline())

    return run(spec, ready)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
