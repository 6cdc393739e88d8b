"""Spoofing (paper 4.5): a rogue node claims a registered meter's identity. It forges reports signed with
its own key and replays genuine reports it captured from the broker."""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import Any

import paho.mqtt.client as paho
from nacl.signing import SigningKey

from gridledger.twin import envelope, mqtt
from gridledger.twin.physical import NOMINAL_HZ, NOMINAL_V, report
from gridledger.twin.scenarios.base import RunContext, RunResult, register
from gridledger.twin.scenarios.harness import AttackPlan, Intrusion, TwinLab, run_attack
from gridledger.twin.smartpi import PhaseReading

FORGED = 5
CAPTURE_S = 0.3


class Spoofer(Intrusion):
    sources = frozenset({"intruder"})

    def __init__(self) -> None:
        self.client: paho.Client | None = None
        self.captured: list[bytes] = []
        self.forged_counters: list[int] = []
        self.lab: TwinLab | None = None
        self.target = ""

    def start(self, lab: TwinLab, target: str) -> None:
        self.lab, self.target = lab, target
        self.client = mqtt.connect(lab.broker.port, "intruder")
        self.client.on_message = lambda _c, _u, m: self.captured.append(m.payload)
        self.client.subscribe(mqtt.uplink(target), qos=1)
        time.sleep(CAPTURE_S)
        key, aes = SigningKey.generate(), os.urandom(16)
        twin = {"ID": 1, "Name": "Smart_Meter", "On": 1, "Consumption": 0}
        fake = report(target, twin, PhaseReading(1, 2.0, NOMINAL_V, 240.0, 0.95, NOMINAL_HZ), datetime.now())
        base = time.time_ns() // 1000 + 10_000_000
        for i in range(FORGED):
            raw = envelope.seal(key, aes, target, base + i, "report", fake)
            self.forged_counters.append(base + i)
            self.client.publish(mqtt.uplink(target), raw, qos=1)
        for raw in list(self.captured)[:FORGED]:
            self.client.publish(mqtt.uplink(target), raw, qos=1)

    def stop(self) -> dict[str, Any]:
        if self.client is not None:
            mqtt.close(self.client)
        if self.lab is None:
            return {}
        stored = self.lab.store.stored_counters(self.target)
        return {
            "forged_sent": FORGED,
            "replayed_sent": min(FORGED, len(self.captured)),
            "forged_stored": len(stored & set(self.forged_counters)),
        }


class Spoofing:
    name = "spoofing"
    threat = "spoofing: a device claims another's identity"
    detector = "Ed25519 signature against the registered hardware identity; per-device replay counter"
    needs_broker, needs_etcd = True, False

    def run(self, ctx: RunContext) -> RunResult:
        return run_attack(
            ctx,
            AttackPlan(
                label="forged and replayed reports under a registered serial",
                kinds={"spoofing", "replay"},
                intrusion=Spoofer(),
            ),
        )


register(Spoofing())
