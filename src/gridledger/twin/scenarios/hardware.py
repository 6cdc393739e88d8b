"""Hardware tampering (paper 4.5): a component is disconnected. Even seeds pull the current transformer
(the device's self-check reports it); odd seeds unplug the whole device (its heartbeat stops)."""

from __future__ import annotations

from gridledger.twin.scenarios.base import RunContext, RunResult, register
from gridledger.twin.scenarios.harness import AttackPlan, run_attack
from gridledger.twin.twin_controller import Thresholds


class HardwareTampering:
    name = "hardware"
    threat = "hardware tampering: a component disconnected"
    detector = f"device self-check, or no message for {Thresholds().heartbeat_timeout_s} s (heartbeat timeout)"
    needs_broker, needs_etcd = True, False

    def run(self, ctx: RunContext) -> RunResult:
        if ctx.seed % 2 == 0:
            plan = AttackPlan(
                label="current transformer disconnected",
                kinds={"component-disconnected"},
                device_attack={"kind": "component-disconnect", "component": "current_sensor"},
            )
        else:
            plan = AttackPlan(
                label="device unplugged", kinds={"heartbeat-timeout"}, device_attack={"kind": "power-off"}
            )
        return run_attack(ctx, plan)


register(HardwareTampering())
