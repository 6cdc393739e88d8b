"""Sensor attack (paper 4.5): a meter's voltage sensor is biased; the history-based detector must notice."""

from __future__ import annotations

from gridledger.twin.detectors import SENSOR_Z, VOLTAGE_BAND_V
from gridledger.twin.scenarios.base import RunContext, RunResult, register
from gridledger.twin.scenarios.harness import AttackPlan, run_attack

BIAS_V = 6.0  # 5 % of 127 V: the reading stays inside the +-10 % band, so only the z-score can catch it


class SensorAttack:
    name = "sensor"
    threat = "sensor attack: anomalous sensor behaviour"
    detector = (
        f"voltage band {VOLTAGE_BAND_V[0]:.1f}-{VOLTAGE_BAND_V[1]:.1f} V and robust z-score > {SENSOR_Z:g} "
        "against the voltage history"
    )
    needs_broker, needs_etcd = True, False

    def run(self, ctx: RunContext) -> RunResult:
        plan = AttackPlan(
            label=f"voltage sensor biased by +{BIAS_V} V",
            kinds={"sensor-anomaly"},
            device_attack={"kind": "sensor-bias", "bias_v": BIAS_V},
        )
        return run_attack(ctx, plan)


register(SensorAttack())
