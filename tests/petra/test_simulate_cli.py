"""``gridledger market simulate``: private market rounds from the command line, on a chain that verifies."""

from __future__ import annotations

from typer.testing import CliRunner

from gridledger.chain import Chain, verify_store
from gridledger.cli import app
from gridledger.ledger.kinds.transfer import Transfer
from gridledger.store.sqlite import SqliteStore


def test_simulate_runs_rounds_and_leaves_a_valid_chain(tmp_path):
    out = tmp_path / "sim"
    result = CliRunner().invoke(app, ["market", "simulate", "--prosumers", "6", "--rounds", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "DSO view" in result.output and "gridledger verify" in result.output
    store = SqliteStore(out / "chain.sqlite")
    try:
        state = verify_store(store)
        transfers = [tx for b in Chain.open(store).blocks(1) for tx in b.transactions if isinstance(tx, Transfer)]
    finally:
        store.close()
    assert state.height >= 4 and transfers  # mixes, trades and deposits are real transfers


def test_simulate_refuses_an_existing_chain(tmp_path):
    (tmp_path / "chain.sqlite").write_bytes(b"")
    result = CliRunner().invoke(app, ["market", "simulate", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "already exists" in result.output
