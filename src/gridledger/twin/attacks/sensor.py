"""Sensor attack (paper 4.5): a meter's voltage sensor is biased; the history-based detector must notice."""

from __future__ import annotations

from gridledger.twin.attacks.base import RunContext, RunResult, register
from gridledger.twin.attacks.harness import AttackPlan, run_attack
from gridledger.twin.detectors import SENSOR_Z

BIAS_V = 12.0  # inside the EN 50160 band (230 V + 12 V = 242 V), so only the z-score can catch it


class SensorAttack:
    name = "sensor"
    threat = "sensor attack: anomalous sensor behaviour"
    detector = f"voltage band (EN 50160) and robust z-score > {SENSOR_Z:g} against the voltage history"
    needs_broker = True

    def run(self, ctx: RunContext) -> RunResult:
        plan = AttackPlan(
            label=f"voltage sensor biased by +{BIAS_V} V",
            kinds={"sensor-anomaly"},
            device_attack={"kind": "sensor-bias", "bias_v": BIAS_V},
        )
        return run_attack(ctx, plan)


register(SensorAttack())
