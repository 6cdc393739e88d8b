"""A node's chain: create and reopen, the mempool and the coordinator's proposals, blocks from other nodes,
whole-store verification, tamper evidence, and atomicity when the store fails mid-commit."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from gridledger.chain import Chain, _same_utxos, verify_store
from gridledger.ledger.assets import ECA, EPA, FA, Output, outpoint
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds.meter_issue import MeterIssue
from gridledger.ledger.kinds.transfer import Transfer, Witness
from gridledger.store.base import StoreError
from gridledger.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import Net


def test_reopen_with_and_without_replay(net: Net) -> None:
    net.commit(net.pay("seller", FA(120)))
    for replay in (False, True):
        again = Chain.open(net.store, replay=replay)
        assert again.state.snapshot() == net.state.snapshot()
        assert (again.state.tip_time, again.height, again.chain_id) == (net.state.tip_time, 3, net.chain_id)
    assert verify_store(net.store).snapshot() == net.state.snapshot()


def test_store_must_be_empty_to_create_and_full_to_open(net: Net, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="already holds a chain"):
        Chain.create(net.store, net.chain.genesis, net.coordinator, 0)
    with pytest.raises(StoreError, match="holds no chain"):
        Chain.open(SqliteStore(tmp_path / "empty.sqlite"))


def test_submit_is_idempotent_and_checks_context_free_rules(net: Net) -> None:
    tx = net.pay("seller", FA(100))
    assert net.chain.submit(tx) == net.chain.submit(tx) == tx.txid
    assert list(net.chain.mempool) == [tx.wtxid]
    with pytest.raises(Reject, match="bad-txns-vin-empty"):
        net.chain.submit(Transfer((), (Output(FA(1), bytes(20)),)))
    assert list(net.chain.mempool) == [tx.wtxid]


def test_propose_drops_and_reports_what_the_state_rejects(net: Net) -> None:
    """Two transfers spend one coin: the first one in wins, the second is reported and leaves the mempool."""
    first, second = net.pay("seller", FA(100)), net.pay("seller", FA(200))
    assert first.inputs == second.inputs
    for tx in (first, second):
        net.chain.submit(tx)
    res = net.chain.propose(net.coordinator, net.tick())
    assert [t.txid for t in res.block.transactions] == [first.txid]
    assert {k: e.code for k, e in res.rejected.items()} == {second.txid: "bad-blk-double-spend"}
    assert net.chain.mempool == {}
    assert net.chain.propose(net.coordinator, net.tick()).block is None  # nothing left: no empty block


def test_propose_never_dates_a_block_before_its_parent(net: Net) -> None:
    parent_time = net.state.tip_time
    net.chain.submit(net.pay("seller", FA(100)))
    block = net.chain.propose(net.coordinator, parent_time - 500).block
    assert block.header.time == parent_time == net.state.tip_time


def test_a_follower_replicates_the_leader_byte_for_byte(net: Net, tmp_path: Path) -> None:
    """A second node built from the same genesis block appends the leader's blocks: identical tables."""
    net.commit(net.pay("seller", EPA(700, 2, 3)), net.pay("buyer", FA(10)))
    follower = Chain.create(
        SqliteStore(tmp_path / "follower.sqlite"),
        net.chain.genesis,
        net.coordinator,
        net.chain.genesis_block.header.time,
    )
    assert follower.genesis_block.encode() == net.chain.genesis_block.encode()
    for block in net.chain.blocks(1):
        follower.append(block)
    assert net.tables(follower.store.db) == net.tables()
    assert follower.state.snapshot() == net.state.snapshot()


def test_append_clears_included_transactions_from_the_mempool(net: Net) -> None:
    tx = net.pay("seller", FA(50))
    net.chain.submit(tx)
    net.chain.append(net.next_block(tx))
    assert net.chain.mempool == {}


def test_many_signatures_are_checked_in_parallel_and_located(bare_net: Net) -> None:
    """300 inputs in 3 transfers (the parallel path starts at 256 signatures): a bad one is named exactly."""
    net, key = bare_net, KeyPair.from_secret("owner")
    issue = net.issue("MI2", *((FA(1), key.address) for _ in range(300)))
    net.commit(issue)
    txs = []
    for k in range(3):
        ops = tuple(outpoint(issue.txid, 100 * k + i) for i in range(100))
        txs.append(
            Transfer(ops, (Output(FA(100), key.address),)).signed(net.chain_id, dict.fromkeys(ops, key))
        )
    wit = list(txs[2].witnesses)
    wit[57] = Witness(wit[57].pubkey, bytes(64))
    bad = Transfer(txs[2].inputs, txs[2].outputs, tuple(wit))
    before = net.tables()
    with pytest.raises(Reject) as e:
        net.chain.append(net.next_block(txs[0], txs[1], bad))
    assert (e.value.code, e.value.tx_index, e.value.height) == ("bad-txns-signature", 2, 3)
    assert "input 57" in e.value.message and net.tables() == before
    net.append(*txs)
    assert sum(Output.decode(v).asset.amount for v in net.state.utxos.values()) == 300


def thousand_transfers(net: Net) -> tuple[KeyPair, list[Transfer]]:
    """1,000 signed one-input transfers of 1 FA each, spending a committed issue of ``net``; their owner key."""
    key = KeyPair.from_secret("owner")
    issue = net.issue("MI2", *((FA(1), key.address) for _ in range(1_000)))
    net.commit(issue)
    ops = [outpoint(issue.txid, i) for i in range(1_000)]
    return key, [Transfer((op,), (Output(FA(1), key.address),)).signed(net.chain_id, {op: key}) for op in ops]


@pytest.mark.parametrize("bad_at", [(737,), (3, 998), (999,)])
def test_one_bad_signature_among_1000_in_a_batch_checked_block_is_located(bare_net: Net, bad_at) -> None:
    """1,000 one-input transfers are checked in chunks on the thread pool: a bad signature anywhere (also in the
    last chunk, also behind another in a later-finishing chunk) rejects the block, naming the first bad one."""
    net = bare_net
    key, txs = thousand_transfers(net)
    for i in bad_at:
        (w,) = txs[i].witnesses
        txs[i] = Transfer(txs[i].inputs, txs[i].outputs, (Witness(w.pubkey, w.signature[:-1] + b"\x00"),))
    block = net.next_block(*txs)
    before = net.tables()
    for parallel in (True, False):
        with pytest.raises(Reject) as e:
            net.state.apply_block(block, parallel_signatures=parallel)
        assert (e.value.code, e.value.tx_index, e.value.height) == ("bad-txns-signature", bad_at[0], block.height)
        assert "input 0" in e.value.message
    with pytest.raises(Reject) as e:
        net.chain.append(block)  # written to the store while checked, rolled back before COMMIT
    assert (e.value.code, e.value.tx_index) == ("bad-txns-signature", bad_at[0])
    assert net.tables() == before and net.state.height == block.height - 1


def test_signature_checks_started_early_do_not_change_which_reject_a_block_gets(bare_net: Net) -> None:
    """The pool starts checking a block's 1,000 signatures right after its header checks; a bad signature (tx 5)
    still loses to a context-free fault later in the block (tx 900), as inline, and to a broken rule (tx 950), as
    before the checks started early (inline, each signature is checked with its transaction's rules)."""
    net = bare_net
    key, txs = thousand_transfers(net)
    (w,) = txs[5].witnesses
    txs[5] = Transfer(txs[5].inputs, txs[5].outputs, (Witness(w.pubkey, bytes(64)),))
    minted = Transfer(txs[950].inputs, (Output(FA(2), key.address),))
    txs[950] = minted.signed(net.chain_id, {minted.inputs[0]: key})
    zero = Transfer(txs[900].inputs, (Output(FA(0), key.address),))
    before = net.tables()
    for case, code, at, inline in (
        (txs[:900] + [zero.signed(net.chain_id, {zero.inputs[0]: key})] + txs[901:], "bad-asset-zero", 900, None),
        (txs, "bad-txns-fa-conservation", 950, ("bad-txns-signature", 5)),
    ):
        block = net.next_block(*case)
        for parallel in (True, False):
            with pytest.raises(Reject) as e:
                net.state.apply_block(block, parallel_signatures=parallel)
            assert (e.value.code, e.value.tx_index) == ((code, at) if parallel or inline is None else inline)
        with pytest.raises(Reject) as e:
            net.chain.append(block)
        assert (e.value.code, e.value.tx_index) == (code, at)
        assert net.tables() == before


def test_a_failed_store_commit_leaves_state_and_store_as_they_were(net: Net, monkeypatch) -> None:
    before, snap = net.tables(), net.state.snapshot()
    block = net.next_block(net.pay("seller", FA(100)))

    def disk_full(*args, **kwargs):
        raise StoreError("disk full")

    monkeypatch.setattr(net.store, "commit_block", disk_full)
    with pytest.raises(StoreError, match="disk full"):
        net.chain.append(block)
    assert net.tables() == before and net.state.snapshot() == snap
    monkeypatch.undo()
    net.chain.append(block)  # the same block commits once the store works again
    assert verify_store(net.store).snapshot() == net.state.snapshot()


def test_a_store_failure_after_the_signatures_are_confirmed_rebuilds_the_state_from_the_store(
    net: Net, monkeypatch
) -> None:
    """The block's rows are written while its signatures are checked; if the store then fails (here: after the
    confirmation, at COMMIT), the state is taken from the store again, so nothing half-applied remains."""
    before, snap = net.tables(), net.state.snapshot()
    block = net.next_block(net.pay("seller", FA(100)))
    commit = net.store.commit_block

    def lost_at_commit(*args, before_commit, **kwargs):
        def confirm_then_fail() -> None:
            before_commit()
            raise StoreError("connection lost at COMMIT")

        commit(*args, before_commit=confirm_then_fail, **kwargs)

    monkeypatch.setattr(net.store, "commit_block", lost_at_commit)
    with pytest.raises(StoreError, match="connection lost"):
        net.chain.append(block)
    assert net.tables() == before and net.state.snapshot() == snap
    monkeypatch.undo()
    net.chain.append(block)
    assert verify_store(net.store).snapshot() == net.state.snapshot()


def test_a_proposal_is_validated_without_changing_the_state(net: Net) -> None:
    snap = net.state.snapshot()
    good = net.next_block(net.pay("seller", FA(100)))
    assert net.state.apply_block(good, proposal=True).utxo_added == {}
    assert net.state.snapshot() == snap
    bad = net.next_block(net.pay("buyer", FA(1_000)), height=7)
    with pytest.raises(Reject, match="bad-blk-height"):
        net.state.apply_block(bad, proposal=True)
    assert net.state.snapshot() == snap
    net.chain.append(good)


def test_utxo_set_matches_the_store_after_every_block(net: Net) -> None:
    for wallet, want in (("seller", EPA(500, 1, 2)), ("buyer", FA(10)), ("seller", EPA(100, 3, 5))):
        net.commit(net.pay(wallet, want))
        assert net.store.snapshot()["utxos"] == net.state.utxos


@pytest.mark.parametrize("kind", ["transfer", "issue"])
def test_a_copy_with_a_garbage_signature_queued_first_does_not_shadow_the_honest_one(net: Net, kind: str) -> None:
    """The txid does not cover the witness: the mempool keys copies by wtxid and the block takes the valid one."""
    if kind == "transfer":
        honest = net.pay("seller", FA(100))
        garbage = Transfer(honest.inputs, honest.outputs, tuple(Witness(w.pubkey, bytes(64)) for w in honest.witnesses))
    else:
        honest = net.issue("MI1", (EPA(100, net.slot, net.slot + 1), KeyPair.generate().address))
        garbage = MeterIssue(honest.meter, honest.nonce, honest.outputs, bytes(64))
    assert garbage.txid == honest.txid and garbage.wtxid != honest.wtxid
    for tx in (garbage, honest):
        assert net.chain.submit(tx) == honest.txid
    res = net.chain.propose(net.coordinator, net.tick())
    assert [t.raw for t in res.block.transactions] == [honest.raw]
    assert res.rejected == {}  # the txid made it: its refused copy is not reported against it
    assert net.chain.mempool == {}


def test_append_clears_every_copy_of_an_included_transaction(net: Net) -> None:
    tx = net.pay("seller", FA(50))
    garbage = Transfer(tx.inputs, tx.outputs, tuple(Witness(w.pubkey, bytes(64)) for w in tx.witnesses))
    net.chain.submit(garbage)
    net.chain.submit(tx)
    net.chain.append(net.next_block(tx))
    assert net.chain.mempool == {}


def test_a_ban_queued_after_an_issue_of_its_slot_still_stops_it(net: Net) -> None:
    """The proposer applies DSO policies first: a ban from this slot governs the whole block."""
    issue = net.issue("MI2", (ECA(100, net.slot, net.slot + 1), KeyPair.generate().address))
    ban = net.dso.policy(net.slot, ban=["MI2"])
    net.chain.submit(issue)
    net.chain.submit(ban)
    res = net.chain.propose(net.coordinator, net.tick())
    assert [t.txid for t in res.block.transactions] == [ban.txid]
    assert res.rejected[issue.txid].code == "bad-issue-meter-banned"


def test_the_largest_meter_nonce_is_stored_and_read_back_exactly(net: Net) -> None:
    """A u64 nonce of 2^64-1 survives the SQLite store (signed 64-bit column) and still blocks every replay."""
    meter = net.meters["MI1"]
    top = MeterIssue("MI1", 2**64 - 1, (Output(EPA(10, net.slot, net.slot + 1), KeyPair.generate().address),))
    net.commit(top.signed(net.chain_id, meter.key))
    assert net.state.nonces["MI1"] == 2**64 - 1
    reopened = Chain.open(net.store, replay=True)
    assert reopened.state.nonces["MI1"] == 2**64 - 1 == net.store.snapshot()["nonces"]["MI1"]
    again = MeterIssue("MI1", 2**64 - 1, (Output(EPA(10, net.slot, net.slot + 1), KeyPair.generate().address),))
    reopened.submit(again.signed(net.chain_id, meter.key))
    assert reopened.propose(net.coordinator, net.tick()).rejected[again.txid].code == "bad-issue-nonce"


def test_the_streamed_utxo_comparison_is_exact() -> None:
    """Rows must come in strictly increasing outpoint order, match one by one, and be exactly as many."""
    state = {b"a": b"1", b"b": b"2"}
    assert _same_utxos(iter([(b"a", b"1"), (b"b", b"2")]), state)
    assert not _same_utxos(iter([(b"a", b"1"), (b"a", b"1")]), state)  # a repeated row hides a missing one
    assert not _same_utxos(iter([(b"b", b"2"), (b"a", b"1")]), state)
    assert not _same_utxos(iter([(b"a", b"1")]), state)
    assert not _same_utxos(iter([(b"a", b"1"), (b"b", b"3")]), state)
    assert not _same_utxos(iter([(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]), state)
