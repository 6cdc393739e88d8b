"""Attacks in a community run: ``gridledger simulate --attack KIND@TARGET[:FROM-TO]`` (repeatable).

Syntax: ``KIND@TARGET`` attacks for the whole run, ``KIND@TARGET:FROM-TO`` from the start of slot ``FROM`` to the
start of slot ``TO`` (slot indices of the run, 0-based, ``TO`` excluded: ``0 <= FROM < TO <= slots``; with 15-minute
slots ``32-48`` is 08:00-12:00 of the first day, ``96-192`` the whole second day). Kinds and targets:

===================  ========  ==================================================================================
kind                 target    what happens in the run
===================  ========  ==================================================================================
``theft-h1..h6``     home      the meter under-reports its NAN readings by Jokar's model h1..h6
                               (:mod:`gridledger.analytics.theft_attacks`) applied to each day's profile; the home
                               still consumes what it did (``households.parquet``) and the feeder's meter at the
                               concentrator measures the true total; the thief is billed on what it reported
``sensor``           home      the meter's sensor adds a phantom load of ``SENSOR_W`` to its NAN readings (signed
                               with the meter's own key: the readings are accepted, the household is overbilled)
``spoof``            home      every slot, before the meter's reading, a rogue device submits a reading under the
                               meter's identity (zero consumption) signed with another key
``fake-price``       feeder    every slot, a price policy signed by a key that is not the DSO's (consumption price
                               halved, production price doubled) is submitted to the feeder's NAN coordinator
``flood``            feeder    every slot, ``FLOOD_TXS`` junk readings from an unenrolled device are submitted to
                               the feeder's NAN coordinator, beside the meters' honest readings
``tamper``           feeder,   at slot ``FROM`` one bit of a committed block is flipped in the members' store of
                     home      the feeder's NAN chain (a home: its HAN chain) with sqlite3, as an attacker with
                               file access would; at slot ``TO`` (default: the end of the run) the node restarts
                               and re-validates its store (what ``gridledger verify`` does)
``coordinator-loss`` feeder    the NAN coordinator stops at ``FROM``; its backup takes over (COORDINATOR_DOWN alarm,
                               pending transactions resubmitted); the primary comes back at ``TO`` as the backup
===================  ========  ==================================================================================

Detection uses only the mechanisms of the run, each at the (chain) time it would fire:

* ``feeder-balance``: the concentrator compares its feeder meter with the sum of its meters' readings every slot
  (a mismatch above ``BALANCE_PCT`` % of the feeder's import, at least ``BALANCE_FLOOR_WH``); it fires when the
  readings of the slot are in (the end of the slot);
* ``plausibility``: an IMPLAUSIBLE_READING alarm on the NAN chain about one of the attacked meter's readings;
* ``theft-detector``: the shipped theft model (:func:`gridledger.analytics.default_model.load_default_model`) on
  the feeder's reported meter-days flags an attacked day of the meter (at the end of that day);
* a ledger rule's reject code (``bad-reading-signature``, ``bad-policy-signature``, ...) when the coordinator drops
  the attack's transactions; ``coordinator-down-alarm`` when the backup's alarm commits; ``store-revalidation``
  with the reject code of the tampered store.

An attack counts as detected when one of them fires during or after it; ``detection_delay_s`` is the simulated
time from the start of slot ``FROM`` to the first one. Nothing is assumed: an attack no mechanism catches is
reported with ``detected = False``. ``victim_cost_minor``: for theft, the stolen energy at the tariff in force
(what the thief's honest bill would have been, minus its bill); for the sensor, what the household was overbilled;
for the others, what their accepted transactions cost (0 when everything was rejected).
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from gridledger.analytics.theft_attacks import ATTACKS as THEFT_MODELS
from gridledger.chain import verify_store
from gridledger.ledger.billing import energy_charge
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds.alarm import Alarm, AlarmCode
from gridledger.ledger.kinds.dso_policy import DsoPolicy
from gridledger.ledger.kinds.reading import Reading, ReadingValues, seal
from gridledger.ledger.kinds.reading_batch import readings_of
from gridledger.ledger.ruleset import Tier
from gridledger.profiles.community import Community
from gridledger.store.sqlite import SqliteStore
from gridledger.tiers.hierarchy import TierChain, store_name
from gridledger.twin.scenarios.tampered_store import flip_block_byte

THEFT_KINDS = tuple(f"theft-{h}" for h in THEFT_MODELS)
HOME_KINDS = (*THEFT_KINDS, "sensor", "spoof")
FEEDER_KINDS = ("fake-price", "flood", "coordinator-loss")
KINDS = (*HOME_KINDS, *FEEDER_KINDS, "tamper")

#: The sensor attack's phantom load (W): above a household's appliance step, so the plausibility check can see it.
SENSOR_W = 4_000
#: Junk transactions a flood submits to the NAN coordinator per slot.
FLOOD_TXS = 200
#: The concentrator's feeder-balance tolerance: line losses and meter error (the run models neither, so an honest
#: feeder balances exactly; a real one needs this margin).
BALANCE_PCT = 3
BALANCE_FLOOR_WH = 10

_SPEC = re.compile(r"^(?P<kind>[^@:]+)@(?P<target>[^@:]+)(?::(?P<start>[^-]*)-(?P<end>.*))?$")


class AttackError(ValueError):
    """A bad ``--attack`` value (the message names it)."""


@dataclass(frozen=True)
class Attack:
    """One attack of a run: ``kind`` on ``target`` over slots ``[from_slot, to_slot)``."""

    kind: str
    target: str
    from_slot: int
    to_slot: int
    spec: str

    def active(self, slot: int) -> bool:
        return self.from_slot <= slot < self.to_slot


def parse_attack(spec: str, community: Community) -> Attack:
    """Parse and validate one ``KIND@TARGET[:FROM-TO]`` against ``community`` (``AttackError`` naming the flag)."""

    def bad(why: str) -> AttackError:
        return AttackError(f"--attack {spec!r}: {why}")

    m = _SPEC.match(spec.strip())
    if m is None:
        raise bad("expected KIND@TARGET or KIND@TARGET:FROM-TO (FROM, TO: slot numbers)")
    kind, target = m["kind"], m["target"]
    if kind not in KINDS:
        raise bad(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
    homes = [h.id for h in community.homes]
    feeders = [f.id for f in community.feeders]
    wanted = homes if kind in HOME_KINDS else feeders if kind in FEEDER_KINDS else homes + feeders
    if target not in wanted:
        what = "home" if kind in HOME_KINDS else "feeder" if kind in FEEDER_KINDS else "home or feeder"
        raise bad(f"{kind} targets a {what}; {target!r} is not one of this community's ({', '.join(wanted)})")
    slots = community.days * 86_400 // community.slot_seconds
    if m["start"] is None:
        start, end = 0, slots
    else:
        if not (m["start"].isdigit() and m["end"].isdigit()):
            raise bad(f"window {m['start']}-{m['end']}: FROM and TO must be slot numbers (0..{slots})")
        start, end = int(m["start"]), int(m["end"])
        if not start < end:
            raise bad(f"window {start}-{end} is empty (TO is excluded: it must be above FROM)")
        if end > slots:
            raise bad(f"window {start}-{end} ends after the run's last slot (the run has slots 0..{slots - 1})")
    if kind == "tamper" and start < 1:
        raise bad("tamper needs a committed block to flip: FROM must be at least 1")
    return Attack(kind, target, start, end, spec)


def parse_attacks(specs: Iterable[str], community: Community) -> list[Attack]:
    """Every ``--attack`` value, validated; at most one attack of a kind on a target."""
    attacks = [parse_attack(s, community) for s in specs]
    seen: set[tuple[str, str]] = set()
    for a in attacks:
        if (a.kind, a.target) in seen:
            raise AttackError(f"--attack {a.spec!r}: a second {a.kind} on {a.target} (give one window per target)")
        seen.add((a.kind, a.target))
    metered = [a.target for a in attacks if a.kind in (*THEFT_KINDS, "sensor")]
    for a in attacks:
        if a.kind in (*THEFT_KINDS, "sensor") and metered.count(a.target) > 1:
            raise AttackError(
                f"--attack {a.spec!r}: {a.target} carries another theft or sensor attack (one meter, "
                "one set of readings)"
            )
    return attacks


@dataclass
class _Outcome:
    """What happened to one attack during the run."""

    attack: Attack
    detections: list[tuple[int, str]] = field(default_factory=list)  # (chain time, mechanism)
    cost: int = 0
    details: dict = field(default_factory=dict)
    accepted: list = field(default_factory=list)  # the attack's transactions some block committed

    def detect(self, time: int, mechanism: str) -> None:
        if mechanism not in {m for _, m in self.detections}:
            self.detections.append((time, mechanism))

    def row(self, t0: int, slot_seconds: int) -> dict:
        a = self.attack
        first = min(self.detections, default=None)
        return {
            "kind": a.kind,
            "target": a.target,
            "from_slot": a.from_slot,
            "to_slot": a.to_slot,
            "detected": first is not None,
            "detection_delay_s": None if first is None else max(0, first[0] - (t0 + a.from_slot * slot_seconds)),
            "mechanism": None if first is None else first[1],
            "victim_cost_minor": int(self.cost),
            "mechanisms": {m: t - (t0 + a.from_slot * slot_seconds) for t, m in sorted(self.detections)},
            "details": self.details,
        }


class Injector:
    """The attacks of one community run, hooked into its slot loop (:mod:`gridledger.sim.run`).

    ``run`` is the run (``_Run``): the injector reads its community, clock, chains and arrays.
    """

    def __init__(self, attacks: list[Attack], run) -> None:
        self.run = run
        self.outcomes = [_Outcome(a) for a in attacks]
        self.metered: dict[str, _Outcome] = {}  # home → its theft or sensor attack
        self.watched: dict[str, dict[bytes, _Outcome]] = {}  # chain name → attack txids → attack
        self.rogue = KeyPair.from_secret("attacker")

    def backups(self) -> frozenset[str]:
        """Feeders whose NAN needs a backup concentrator (a coordinator-loss attack)."""
        return frozenset(o.attack.target for o in self.outcomes if o.attack.kind == "coordinator-loss")

    # ---------------------------------------------------------------- what the meters report
    def meter_readings(self, consumption: np.ndarray, production: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What each meter reports (Wh per slot): the measured energy, except on an attacked meter."""
        metered = [o for o in self.outcomes if o.attack.kind in (*THEFT_KINDS, "sensor")]
        if not metered:
            return consumption, production
        run = self.run
        reported = consumption.copy()
        for n, o in enumerate(metered):
            a, i = o.attack, run.row[o.attack.target]
            self.metered[a.target] = o
            if a.kind == "sensor":
                reported[i, a.from_slot : a.to_slot] += SENSOR_W * run.L // 3600
                continue
            model = THEFT_MODELS[a.kind.removeprefix("theft-")]
            rng = np.random.default_rng([run.c.seed, n])
            for day in range(a.from_slot // run.spd, (a.to_slot - 1) // run.spd + 1):
                first = day * run.spd
                honest = consumption[i, first : first + run.spd].astype(float)
                tampered = np.rint(np.maximum(model(honest[None], rng)[0], 0)).astype(np.int64)
                lo, hi = max(a.from_slot, first), min(a.to_slot, first + run.spd)
                reported[i, lo:hi] = tampered[lo - first : hi - first]
        return reported, production

    # ---------------------------------------------------------------- the slot loop
    def before_slot(self, now: int) -> None:
        """Inject what the attacks do at the start of slot ``now`` (before the meters' readings of slot now − 1)."""
        for o in self.outcomes:
            a = o.attack
            if a.kind == "spoof" and now >= 1 and a.active(now - 1):
                self._spoof(o, now - 1)
            elif a.kind == "fake-price" and a.active(now):
                self._fake_price(o, now)
            elif a.kind == "flood" and a.active(now):
                self._flood(o, now)
            elif a.kind == "tamper" and now == a.from_slot:
                o.details["change"] = self._flip(o)
            elif a.kind == "tamper" and now == a.to_slot:
                self._revalidate(o)
            elif a.kind == "coordinator-loss" and now == a.from_slot:
                self._fail_over(o)
            elif a.kind == "coordinator-loss" and now == a.to_slot:
                self._recover(o)

    def after_round(self, node: TierChain, time: int, block) -> None:
        """After every PoEf round: the attack transactions the coordinator dropped, and what the block holds."""
        if not self.outcomes:
            return
        watched = self.watched.get(node.name)
        if watched:
            rejected = node.coordinator.rejected
            for txid, o in list(watched.items()):
                reject = rejected.get(txid)
                if reject is not None:
                    o.detect(time, reject.code)
                    o.details.setdefault("rejected", {}).setdefault(reject.code, 0)
                    o.details["rejected"][reject.code] += 1
                    del watched[txid]
        if block is None or node.tier != Tier.NAN:
            return
        if len(node.coordinators) > 1 and block.header.proposer == node.coordinators[1].key.public:
            for o in self.outcomes:  # a coordinator-loss: how much the backup carried
                if o.attack.kind == "coordinator-loss" and node is self._nan(o.attack.target):
                    o.details["blocks_by_backup"] = o.details.get("blocks_by_backup", 0) + 1
                    o.details["transactions_by_backup"] = o.details.get("transactions_by_backup", 0) + len(
                        block.transactions
                    )
        for tx in block.transactions:
            if watched and tx.txid in watched:
                o = watched.pop(tx.txid)
                o.accepted.append(tx)
                o.details["accepted"] = len(o.accepted)
            elif isinstance(tx, Alarm):
                self._alarm(node, block, tx)
            else:
                for reading in readings_of(tx):  # a READING, or each minute of a READING_BATCH
                    self._count_honest(node, reading)

    # ---------------------------------------------------------------- per kind
    def _nan(self, feeder: str) -> TierChain:
        return self.run.ledger.nans[feeder]

    def _home_nan(self, home: str) -> tuple[TierChain, int]:
        nan = self._nan(self.run.feeder_of[home])
        return nan, nan.members[home].index

    def _watch(self, node: TierChain, tx, o: _Outcome) -> None:
        self.watched.setdefault(node.name, {})[tx.txid] = o
        o.details["submitted"] = o.details.get("submitted", 0) + 1
        self.run._submit(node, tx)  # a replayed slot (a resumed run) skips what is on chain already

    def _spoof(self, o: _Outcome, s: int) -> None:
        nan, member = self._home_nan(o.attack.target)
        minute = (s + 1) * self.run.m - 1
        forged = seal(nan.chain_id, member, minute, ReadingValues(0, 0), random.Random(s).randbytes(32))
        self._watch(nan, forged.signed(nan.chain_id, self.rogue), o)

    def _fake_price(self, o: _Outcome, now: int) -> None:
        nan = self._nan(o.attack.target)
        state = nan.coordinator.chain.state
        genuine = state.policy.prices(now)
        fake = (genuine[0] // 2, genuine[1] * 2)
        forged = DsoPolicy(state.policy.nonce + 1 + now, now + 1, fake).signed(nan.chain_id, self.rogue)
        o.details["fake_prices"] = list(fake)
        self._watch(nan, forged, o)

    def _flood(self, o: _Outcome, now: int) -> None:
        nan = self._nan(o.attack.target)
        first = len(nan.members)
        minute = now * self.run.m
        for k in range(FLOOD_TXS):
            junk = seal(nan.chain_id, first + k, minute, ReadingValues(k, 0), bytes(32))
            self._watch(nan, junk.signed(nan.chain_id, self.rogue), o)
        o.details.setdefault("honest_readings_committed", 0)
        o.details["honest_readings_expected"] = len(nan.members) * (o.attack.to_slot - o.attack.from_slot)

    def _count_honest(self, node: TierChain, tx: Reading) -> None:
        for o in self.outcomes:
            a = o.attack
            if a.kind == "flood" and node is self._nan(a.target) and tx.member < len(node.members):
                done = o.details.get("honest_readings_committed", 0)
                o.details["honest_readings_committed"] = done + a.active(tx.minute // self.run.m)

    def _store(self, o: _Outcome) -> Path:
        target = o.attack.target
        node = self.run.ledger.hans[target] if target in self.run.ledger.hans else self._nan(target)
        return self.run.out / "chains" / store_name(f"{node.name}.members")

    def _flip(self, o: _Outcome) -> str:
        db = sqlite3.connect(self._store(o))
        try:
            change = flip_block_byte(db, random.Random(self.run.c.seed))
            db.commit()
        finally:
            db.close()
        return change

    def _revalidate(self, o: _Outcome) -> None:
        """The tampered node restarts: it replays and re-validates its stored chain (``node.run.open_chain``)."""
        store = SqliteStore(self._store(o))
        try:
            verify_store(store)
        except Reject as e:
            o.detect(self.run._time(), f"store-revalidation:{e.code}")
            o.details["report"] = str(e)
        finally:
            store.close()

    def _fail_over(self, o: _Outcome) -> None:
        nan = self._nan(o.attack.target)
        o.details["stopped"] = nan.coordinator.key.public.hex()
        nan.fail_over()
        o.details["took_over"] = nan.coordinator.key.public.hex()

    def _recover(self, o: _Outcome) -> None:
        """The stopped coordinator restarts, catches up from its peers and stays the backup (sticky lease)."""
        nan = self._nan(o.attack.target)
        for i in list(nan.down):
            nan.coordinators[i].replica.catch_up(nan.replica.chain.blocks(nan.coordinators[i].replica.height + 1))
            nan.down.discard(i)

    def _alarm(self, node: TierChain, block, alarm: Alarm) -> None:
        if alarm.code == AlarmCode.COORDINATOR_DOWN:
            for o in self.outcomes:
                if o.attack.kind == "coordinator-loss" and node is self._nan(o.attack.target):
                    o.detect(block.header.time, "coordinator-down-alarm")
            return
        if alarm.code != AlarmCode.IMPLAUSIBLE_READING or not self.metered:
            return
        reading = next((r for tx in block.transactions for r in readings_of(tx) if r.txid == alarm.subject), None)
        if reading is None:
            return
        home = next((h for h, m in node.members.items() if m.index == reading.member), None)
        o = self.metered.get(home)
        if o is not None and o.attack.active(reading.minute // self.run.m):
            o.detect(block.header.time, f"plausibility:{alarm.detector}")

    # ---------------------------------------------------------------- after the run
    def results(self) -> list[dict]:
        """Every attack's summary entry (``summary.json["attacks"]``), once the run is over."""
        run = self.run
        if self.metered:
            self._balance()
            self._theft_detector()
        for o in self.outcomes:
            o.cost = self._cost(o)
        return [o.row(run.t0, run.L) for o in self.outcomes]

    def _slot_end(self, s: int) -> int:
        return self.run.t0 + (s + 1) * self.run.L

    def _balance(self) -> None:
        """The concentrators' feeder balance: feeder meter vs the sum of its meters' readings, every slot."""
        run = self.run
        for feeder in {run.feeder_of[h] for h in self.metered}:
            rows = [run.row[h.id] for h in run.c.homes_on(feeder)]
            measured = run.consumption[rows].sum(axis=0)
            gap = measured - run.meter_consumption[rows].sum(axis=0)
            flagged = np.abs(gap) > np.maximum(BALANCE_FLOOR_WH, measured * BALANCE_PCT // 100)
            for home, o in self.metered.items():
                if run.feeder_of[home] != feeder:
                    continue
                hits = np.nonzero(flagged[o.attack.from_slot : o.attack.to_slot])[0]
                o.details["balance_slots_flagged"] = int(hits.size)
                if hits.size:
                    o.detect(self._slot_end(o.attack.from_slot + int(hits[0])), "feeder-balance")

    def _theft_detector(self) -> None:
        """The shipped theft model on each attacked feeder's reported meter-days (15-minute data)."""
        from gridledger.analytics.default_model import load_default_model

        run = self.run
        model = load_default_model()
        if model.step_s % run.L:
            for o in self.metered.values():
                o.details["theft_detector"] = f"not run: {run.L}-s slots do not sum to its {model.step_s}-s data"
            return
        per = model.step_s // run.L
        for feeder in {run.feeder_of[h] for h in self.metered}:
            homes = [h.id for h in run.c.homes_on(feeder)]
            days, export = (
                x[[run.row[h] for h in homes]].reshape(len(homes), run.c.days, -1, per).sum(axis=3).astype(float)
                for x in (run.meter_consumption, run.meter_production)
            )
            flagged = model.logits(days, export) > 0
            attacked = np.zeros_like(flagged)
            for home, o in self.metered.items():
                if run.feeder_of[home] != feeder:
                    continue
                i, a = homes.index(home), o.attack
                span = range(a.from_slot // run.spd, (a.to_slot - 1) // run.spd + 1)
                attacked[i, list(span)] = True
                hit = next((d for d in span if flagged[i, d]), None)
                o.details["theft_detector_days_flagged"] = int(sum(flagged[i, d] for d in span))
                if hit is not None:
                    o.detect(self._slot_end((hit + 1) * run.spd - 1), "theft-detector")
            for o in self.metered.values():
                if run.feeder_of[o.attack.target] == feeder:
                    o.details["theft_detector_false_alarms"] = int((flagged & ~attacked).sum())

    def _cost(self, o: _Outcome) -> int:
        """What the attack cost its victims (minor units), from what the run accepted."""
        run, a = self.run, o.attack
        feeder = a.target if a.target in run.ledger.nans else run.feeder_of[a.target]
        prices = run.markets[feeder].chain.state.policy.prices
        if a.kind in (*THEFT_KINDS, "sensor"):
            i = run.row[a.target]
            honest = run.consumption[i] - run.production[i]
            billed = run.meter_consumption[i] - run.meter_production[i]
            diff = sum(
                energy_charge(int(honest[s]) * 3600, prices(s)) - energy_charge(int(billed[s]) * 3600, prices(s))
                for s in range(a.from_slot, a.to_slot)
            )
            return diff if a.kind != "sensor" else -diff
        if a.kind == "spoof":  # the victim's consumption of the spoofed slots is no longer on the ledger
            i = run.row[a.target]
            slots = [r.minute // run.m for r in o.accepted]
            return sum(energy_charge(int(run.consumption[i, s]) * 3600, prices(s)) for s in slots)
        if a.kind == "fake-price" and o.accepted:  # what the fake prices took from the feeder's homes
            genuine = (run.c.prices.consumption_per_kwh, run.c.prices.production_per_kwh)
            return sum(
                max(
                    0,
                    energy_charge(int(run.net[i, s]) * 3600, prices(s))
                    - energy_charge(int(run.net[i, s]) * 3600, genuine),
                )
                for i in (run.row[h.id] for h in run.c.homes_on(feeder))
                for s in range(min(p.effective_slot for p in o.accepted), run.S)
            )
        return 0

    def write(self, out: Path, rows: list[dict]) -> None:
        """``attacks.parquet``: one row per attack (``mechanisms`` and ``details`` as JSON)."""
        table = pd.DataFrame(
            [{**r, "mechanisms": json.dumps(r["mechanisms"]), "details": json.dumps(r["details"])} for r in rows],
            columns=[
                "kind",
                "target",
                "from_slot",
                "to_slot",
                "detected",
                "detection_delay_s",
                "mechanism",
                "victim_cost_minor",
                "mechanisms",
                "details",
            ],
        )
        table["detection_delay_s"] = table["detection_delay_s"].astype("Int64")
        table.to_parquet(out / "attacks.parquet", index=False)
