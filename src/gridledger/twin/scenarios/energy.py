"""Energy tampering (paper 4.5): a bypass hides 80 % of a household's load from its meter.

The target is a home without a battery: a battery covers its home's load in the evening, so such a home imports
next to nothing and a bypass would have nothing to steal (and the band nothing to judge).
"""

from __future__ import annotations

from gridledger.twin.detectors import BAND_DAYS, BAND_RATIO, BAND_WINDOW_MIN
from gridledger.twin.scenarios.base import RunContext, RunResult, register
from gridledger.twin.scenarios.harness import AttackPlan, run_attack

BYPASS_FACTOR = 0.2  # the meter sees 20 % of the load


class EnergyTampering:
    name = "energy"
    threat = "energy tampering: consumption outliers"
    detector = (
        f"import over {BAND_WINDOW_MIN} min below {BAND_RATIO:g} x the least of the same minutes on the last "
        f"{BAND_DAYS} days; rollback"
    )
    needs_broker, needs_etcd = True, False

    def run(self, ctx: RunContext) -> RunResult:
        plan = AttackPlan(
            label=f"meter bypass: only {BYPASS_FACTOR:.0%} of the load metered",
            kinds={"energy-outlier", "energy-rollback"},
            device_attack={"kind": "energy-bypass", "bypass_factor": BYPASS_FACTOR},
            eligible=lambda home: home.battery_wh == 0,
        )
        return run_attack(ctx, plan)


register(EnergyTampering())
