"""A small community on a real broker, for one scenario run: ``TwinLab``.

The lab starts a private mosquitto, a DT controller (SQLite store in the run's folder) on it, provisions
one meter per household (``meter-1`` ... for the first homes of the community file) and runs each as its own
process (``device_process``) stepping its home's device models. Simulated time: the run starts on the day after
the controller's ``BAND_DAYS`` days of history, at a seeded time in the evening (``EVENING``), and each report
covers ``INTERVAL_S`` simulated seconds. The lab steps each home through that history (what the controller
would have stored of it), the controller learns it, and the device process starts from the home as it is then.
Wall-clock schedule: once all are connected, every device starts at ``start_at`` and reports every ``PERIOD_S``
for ``DURATION_S``; an attack starts at ``start_at + ATTACK_AT_S``. Everything the lab starts is stopped on
exit. Device processes are forked from a server that imported the device models once (``DEVICES``), so a
script that runs the lab needs the usual ``if __name__ == "__main__":`` guard of ``multiprocessing``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import pandas as pd

from gridledger.profiles import Community, CommunityError, Home, load_community
from gridledger.twin.detectors import BAND_DAYS, BAND_WINDOW_MIN, Alarm
from gridledger.twin.device_process import prepare, serve
from gridledger.twin.identity import Credentials
from gridledger.twin.mqtt import Broker
from gridledger.twin.node import ControllerNode, NodeConfig
from gridledger.twin.scenarios.base import RunContext, RunResult, first_detection
from gridledger.twin.twin_controller import Thresholds, TwinController
from gridledger.twin.twin_store import TwinStore

CONTROLLER_ID = "dtfc"
DEFAULT_COMMUNITY = Path(__file__).resolve().parents[4] / "examples" / "community.toml"
INTERVAL_S = 120  # simulated seconds per report: the run covers 2 h, 1 h honest and 1 h attacked
EVENING = (17 * 60, 21 * 60)  # local minutes of the day the run may start (load high, PV low)
RUN_DAYS = 7  # the run's day is one of the week after the history (seeded)
PERIOD_S = 0.05  # wall-clock seconds between reports
START_IN_S = 0.3  # from "all devices connected" to the common start of their schedule
DURATION_S = 3.0
ATTACK_AT_S = 1.5
# Device processes are forked from one server per lab process that has imported the device models (pvlib,
# demandlib: about 2 s) once, so a run does not pay that for every device.
DEVICES = multiprocessing.get_context("forkserver")
DEVICES.set_forkserver_preload(["gridledger.twin.device_process"])
READY_TIMEOUT_S = 60.0  # a device builds its home's profiles and history before it is ready
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


@lru_cache(maxsize=4)
def community_file(path: Path) -> Community:
    try:
        return load_community(path)
    except (OSError, CommunityError) as e:
        raise LabError(f"cannot read the community file {path}: {e}") from None


@lru_cache(maxsize=16)
def prepared(serial: str, household: str) -> tuple[bytes, tuple[tuple[int, float], ...]]:
    """The home of a device's ``household`` spec (JSON) stepped to the run's start, pickled (each run unpickles
    a fresh copy), and its history; kept for the runs that share a start."""
    home, history = prepare(serial, json.loads(household))
    return pickle.dumps(home), tuple(history)


def run_start(community: Community, seed: int) -> pd.Timestamp:
    """The simulated start of a run: on one of the ``RUN_DAYS`` days after ``BAND_DAYS`` days of history from the
    community's first day, at a time of the evening (local time, on the report grid); both seeded."""
    rng = random.Random(seed)
    day, minute = rng.randrange(RUN_DAYS), rng.randrange(*EVENING, INTERVAL_S // 60)
    return community.index("1D")[0] + pd.Timedelta(days=BAND_DAYS + day, minutes=minute)


class TwinLab:
    """Broker + controller + one meter process per household."""

    def __init__(self, ctx: RunContext, options: LabOptions | None = None) -> None:
        self.ctx = ctx
        self.options = options or LabOptions()
        self.dir = ctx.workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.community_path = Path(ctx.community or DEFAULT_COMMUNITY)
        community = community_file(self.community_path)
        if ctx.households > len(community.homes):
            raise LabError(f"{self.community_path} has {len(community.homes)} homes, fewer than {ctx.households}")
        self.community = community
        self.serials = [f"meter-{i}" for i in range(1, ctx.households + 1)]
        self.homes: dict[str, Home] = dict(zip(self.serials, sorted(community.homes, key=lambda h: h.id), strict=False))
        self.start = run_start(community, ctx.seed)
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
        self.procs: dict[str, BaseProcess] = {}
        self.pipes: dict[str, Connection] = {}
        self.start_at = 0.0

    # -- lifecycle -------------------------------------------------------------------------------------------
    def __enter__(self) -> TwinLab:
        self.broker.start()
        try:
            for serial in self.serials:
                creds = Credentials.generate(serial)
                key = self.controller.register_physical(creds.identity, {"ID": 1, "Name": "Smart_Meter", "On": 1})
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
            if proc.is_alive():
                proc.terminate()
        for proc in self.procs.values():
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()
            proc.close()
        for pipe in self.pipes.values():
            pipe.close()
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
    def choose_target(self, eligible: Callable[[Home], bool] | None = None) -> str:
        """The attacked meter, drawn with the run's seed among those whose home is ``eligible``."""
        serials = [s for s in self.serials if eligible is None or eligible(self.homes[s])]
        if not serials:
            raise LabError("no household of the community can be attacked this way")
        return random.Random(self.ctx.seed).choice(serials)

    def spawn_devices(self, attacks: dict[str, dict[str, Any]] | None = None) -> float:
        """Start every meter process; once each has backfilled its history (learnt by the controller) and
        connected, start them together. Returns ``start_at`` (epoch s). ``attacks`` maps serial -> attack spec."""
        attacks = attacks or {}
        history_reports = (BAND_DAYS * 1440 + BAND_WINDOW_MIN) * 60 // INTERVAL_S
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
                "household": {
                    "community": str(self.community_path),
                    "home": self.homes[serial].id,
                    "days": BAND_DAYS + RUN_DAYS,
                    "start": self.start.isoformat(),
                    "interval_s": INTERVAL_S,
                    "history_reports": history_reports,
                    "seed": self.ctx.seed * 1000 + i,
                },
                "attack": attacks.get(serial),
                "stats": str(self.dir / f"{serial}.stats.json"),
                "log": str(self.dir / f"{serial}.log"),
            }
            (self.dir / f"{serial}.spec.json").write_text(json.dumps(spec))  # for the record
            home, history = prepared(serial, json.dumps(spec["household"], sort_keys=True))
            self.controller.energy.learn(serial, history)
            self.pipes[serial], theirs = DEVICES.Pipe()
            proc = DEVICES.Process(target=serve, args=(spec, theirs, pickle.loads(home)), name=serial)
            proc.start()
            self.procs[serial] = proc
            theirs.close()
        for serial in self.procs:
            self._await_ready(serial)
        # every device is connected: start them together, however long the start-up took on a loaded machine
        self.start_at = time.time() + START_IN_S
        for pipe in self.pipes.values():
            pipe.send(self.start_at)
        return self.start_at

    def _await_ready(self, serial: str) -> None:
        pipe = self.pipes[serial]
        try:
            ready = pipe.poll(READY_TIMEOUT_S) and pipe.recv() == "ready"
        except EOFError:
            ready = False
        if not ready:
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
            proc.join(max(0.1, deadline - time.time()))
            if proc.exitcode is None:
                raise LabError(f"device process {serial} did not finish")
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
    eligible: Callable[[Home], bool] | None = None  # which homes the attack may target (default: any)


def run_attack(ctx: RunContext, plan: AttackPlan) -> RunResult:
    """Run one plan on a fresh lab and measure detection, false alarms and data loss."""
    intrusion = plan.intrusion
    with TwinLab(ctx, plan.options) as lab:
        target = lab.choose_target(plan.eligible)
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
            injected=f"{plan.label} on {target} ({lab.homes[target].id}, from {lab.start:%Y-%m-%d %H:%M})",
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
