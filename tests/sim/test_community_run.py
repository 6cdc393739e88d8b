"""The community run end to end on a small community: every chain verifies, trades conserve energy, every bill is
recomputed from the chain and the meters' records, the summary agrees with the tables, the DSO view is coarse."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest

from gridledger.chain import verify_store
from gridledger.ledger.assets import AssetKind
from gridledger.ledger.billing import bill_slot
from gridledger.ledger.block import Block
from gridledger.ledger.kinds.alarm import Alarm
from gridledger.ledger.kinds.anchor import next_height_key
from gridledger.ledger.kinds.meter_issue import MeterIssue
from gridledger.ledger.kinds.reading import Reading, open_reading
from gridledger.ledger.kinds.reward import Reward
from gridledger.ledger.kinds.transfer import Transfer
from gridledger.ledger.members import roster
from gridledger.profiles.community import parse_community
from gridledger.sim.network import content_keys
from gridledger.sim.run import RunError, RunParams, run_community
from gridledger.store.sqlite import SqliteStore

SLOT_S = 3600
DAYS = 2


def community(homes: int = 6, feeders: int = 2, days: int = DAYS):
    rows = [
        {
            "id": f"MI{i:03d}",
            "feeder": f"F{i % feeders}",
            "annual_kwh": 1500 + 150 * i,
            **({"pv_kw": 3.0} if i % 3 == 0 else {}),
            **({"battery_wh": 4000} if i % 4 == 0 else {}),
        }
        for i in range(homes)
    ]
    return parse_community(
        {
            "community": {
                "name": "test",
                "location": "morelia",
                "slot_seconds": SLOT_S,
                "start": "2024-04-11",
                "days": days,
            },
            "feeders": [
                {"id": f"F{k}", "internal_capacity_w": 40_000, "external_capacity_w": 25_000} for k in range(feeders)
            ],
            "homes": rows,
            "prices": {"consumption_per_kwh": 120, "production_per_kwh": 80},
            "dso": {"max_epa_w": 10_000, "max_eca_w": 10_000, "credit_fa": 100_000},
        }
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("sim") / "run"
    done = []
    summary = run_community(community(), out, progress=lambda d, t: done.append((d, t)), params=RunParams(seed=1))
    assert done[-1] == (DAYS * 24, DAYS * 24)
    return out, summary


def table(out: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(out / f"{name}.parquet")


def chains(out: Path) -> list[dict]:
    return json.loads((out / "chains" / "tiers.json").read_text())["chains"]


def blocks(out: Path, store: str) -> list[Block]:
    s = SqliteStore(out / "chains" / store)
    try:
        return [Block.decode(raw) for _, raw in s.iter_blocks(0)]
    finally:
        s.close()


def test_every_store_of_every_chain_verifies_and_is_anchored_up_to_the_head_end(run):
    out, summary = run
    states = {}
    for chain in chains(out):
        tips = []
        for store in chain["stores"]:
            s = SqliteStore(out / "chains" / store)
            try:
                states[chain["name"]] = verify_store(s)
            finally:
                s.close()
            tips.append(states[chain["name"]].tip_hash)
        assert len(set(tips)) == 1, f"{chain['name']}: the coordinator's and the members' copies differ"
    assert {c["tier"] for c in chains(out)} == {"han", "nan", "fan", "head"}
    for chain in chains(out):
        if chain["parent"] is not None:
            anchored = states[chain["parent"]].nonces[next_height_key(bytes.fromhex(chain["chain_id"]))]
            assert anchored == states[chain["name"]].height + 1, chain["name"]
    assert summary["blocks"] == sum(state.height for state in states.values())
    enrolments = len(states)  # block 1 of every chain (the DSO enrols its members) comes before the run
    assert len(table(out, "blocks")) == summary["blocks"] - enrolments


def test_trades_happened_and_conserve_energy_and_money(run):
    """Over each NAN chain, every EPA/ECA W issued for a slot and every FA issued comes back to the meters' deposit
    addresses: the market moves assets between meters, it creates and destroys none."""
    out, summary = run
    assert summary["trades"] > 0 and summary["energy_traded_wh"] > 0
    for chain in chains(out):
        if chain["tier"] != "nan":
            continue
        issued: dict[tuple, int] = defaultdict(int)
        returned: dict[tuple, int] = defaultdict(int)
        meters = set(table(out, "meter_deposit_addresses").deposit_address.map(bytes.fromhex))
        for block in blocks(out, chain["stores"][0]):
            for tx in block.transactions:
                if isinstance(tx, MeterIssue):
                    book, outs = issued, tx.outputs
                elif isinstance(tx, Transfer):
                    book, outs = returned, [o for o in tx.outputs if o.owner in meters]
                else:
                    continue
                for o in outs:
                    a = o.asset
                    for t in a.slots if a.kind != AssetKind.FA else [None]:
                        book[(a.kind, t)] += a.amount
        assert issued and issued == returned


def test_bills_are_recomputed_from_the_chain_and_the_meters_records(run):
    out, _ = run
    bills = table(out, "bills").set_index(["meter", "slot"])
    addresses = table(out, "meter_deposit_addresses")
    owner = {bytes.fromhex(a): m for m, a in zip(addresses.meter, addresses.deposit_address, strict=True)}
    keys = content_keys()
    checked = 0
    for chain in chains(out):
        if chain["tier"] != "nan":
            continue
        s = SqliteStore(out / "chains" / chain["stores"][0])
        try:
            state = verify_store(s)
        finally:
            s.close()
        ids = roster(state).ids
        chain_keys = keys.chain(state.chain_id)
        issued, deposited, measured = defaultdict(list), defaultdict(list), {}
        for block in blocks(out, chain["stores"][0]):
            slot = state.slot_of(block.header.time)
            for tx in block.transactions:
                if isinstance(tx, MeterIssue):
                    issued[tx.meter] += [(slot, o.asset) for o in tx.outputs]
                elif isinstance(tx, Transfer):
                    for o in tx.outputs:
                        if o.owner in owner:
                            deposited[owner[o.owner]].append((slot, o.asset))
                elif isinstance(tx, Reading):
                    v = open_reading(state.chain_id, tx, chain_keys.key_of(tx))
                    measured[(ids[tx.member], tx.minute * 60 // SLOT_S)] = v.consumption_wh - v.production_wh
        for (meter, slot), m in measured.items():

            def fa(records, slot=slot):
                return sum(a.amount for t, a in records if t == slot and a.kind == AssetKind.FA)

            b = bill_slot(
                slot,
                m,
                [a for _, a in issued[meter]],
                [a for _, a in deposited[meter]],
                state.policy.prices(slot),
                SLOT_S,
                fa_issued=fa(issued[meter]),
                fa_deposited=fa(deposited[meter]),
            )
            row = bills.loc[(meter, slot)]
            assert (b.energy_ws, b.amount, b.eca_audit_ok) == (row.energy_ws, row.amount, True), (meter, slot)
            checked += 1
    assert checked == len(bills) == 6 * DAYS * 24


def test_summary_agrees_with_the_tables(run):
    out, summary = run
    assert json.loads((out / "summary.json").read_text()) == summary
    trades, bills, rewards = table(out, "trades"), table(out, "bills"), table(out, "rewards")
    assert summary["homes"] == 6 and summary["slots"] == DAYS * 24
    assert summary["trades"] == trades.txid.nunique()
    assert summary["energy_traded_wh"] == trades.power_w.sum() * SLOT_S / 3600
    assert summary["total_bill_minor"] == bills.amount.sum()
    assert summary["baseline_bill_minor"] == bills.baseline_amount.sum()
    assert summary["total_bill_minor"] != summary["baseline_bill_minor"]
    assert summary["rewards_minor"] == rewards.amount.sum()
    assert set(rewards.period) == set(range(1, DAYS))
    on_chain_alarms = sum(
        isinstance(tx, Alarm) for c in chains(out) for b in blocks(out, c["stores"][0]) for tx in b.transactions
    )
    assert summary["alarms"] == len(table(out, "alarms")) == on_chain_alarms
    paid = sum(
        o.asset.amount
        for c in chains(out)
        if c["tier"] == "nan"
        for b in blocks(out, c["stores"][0])
        for tx in b.transactions
        if isinstance(tx, Reward)
        for o in tx.outputs
    )
    assert paid == summary["rewards_minor"]
    orders = table(out, "orders")
    assert set(trades.offer_id) | set(trades.bid_id) <= set(orders.order_id)
    assert not {"meter", "address"} & set(orders.columns)


def test_the_dso_view_holds_no_per_meter_per_slot_data(run):
    out, _ = run
    feeders, meters = table(out, "dso_feeder_slots"), table(out, "dso_meter_periods")
    assert list(feeders.columns) == ["feeder", "slot", "import_wh", "export_wh"]
    assert list(meters.columns) == ["meter", "period", "energy_ws", "amount"]
    assert len(meters) == 6 and meters.period.nunique() == 1
    bills = table(out, "bills")
    assert meters.amount.sum() == bills.amount.sum()
    readings = table(out, "readings")
    per_feeder = readings.groupby(["feeder", "slot"])[["consumption_wh", "production_wh"]].sum()
    assert (per_feeder.values == feeders.set_index(["feeder", "slot"]).values).all()


def test_bad_runs_are_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old").write_text("an earlier run")
    with pytest.raises(RunError, match="holds an earlier run; use --resume"):
        run_community(community(), out)
    with pytest.raises(RunError, match="feeder 'F1': 2 homes"):
        run_community(community(homes=5), tmp_path / "other")
    assert not (tmp_path / "other").exists()
