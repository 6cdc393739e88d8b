"""Sniffing (paper 4.5): a rogue client connects to the broker and subscribes to every topic. The DT
platform sees the new connection; the sniffer reads nothing, as every payload is encrypted and signed."""

from __future__ import annotations

import json
import os
from typing import Any

import paho.mqtt.client as paho

from gridledger.twin import envelope, mqtt
from gridledger.twin.envelope import EnvelopeRejected
from gridledger.twin.scenarios.base import RunContext, RunResult, register
from gridledger.twin.scenarios.harness import AttackPlan, Intrusion, TwinLab, run_attack

PLAINTEXT_MARKERS = (b"datasets", b"Consumption", b"voltage", b"Voltage", b"changes")


def readable(raw: bytes) -> bool:
    """True if a captured payload gives anything away in clear: SmartPi or twin fields, or a decryptable
    payload under a guessed key."""
    if any(marker in raw for marker in PLAINTEXT_MARKERS):
        return True
    try:
        envelope.parse(raw).decrypt(os.urandom(16))
    except EnvelopeRejected:
        return False
    return True


class Sniffer(Intrusion):
    sources = frozenset({"sniffer"})

    def __init__(self) -> None:
        self.client: paho.Client | None = None
        self.captured: list[bytes] = []
        self.lab: TwinLab | None = None

    def start(self, lab: TwinLab, target: str) -> None:
        self.lab = lab
        self.client = mqtt.connect(lab.broker.port, "sniffer")
        self.client.on_message = lambda _c, _u, m: self.captured.append(m.payload)
        self.client.subscribe("#", qos=0)

    def stop(self) -> dict[str, Any]:
        if self.client is not None:
            mqtt.close(self.client)
        leaked = [raw for raw in self.captured if readable(raw)]
        sample = json.loads(self.captured[0]) if self.captured else {}
        return {
            "captured": len(self.captured),
            "readable": len(leaked),
            "visible_fields": sorted(sample) if isinstance(sample, dict) else [],
        }

    def is_attack(self, alarm: Any, target: str) -> bool:
        return alarm.source in self.sources

    def honest_observations(self) -> int:
        return (
            len(self.lab.serials) + 1 if self.lab is not None else 0
        )  # the honest connections: every device and the controller


class Sniffing:
    name = "sniffing"
    threat = "sniffing: a new connection listens to the traffic"
    detector = "broker connection log against the registered client ids; AES-GCM payloads (sniffer reads none)"
    needs_broker, needs_etcd = True, False

    def run(self, ctx: RunContext) -> RunResult:
        return run_attack(
            ctx, AttackPlan(label="rogue client subscribed to '#'", kinds={"new-connection"}, intrusion=Sniffer())
        )


register(Sniffing())
