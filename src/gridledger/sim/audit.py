"""The third party's audit of a community run folder (:mod:`.run`): every number re-derived from the chains.

What the audit trusts: the chain stores, but only after re-verifying every copy of every chain (rules, quorum
certificates, the stored state; :func:`gridledger.chain.verify_store`), every anchor and every replicated price
(:mod:`gridledger.tiers.audit`); the DSO's root of content keys (:func:`.network.content_keys`), with which it
opens the meters' signed readings on the NAN chains; and each meter's own list of its one-time deposit addresses
(``meter_deposit_addresses.parquet``, which only the meter holds). What it does not trust: every other table and
``summary.json``. From the chains alone it recomputes:

* each meter's measurement per slot (its NAN readings, decrypted) and compares ``readings.parquet``,
  ``households.parquet`` (net) and the DSO's feeder totals (``dso_feeder_slots.parquet``);
* every bill: the meter's issues (METER_ISSUE) and what was deposited to its addresses, as committed, with the
  NAN's prices in force, through :func:`gridledger.ledger.billing.bill_slot`; compares ``bills.parquet`` and the
  DSO's per-period totals (``dso_meter_periods.parquet``);
* every reward: each member's period score from its decrypted readings
  (:func:`gridledger.analytics.scorecards.period_score`) and the amounts by the published rule
  (:func:`gridledger.ledger.kinds.reward.reward_amounts`); compares the REWARD transactions and ``rewards.parquet``;
* the alarms, blocks and trades tables against the committed blocks, and every total of ``summary.json``.

:func:`audit_run` returns every disagreement as a :class:`Finding`; it prints nothing and changes nothing.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from gridledger.analytics.scorecards import Timed, period_score
from gridledger.chain import Chain, verify_store
from gridledger.ledger.assets import Asset, AssetKind
from gridledger.ledger.billing import bill_slot, energy_charge
from gridledger.ledger.block import Block
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds.alarm import Alarm
from gridledger.ledger.kinds.meter_issue import MeterIssue
from gridledger.ledger.kinds.reading import ReadingError, ReadingValues, open_reading
from gridledger.ledger.kinds.reading_batch import readings_of
from gridledger.ledger.kinds.reward import PERIOD_MINUTES, Reward, Scorecard, reward_amounts, score_of
from gridledger.ledger.kinds.transfer import Transfer
from gridledger.ledger.members import roster
from gridledger.ledger.units import WS_PER_WH
from gridledger.petra.onchain import Move, classify
from gridledger.sim.network import concentrator_id, content_keys
from gridledger.sim.run import TABLE_COLUMNS, RunParams
from gridledger.store import StoreError
from gridledger.store.postgres import redact
from gridledger.tiers.audit import check_anchors, check_prices
from gridledger.tiers.hierarchy import open_location

#: The run folder's chain manifest (``chains/tiers.json``) and the tables the audit reads.
MANIFEST = Path("chains") / "tiers.json"
TABLES = (
    "readings",
    "households",
    "bills",
    "dso_meter_periods",
    "dso_feeder_slots",
    "rewards",
    "trades",
    "alarms",
    "blocks",
    "meter_deposit_addresses",
)
READING_COLUMNS = tuple(c for c in TABLE_COLUMNS["readings"] if c not in ("meter", "slot"))
BILL_COLUMNS = tuple(c for c in TABLE_COLUMNS["bills"] if c not in ("meter", "slot"))

Progress = Callable[[str, int, int], None]
Opened = dict[tuple[str, int], ReadingValues]


class NotARun(ValueError):
    """The folder is not a community run (no ``chains/tiers.json``)."""


@dataclass(frozen=True)
class Finding:
    """One disagreement: which ``check``, ``where`` (chain/height/tx, or table/key/column), expected vs found."""

    check: str
    where: str
    expected: str
    found: str

    def __str__(self) -> str:
        return f"{self.check}: {self.where}: expected {self.expected}, found {self.found}"


@dataclass
class Audit:
    """The audit's outcome: every finding, and how many things of each kind were checked."""

    findings: list[Finding] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def ok(self) -> bool:
        return not self.findings

    def add(self, check: str, where: str, expected: object, found: object) -> None:
        self.findings.append(Finding(check, where, str(expected), str(found)))

    def to_json(self) -> dict:
        return {"ok": self.ok, "checked": dict(self.checked), "findings": [asdict(f) for f in self.findings]}


@dataclass
class _Nan:
    """What one NAN chain holds for the audit, decoded and (readings) decrypted."""

    name: str
    feeder: str
    chain: Chain
    readings: dict[tuple[str, int], ReadingValues] = field(default_factory=dict)
    timed: dict[str, list[Timed]] = field(default_factory=lambda: defaultdict(list))
    issued: dict[str, list[tuple[int, Asset]]] = field(default_factory=lambda: defaultdict(list))
    deposited: dict[str, list[tuple[int, Asset]]] = field(default_factory=lambda: defaultdict(list))
    rewards: list[tuple[int, int, Reward]] = field(default_factory=list)
    trades: set[str] = field(default_factory=set)

    @property
    def members(self) -> tuple[str, ...]:
        return roster(self.chain.state).ids

    def record(self, tx, slot: int, height: int, index: int, owner: dict[bytes, str]) -> None:
        """Note a committed transaction: a meter's issue, a reward, a trade, outputs to a meter's address.

        A trade is as :func:`gridledger.petra.onchain.classify` tells, given the meters' deposit addresses.
        """
        if isinstance(tx, MeterIssue):
            self.issued[tx.meter] += [(slot, o.asset) for o in tx.outputs]
        elif isinstance(tx, Reward):
            self.rewards.append((height, index, tx))
        elif isinstance(tx, Transfer) and classify(tx, owner) is Move.TRADE:
            self.trades.add(tx.txid.hex())
        for o in getattr(tx, "outputs", ()):
            if o.owner in owner:
                self.deposited[owner[o.owner]].append((slot, o.asset))


def audit_run(path: str | Path, progress: Progress | None = None) -> Audit:
    """Audit the run folder ``path``; raise :class:`NotARun` if it holds no run."""
    run = Path(path)
    if not (run / MANIFEST).is_file():
        raise NotARun(f"{run} is not a community run folder (no {MANIFEST})")
    audit = Audit()
    step = progress or (lambda what, done, total: None)
    with ExitStack() as stack:
        chains = _verify_chains(run, audit, stack, step)
        if chains is None:
            return audit
        tables = _tables(run, audit)
        step("blocks", 0, 1)
        nans, seen = _read_chains(chains, tables.get("meter_deposit_addresses"), audit)
        step("blocks", 1, 1)
        if not any(n.readings for n in nans):
            audit.add("reading", "chains/", "a NAN chain with its meters' readings", "none")
            return audit
        slots = max(s for n in nans for _, s in n.readings) + 1
        _check_prices(chains, audit)
        _check_tiers(chains, seen.readings, audit)
        _check_han(chains, seen.readings, tables, audit)
        summary = _summary(run, audit)
        period_slots = _billing_slots(summary, audit)
        bills = _check_measurements_and_bills(nans, tables, slots, period_slots, audit, step)
        rewards = _check_rewards(nans, tables, slots, audit)
        _check_blocks_alarms_trades(seen, nans, tables, audit)
        if summary is not None:
            _check_summary(summary, chains, seen, nans, tables, bills, rewards, slots, audit)
    return audit


# ------------------------------------------------------------------------------------------------ chains
def _verify_chains(run: Path, audit: Audit, stack: ExitStack, step: Progress) -> dict[str, tuple[dict, Chain]] | None:
    """Every copy of every chain re-verified; each chain's first valid copy, opened (None: no usable manifest)."""
    try:
        entries = json.loads((run / MANIFEST).read_text())["chains"]
        names = [(e["name"], e["tier"], e.get("parent"), list(e["stores"])) for e in entries]
    except (OSError, ValueError, KeyError, TypeError) as e:
        audit.add("chain", str(MANIFEST), "a manifest naming every chain and its stores", str(e))
        return None
    chains: dict[str, tuple[dict, Chain]] = {}
    for k, (name, tier, parent, stores) in enumerate(names):
        step("chains", k, len(names))
        tips: dict[str, bytes] = {}
        for file in stores:
            where = f"{name} ({redact(file)})"
            if "://" not in file and not (run / "chains" / file).is_file():
                audit.add("chain", where, "a chain store", "no such file")
                continue
            try:
                store = open_location(run / "chains", file)  # a SQLite file, or a PostgreSQL schema (--store)
                stack.callback(store.close)
                state = verify_store(store)
                genesis = Block.decode(store.block_bytes(0))
            except Reject as e:
                at = "".join(f" {what} {n}" for what, n in (("block", e.height), ("tx", e.tx_index)) if n is not None)
                audit.add("chain", where + at, "a valid chain", f"{e.code}: {e.message}")
                continue
            except StoreError as e:
                audit.add("chain", where, "a readable store", str(e))
                continue
            audit.checked["chain stores"] += 1
            audit.checked["blocks verified"] += state.height + 1
            tips[file] = state.tip_hash
            if name not in chains:
                chains[name] = ({"tier": tier, "parent": parent}, Chain(store, state, genesis))
        if len(set(tips.values())) > 1:
            first = next(iter(tips))
            for file, tip in tips.items():
                if tip != tips[first]:
                    audit.add(
                        "chain", f"{name} ({file})", f"the tip of {first}, {tips[first].hex()[:16]}", tip.hex()[:16]
                    )
    step("chains", len(names), len(names))
    audit.checked["chains"] = len(chains)
    try:
        covered = check_anchors(c for _, c in chains.values())
    except Reject as e:
        audit.add("anchors", "chains/", "every anchor's root over its child's blocks", e.message)
        covered = {}
    for name, (meta, chain) in chains.items():
        if meta["parent"] is None:
            continue
        got = covered.get(chain.genesis.chain, 0)
        if got != chain.height + 1:
            found = f"blocks 0..{got - 1}" if got else "none"
            audit.add("anchors", name, f"blocks 0..{chain.height} anchored in {meta['parent']}", found)
        else:
            audit.checked["anchored blocks"] += got
    return chains


@dataclass
class _Committed:
    """What the chains committed, decoded once: readings opened per chain, block rows and alarms for the tables."""

    readings: dict[str, Opened] = field(default_factory=dict)
    blocks: dict[tuple[str, int], dict] = field(default_factory=dict)
    alarms: dict[tuple[str, int, int], dict] = field(default_factory=dict)


def _read_chains(
    chains: dict[str, tuple[dict, Chain]], addresses: pd.DataFrame | None, audit: Audit
) -> tuple[list[_Nan], _Committed]:
    """Decode every chain's blocks once and open its readings; for each NAN also its meters' issues, deposits and
    rewards."""
    owner = {}
    if addresses is not None and {"meter", "deposit_address"} <= set(addresses.columns):
        owner = {bytes.fromhex(a): m for m, a in zip(addresses["meter"], addresses["deposit_address"], strict=True)}
    keys = content_keys()
    nans, seen = [], _Committed()
    for name, (meta, chain) in chains.items():
        state, chain_keys, ids = chain.state, keys.chain(chain.chain_id), roster(chain.state).ids
        opened: Opened = seen.readings.setdefault(name, {})
        nan = _Nan(name, _feeder(name), chain) if meta["tier"] == "nan" else None
        for block in chain.blocks(1):
            slot = state.slot_of(block.header.time)
            if block.height >= 2:  # blocks 0 and 1 (genesis, the DSO's enrolment) precede the run
                seen.blocks[(name, block.height)] = {
                    "tier": meta["tier"],
                    "slot": slot,
                    "transactions": len(block.transactions),
                }
            for i, tx in enumerate(block.transactions):
                for r in readings_of(tx):  # a READING, or each minute of a READING_BATCH
                    try:
                        opened[(ids[r.member], r.minute)] = open_reading(chain.chain_id, r, chain_keys.key_of(r))
                    except ReadingError as e:
                        audit.add("reading", f"{name} block {block.height} tx {i}", "a reading that opens", e)
                if isinstance(tx, Alarm):
                    seen.alarms[(name, block.height, i)] = {
                        "slot": slot,
                        "code": tx.code,
                        "subject": tx.subject.hex(),
                        "detector": tx.detector,
                    }
                if nan is not None:
                    nan.record(tx, slot, block.height, i, owner)
        audit.checked["readings decrypted"] += len(opened)
        if nan is not None:
            L = chain.genesis.slot_seconds
            for (meter, minute), v in opened.items():
                nan.readings[(meter, minute * 60 // L)] = v
                nan.timed[meter].append((minute, v))
            nans.append(nan)
    return nans, seen


def _check_tiers(chains: dict[str, tuple[dict, Chain]], opened: dict[str, Opened], audit: Audit) -> None:
    """Each NAN's and the FAN/WAN's coordinator reports on its parent chain the sum of its members' readings."""
    for name, (meta, _) in chains.items():
        parent = meta["parent"]
        if meta["tier"] not in ("nan", "fan") or parent not in opened:
            continue
        reporter = name.split(":", 1)[-1]  # the chain's instance: its coordinator's member id on the parent
        sums: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for (_, minute), v in opened[name].items():
            sums[minute][0] += v.consumption_wh
            sums[minute][1] += v.production_wh
        reported = {minute: v for (member, minute), v in opened[parent].items() if member == reporter}
        for minute in sorted(set(sums) | set(reported)):
            v = reported.get(minute)
            got = None if v is None else [v.consumption_wh, v.production_wh]
            audit.checked["tier summaries"] += 1
            if got != sums.get(minute):
                where = f"{parent} member {reporter} minute {minute} (consumption, production Wh)"
                audit.add("tiers", where, f"the sum of {name}'s readings {sums.get(minute)}", got)


#: The households.parquet columns of each HAN device's reading (consumption, production), as the run reports them.
DEVICE_COLUMNS = {
    "load": ("load_wh", None),
    "pv": (None, "pv_wh"),
    "battery": ("battery_charge_wh", "battery_discharge_wh"),
}


def _check_han(
    chains: dict[str, tuple[dict, Chain]], opened: dict[str, Opened], tables: dict[str, pd.DataFrame], audit: Audit
) -> None:
    """Each HAN device's readings against households.parquet, summed over the slots each reading covers."""
    frame = tables.get("households")
    columns = {c for pair in DEVICE_COLUMNS.values() for c in pair if c}
    if frame is None or not {"meter", "slot", *columns} <= set(frame.columns):
        return
    by_meter = {m: rows.set_index("slot").sort_index() for m, rows in frame.groupby("meter")}
    for name, (meta, chain) in chains.items():
        if meta["tier"] != "han":
            continue
        meter, L = name.split(":", 1)[-1], chain.genesis.slot_seconds
        rows = by_meter.get(meter)
        last: dict[str, int] = {}
        for (device, minute), v in sorted(opened[name].items(), key=lambda kv: kv[0][1]):
            first = last.get(device, -1) + 1  # a reading covers the minutes since the device's previous one
            last[device] = minute
            span = (first * 60 // L, minute * 60 // L)
            for column, value in zip(DEVICE_COLUMNS.get(device, ()), (v.consumption_wh, v.production_wh), strict=False):
                if column is None:
                    continue
                got = None if rows is None else int(rows.loc[span[0] : span[1], column].sum())
                audit.checked["HAN readings"] += 1
                if got != value:
                    where = f"households.parquet meter={meter} slots {span[0]}..{span[1]} {column}"
                    audit.add("reading", where, f"{value} ({name} {device} minute {minute})", got)


def _feeder(nan_name: str) -> str:
    """The feeder of the NAN chain ``nan:DC-<feeder>`` (:func:`.network.concentrator_id`)."""
    instance = nan_name.split(":", 1)[-1]
    feeder = instance.removeprefix(concentrator_id(""))
    assert concentrator_id(feeder) == instance, nan_name
    return feeder


def _check_prices(chains: dict[str, tuple[dict, Chain]], audit: Audit) -> None:
    """Every price policy below the head-end is on its parent chain (so every price in force on a NAN, including a
    feeder's reprice by the DSO's microgrid controller, was committed on the FAN/WAN and the head-end first)."""
    for name, (meta, chain) in chains.items():
        parent = chains.get(meta["parent"]) if meta["parent"] else None
        if parent is None:
            continue
        try:
            audit.checked["replicated prices"] += check_prices(chain, parent[1])
        except Reject as e:
            audit.add("prices", name, f"only prices its parent {meta['parent']} holds", e.message)
    if not any(meta["tier"] == "head" for meta, _ in chains.values()):
        audit.add("prices", "chains/", "a head-end chain", "none")


# ------------------------------------------------------------------------------------------------ tables
def _tables(run: Path, audit: Audit) -> dict[str, pd.DataFrame]:
    out = {}
    for name in TABLES:
        p = run / f"{name}.parquet"
        try:
            out[name] = pd.read_parquet(p)
        except FileNotFoundError:
            audit.add("table", p.name, "the table", "no such file")
        except (OSError, ValueError) as e:
            audit.add("table", p.name, "a Parquet table", " ".join(str(e).split())[:200])
    return out


def _compare(
    audit: Audit,
    check: str,
    tables: dict[str, pd.DataFrame],
    name: str,
    keys: tuple[str, ...],
    columns: tuple[str, ...],
    expected: dict[tuple, dict],
) -> None:
    """Compare table ``name`` with ``expected`` (key tuple → {column: value}): rows missing, extra, or different."""
    frame = tables.get(name)
    if frame is None:
        return  # already a finding
    absent = [c for c in (*keys, *columns) if c not in frame.columns]
    if absent:
        audit.add("table", f"{name}.parquet", f"columns {', '.join(absent)}", "none")
        return
    keyed = list(zip(*(frame[k].tolist() for k in keys), strict=True))
    values = list(zip(*(frame[c].tolist() for c in columns), strict=True)) if columns else [()] * len(frame)
    rows = dict(zip(keyed, values, strict=True))
    if len(rows) < len(frame):
        audit.add(check, f"{name}.parquet", "one row per key", f"{len(frame) - len(rows)} repeated")

    def where(key: tuple, column: str = "") -> str:
        return (
            f"{name}.parquet "
            + " ".join(f"{k}={v}" for k, v in zip(keys, key, strict=True))
            + (f" {column}" if column else "")
        )

    for key, want in expected.items():
        got = rows.pop(key, None)
        audit.checked[f"{name} rows"] += 1
        if got is None:
            audit.add(check, where(key), "a row", "none")
            continue
        for column, value in zip(columns, got, strict=True):
            if want[column] != value:
                audit.add(check, where(key, column), str(want[column]), str(value))
    for key in rows:
        audit.add(check, where(key), "no row (nothing on the chain)", "a row")


# ------------------------------------------------------------------------------------------------ measurements, bills
def _check_measurements_and_bills(
    nans: list[_Nan], tables: dict[str, pd.DataFrame], slots: int, period_slots: int, audit: Audit, step: Progress
) -> dict[tuple[str, int], tuple[int, int]]:
    """Readings and bills from the NAN chains vs the tables; returns (amount, baseline) per (meter, slot)."""
    readings, households, feeder_slots, bills, periods = {}, {}, {}, {}, defaultdict(lambda: [0, 0])
    meters = [(nan, m) for nan in nans for m in nan.members]
    for k, (nan, meter) in enumerate(meters):
        step("bills", k, len(meters))
        L = nan.chain.genesis.slot_seconds
        issued, deposited = nan.issued.get(meter, []), nan.deposited.get(meter, [])
        issued_at, deposited_at = _energy_by_slot(issued), _energy_by_slot(deposited)
        fa_issued, fa_deposited = _fa_by_slot(issued), _fa_by_slot(deposited)
        for s in range(slots):
            v = nan.readings.get((meter, s))
            if v is None:
                audit.add("reading", f"{nan.name} meter {meter} slot {s}", "a reading", "none")
                continue
            readings[(meter, s)] = {
                "feeder": nan.feeder,
                "consumption_wh": v.consumption_wh,
                "production_wh": v.production_wh,
                "voltage_dv": v.voltage_dv,
                "current_ca": v.current_ca,
                "power_factor_pm": v.power_factor_pm,
            }
            net = v.consumption_wh - v.production_wh
            households[(meter, s)] = {"feeder": nan.feeder, "net_wh": net}
            total = feeder_slots.setdefault((nan.feeder, s), {"import_wh": 0, "export_wh": 0})
            total["import_wh"] += v.consumption_wh
            total["export_wh"] += v.production_wh
            prices = nan.chain.state.policy.prices(s)
            if prices is None:
                audit.add("prices", f"{nan.name} slot {s}", "prices in force", "none")
                continue
            b = bill_slot(
                s,
                net,
                issued_at.get(s, ()),
                deposited_at.get(s, ()),
                prices,
                L,
                fa_issued=fa_issued.get(s, 0),
                fa_deposited=fa_deposited.get(s, 0),
            )
            if not b.eca_audit_ok:
                audit.add(
                    "bill",
                    f"{nan.name} meter {meter} slot {s}",
                    "ECA legs equal to EPA legs",
                    f"{b.eca_mismatch_ws} W·s apart",
                )
            bills[(meter, s)] = {
                "feeder": nan.feeder,
                "measured_ws": b.measured_ws,
                "energy_ws": b.energy_ws,
                "energy_charge": b.energy_charge,
                "fa_issued": b.fa_issued,
                "fa_deposited": b.fa_deposited,
                "amount": b.amount,
                "baseline_amount": energy_charge(net * WS_PER_WH, prices),
                "eca_audit_ok": b.eca_audit_ok,
            }
            row = periods[(meter, s // period_slots)]
            row[0] += b.energy_ws
            row[1] += b.amount
    step("bills", len(meters), len(meters))
    _compare(audit, "reading", tables, "readings", ("meter", "slot"), READING_COLUMNS, readings)
    _compare(audit, "reading", tables, "households", ("meter", "slot"), ("feeder", "net_wh"), households)
    _compare(audit, "dso", tables, "dso_feeder_slots", ("feeder", "slot"), ("import_wh", "export_wh"), feeder_slots)
    _compare(audit, "bill", tables, "bills", ("meter", "slot"), BILL_COLUMNS, bills)
    dso = {k: {"energy_ws": e, "amount": a} for k, (e, a) in periods.items()}
    _compare(audit, "dso", tables, "dso_meter_periods", ("meter", "period"), ("energy_ws", "amount"), dso)
    return {k: (b["amount"], b["baseline_amount"]) for k, b in bills.items()}


def _energy_by_slot(records: Iterable[tuple[int, Asset]]) -> dict[int, list[Asset]]:
    """The EPA/ECA assets covering each slot."""
    out: dict[int, list[Asset]] = defaultdict(list)
    for _, a in records:
        if a.kind != AssetKind.FA:
            for t in range(a.start, a.end):
                out[t].append(a)
    return out


def _fa_by_slot(records: Iterable[tuple[int, Asset]]) -> dict[int, int]:
    """FA amounts by the slot of the block that committed them (where the meter counts them)."""
    out: dict[int, int] = defaultdict(int)
    for t, a in records:
        if a.kind == AssetKind.FA:
            out[t] += a.amount
    return out


# ------------------------------------------------------------------------------------------------ rewards
def _check_rewards(nans: list[_Nan], tables: dict[str, pd.DataFrame], slots: int, audit: Audit) -> int:
    """Every period's REWARD vs the rule over the decrypted readings, and ``rewards.parquet``; returns the total
    paid on the chains (minor units)."""
    expected_rows, paid = {}, 0
    for nan in nans:
        L = nan.chain.genesis.slot_seconds
        periods = range(1, slots * L // (60 * PERIOD_MINUTES))  # every day after the first that is over
        on_chain: dict[int, dict[int, tuple[str, int, Scorecard, int]]] = defaultdict(dict)
        for height, i, tx in nan.rewards:
            paid_members = [m for m, _ in reward_amounts(tx.rate, tx.cards)]
            amounts = dict(zip(paid_members, (o.asset.amount for o in tx.outputs), strict=False))
            paid += sum(o.asset.amount for o in tx.outputs)
            for card in tx.cards:
                on_chain[tx.period][card.member] = (
                    f"{nan.name} block {height} tx {i}",
                    tx.rate,
                    card,
                    amounts.get(card.member, 0),
                )
        extra = set(on_chain) - set(periods)
        for period in sorted(extra):
            audit.add("reward", f"{nan.name} period {period}", "no reward (not a closed period)", "a reward")
        for period in periods:
            for index, meter in enumerate(nan.members):
                components = period_score(nan.timed.get(meter, []), period).components
                score = score_of(components)
                where = f"{nan.name} period {period} member {index} ({meter})"
                found = on_chain[period].get(index)
                audit.checked["rewards"] += 1
                if found is None:
                    audit.add("reward", where, f"a scorecard {components}", "none on the chain")
                    continue
                tx_where, rate, card, amount = found
                want = reward_amounts(rate, [Scorecard(index, *components, score)])
                want_amount = want[0][1] if want else 0
                if card.components != components:
                    audit.add("reward", f"{tx_where} {where} components", str(components), str(card.components))
                if amount != want_amount:
                    audit.add("reward", f"{tx_where} {where} amount", str(want_amount), str(amount))
                expected_rows[(nan.feeder, period, meter)] = {
                    "forecast_adherence": components[0],
                    "power_quality": components[1],
                    "peak_reduction": components[2],
                    "score": score,
                    "amount": want_amount,
                }
    columns = ("forecast_adherence", "power_quality", "peak_reduction", "score", "amount")
    _compare(audit, "reward", tables, "rewards", ("feeder", "period", "meter"), columns, expected_rows)
    return paid


# ------------------------------------------------------------------------------------- blocks, alarms, trades
def _check_blocks_alarms_trades(
    seen: _Committed, nans: list[_Nan], tables: dict[str, pd.DataFrame], audit: Audit
) -> None:
    _compare(audit, "blocks", tables, "blocks", ("chain", "height"), ("tier", "slot", "transactions"), seen.blocks)
    columns = ("slot", "code", "subject", "detector")
    _compare(audit, "alarm", tables, "alarms", ("chain", "height", "tx_index"), columns, seen.alarms)
    trades = tables.get("trades")
    if trades is None or not {"feeder", "txid"} <= set(trades.columns):
        return
    committed = {nan.feeder: nan.trades for nan in nans}
    listed: set[tuple[str, str]] = set()
    for feeder, txid in zip(trades["feeder"], trades["txid"], strict=True):
        audit.checked["trades"] += 1
        where = f"trades.parquet feeder={feeder} txid={txid}"
        if txid not in committed.get(feeder, ()):
            audit.add("trade", where, "a trade committed on its NAN", "none")
        elif (feeder, txid) in listed:
            audit.add("trade", where, "one row", "another row of the same trade")
        listed.add((feeder, txid))
    for feeder, txids in sorted(committed.items()):
        for txid in sorted(txids):
            if (feeder, txid) not in listed:
                audit.add("trade", f"NAN of feeder {feeder} txid={txid}", "a row in trades.parquet", "none")


# ------------------------------------------------------------------------------------------------ summary
def _summary(run: Path, audit: Audit) -> dict | None:
    p = run / "summary.json"
    try:
        summary = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        audit.add("summary", p.name, "a JSON summary", " ".join(str(e).split()))
        return None
    if not isinstance(summary, dict):
        audit.add("summary", p.name, "a JSON object", type(summary).__name__)
        return None
    return summary


def _billing_slots(summary: dict | None, audit: Audit) -> int:
    """Slots of the DSO's billing period: the run's parameter (recorded in summary.json; else the default)."""
    slots = (summary or {}).get("billing_slots", RunParams().billing_slots)
    if type(slots) is not int or slots < 1:
        audit.add("summary", "summary.json billing_slots", "a positive integer", repr(slots))
        return RunParams().billing_slots
    return slots


def _check_summary(
    summary: dict,
    chains: dict[str, tuple[dict, Chain]],
    seen: _Committed,
    nans: list[_Nan],
    tables: dict[str, pd.DataFrame],
    bills: dict[tuple[str, int], tuple[int, int]],
    rewards_paid: int,
    slots: int,
    audit: Audit,
) -> None:
    L = nans[0].chain.genesis.slot_seconds
    head = next((c for meta, c in chains.values() if meta["tier"] == "head"), None)
    base = head.state.policy.prices(0) if head is not None else None
    expected = {
        "homes": sum(len(n.members) for n in nans),
        "feeders": len(nans),
        "slots": slots,
        "slot_seconds": L,
        "days": slots * L // 86_400,
        "blocks": sum(c.height for _, c in chains.values()),
        "total_bill_minor": sum(a for a, _ in bills.values()),
        "baseline_bill_minor": sum(b for _, b in bills.values()),
        "alarms": len(seen.alarms),
        "rewards_minor": rewards_paid,
    }
    if base is not None:
        expected["prices_per_kwh"] = {"consumption": base[0], "production": base[1]}
    trades = tables.get("trades")
    if trades is not None and {"txid", "power_w"} <= set(trades.columns):
        expected["trades"] = int(trades["txid"].nunique())
        expected["energy_traded_wh"] = int(trades["power_w"].sum()) * L / 3600
    for key, want in expected.items():
        audit.checked["summary keys"] += 1
        if key not in summary:
            audit.add("summary", f"summary.json {key}", str(want), "no such key")
        elif summary[key] != want:
            audit.add("summary", f"summary.json {key}", str(want), str(summary[key]))
