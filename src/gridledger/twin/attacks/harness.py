"""A small community on a real broker, for one scenario run: ``TwinLab``.

The lab starts a private mosquitto, a DT controller (SQLite store in the run's folder) on it, provisions
one meter per household (``meter-1`` ...) and runs each as its own process (``device_process``) on a
common wall-clock schedule: once all are connected, every device starts at ``start_at`` and reports every
``period_s`` for ``duration_s``; an attack starts at ``start_at + attack_at_s``. Everything the lab starts
is stopped on exit.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from gridledger.twin.attacks.base import RunContext, RunResult, first_detection
from gridledger.twin.controller import Thresholds, TwinController
from gridledger.twin.detectors import Alarm
from gridledger.twin.identity import Credentials
from gridledger.twin.mqtt import Broker
from gridledger.twin.node import ControllerNode, NodeConfig
from gridledger.twin.store import TwinStore

CONTROLLER_ID = "dtfc"
PERIOD_S = 0.05  # wall-clock seconds between reports (each report is one simulated minute)
START_IN_S = 0.3  # from "all devices connected" to the common start of their schedule
DURATION_S = 3.0
ATTACK_AT_S = 1.5
READY_TIMEOUT_S = 20.0
DRAIN_S = 0.5  # after the schedule, for in-flight messages to arrive (below the 1.0 s heartbeat timeout)
SETTLE_S = 0.3
MAX_DRAIN_S = 5.0


@dataclass
class LabOptions:
    """How a scenario wants its lab: broker authentication, a backup controller, extra known clients."""

    authenticate: bool = False
    replication: bool = False
    external_primary: bool = False
    known_clients: set[str] = field(default_factory=set)
    thresholds: Thresholds = field(default_factory=Thresholds)


class LabError(RuntimeError):
    """A lab component failed to start or finish."""


class TwinLab:
    """Broker + controller + one meter process per household."""

    def __init__(self, ctx: RunContext, options: LabOptions | None = None) -> None:
        self.ctx = ctx
        self.options = options or LabOptions()
        self.dir = ctx.workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.serials = [f"meter-{i}" for i in range(1, ctx.households + 1)]
        self.passwords = {s: secrets.token_hex(8) for s in [CONTROLLER_ID, "dtfc-backup", *self.serials]}
        self.controller_seed = os.urandom(32)
        self.replication_key = os.urandom(16) if self.options.replication else None
        self.broker = Broker(
            allow_anonymous=not self.options.authenticate,
            users=self.passwords if self.options.authenticate else None,
            admin=CONTROLLER_ID,
        )
        self.store = TwinStore(str(self.dir / "dtfc.sqlite"))
        self.controller = TwinController(self.store, self.controller_seed, thresholds=self.options.thresholds)
        self.node: ControllerNode | None = None
        self.credentials: dict[str, Credentials] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.start_at = 0.0

    # -- lifecycle -------------------------------------------------------------------------------------------
    def __enter__(self) -> TwinLab:
        self.broker.start()
        try:
            for i, serial in enumerate(self.serials, start=1):
                creds = Credentials.generate(serial)
                key = self.controller.register_physical(creds.identity, {"ID": i, "Name": "Smart_Meter", "On": 1})
                self.credentials[serial] = Credentials(serial, creds.seed, key)
            if not self.options.external_primary:
                self.node = ControllerNode(self.controller, self.node_config(CONTROLLER_ID), broker=self.broker)
                self.node.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None and not stream.closed:
                    stream.close()
        if self.node is not None:
            self.node.stop()
        self.broker.stop()
        self.store.close()

    def node_config(self, client_id: str) -> NodeConfig:
        auth = self.options.authenticate
        return NodeConfig(
            port=self.broker.port,
            client_id=client_id,
            username=client_id if auth else None,
            password=self.passwords[client_id] if auth else None,
            replication_key=self.replication_key,
            known_clients={CONTROLLER_ID, "dtfc-backup", *self.options.known_clients},
        )

    # -- devices ---------------------------------------------------------------------------------------------
    def spawn_devices(self, attacks: dict[str, dict[str, Any]] | None = None) -> float:
        """Start every meter process; returns ``start_at`` (epoch s). ``attacks`` maps serial -> attack spec."""
        attacks = attacks or {}
        for i, serial in enumerate(self.serials):
            spec = {
                "credentials": self.credentials[serial].to_hex(),
                "controller_key": self.controller.verify_key.hex(),
                "port": self.broker.port,
                "username": serial if self.options.authenticate else None,
                "password": self.passwords[serial] if self.options.authenticate else None,
                "period_s": PERIOD_S,
                "start_at": None,
                "duration_s": DURATION_S,
                "signal": {"seed": self.ctx.seed * 1000 + i, "base_power_w": 300.0 + 150.0 * i, "twin_id": i + 1},
                "attack": attacks.get(serial),
                "stats": str(self.dir / f"{serial}.stats.json"),
            }
            path = self.dir / f"{serial}.spec.json"
            path.write_text(json.dumps(spec))
            self.procs[serial] = subprocess.Popen(
                [sys.executable, "-m", "gridledger.twin.device_process", str(path)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        for serial, proc in self.procs.items():
            self._await_ready(serial, proc)
        # every device is connected: start them together, however long the start-up took on a loaded machine
        self.start_at = time.time() + START_IN_S
        for proc in self.procs.values():
            assert proc.stdin is not None
            proc.stdin.write(f"{self.start_at!r}\n".encode())
            proc.stdin.close()
        return self.start_at

    def _await_ready(self, serial: str, proc: subprocess.Popen[bytes]) -> None:
        done = threading.Event()
        line: list[bytes] = []

        def read() -> None:
            assert proc.stdout is not None
            line.append(proc.stdout.readline())
            done.set()

        threading.Thread(target=read, daemon=True).start()
        if not done.wait(READY_TIMEOUT_S) or line[0].strip() != b"ready":
            raise LabError(f"device process {serial} did not start")

    def sleep_until(self, t: float) -> None:
        delay = t - time.time()
        if delay > 0:
            time.sleep(delay)

    def finish(self, store: TwinStore | None = None) -> dict[str, dict[str, Any]]:
        """Wait for every device to end its schedule and for ``store`` (default: the lab's) to settle: at least
        ``DRAIN_S``, then until no new reading arrives for ``SETTLE_S`` (at most ``MAX_DRAIN_S``, for a loaded
        machine). Returns the device stats."""
        deadline = self.start_at + DURATION_S + 15.0
        for serial, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                raise LabError(f"device process {serial} did not finish") from None
        store = store or self.store
        time.sleep(DRAIN_S)
        end = time.time() + MAX_DRAIN_S
        count = store.reading_count()
        while time.time() < end:
            time.sleep(SETTLE_S)
            now_count = store.reading_count()
            if now_count == count:
                break
            count = now_count
        return {s: json.loads((self.dir / f"{s}.stats.json").read_text()) for s in self.serials}

    # -- accounting ------------------------------------------------------------------------------------------
    def data_lost(self, stats: dict[str, dict[str, Any]], store: TwinStore | None = None) -> int:
        """Genuine readings the devices sent (honest schedule) that are not in ``store`` (default: the lab's)."""
        store = store or self.store
        return sum(len(set(st["sent"]) - store.stored_counters(s)) for s, st in stats.items())

    @staticmethod
    def honest_reports(stats: dict[str, dict[str, Any]], target: str | None) -> int:
        """Reports sent by honest devices, plus the target's reports before the injection."""
        total = 0
        for serial, st in stats.items():
            if serial == target and st.get("sent_before_injection") is not None:
                total += st["sent_before_injection"]
            else:
                total += len(st["sent"])
        return total


class Intrusion:
    """An attack from outside the devices (a rogue client, a killed controller): started at the injection
    time, stopped after the run. Subclasses set ``sources`` (alarm sources the attack accounts for)."""

    sources: frozenset[str] = frozenset()

    def prepare(self, lab: TwinLab) -> None:
        """Set-up before the devices start (honest parties, grants); nothing by default."""

    def start(self, lab: TwinLab, target: str) -> None:
        raise NotImplementedError

    def controller(self, lab: TwinLab) -> TwinController:
        """The controller whose alarms and store the run is judged on."""
        return lab.controller

    def stop(self) -> dict[str, Any]:
        """End the intrusion (also when the run failed half-way); returns what it observed."""
        return {}

    def is_attack(self, alarm: Alarm, target: str) -> bool:
        return alarm.source in self.sources or alarm.source == target

    def honest_observations(self) -> int:
        """Honest requests or connections the intrusion's scenario adds to the honest reports."""
        return 0


@dataclass
class AttackPlan:
    """One run of a scenario: the injected attack, the alarm kinds that detect it, how it is injected."""

    label: str
    kinds: set[str]
    device_attack: dict[str, Any] | None = None
    intrusion: Intrusion | None = None
    options: LabOptions = field(default_factory=LabOptions)
    target_data_counts: bool = True


def run_attack(ctx: RunContext, plan: AttackPlan) -> RunResult:
    """Run one plan on a fresh lab and measure detection, false alarms and data loss."""
    target = f"meter-{random.Random(ctx.seed).randrange(ctx.households) + 1}"
    intrusion = plan.intrusion
    with TwinLab(ctx, plan.options) as lab:
        attacks = {target: {**plan.device_attack, "at_s": ATTACK_AT_S}} if plan.device_attack else {}
        injected_at: float | None = None
        intrusion_details: dict[str, Any] = {}
        try:
            if intrusion is not None:
                intrusion.prepare(lab)
            start_at = lab.spawn_devices(attacks)
            if intrusion is not None:
                lab.sleep_until(start_at + ATTACK_AT_S)
                injected_at = time.time()
                intrusion.start(lab, target)
            controller = intrusion.controller(lab) if intrusion is not None else lab.controller
            stats = lab.finish(controller.store)
        finally:
            if intrusion is not None:
                intrusion_details = intrusion.stop()  # also after a failure: it ends what it started
        if plan.device_attack:
            injected_at = stats[target]["injected_at"]

        def caused(alarm: Alarm) -> bool:
            return intrusion.is_attack(alarm, target) if intrusion is not None else alarm.source == target

        # Devices go silent when their schedule ends: heartbeat alarms after it are not part of the run.
        until = start_at + DURATION_S + DRAIN_S
        alarms = [a for a in controller.alarms() if a.t <= until or a.kind != "heartbeat-timeout"]
        detect, false = first_detection(alarms, injected_at, caused, plan.kinds)
        counted = stats if plan.target_data_counts else {s: st for s, st in stats.items() if s != target}
        honest = lab.honest_reports(stats, target if plan.device_attack else None)
        if intrusion is not None:
            honest += intrusion.honest_observations()
        return RunResult(
            injected=f"{plan.label} on {target}",
            detected=detect is not None,
            time_to_detect_s=detect,
            false_alarms=false,
            honest_observations=honest,
            data_lost=lab.data_lost(counted, controller.store),
            details={
                "target": target,
                "alarms": sorted({a.kind for a in alarms}),
                "accepted": controller.stats.accepted,
                "rejected": controller.stats.rejected_by_code,
                **intrusion_details,
            },
        )
