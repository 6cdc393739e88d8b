"""The community run: one community, end to end, on every layer of the ledger.

Per slot, in chain time (slot ``c`` is "now", slot ``c − 1`` has just ended):

1. **readings**: each home's devices (load, PV, battery) report on its HAN chain once per HAN block (every
   ``han_block_slots`` slots, the energy since their last reading), its meter reports slot ``c − 1`` on the feeder's
   NAN chain, each concentrator its feeder's total on the FAN/WAN chain and the
   FAN/WAN coordinator the community's on the head-end: signed, encrypted readings, checked for plausibility by
   every PoEf committee (an implausible one gets an ALARM in its block);
2. **market** (PETra on the NAN chain, :mod:`.nan_market`): on the first slot of a trading day every meter
   extracts its day units and they are mixed; then every prosumer forecasts its net load of slot ``c + 1`` from its
   own meter's history (:mod:`.strategy`) and posts offers or bids; the clearing's trades are signed, submitted and
   committed in the NAN's PoEf round of this slot, together with the readings; after the day's last round every
   coin is deposited back to its meter; after each round the DSO's microgrid controller of the feeder
   (:mod:`.control`) predicts the feeder's load, signals and, out of its band, reprices it through the tiers;
3. **settlement**: once a slot's day is deposited, each meter bills it from its measurement with the
   extraction-aware rule (:func:`gridledger.ledger.billing.bill_slot`) at the prices in force on its NAN, and
   reports to the DSO only what the DSO view holds (:class:`DsoView`);
4. **up the tiers**: HAN chains commit every ``han_block_slots`` slots; every chain anchors its new blocks into its
   parent every ``anchor_slots`` slots; the DSO's prices are replicated down from the head-end;
5. **rewards**: once a day (a PoEf reward period) is over, the DSO scores each meter of each NAN from the period's
   readings (:func:`gridledger.analytics.scorecards.period_score`) and pays by the published rule
   (:func:`gridledger.ledger.kinds.reward.make_reward`), a NAN transaction like any other.

Outputs in ``out_dir``: the chain stores (SQLite files in ``chains/``, or PostgreSQL schemas with ``store``; the
manifest ``chains/tiers.json`` is written before the first slot, so an interrupted run verifies too), Parquet tables
(households: each home's load, PV, battery and net energy per slot as the devices measured it; readings, forecasts,
orders, trades, bills, dso_feeder_slots, dso_meter_periods, alarms, rewards, blocks, control, attacks) and
``summary.json``. While it runs, ``resume/`` holds what ``resume=True`` needs to continue it after an interruption
(:mod:`.checkpoint`: the design, and what a resumed run may differ in); it is removed once the outputs are written.
Every transaction the run itself submits goes through :meth:`_Run._submit`, which skips the chains whose round of
a replayed slot is on chain already.

Attacks (``attacks``, :mod:`.attacks`) hook in at five points: what the meters report (``meter_*`` arrays: the
measured energy unless a meter is attacked), the start of each slot, after each PoEf round, the summary and
``attacks.parquet``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import resource
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, astuple, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from gridledger.analytics.scorecards import period_score
from gridledger.devices.household import simulate_households
from gridledger.ledger.assets import Asset, AssetKind
from gridledger.ledger.billing import Bill, bill_slot, energy_charge
from gridledger.ledger.block import Block
from gridledger.ledger.kinds.alarm import Alarm
from gridledger.ledger.kinds.dso_policy import MeterLimits
from gridledger.ledger.kinds.reading import ReadingValues, summarize
from gridledger.ledger.kinds.reward import PERIOD_MINUTES, make_reward, reward_amounts
from gridledger.market.orders import Feeder
from gridledger.petra.onion import MIN_HOPS, InProcessNetwork
from gridledger.profiles.community import Community, community_toml
from gridledger.profiles.electrical import meter_electrical
from gridledger.sim import checkpoint
from gridledger.sim.attacks import AttackError, Injector, parse_attacks
from gridledger.sim.checkpoint import Journal, ResumeError
from gridledger.sim.control import REPRICE_LAG_SLOTS, FeederControl
from gridledger.sim.nan_market import NanMarket, unit_fa
from gridledger.sim.network import FAN_ID, CommunityLedger, RunStores, chain_copies, concentrator_id, han_devices
from gridledger.sim.run_analytics import analyze_run
from gridledger.sim.strategy import Strategy, forecast_next
from gridledger.store import StoreError
from gridledger.store.postgres import redact
from gridledger.tiers.hierarchy import TierChain


class RunError(ValueError):
    """The run cannot start: a bad parameter or output folder (the message names it)."""


#: Columns of each table of a run folder, in order (the audit reads the same names).
TABLE_COLUMNS = {
    "readings": [
        "meter",
        "feeder",
        "slot",
        "consumption_wh",
        "production_wh",
        "voltage_dv",
        "current_ca",
        "power_factor_pm",
    ],
    "forecasts": ["meter", "slot", "forecast_wh", "actual_wh"],
    "trades": ["feeder", "slot", "txid", "offer_id", "bid_id", "power_w", "price"],
    "bills": [
        "meter",
        "feeder",
        "slot",
        "measured_ws",
        "energy_ws",
        "energy_charge",
        "fa_issued",
        "fa_deposited",
        "amount",
        "baseline_amount",
        "eca_audit_ok",
    ],
    "alarms": ["chain", "height", "tx_index", "slot", "code", "subject", "detector"],
    "rewards": [
        "feeder",
        "period",
        "meter",
        "forecast_adherence",
        "power_quality",
        "peak_reduction",
        "score",
        "amount",
    ],
    "blocks": ["chain", "tier", "height", "slot", "transactions", "votes"],
    "control": [
        "feeder",
        "slot",
        "predicted_w",
        "signal",
        "amount_w",
        "prices_from_slot",
        "consumption_per_kwh",
        "production_per_kwh",
    ],
}

#: The community file a run folder may hold before the run starts (``gridledger simulate`` writes it there).
COMMUNITY_FILE = "community.toml"


@dataclass(frozen=True)
class RunParams:
    """Market and ledger parameters of a community run.

    unit_w, units : power of one unit (W) and units of each kind every meter extracts per trading day.
    mix_size : most coins in one CoinShuffle session.
    han_block_slots : a HAN chain commits a block every this many slots; its devices report that often.
    anchor_slots : every chain anchors into its parent every this many slots.
    reward_rate : minor units per efficiency-score point above the threshold, per day (the DSO's choice; at 1, a
        home earns at most 500 a day, and the realistic example's rewards come to about 14 % of its bills).
    billing_slots : slots of one billing period of the DSO view.
    ground_truth : also write ``ground_truth_orders.parquet`` (order id -> meter), which no party of the protocol
        holds: only for measuring a linking adversary (``benchmarks/privacy_linking.py``), never in operation.
    """

    unit_w: int = 2000
    units: int = 2
    mix_size: int = 16
    han_block_slots: int = 4
    anchor_slots: int = 8
    reward_rate: int = 1
    billing_slots: int = 30 * 96
    seed: int = 0
    ground_truth: bool = False


@dataclass
class DsoView:
    """Everything the DSO learns from the run's meters, and nothing else: its privacy boundary.

    Per feeder per slot, for grid safety: the energy the feeder imported and exported (Wh, the sum of its meters);
    per meter per billing period, for billing: energy settled (W·s) and the amount billed (minor units). No
    per-meter-per-slot value and nothing that names a trade.
    """

    period_slots: int
    feeder_slots: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    meter_periods: dict[tuple[str, int], list[int]] = field(default_factory=dict)

    def record_feeder(self, feeder: str, slot: int, import_wh: int, export_wh: int) -> None:
        self.feeder_slots[(feeder, slot)] = [import_wh, export_wh]

    def record_bill(self, meter: str, bill: Bill) -> None:
        row = self.meter_periods.setdefault((meter, bill.slot // self.period_slots), [0, 0])
        row[0] += bill.energy_ws
        row[1] += bill.amount


def run_community(
    community: Community,
    out_dir: str | Path,
    *,
    attacks: Iterable[str] = (),
    store: str | None = None,
    resume: bool = False,
    progress: Callable[[int, int], None] | None = None,
    params: RunParams | None = None,
) -> dict:
    """Run ``community`` end to end, write every output in ``out_dir`` and return the summary.

    ``progress(done, total)`` is called after every slot. ``attacks``: ``KIND@TARGET[:FROM-TO]`` values
    (:mod:`.attacks`), injected into the run. ``store``: None (SQLite files in ``out_dir/chains``) or a
    ``postgresql://`` URL (one schema per chain copy), checked before anything is written. ``resume``: continue the
    interrupted run ``out_dir`` holds (the same community; its attacks and parameters are the journal's; ``store``
    may repeat its URL, e.g. with the password).
    """
    out = Path(out_dir)
    journal = Journal(out)
    fingerprint = hashlib.sha256(community_toml(community).encode()).hexdigest()
    if resume:
        saved = _resumable(out, journal, fingerprint, store)
        params, attacks = RunParams(**saved["params"]), saved["attacks"]
    try:
        plan = parse_attacks(attacks, community)
    except AttackError as e:
        raise RunError(str(e)) from None
    for f in community.feeders:
        if len(community.homes_on(f.id)) < MIN_HOPS:
            raise RunError(
                f"feeder {f.id!r}: {len(community.homes_on(f.id))} homes; its private market needs at least "
                f"{MIN_HOPS} (the relays of one onion circuit)"
            )
    if resume:
        stores = RunStores(out / "chains", store or saved["store"], saved["run_id"])
    else:
        if out.exists() and any(f.name != COMMUNITY_FILE for f in out.iterdir()):
            raise RunError(
                f"{out}: the output folder is not empty (it may hold an earlier run): choose a new one, or continue "
                "an interrupted run with --resume"
            )
        stores = RunStores.new(out / "chains", store)
    params = params or RunParams()
    _check_limits(community, params)
    check_store(store, plan)
    backups = frozenset(a.target for a in plan if a.kind == "coordinator-loss")
    try:
        stores.prepare(chain_copies(community, backups), exist=resume)
    except StoreError as e:
        raise RunError(str(e)) from None
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        store_name = None if store is None else redact_password(store)
        journal.start(store_name, stores.run_id, fingerprint, asdict(params), list(attacks))
    return asyncio.run(_Run(community, out, params, progress, plan, stores, journal, resume).run())


def check_store(store: str | None, plan: Iterable) -> None:
    """``store`` can hold the run of the attacks ``plan`` (a tamper attack flips a byte of a SQLite file)."""
    if store is not None and any(a.kind == "tamper" for a in plan):
        raise RunError("--attack tamper: it flips a byte of a SQLite store file; run it without --store")


def redact_password(url: str) -> str:
    """``url`` without its password (what the run's files may name)."""
    return redact(url).replace(":***@", "@")


def _resumable(out: Path, journal: Journal, fingerprint: str, store: str | None) -> dict:
    """The saved ``run.json`` of the interrupted run in ``out`` (``RunError`` if there is none to resume)."""
    if (out / "summary.json").exists():
        raise RunError(f"{out}: the run is complete (summary.json is written); nothing to resume")
    if not journal.run_file.is_file():
        raise RunError(f"{out}: no interrupted run to resume (no {journal.run_file.relative_to(out)})")
    if not journal.state_file.is_file():
        raise RunError(f"{out}: the run was interrupted while setting up its chains: start it again in a new folder")
    try:
        saved = json.loads(journal.run_file.read_text())
    except (OSError, ValueError) as e:
        raise RunError(f"{journal.run_file}: unreadable: {e}") from None
    if saved["community"] != fingerprint:
        raise RunError(f"{out}: the community differs from the one the interrupted run simulated (its community.toml)")
    if store is not None and redact_password(store) != saved["store"]:
        where = saved["store"] or "SQLite files in the folder"
        raise RunError(f"--store {redact(store)}: the interrupted run in {out} used {where}")
    return saved


def _day_fa(community: Community, params: RunParams) -> int:
    """The FA (minor units) a meter extracts for one trading day: its units paid in full at the consumption price."""
    return params.units * unit_fa(params.unit_w, 86_400, community.prices.consumption_per_kwh)


def _check_limits(community: Community, params: RunParams) -> None:
    """The community's DSO limits must allow the cover trade: every meter extracts ``units`` of every kind a day."""
    dso = community.dso
    need = {"max_epa_w": params.units * params.unit_w, "max_eca_w": params.units * params.unit_w}
    need["credit_fa"] = _day_fa(community, params)
    for key, least in need.items():
        if getattr(dso, key) < least:
            raise RunError(
                f"[dso] {key} = {getattr(dso, key)}: the market's daily units ({params.units} of {params.unit_w} W "
                f"of each kind, paid at the consumption price) need at least {least}"
            )


# ------------------------------------------------------------------------------------------------ the run
class _Run:
    def __init__(
        self,
        community: Community,
        out: Path,
        params: RunParams,
        progress,
        attacks=(),
        stores: RunStores | None = None,
        journal: Journal | None = None,
        resume: bool = False,
    ) -> None:
        self.c, self.out, self.p, self.progress = community, out, params, progress
        self.stores = stores or RunStores(out / "chains")
        self.journal, self.resume = journal or Journal(out), resume
        self.attacks = Injector(list(attacks), self)
        self.L = community.slot_seconds
        self.m = self.L // 60
        self.spd = 86_400 // self.L
        self.S = community.days * self.spd
        self.t0 = int(community.start.timestamp())
        self.rows: dict[str, list] = defaultdict(list)
        self.trades = 0
        self.traded_w_slots = 0
        self.first = 0  # the first slot this process runs
        self.above: dict[str, list[Block]] = {}  # blocks the killed run committed in the slot being replayed
        self.replayed: dict[str, set[bytes]] = {}  # their transactions, by chain (until that slot is over)

    # ---------------------------------------------------------------- set-up
    def _households(self) -> None:
        h = simulate_households(self.c)
        self.ids = list(h.home_ids)
        self.row = {home: i for i, home in enumerate(self.ids)}
        self.feeder_of = {home.id: f.id for f in self.c.feeders for home in self.c.homes_on(f.id)}
        n, S, m = len(self.ids), self.S, self.m
        by_id = {s.meter_id: s for s in self.c.meters()}
        specs = [by_id[home] for home in self.ids]
        feeder_number = np.array([s.feeder for s in specs])
        rng = np.random.default_rng(self.c.seed)
        volts, pf, amps = meter_electrical(
            h.net_w,
            feeder_number,
            np.array([s.voltage_offset_v for s in specs]),
            np.array([s.base_pf for s in specs]),
            rng,
        )

        def per_slot(w: np.ndarray) -> np.ndarray:  # W per minute → Wh per slot, integers
            return np.rint(w.reshape(n, S, m).sum(axis=2) / 60).astype(np.int64)

        self.consumption = per_slot(np.maximum(h.net_w, 0))
        self.production = per_slot(np.maximum(-h.net_w, 0))
        self.net = self.consumption - self.production
        # what the meters report: what they measured, unless an attack says otherwise
        self.meter_consumption, self.meter_production = self.attacks.meter_readings(self.consumption, self.production)
        self.meter_net = self.meter_consumption - self.meter_production
        self.load = per_slot(h.load_w)
        self.pv = per_slot(h.pv_w)
        self.charge = per_slot(np.maximum(h.battery_w, 0))
        self.discharge = per_slot(np.maximum(-h.battery_w, 0))
        self.volts_dv = np.rint(volts.reshape(n, S, m).mean(axis=2) * 10).astype(np.int64)
        self.pf_pm = np.rint(pf.reshape(n, S, m).mean(axis=2) * 1000).astype(np.int64)
        self.amps_ca = np.rint(amps.reshape(n, S, m).mean(axis=2) * 100).astype(np.int64)

    async def _setup(self) -> None:
        p = self.p
        self._households()
        # the DSO's tariff of the community file; no one bids above the grid's consumption price
        prices = (self.c.prices.consumption_per_kwh, self.c.prices.production_per_kwh)
        price_cap = prices[0]
        # the DSO's limits of the community file; the FA credit is renewed daily (:meth:`_renew_credit`)
        dso = self.c.dso
        limits = self.limits = (dso.max_epa_w, dso.max_eca_w, dso.credit_fa)
        self.credit_due: set[str] = set()
        try:
            self.ledger = CommunityLedger(
                self.c,
                self.stores,
                limits,
                self.t0,
                p.han_block_slots,
                backups=self.attacks.backups(),
                reopen=self.resume,
            )
        except StoreError as e:
            raise RunError(f"{self.stores.url and redact(self.stores.url) or self.out / 'chains'}: {e}") from None
        self._write_manifest()
        self.now, self._tick = 0, 0
        if not self.resume:
            self.ledger.publish_prices(prices, 0)
            for node in [self.ledger.head, self.ledger.fan, *self.ledger.nans.values()]:  # in force from slot 0
                self._round(node)
        secret = bytes.fromhex(json.loads(self.journal.run_file.read_text())["wallet_secret"])
        self.network = InProcessNetwork()
        self.markets: dict[str, NanMarket] = {}
        for f in self.c.feeders:
            nan = self.ledger.nans[f.id]
            self.markets[f.id] = await NanMarket(
                nan,
                f.id,
                Feeder(f.internal_capacity_w, f.external_capacity_w),
                lambda nan=nan: self._round(nan),
                limits,
                unit_w=p.unit_w,
                units=p.units,
                price_cap=price_cap,
                mix_size=p.mix_size,
                seed=p.seed,
                wallet=checkpoint.wallets(secret + f.id.encode()),
            ).start(self.network)
        self.price_cap = price_cap
        self.controls = {f.id: FeederControl.create(f, prices, self.L, self.S + 1) for f in self.c.feeders}
        self.dso = DsoView(p.billing_slots)
        self.billed = 0
        self.settled_until = 1  # slot 0 is never traded
        if self.resume:
            self._restore()
        # rows in the journal already (a new run journals its set-up's blocks with slot -1)
        self._journaled = {t: len(r) for t, r in self.rows.items()} if self.resume else {}
        self._journaled_orders = {f: 0 for f in self.markets}
        self._journaled_truth = {f: len(m.truth) for f, m in self.markets.items()}
        if not self.resume:
            self._record(-1)  # the set-up's chain tips: a run killed in slot 0 resumes from them

    # ---------------------------------------------------------------- PoEf rounds
    def _time(self) -> int:
        """A chain time in the current slot, strictly increasing within it."""
        self._tick += 1
        return self.t0 + self.now * self.L + self._tick

    def _round(self, node: TierChain) -> Block | None:
        time = self._time()
        result = self.ledger.round(node, time)
        block = result.committed
        self.attacks.after_round(node, time, block)
        if block is not None:
            votes = sum(1 for v in result.votes.values() if not isinstance(v, Exception))
            self._block_rows(node, block, votes)
        return block

    def _block_rows(self, node: TierChain, block: Block, votes: int) -> None:
        self.rows["blocks"].append((node.name, str(node.tier), block.height, self.now, len(block.transactions), votes))
        for i, tx in enumerate(block.transactions):
            if isinstance(tx, Alarm):
                self.rows["alarms"].append(
                    (node.name, block.height, i, self.now, int(tx.code), tx.subject.hex(), tx.detector)
                )

    def _submit(self, node: TierChain, tx) -> None:
        """Queue ``tx`` at ``node``'s coordinator in charge, unless the slot is replayed and the killed run committed
        ``tx`` there already."""
        if tx.txid not in self.replayed.get(node.name, ()):
            node.coordinator.submit(tx)

    # ---------------------------------------------------------------- the loop
    async def run(self) -> dict:
        wall, cpu = time.perf_counter(), time.process_time()
        await self._setup()
        try:
            for now in range(self.first, self.S + 1):
                await self._slot(now)
                if self.replayed:
                    self._replay_done()
                self._record(now)
                if self.progress is not None:
                    self.progress(min(now + 1, self.S), self.S)
        finally:
            for market in self.markets.values():
                await market.close()
            self.ledger.close()
        self._bill(self.S)
        summary = self._write(time.perf_counter() - wall, time.process_time() - cpu)
        summary.update(analyze_run(self.out))  # the run's own analytics: theft, power quality, forecast errors
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        self.journal.finish()
        return summary

    # ---------------------------------------------------------------- resuming (see .checkpoint)
    def _write_manifest(self) -> None:
        manifest = json.dumps(self.ledger.manifest(), indent=2) + "\n"
        (self.out / "chains").mkdir(exist_ok=True)
        checkpoint.atomic_write(self.out / "chains" / "tiers.json", manifest)

    def _record(self, now: int) -> None:
        """Slot ``now`` is finished: journal its rows and the state to go on from it."""
        new = {t: r[self._journaled.get(t, 0) :] for t, r in self.rows.items() if len(r) > self._journaled.get(t, 0)}
        self._journaled = {t: len(r) for t, r in self.rows.items()}
        orders, truth = [], []
        for f, market in self.markets.items():
            history = market.operator.store.history
            orders += [_order_row(f, posted) for posted in history[self._journaled_orders[f] :]]
            self._journaled_orders[f] = len(history)
            truth += [(f, o, m) for o, m in list(market.truth.items())[self._journaled_truth[f] :]]
            self._journaled_truth[f] = len(market.truth)
        if orders:
            new["orders"] = orders
        if truth:
            new["truth"] = truth
        chains = self.ledger.chains.values()
        state = {
            "trades": self.trades,
            "traded_w_slots": self.traded_w_slots,
            "billed": self.billed,
            "settled_until": self.settled_until,
            "credit_due": sorted(self.credit_due),
            "prices_in_force": {f: list(c.in_force) for f, c in self.controls.items()},
            "markets": {f: checkpoint.market_state(m) for f, m in self.markets.items()},
            "ledger": checkpoint.ledger_state(self.ledger),
            "attacks": checkpoint.attacks_state(self.attacks),
            "pending": {n: txs for n, txs in checkpoint.pending(chains).items() if txs},
            "tips": checkpoint.tips(chains),
        }
        self.journal.record(now, new, state)

    def _restore(self) -> None:
        """Reload the journal, rebuild the markets from their chains and find what the killed slot committed."""
        try:
            state, lines = self.journal.load()
            for line in lines:
                for table, rows in line["rows"].items():
                    self.rows[table] += rows
            for f, order_id, meter in self.rows.pop("truth", []):
                self.markets[f].truth[order_id] = meter
            checkpoint.restore_ledger(self.ledger, state["ledger"])
            for f, market in self.markets.items():
                checkpoint.restore_market(market, state["markets"][f])
            checkpoint.restore_attacks(self.attacks, state["attacks"])
            self.first = state["slot"] + 1
            self.trades, self.traded_w_slots = state["trades"], state["traded_w_slots"]
            self.billed, self.settled_until = state["billed"], state["settled_until"]
            self.credit_due = set(state["credit_due"])
            for f, prices in state["prices_in_force"].items():
                self.controls[f].in_force = tuple(prices)
            chains = self.ledger.chains
            self.above = checkpoint.beyond(chains.values(), state["tips"])
        except ResumeError as e:
            raise RunError(str(e)) from None
        self.replayed = {n: {tx.txid for b in blocks for tx in b.transactions} for n, blocks in self.above.items()}
        for name, txs in state["pending"].items():  # what the coordinators had queued after the last slot
            for raw in txs:
                self._submit(chains[name], checkpoint.decode(raw))
        for s in range(max(self.first - 1, 0)):  # the DSO's feeder totals of the slots whose readings are in
            self._feeder_totals(s)
        for meter, _, s, _, energy_ws, _, _, _, amount, *_ in self.rows["bills"]:
            row = self.dso.meter_periods.setdefault((meter, s // self.dso.period_slots), [0, 0])
            row[0] += energy_ws
            row[1] += amount

    def _replay_done(self) -> None:
        """After the replayed slot: a DSO policy the killed run signed in it and committed (but this run did not
        sign again: e.g. a reprice lost with the process) used a nonce; the DSO goes on after it."""
        for node in self.ledger.chains.values():
            dso = self.ledger.dsos[node.chain_id]
            dso.nonce = max(dso.nonce, node.coordinator.chain.state.policy.nonce)
        self.replayed.clear()

    def _replayed(self) -> None:
        """The blocks the killed run committed in the slot being replayed: listed, and shown to the attacks."""
        last = self.t0 + self.now * self.L
        for name, blocks in self.above.items():
            node = self.ledger.chains[name]
            for block in blocks:
                self._block_rows(node, block, len(block.certificate))
                self.attacks.after_round(node, block.header.time, block)
                last = max(last, block.header.time)
        self._tick = last - (self.t0 + self.now * self.L)  # new blocks are timed after them
        self.above = {}

    async def _slot(self, now: int) -> None:
        """Everything that happens in slot ``now`` (``now == S``: the step after the last slot)."""
        self.now, self._tick = now, 0
        for market in self.markets.values():
            market.slot = now
        self.attacks.before_slot(now)
        if self.above:
            self._replayed()
        if now > 0:
            self._readings(now - 1)
        if now >= self.spd and now % self.spd == 0:
            self._rewards(now // self.spd - 1)
        nan_committed = set()
        if now < self.S - 1:
            await self._market(now, nan_committed)
        for f in self.ledger.nans:
            if f not in nan_committed:
                self.markets[f].commit()
        if now % self.p.han_block_slots == 0 or now == self.S:
            for han in self.ledger.hans.values():
                self._round(han)
        self._round(self.ledger.fan)
        self._round(self.ledger.head)
        if now % self.p.anchor_slots == 0 or now == self.S:
            for node in self.ledger.bottom_up():
                node.anchor_up()
        if now == self.S:
            self._settle_anchors()
        self._bill(now)

    def _settle_anchors(self) -> None:
        """After the last slot: rounds until every chain's blocks are anchored up to the head-end."""
        for _ in range(8):
            for node in self.ledger.bottom_up():
                self._round(node)
                node.anchor_up()
            if all(n.anchored() > n.coordinator.chain.height for n in self.ledger.chains.values() if n.parent):
                return

    # ---------------------------------------------------------------- readings
    def _readings(self, s: int) -> None:
        minute = (s + 1) * self.m - 1
        led = self.ledger
        for f, nan in led.nans.items():
            for home in self.c.homes_on(f):
                i = self.row[home.id]
                if (s + 1) % self.p.han_block_slots == 0 or s == self.S - 1:
                    self._device_readings(home, i, s, minute)
                values = ReadingValues(
                    int(self.meter_consumption[i, s]),
                    int(self.meter_production[i, s]),
                    voltage_dv=int(self.volts_dv[i, s]),
                    current_ca=int(self.amps_ca[i, s]),
                    power_factor_pm=int(self.pf_pm[i, s]),
                )
                self._submit(nan, nan.members[home.id].device.reading(minute, values))
                self.rows["readings"].append((home.id, f, s, *astuple(values)))
        totals = self._feeder_totals(s)
        for f, total in totals.items():
            self._submit(led.fan, led.fan.members[concentrator_id(f)].device.reading(minute, total))
        self._submit(led.head, led.head.members[FAN_ID].device.reading(minute, summarize(list(totals.values()))))

    def _feeder_totals(self, s: int) -> dict[str, ReadingValues]:
        """Each feeder's total of slot ``s`` as its concentrator's feeder meter measures it (the homes' true
        energy), recorded in the DSO view and given to the feeder's controller."""
        totals = {}
        for f in self.ledger.nans:
            rows = [self.row[home.id] for home in self.c.homes_on(f)]
            total = totals[f] = ReadingValues(int(self.consumption[rows, s].sum()), int(self.production[rows, s].sum()))
            self.dso.record_feeder(f, s, total.consumption_wh, total.production_wh)
            self.controls[f].record(s, total.consumption_wh, total.production_wh)
        return totals

    def _device_readings(self, home, i: int, s: int, minute: int) -> None:
        """The home's devices report their energy of the slots since their last reading, up to slot ``s``."""
        span = slice(s - (s % self.p.han_block_slots), s + 1)

        def wh(a: np.ndarray) -> int:
            return int(a[i, span].sum())

        devices = {
            "load": ReadingValues(wh(self.load)),
            "pv": ReadingValues(0, wh(self.pv)),
            "battery": ReadingValues(wh(self.charge), wh(self.discharge)),
        }
        han = self.ledger.hans[home.id]
        for d in han_devices(home):
            self._submit(han, han.members[d].device.reading(minute, devices[d]))

    # ---------------------------------------------------------------- market
    async def _market(self, now: int, committed: set[str]) -> None:
        start = now + 1
        day_end = min((now // self.spd + 1) * self.spd + 1, self.S)  # trading day: [day start + 1, next day start + 1)
        forecasts = forecast_next(self.net, start, self.spd)
        for i, home in enumerate(self.ids):
            self.rows["forecasts"].append((home, start, int(forecasts[i]), int(self.net[i, start])))
        for f, market in self.markets.items():
            if self.ledger.nans[f].name in self.replayed:
                await self._replay_market(f, market, now, start, day_end)
                committed.add(f)
                continue
            if now % self.spd == 0:
                market.extract(start, day_end)
                market.commit()
                failures = await market.mix(start, day_end)
                if failures:
                    raise RuntimeError(f"feeder {f}: {failures} coins failed to mix")
                market.commit()
                self.credit_due.add(f)
            self._renew_credit(f, market)
            rows = [self.row[h.id] for h in self.c.homes_on(f)]
            strategy = Strategy(market.chain.state.policy.prices(start), self.price_cap)  # the prices in force
            intents = strategy.intents([self.ids[i] for i in rows], forecasts[rows], self.L, market.offers_seen)
            result = await market.trade(intents)
            block = market.commit()
            on_chain = {tx.txid for tx in block.transactions} if block else set()
            settled = [tr for tr in result.trades if tr.tx.txid in on_chain]
            self._control(f, now, [mt for tr in settled for mt in tr.matches], market, len(result.posted))
            for tr in settled:
                self.trades += 1
                for mt in tr.matches:
                    self.traded_w_slots += mt.power_w
                    self.rows["trades"].append(
                        (f, mt.slot, tr.tx.txid.hex(), mt.offer_id, mt.bid_id, mt.power_w, mt.price)
                    )
            market.forget()
            if start == day_end - 1:
                await market.end_day()
                market.deposit()
                market.commit()
                self.settled_until = day_end
            committed.add(f)

    async def _replay_market(self, f: str, market: NanMarket, now: int, start: int, day_end: int) -> None:
        """The killed run committed feeder ``f``'s market round of slot ``now`` (or part of it): on the day's first
        slot the day's coins are mixed again (the mix may have been cut short), on its last they are deposited if
        they were not; no order is traded in this slot (the bid store's book died with the process)."""
        if now % self.spd == 0:
            if await market.mix(start, day_end):
                raise RuntimeError(f"feeder {f}: coins failed to mix")
            market.commit()
            self.credit_due.add(f)
        self._renew_credit(f, market)
        market.commit()
        if start == day_end - 1:
            await market.end_day()
            market.deposit()
            market.commit()
            self.settled_until = day_end

    def _renew_credit(self, f: str, market: NanMarket) -> None:
        """The DSO renews the FA credit of feeder ``f``'s meters once their day's FA is issued (the day's bill is
        settled before the next day's extraction): each meter's cumulative credit becomes the community's credit
        plus all the FA it issued, in a chain-local policy in force from the next slot. It waits while a price copy
        for the NAN is still to be relayed: the DSO's nonces must reach the chain in order."""
        nan = self.ledger.nans[f]
        if f not in self.credit_due or self.ledger.prices_pending(nan):
            return
        epa, eca, credit = self.limits
        renewed = []
        for home in self.c.homes_on(f):
            meter = market.prosumers[home.id].meter
            issued = sum(a.amount for _, a in meter.issued if a.kind == AssetKind.FA)
            meter.limits = MeterLimits(home.id, epa, eca, credit + issued)
            renewed.append(meter.limits)
        self._submit(nan, self.ledger.dsos[nan.chain_id].policy(self.now + 1, limits=renewed))
        self.credit_due.discard(f)

    def _control(self, f: str, now: int, matches: list, market: NanMarket, posted: int) -> None:
        """The DSO's controller of feeder ``f`` after the round of slot ``now + 1`` (:mod:`.control`)."""
        history = market.operator.store.history  # the round's orders are the last ``posted``
        orders = [p.order.market_order() for p in history[len(history) - posted :]]
        prediction, signal, prices = self.controls[f].step(now + 1, matches, orders)
        if signal is not None or prices is not None:
            effective = now + REPRICE_LAG_SLOTS
            if prices is not None:
                self.ledger.publish_prices(prices, effective, feeders=[f])
            self.rows["control"].append(
                (
                    f,
                    now + 1,
                    prediction.net_load_w,
                    signal.action if signal else "",
                    signal.amount_w if signal else 0,
                    effective if prices else -1,
                    *(prices or (-1, -1)),
                )
            )

    # ---------------------------------------------------------------- settlement
    def _bill(self, now: int) -> None:
        """Bill every measured slot whose trading day is deposited (slots ``billed .. min(now, settled) − 1``)."""
        end = min(now, self.settled_until)
        if end <= self.billed:
            return
        for f, market in self.markets.items():
            nan_state = market.chain.state
            for home in self.c.homes_on(f):
                i = self.row[home.id]
                issued, deposited = market.issued_and_deposited(home.id)
                span_issued = [a for _, a in _overlapping(issued, self.billed, end)]
                span_deposited = [a for _, a in _overlapping(deposited, self.billed, end)]
                fa_issued, fa_deposited = _fa_by_slot(issued), _fa_by_slot(deposited)
                for s in range(self.billed, end):
                    prices = nan_state.policy.prices(s)
                    b = bill_slot(
                        s,
                        int(self.meter_net[i, s]),
                        span_issued,
                        span_deposited,
                        prices,
                        self.L,
                        fa_issued=fa_issued.get(s, 0),
                        fa_deposited=fa_deposited.get(s, 0),
                    )
                    baseline = energy_charge(int(self.meter_net[i, s]) * 3600, prices)
                    self.dso.record_bill(home.id, b)
                    self.rows["bills"].append(
                        (
                            home.id,
                            f,
                            s,
                            b.measured_ws,
                            b.energy_ws,
                            b.energy_charge,
                            b.fa_issued,
                            b.fa_deposited,
                            b.amount,
                            baseline,
                            b.eca_audit_ok,
                        )
                    )
        self.billed = end

    # ---------------------------------------------------------------- rewards
    def _rewards(self, period: int) -> None:
        """The DSO pays period ``period`` (a day) on every NAN by the published rule (period 0 has no score)."""
        if period < 1:
            return
        first_minute = max(0, period - 7) * PERIOD_MINUTES
        end_minute = (period + 1) * PERIOD_MINUTES
        for f, nan in self.ledger.nans.items():
            components = {}
            for member in nan.members.values():
                i = self.row[member.ident]
                timed = []
                for s in range(first_minute // self.m, end_minute // self.m):
                    minute = (s + 1) * self.m - 1
                    v = ReadingValues(
                        int(self.meter_consumption[i, s]),
                        int(self.meter_production[i, s]),
                        int(self.volts_dv[i, s]),
                        int(self.amps_ca[i, s]),
                        int(self.pf_pm[i, s]),
                    )
                    timed.append((minute, v))
                components[member.index] = period_score(timed, period).components
            state = nan.coordinator.chain.state
            reward = make_reward(state, period, self.p.reward_rate, components, self.ledger.dso_key)
            self._submit(nan, reward)
            by_index = {m.index: m.ident for m in nan.members.values()}
            paid = dict(reward_amounts(reward.rate, reward.cards))
            for card in reward.cards:
                self.rows["rewards"].append(
                    (f, period, by_index[card.member], *card.components, card.score, paid.get(card.member, 0))
                )

    # ---------------------------------------------------------------- outputs
    def _write(self, wall_s: float, cpu_s: float) -> dict:
        for name, columns in TABLE_COLUMNS.items():
            pd.DataFrame(self.rows[name], columns=columns).to_parquet(self.out / f"{name}.parquet", index=False)
        orders = self.rows["orders"] + [
            _order_row(f, p) for f, market in self.markets.items() for p in market.operator.store.history
        ]
        pd.DataFrame(
            orders, columns=["feeder", "order_id", "side", "slot", "power_w", "limit_price", "posted_slot"]
        ).to_parquet(self.out / "orders.parquet", index=False)
        if self.p.ground_truth:
            truth = [(oid, meter) for market in self.markets.values() for oid, meter in market.truth.items()]
            pd.DataFrame(truth, columns=["order_id", "meter"]).to_parquet(
                self.out / "ground_truth_orders.parquet", index=False
            )
        meters = [
            (name, f, address.hex())
            for f, market in self.markets.items()
            for name, p in market.prosumers.items()
            for address in p.meter.deposits.keys
        ]
        pd.DataFrame(meters, columns=["meter", "feeder", "deposit_address"]).to_parquet(
            self.out / "meter_deposit_addresses.parquet", index=False
        )
        n, S = self.load.shape
        pd.DataFrame(
            {
                "meter": np.repeat(self.ids, S),
                "feeder": np.repeat([self.feeder_of[h] for h in self.ids], S),
                "slot": np.tile(np.arange(S), n),
                "load_wh": self.load.ravel(),
                "pv_wh": self.pv.ravel(),
                "battery_charge_wh": self.charge.ravel(),
                "battery_discharge_wh": self.discharge.ravel(),
                "net_wh": self.net.ravel(),
            }
        ).to_parquet(self.out / "households.parquet", index=False)
        pd.DataFrame(
            [(f, s, imp, exp) for (f, s), (imp, exp) in sorted(self.dso.feeder_slots.items())],
            columns=["feeder", "slot", "import_wh", "export_wh"],
        ).to_parquet(self.out / "dso_feeder_slots.parquet", index=False)
        pd.DataFrame(
            [(mtr, per, e, a) for (mtr, per), (e, a) in sorted(self.dso.meter_periods.items())],
            columns=["meter", "period", "energy_ws", "amount"],
        ).to_parquet(self.out / "dso_meter_periods.parquet", index=False)
        bills = self.rows["bills"]
        summary = {
            "community": self.c.name,
            "homes": len(self.ids),
            "feeders": len(self.c.feeders),
            "slots": self.S,
            "slot_seconds": self.L,
            "billing_slots": self.p.billing_slots,
            "start": self.c.start.isoformat(),
            "days": self.c.days,
            "seed": self.c.seed,
            "prices_per_kwh": {
                "consumption": self.c.prices.consumption_per_kwh,
                "production": self.c.prices.production_per_kwh,
            },
            "blocks": sum(node.coordinator.chain.height for node in self.ledger.chains.values()),
            "trades": self.trades,
            "energy_traded_wh": self.traded_w_slots * self.L / 3600,
            "total_bill_minor": sum(b[8] for b in bills),
            "baseline_bill_minor": sum(b[9] for b in bills),
            "alarms": len(self.rows["alarms"]),
            "rewards_minor": sum(r[-1] for r in self.rows["rewards"]),
            "attacks": self.attacks.results(),
            "wall_s": round(wall_s, 3),
            "cpu_s": round(cpu_s, 3),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "home_slots_per_s": round(len(self.ids) * self.S / wall_s, 1) if wall_s else math.inf,
        }
        self.attacks.write(self.out, summary["attacks"])
        self._write_manifest()
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary


def _order_row(feeder: str, p) -> tuple:
    """A row of ``orders.parquet``: an order as the bid store recorded it."""
    o = p.order
    return (feeder, o.order_id, str(o.side), o.start_slot, o.power_w, o.limit_price, p.posted_slot)


def _overlapping(records: list[tuple[int, Asset]], start: int, end: int) -> list[tuple[int, Asset]]:
    """The EPA/ECA records covering any slot of ``[start, end)`` (FA is counted by slot separately)."""
    return [(t, a) for t, a in records if a.kind != AssetKind.FA and a.start < end and start < a.end]


def _fa_by_slot(records: list[tuple[int, Asset]]) -> dict[int, int]:
    """FA amounts by the slot the meter recorded them in."""
    out: dict[int, int] = defaultdict(int)
    for t, a in records:
        if a.kind == AssetKind.FA:
            out[t] += a.amount
    return out
