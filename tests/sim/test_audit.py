"""`gridledger audit`: a real community run audits clean; each kind of tampering fails it with its own finding."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from gridledger.chain import Chain
from gridledger.cli import app
from gridledger.ledger.kinds.transfer import Transfer
from gridledger.profiles.community import generate_community
from gridledger.sim.audit import Finding, NotARun, audit_run
from gridledger.sim.run import run_community
from gridledger.store.sqlite import SqliteStore

runner = CliRunner()
# two days: rewards pay every day after the first (day 0 has no reference), so a 1-day run has none to audit
HOMES, DAYS = 6, 2


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("audit") / "run"
    run_community(generate_community(HOMES, DAYS, 5, feeders=1), out)
    return out


@pytest.fixture
def run(original, tmp_path) -> Path:
    """A fresh copy of the run for one test to tamper with."""
    return Path(shutil.copytree(original, tmp_path / "run"))


def edit(run: Path, name: str, row: int, column: str, delta: int) -> tuple[pd.Series, int]:
    """Add ``delta`` to one cell of a table; returns the row and the value before."""
    frame = pd.read_parquet(run / f"{name}.parquet")
    before = int(frame.at[row, column])
    frame.at[row, column] = before + delta
    frame.to_parquet(run / f"{name}.parquet", index=False)
    return frame.loc[row], before


def only(findings: list[Finding], check: str) -> list[Finding]:
    return [f for f in findings if f.check == check]


def test_a_real_run_audits_clean(run):
    r = runner.invoke(app, ["audit", str(run)])
    assert r.exit_code == 0, r.output
    assert "audit passed" in r.output
    out = runner.invoke(app, ["audit", str(run), "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["ok"] is True and report["findings"] == []
    checked = report["checked"]
    slots = DAYS * 96
    assert checked["readings rows"] == checked["bills rows"] == HOMES * slots
    assert checked["tier summaries"] == 2 * slots  # the NAN's total on the FAN/WAN, the FAN/WAN's on the head-end
    assert checked["HAN readings"] > 0
    assert checked["rewards"] == checked["rewards rows"] == HOMES * (DAYS - 1)
    assert checked["chain stores"] == 2 * checked["chains"] == 2 * (HOMES + 3)  # HANs, the NAN, FAN/WAN, head-end
    assert checked["anchored blocks"] > 0 and checked["dso_meter_periods rows"] == HOMES


def test_an_edited_bill_is_found_with_its_meter_and_slot(run):
    row, before = edit(run, "bills", 100, "amount", 7)
    findings = audit_run(run).findings
    assert only(findings, "bill") == [
        Finding("bill", f"bills.parquet meter={row.meter} slot={row.slot} amount", str(before), str(before + 7))
    ]
    summary = json.loads((run / "summary.json").read_text())
    r = runner.invoke(app, ["audit", str(run)])
    assert r.exit_code == 1
    assert f"meter={row.meter} slot={row.slot} amount: expected {before}, found {before + 7}" in r.output
    assert summary["total_bill_minor"] == sum(pd.read_parquet(run / "bills.parquet").amount) - 7


def test_an_edited_reading_disagrees_with_the_meters_signed_reading(run):
    row, before = edit(run, "readings", 321, "consumption_wh", 150)
    findings = audit_run(run).findings
    assert (
        Finding(
            "reading",
            f"readings.parquet meter={row.meter} slot={row.slot} consumption_wh",
            str(before),
            str(before + 150),
        )
        in findings
    )
    assert only(findings, "bill") == []  # bills come from the chain's reading, which still agrees with bills.parquet


def test_an_edited_device_energy_disagrees_with_the_han_chain(run):
    frame = pd.read_parquet(run / "households.parquet")
    row = frame.index[frame.load_wh > 0][40]
    meter, slot = frame.at[row, "meter"], int(frame.at[row, "slot"])
    edit(run, "households", row, "load_wh", 25)
    [finding] = audit_run(run).findings
    assert finding.check == "reading" and finding.where.startswith(f"households.parquet meter={meter} slots ")
    first, last = map(int, finding.where.split(" slots ")[1].split()[0].split(".."))
    assert first <= slot <= last and finding.where.endswith("load_wh")
    assert int(finding.found) == int(finding.expected.split()[0]) + 25


def test_an_edited_reward_row_is_found(run):
    row, before = edit(run, "rewards", 2, "amount", 10)
    findings = audit_run(run).findings
    assert findings == [
        Finding(
            "reward",
            f"rewards.parquet feeder={row.feeder} period={row.period} meter={row.meter} amount",
            str(before),
            str(before + 10),
        )
    ]


def test_a_flipped_byte_in_a_chain_store_fails_that_chain(run):
    store = next((run / "chains").glob("nan_*.coordinator.sqlite"))
    with sqlite3.connect(store) as db:
        height, data = db.execute("SELECT height, data FROM blocks WHERE height = 5").fetchone()
    raw = bytearray(store.read_bytes())
    # a piece of the block as the file holds it (SQLite may spread a block over several pages): flip a byte in it
    pieces = (data[k : k + 64] for k in range(0, len(data) - 64, 16))
    at = next(raw.find(p) for p in pieces if raw.count(p) == 1)
    raw[at + 32] ^= 0x01
    store.write_bytes(bytes(raw))
    findings = audit_run(run).findings
    chain = only(findings, "chain")
    assert len(chain) == 1 and chain[0].where.startswith(f"nan:DC-F1 ({store.name}) block {height}"), findings
    # the members' copy of the NAN chain is intact: bills and rewards are still re-derived from it and agree
    assert only(findings, "bill") == only(findings, "reward") == []


@pytest.mark.parametrize(
    ("table", "column", "check", "key"),
    [
        ("dso_meter_periods", "amount", "dso", ("meter", "period")),
        ("dso_feeder_slots", "import_wh", "dso", ("feeder", "slot")),
        ("blocks", "transactions", "blocks", ("chain", "height")),
        ("households", "net_wh", "reading", ("meter", "slot")),
    ],
)
def test_every_derived_table_is_checked_cell_by_cell(run, table, column, check, key):
    row, before = edit(run, table, 3, column, 1)
    where = f"{table}.parquet " + " ".join(f"{k}={row[k]}" for k in key) + f" {column}"
    assert audit_run(run).findings == [Finding(check, where, str(before), str(before + 1))]


def test_a_dropped_bill_row_and_a_trade_not_on_the_chain_are_found(run):
    bills = pd.read_parquet(run / "bills.parquet")
    gone = bills.loc[7]
    bills.drop(index=7).to_parquet(run / "bills.parquet", index=False)
    trades = pd.read_parquet(run / "trades.parquet")
    real = trades.at[0, "txid"]
    trades.at[0, "txid"] = "ab" * 32
    trades.to_parquet(run / "trades.parquet", index=False)
    assert audit_run(run).findings == [
        Finding("bill", f"bills.parquet meter={gone.meter} slot={gone.slot}", "a row", "none"),
        Finding(
            "trade",
            f"trades.parquet feeder={trades.feeder[0]} txid={'ab' * 32}",
            "a trade committed on its NAN",
            "none",
        ),
        Finding("trade", f"NAN of feeder {trades.feeder[0]} txid={real}", "a row in trades.parquet", "none"),
    ]


def test_a_dropped_or_doubled_trade_row_is_found(run):
    trades = pd.read_parquet(run / "trades.parquet")
    assert len(trades) > 2
    gone = trades.loc[1]
    doubled = pd.concat([trades.drop(index=1), trades.loc[[2]]], ignore_index=True)
    doubled.to_parquet(run / "trades.parquet", index=False)
    findings = only(audit_run(run).findings, "trade")
    assert findings == [
        Finding(
            "trade",
            f"trades.parquet feeder={trades.feeder[2]} txid={trades.txid[2]}",
            "one row",
            "another row of the same trade",
        ),
        Finding("trade", f"NAN of feeder {gone.feeder} txid={gone.txid}", "a row in trades.parquet", "none"),
    ]


def test_a_committed_mix_listed_as_a_trade_is_found(run):
    """A committed transfer that is not a trade (a CoinShuffle mix: one denomination) does not pass as one."""
    store = SqliteStore(next((run / "chains").glob("nan_*.coordinator.sqlite")))
    try:
        mix = next(
            tx.txid.hex()
            for block in Chain.open(store).blocks(1)
            for tx in block.transactions
            if isinstance(tx, Transfer) and len(tx.inputs) > 1 and len({o.asset for o in tx.outputs}) == 1
        )
    finally:
        store.close()
    trades = pd.read_parquet(run / "trades.parquet")
    real, trades.at[0, "txid"] = trades.at[0, "txid"], mix
    trades.to_parquet(run / "trades.parquet", index=False)
    assert only(audit_run(run).findings, "trade") == [
        Finding(
            "trade", f"trades.parquet feeder={trades.feeder[0]} txid={mix}", "a trade committed on its NAN", "none"
        ),
        Finding("trade", f"NAN of feeder {trades.feeder[0]} txid={real}", "a row in trades.parquet", "none"),
    ]


def test_a_missing_store_copy_is_found(run):
    store = next((run / "chains").glob("han_*.members.sqlite"))
    store.unlink()
    [finding] = audit_run(run).findings
    assert finding.check == "chain" and finding.where.endswith(f"({store.name})") and finding.found == "no such file"


def test_an_edited_summary_total_is_found(run):
    summary = json.loads((run / "summary.json").read_text())
    summary["rewards_minor"] += 1
    (run / "summary.json").write_text(json.dumps(summary))
    assert audit_run(run).findings == [
        Finding(
            "summary", "summary.json rewards_minor", str(summary["rewards_minor"] - 1), str(summary["rewards_minor"])
        )
    ]


def test_a_missing_table_is_a_finding(run):
    (run / "dso_meter_periods.parquet").unlink()
    r = runner.invoke(app, ["audit", str(run), "--json"])
    assert r.exit_code == 1
    assert json.loads(r.output)["findings"] == [
        {"check": "table", "where": "dso_meter_periods.parquet", "expected": "the table", "found": "no such file"}
    ]


def test_a_folder_that_is_not_a_run_is_one_error_line(tmp_path):
    (tmp_path / "summary.json").write_text("{}")
    r = runner.invoke(app, ["audit", str(tmp_path)])
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [f"error: {tmp_path} is not a community run folder (no chains/tiers.json)"]
    with pytest.raises(NotARun):
        audit_run(tmp_path / "absent")
