"""Fault tolerance (paper 4.5): the primary DT controller (its own process) is killed; the backup, which
applies the primary's replication feed and buffers device messages, notices the missing heartbeat, takes
over and processes what the primary never stored. Data lost = genuine readings absent from the backup."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from gridledger.twin.detectors import Alarm
from gridledger.twin.node import ControllerNode
from gridledger.twin.scenarios.base import RunContext, RunResult, register
from gridledger.twin.scenarios.harness import (
    CONTROLLER_ID,
    AttackPlan,
    Intrusion,
    LabError,
    LabOptions,
    TwinLab,
    run_attack,
)
from gridledger.twin.twin_controller import TwinController
from gridledger.twin.twin_store import TwinStore

PRIMARY_TIMEOUT_S = 1.0  # the backup takes over after this long without a primary heartbeat (sent every 0.1 s)


class ControllerCrash(Intrusion):
    """Runs the primary as a process and the backup in this one; ``start`` kills the primary (SIGKILL)."""

    def __init__(self) -> None:
        self.primary: subprocess.Popen[bytes] | None = None
        self.backup: ControllerNode | None = None
        self.backup_store: TwinStore | None = None
        self.backup_controller: TwinController | None = None

    def prepare(self, lab: TwinLab) -> None:
        cfg = lab.node_config(CONTROLLER_ID)
        spec = {
            "store": str(lab.dir / "dtfc.sqlite"),
            "controller_seed": lab.controller_seed.hex(),
            "replication_key": lab.replication_key.hex() if lab.replication_key else None,
            "port": cfg.port,
            "client_id": CONTROLLER_ID,
        }
        path = lab.dir / "primary.spec.json"
        path.write_text(json.dumps(spec))
        self.backup_store = TwinStore(str(lab.dir / "backup.sqlite"))
        self.backup_controller = TwinController(self.backup_store, lab.controller_seed, name="dtfc-backup")
        backup_cfg = lab.node_config("dtfc-backup")
        backup_cfg.primary_timeout_s = PRIMARY_TIMEOUT_S
        self.backup = ControllerNode(self.backup_controller, backup_cfg, broker=lab.broker, standby=True).start()
        self.primary = subprocess.Popen(
            [sys.executable, "-m", "gridledger.twin.node", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.primary.stdout is not None
        if self.primary.stdout.readline().strip() != b"ready":
            raise LabError("primary controller process did not start")

    def start(self, lab: TwinLab, target: str) -> None:
        assert self.primary is not None
        self.primary.kill()

    def controller(self, lab: TwinLab) -> TwinController:
        assert self.backup_controller is not None
        return self.backup_controller

    def stop(self) -> dict[str, Any]:
        if self.primary is not None:
            self.primary.kill()
            self.primary.wait()
            if self.primary.stdout:
                self.primary.stdout.close()
        if self.backup is None or self.backup_store is None:
            return {}
        took_over = self.backup.takeover_at is not None
        self.backup.stop()
        physical = [o.object_id for o in self.backup_store.objects() if o.kind == "physical"]
        return {
            "backup_took_over": took_over,
            "backup_readings": sum(len(self.backup_store.stored_counters(s)) for s in physical),
        }

    def is_attack(self, alarm: Alarm, target: str) -> bool:
        return alarm.kind == "controller-failure"


class FaultTolerance:
    name = "fault-tolerance"
    threat = "fault tolerance: controller failure and fail-over"
    detector = f"primary heartbeat every 0.1 s; backup takes over after {PRIMARY_TIMEOUT_S} s of silence"
    needs_broker, needs_etcd = True, False

    def run(self, ctx: RunContext) -> RunResult:
        plan = AttackPlan(
            label="primary DT controller killed (SIGKILL)",
            kinds={"controller-failure"},
            intrusion=ControllerCrash(),
            options=LabOptions(replication=True, external_primary=True),
        )
        return run_attack(ctx, plan)


register(FaultTolerance())
