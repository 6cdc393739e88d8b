"""A prosumer's process killed and started again: its meter recovers from the chain what it issued (nonce, limits,
the bill), and its wallets recover their keys from the journal, so no coin and no deposit is lost."""

from __future__ import annotations

import os
import stat

import pytest

from gridledger.ledger.assets import ECA, EPA, AssetKind
from gridledger.node.durable import SEED_BYTES, KeyJournal
from gridledger.petra.meter import MeterError, SmartMeter
from gridledger.petra.wallet import Wallet, combine
from tests.petra.conftest import MAX_W, PRICES, SLOT_SECONDS, build_grid


def restarted(grid, meter: SmartMeter, deposits: Wallet) -> SmartMeter:
    """``meter`` as a new process makes it (same id, key and limits, nothing else), then every block scanned."""
    fresh = SmartMeter(meter.meter_id, meter.key, meter.chain_id, SLOT_SECONDS, limits=meter.limits, deposits=deposits)
    for block in grid.blocks:
        fresh.scan(block, grid.chain.state.slot_of(block.header.time))
    return fresh


def test_a_restarted_meter_takes_its_nonce_limits_and_bill_from_the_chain(tmp_path):
    grid = build_grid(2)
    meter = grid.meters["MI1"]
    journal = KeyJournal(tmp_path / "deposits.seeds")
    meter.deposits.keep = journal.keep
    wallet = grid.wallets["MI1"]
    grid.commit(meter.issue([(EPA(6_000, 0, 1), wallet.new_address()), (ECA(2_000, 0, 1), wallet.new_address())], 0))
    epa = next(op for op, o in wallet.coins.items() if o.asset.kind == AssetKind.EPA)
    grid.commit(wallet.sign(combine(wallet.leg(EPA(1_000, 0, 1), meter.deposit_address())), grid.chain_id))
    assert epa not in wallet.coins and meter.deposited
    journal.close()

    keys = KeyJournal(tmp_path / "deposits.seeds").keys
    fresh = restarted(grid, meter, Wallet({k.address: k for k in keys}))
    assert fresh.nonce == meter.nonce == 1
    assert fresh.issued == meter.issued and fresh.deposited == meter.deposited
    assert fresh.bill(0, 500, PRICES) == meter.bill(0, 500, PRICES)
    with pytest.raises(MeterError, match="above the DSO limit"):  # 6 kW already issued for slot 0
        fresh.issue([(EPA(MAX_W - 5_000, 0, 1), wallet.new_address())], 0)
    grid.commit(fresh.issue([(EPA(MAX_W - 6_000, 0, 1), wallet.new_address())], 0))  # nonce 2: no replay


def test_a_meter_that_forgot_its_pending_issue_counts_it_once_it_commits():
    grid = build_grid(1)
    meter, wallet = grid.meters["MI1"], grid.wallets["MI1"]
    issue = meter.issue([(EPA(3_000, 0, 1), wallet.new_address())], 0)
    fresh = SmartMeter(meter.meter_id, meter.key, meter.chain_id, SLOT_SECONDS, limits=meter.limits)
    grid.meters["MI1"] = fresh  # the process restarted before the issue committed
    grid.commit(issue)
    assert fresh.nonce == 1 and fresh.issued == [(0, EPA(3_000, 0, 1))]
    with pytest.raises(MeterError, match="above the DSO limit"):
        fresh.issue([(EPA(MAX_W - 2_000, 0, 1), wallet.new_address())], 0)


def test_the_key_journal_keeps_every_key_handed_out_and_cuts_a_torn_record(tmp_path):
    path = tmp_path / "keys" / "wallet.seeds"
    journal = KeyJournal(path)
    wallet = Wallet(keep=journal.keep)
    addresses = [wallet.new_address() for _ in range(3)]
    journal.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path, "ab") as f:
        f.write(b"\x01" * (SEED_BYTES - 5))  # killed halfway through a fourth record
    again = KeyJournal(path)
    assert [k.address for k in again.keys] == addresses
    assert path.stat().st_size == 3 * SEED_BYTES
    again.keep(wallet.keys[addresses[0]])
    again.close()
    assert len(KeyJournal(path).keys) == 4
