"""DDoS (paper 4.5): a compromised meter floods the controller with valid messages while unregistered
clients try to connect. The broker admits only registered devices (password + ACL); the controller's rate
firewall alarms on and quarantines the flooding device; honest devices lose nothing."""

from __future__ import annotations

import secrets
import threading
from typing import Any

from gridledger.twin import mqtt
from gridledger.twin.detectors import Alarm
from gridledger.twin.scenarios.base import RunContext, RunResult, register
from gridledger.twin.scenarios.harness import AttackPlan, Intrusion, LabOptions, TwinLab, run_attack
from gridledger.twin.twin_controller import Thresholds

FLOOD_MESSAGES = 1500
FLOOD_RATE = 1500.0  # messages per second (bounded, loopback only)
ROGUE_CLIENTS = 20
RATE_WINDOW_S = 1.0
RATE_LIMIT = 60  # per window: 3x the honest rate of 20 reports/s


class RogueConnections(Intrusion):
    def __init__(self) -> None:
        self.refused = 0
        self.admitted = 0
        self._lock = threading.Lock()

    def start(self, lab: TwinLab, target: str) -> None:
        threads = [threading.Thread(target=self._try, args=(lab.broker.port, i)) for i in range(ROGUE_CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _try(self, port: int, i: int) -> None:
        try:
            client = mqtt.connect(port, f"bot-{i}", username=f"bot-{i}", password=secrets.token_hex(4), timeout_s=2.0)
        except mqtt.MqttError:
            with self._lock:
                self.refused += 1
        else:
            with self._lock:
                self.admitted += 1
            mqtt.close(client)

    def stop(self) -> dict[str, Any]:
        return {"rogue_refused": self.refused, "rogue_admitted": self.admitted, "flood_messages": FLOOD_MESSAGES}

    def is_attack(self, alarm: Alarm, target: str) -> bool:
        return alarm.source == target or alarm.kind == "connection-refused"


class DDoS:
    name = "ddos"
    threat = "DDoS: abnormal message frequency; only registered devices may connect"
    detector = f"sliding {RATE_WINDOW_S} s window, > {RATE_LIMIT} messages per device; broker password + ACL"
    needs_broker, needs_etcd = True, False

    def run(self, ctx: RunContext) -> RunResult:
        plan = AttackPlan(
            label=f"flood of {FLOOD_MESSAGES} messages at {FLOOD_RATE:.0f}/s and {ROGUE_CLIENTS} rogue clients",
            kinds={"message-rate", "connection-refused"},
            device_attack={"kind": "flood", "messages": FLOOD_MESSAGES, "rate": FLOOD_RATE},
            intrusion=RogueConnections(),
            options=LabOptions(
                authenticate=True,
                thresholds=Thresholds(rate_window_s=RATE_WINDOW_S, rate_max_messages=RATE_LIMIT),
            ),
            target_data_counts=False,
        )
        return run_attack(ctx, plan)


register(DDoS())
