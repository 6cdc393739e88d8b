"""Energy tampering (paper 4.5): a bypass hides 80 % of a household's load from its meter."""

from __future__ import annotations

from gridledger.twin.attacks.base import RunContext, RunResult, register
from gridledger.twin.attacks.harness import AttackPlan, run_attack
from gridledger.twin.detectors import ENERGY_Z

BYPASS_FACTOR = 0.2  # the meter sees 20 % of the load


class EnergyTampering:
    name = "energy"
    threat = "energy tampering: consumption outliers"
    detector = f"robust z-score > {ENERGY_Z:g} of the consumption step against the device's history; rollback"
    needs_broker = True

    def run(self, ctx: RunContext) -> RunResult:
        plan = AttackPlan(
            label=f"meter bypass: only {BYPASS_FACTOR:.0%} of the load metered",
            kinds={"energy-outlier", "energy-rollback"},
            device_attack={"kind": "energy-bypass", "bypass_factor": BYPASS_FACTOR},
        )
        return run_attack(ctx, plan)


register(EnergyTampering())
