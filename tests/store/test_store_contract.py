"""The store contract: every test runs on SQLite and on PostgreSQL (the ``backend`` fixture).

Blocks round-trip byte for byte; a wrong height, a failed write or a rejected block leaves every table as it
was; the stored state equals the ledger state after every block; a reopened store replays to the same state;
tampering with a stored block or a state row is caught by ``verify_store`` (and ``gridledger verify``).
"""

from __future__ import annotations

import random
import threading
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gridledger.chain import Chain, verify_store
from gridledger.cli import app
from gridledger.ledger.assets import FA, AssetKind, Output
from gridledger.ledger.block import Block, make_block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds.meter_issue import MeterIssue
from gridledger.ledger.kinds.transfer import Transfer
from gridledger.ledger.state import MAX_SLOT, StateChanges
from gridledger.store import StoreError
from gridledger.store.base import TABLES
from workload import COORDINATOR, METER_KEYS, PROSUMERS, Workload

SMALL = {"txs_per_block": 3, "outputs_per_tx": 4, "policy_every": 3}


def build(store, blocks: int = 5, seed: int = 7) -> Workload:
    """A chain of genesis, the DSO's policy and ``blocks`` workload blocks (issues, transfers, policies)."""
    work = Workload.start(store, random.Random(seed), **SMALL)
    for _ in range(blocks):
        work.step()
    return work


def state_of(snap: dict) -> dict:
    return {k: v for k, v in snap.items() if k != "tip_time"}


# ------------------------------------------------------------------------------------------------- reading
def test_empty_store(backend):
    store = backend.open()
    assert store.tip_height() is None
    assert list(store.iter_blocks()) == []
    assert store.dump() == {t: [] for t in TABLES}
    with pytest.raises(StoreError, match="holds no chain"):
        store.snapshot()
    with pytest.raises(StoreError, match="no block at height 0"):
        store.block_bytes(0)
    with pytest.raises(StoreError, match="holds no chain"):
        Chain.open(store)
    with pytest.raises(Reject) as e:
        verify_store(store)
    assert e.value.code == "bad-chain-empty"


def test_blocks_round_trip_byte_exact(backend):
    store = backend.open()
    given_raw: dict[int, bytes] = {}
    commit = store.commit_block

    def recording(height, block_hash, time, raw, ch, **kw):
        given_raw[height] = raw
        commit(height, block_hash, time, raw, ch, **kw)

    store.commit_block = recording
    work = build(store, blocks=6)
    made = [work.step() for _ in range(3)]
    assert sorted(given_raw) == list(range(11))
    for b in made:
        assert given_raw[b.height] == b.encode()
    for reader in (store, backend.open()):  # the same connection, and a new one
        assert reader.tip_height() == 10
        assert [reader.block_bytes(h) for h in range(11)] == [given_raw[h] for h in range(11)]
        assert list(reader.iter_blocks(0, batch=3)) == sorted(given_raw.items())
        assert list(reader.iter_blocks(7)) == [(h, given_raw[h]) for h in range(7, 11)]
        assert list(reader.iter_blocks(11)) == []
    assert [b.hash for b in work.chain.blocks(8)] == [b.hash for b in made]


def test_snapshot_equals_ledger_state_after_every_block(backend):
    store = backend.open()
    work = Workload.start(store, random.Random(3), **SMALL)
    for _ in range(8):
        work.step()
        snap = store.snapshot()
        assert state_of(snap) == work.chain.state.snapshot()
        assert snap["tip_time"] == work.chain.state.tip_time
    # the workload wrote every table, so the comparison above covered them all
    assert all(store.dump()[t] for t in TABLES)


def test_streamed_snapshot_reads_the_outputs_in_order_in_small_batches(backend):
    """Batches of 3 rows (a server-side cursor on PostgreSQL): every output once, in increasing outpoint order."""
    store = backend.open()
    work = build(store)
    with store.streaming_snapshot(batch=3) as snap:
        rows = list(snap["utxos"])
        rest = {k: v for k, v in snap.items() if k != "utxos"}
    assert len(rows) > 3 and [op for op, _ in rows] == sorted(op for op, _ in rows)
    assert dict(rows) == work.chain.state.utxos and len(dict(rows)) == len(rows)
    assert rest == {k: v for k, v in store.snapshot().items() if k != "utxos"}
    assert store.policy_rows() == [(seq, p.encode()) for seq, p in enumerate(work.chain.state.policy.policies)]


def test_reopen_replays_to_the_same_state(backend):
    store = backend.open()
    work = build(store, blocks=6)
    before = work.chain.state.snapshot()
    store.close()
    again = backend.open()
    for replay in (True, False):
        chain = Chain.open(again, replay=replay)
        assert chain.state.snapshot() == before
        assert chain.state.tip_time == work.chain.state.tip_time
    resumed = Workload.start(again, random.Random(8), **SMALL)
    assert resumed.coins == work.coins
    for _ in range(3):
        resumed.step()
    assert verify_store(again).height == 10


def test_u64_consensus_fields_fit_the_store(backend):
    """A meter nonce above 2**63 - 1 is a valid u64; the store must hold it, and the last valid block time."""
    store = backend.open()
    work = build(store, blocks=1)
    chain = work.chain
    meter = "WM0"
    issue = MeterIssue(meter, 2**64 - 1, (Output(FA(5), PROSUMERS[0].address),))
    chain.submit(issue.signed(chain.chain_id, METER_KEYS[meter]))
    assert chain.propose(COORDINATOR, chain.state.tip_time + 60).block is not None
    op, out = next(iter(work.coins.items()))
    key = next(k for k in PROSUMERS if k.address == out.owner)
    chain.submit(Transfer((op,), (out,)).signed(chain.chain_id, {op: key}))
    with pytest.raises(Reject) as beyond:  # a time past the last u32 slot is not a valid block time
        chain.propose(COORDINATOR, 2**64 - 1)
    assert beyond.value.code == "bad-blk-time"
    g = chain.genesis
    last_time = g.start_time + (MAX_SLOT + 1) * g.slot_seconds - 1
    assert chain.propose(COORDINATOR, last_time).block is not None
    snap = store.snapshot()
    assert snap["nonces"][meter] == 2**64 - 1
    assert snap["tip_time"] == last_time
    assert state_of(snap) == chain.state.snapshot()
    assert verify_store(backend.open()).nonces[meter] == 2**64 - 1


# ------------------------------------------------------------------------------------------------- refusals
def test_commit_at_a_wrong_height_is_refused_and_writes_nothing(backend):
    store = backend.open()
    work = build(store, blocks=0)
    block = work.step()
    raw, ch = block.encode(), StateChanges(utxo_added={bytes(34): bytes(37)})
    dump = store.dump()
    for height in (0, 2, 4, 100):
        with pytest.raises(StoreError, match=f"cannot commit block {height}: the store's next height is 3"):
            store.commit_block(height, block.hash, 0, raw, ch)
        assert store.dump() == dump


def test_commit_into_an_empty_store_must_start_at_zero(backend):
    store = backend.open()
    with pytest.raises(StoreError, match="cannot commit block 1: the store's next height is 0"):
        store.commit_block(1, bytes(32), 0, b"x", StateChanges())
    assert store.dump() == {t: [] for t in TABLES}


def test_a_write_that_fails_midway_leaves_nothing(backend):
    """The block row is inserted first; a state row that violates a key aborts the whole transaction."""
    store = backend.open()
    work = build(store, blocks=2)
    dump = store.dump()
    existing_op = next(iter(work.chain.state.utxos))
    ch = StateChanges(utxo_added={bytes(34): bytes(37), existing_op: bytes(37)}, nonces={"WM0": 99})
    with pytest.raises(StoreError, match="cannot commit block 4"):
        store.commit_block(4, bytes(32), 0, b"block", ch)
    assert store.dump() == dump
    work.step()  # and the store still takes the next block
    assert verify_store(store).height == 4


def test_a_before_commit_check_that_fails_rolls_the_written_block_back(backend):
    """A node writes a block while its signatures are still being checked and confirms them just before COMMIT
    (``before_commit``): a failed confirmation leaves every table as it was, and the store takes the next block."""
    store = backend.open()
    work = build(store, blocks=2)
    dump = store.dump()
    block = _good(work)
    ch = StateChanges(utxo_added={bytes(34): bytes(37)}, nonces={"WM0": 99}, fa_issued={"WM0": 5})

    def bad_signature() -> None:
        assert store.tip_height() == block.height  # written, not committed: this connection sees its own block
        raise Reject("bad-txns-signature", "signature of input 0 is invalid", tx_index=0)

    with pytest.raises(Reject, match="bad-txns-signature"):
        store.commit_block(
            block.height, block.hash, block.header.time, block.encode(), ch, before_commit=bad_signature
        )
    assert store.dump() == dump
    assert backend.open().dump() == dump
    work.step()
    assert verify_store(store).height == block.height


def test_two_writers_racing_for_one_height(backend):
    """Two connections commit height 3 at once: exactly one wins, the other gets a StoreError."""
    work = build(backend.open(), blocks=1)
    stores = [backend.open(), backend.open()]
    barrier = threading.Barrier(2)
    outcome: list[object] = [None, None]
    block = make_block(
        work.chain.chain_id, 3, work.chain.state.tip_hash, work.chain.state.tip_time, (), COORDINATOR
    )

    def write(i: int) -> None:
        barrier.wait()
        try:
            stores[i].commit_block(3, block.hash, block.header.time, block.encode(), StateChanges())
            outcome[i] = "ok"
        except StoreError as e:
            outcome[i] = e

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(str, outcome)) == ["cannot commit block 3: the store's next height is 4", "ok"]
    assert stores[0].tip_height() == 3


def test_chain_create_refuses_a_store_that_holds_a_chain(backend):
    store = backend.open()
    work = build(store, blocks=0)
    dump = store.dump()
    with pytest.raises(StoreError, match="already holds a chain"):
        Chain.create(store, work.chain.genesis, COORDINATOR, 0)
    assert store.dump() == dump


def test_a_closed_store_raises_store_error(backend):
    store = backend.open()
    build(store, blocks=0)
    store.close()
    for call in (store.tip_height, store.snapshot, lambda: store.block_bytes(0)):
        with pytest.raises(StoreError, match="cannot read the store"):
            call()
    with pytest.raises(StoreError, match="cannot commit block 2"):
        store.commit_block(2, bytes(32), 0, b"", StateChanges())


# ---------------------------------------------------------------------------------------- rejected blocks
def _resign(block: Block, **header_changes) -> Block:
    h = replace(block.header, **header_changes)
    return Block(h, COORDINATOR.sign(h.signing_message()), block.transactions)


def _next(chain: Chain, txs, time_offset: int = 60) -> Block:
    s = chain.state
    return make_block(
        chain.chain_id, s.height + 1, s.tip_hash, s.tip_time + time_offset, tuple(txs), COORDINATOR
    )


def _spend(work: Workload, ops, outputs=None) -> Transfer:
    coins = [work.coins[op] for op in ops]
    keys = {op: next(k for k in PROSUMERS if k.address == c.owner) for op, c in zip(ops, coins, strict=True)}
    outs = tuple(outputs) if outputs is not None else tuple(coins)
    return Transfer(tuple(ops), outs).signed(work.chain.chain_id, keys)


def _fa_coins(work: Workload) -> list[bytes]:
    return [op for op, o in work.coins.items() if o.asset.kind == AssetKind.FA]


def _good(work: Workload, **time) -> Block:
    """A valid next block: one transfer of a coin to its own owner."""
    return _next(work.chain, [_spend(work, _fa_coins(work)[:1])], **time)


def _bad_signature(work):
    tx = _spend(work, _fa_coins(work)[:1])
    w = tx.witnesses[0]
    return _next(work.chain, [Transfer(tx.inputs, tx.outputs, (replace(w, signature=bytes(64)),))])


def _minted_money(work):
    op = _fa_coins(work)[0]
    c = work.coins[op]
    return _next(work.chain, [_spend(work, [op], [Output(FA(c.asset.amount + 1), c.owner)])])


def _double_spend_in_block(work):
    a, b = _fa_coins(work)[:2]
    return _next(work.chain, [_spend(work, [a]), _spend(work, [b]), _spend(work, [a, b])])


def _spent_before(work):
    tip = next(work.chain.blocks(work.chain.height))
    spent = next(tx for tx in tip.transactions if isinstance(tx, Transfer)).inputs[0]
    fake = Transfer((spent,), (Output(FA(1), PROSUMERS[0].address),)).signed(
        work.chain.chain_id, {spent: PROSUMERS[0]}
    )
    return _next(work.chain, [*_good(work).transactions, fake])


def _replayed_meter_nonce(work):
    meter = "WM1"
    nonce = work.chain.state.nonces[meter]
    tx = MeterIssue(meter, nonce, (Output(FA(10), PROSUMERS[1].address),)).signed(
        work.chain.chain_id, METER_KEYS[meter]
    )
    return _next(work.chain, [*_good(work).transactions, tx])


def _unknown_meter(work):
    key = KeyPair.from_secret("not-authorized")
    tx = MeterIssue("XX9", 1, (Output(FA(10), key.address),)).signed(work.chain.chain_id, key)
    return _next(work.chain, [tx])


BAD_BLOCKS = {
    "wrong-parent": (lambda w: _resign(_good(w), prev_hash=bytes(32)), "bad-blk-prev"),
    "skips-a-height": (lambda w: _resign(_good(w), height=w.chain.height + 2), "bad-blk-height"),
    "time-before-parent": (lambda w: _good(w, time_offset=-1), "bad-blk-time"),
    "foreign-proposer": (
        lambda w: Block(replace(_next(w.chain, []).header, proposer=PROSUMERS[0].public), bytes(64), ()),
        "bad-blk-proposer",
    ),
    "merkle-mismatch": (lambda w: _resign(_good(w), merkle_root=bytes(32)), "bad-blk-merkle"),
    "bad-signature": (_bad_signature, "bad-txns-signature"),
    "mints-money": (_minted_money, "bad-txns-fa-conservation"),
    "double-spend-in-block": (_double_spend_in_block, "bad-blk-double-spend"),
    "spends-a-spent-output": (_spent_before, "bad-txns-inputs-missingorspent"),
    "replayed-meter-nonce": (_replayed_meter_nonce, "bad-issue-nonce"),
    "unknown-meter": (_unknown_meter, "bad-issue-meter-unknown"),
}


@pytest.mark.parametrize("case", BAD_BLOCKS)
def test_a_rejected_block_leaves_the_store_byte_identical(backend, case):
    store = backend.open()
    work = build(store, blocks=4)
    make, code = BAD_BLOCKS[case]
    bad = make(work)
    dump, state = store.dump(), work.chain.state.snapshot()
    with pytest.raises(Reject) as e:
        work.chain.append(bad)
    assert e.value.code == code
    assert e.value.height == bad.height
    assert store.dump() == dump
    assert work.chain.state.snapshot() == state
    work.step()  # the node carries on from the unchanged tip
    assert verify_store(store).height == 6


# ---------------------------------------------------------------------------------------- tamper evidence
@pytest.fixture
def tamper_chain(backend):
    store = backend.open()
    build(store, blocks=4)
    return backend, store


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_changed_byte_of_a_stored_block_is_caught_at_its_height(tamper_chain, data):
    backend, store = tamper_chain
    height = data.draw(st.integers(1, store.tip_height()), label="height")
    raw = store.block_bytes(height)
    at = data.draw(st.integers(0, len(raw) - 1), label="offset")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != raw[at]), label="byte")
    backend.raw(
        "UPDATE blocks SET data = ? WHERE height = ?", (raw[:at] + bytes([new]) + raw[at + 1 :], height)
    )
    try:
        with pytest.raises(Reject) as e:
            verify_store(store)
        assert e.value.height == height, str(e.value)
        assert str(e.value).startswith(f"block {height}")
    finally:
        backend.raw("UPDATE blocks SET data = ? WHERE height = ?", (raw, height))
    verify_store(store)


def test_a_tampered_genesis_is_caught_at_height_0(tamper_chain):
    backend, store = tamper_chain
    genesis = Block.decode(store.block_bytes(0))
    bad = Block(genesis.header, genesis.signature, (replace(genesis.transactions[0], slot_seconds=0),))
    backend.raw("UPDATE blocks SET data = ? WHERE height = 0", (bad.encode(),))
    with pytest.raises(Reject) as e:
        verify_store(store)
    assert e.value.code == "bad-genesis-params"
    assert e.value.height == 0


def _a_utxo(backend) -> tuple[bytes, bytes]:
    op, output = backend.raw("SELECT op, output FROM utxos ORDER BY op LIMIT 1")[0]
    return bytes(op), bytes(output)


def _utxo_amount_changed(backend) -> None:
    op, output = _a_utxo(backend)
    backend.raw(
        "UPDATE utxos SET output = ? WHERE op = ?", (output[:1] + bytes([output[1] ^ 1]) + output[2:], op)
    )


STATE_TAMPERING = {
    "utxo-amount": _utxo_amount_changed,
    "utxo-deleted": lambda b: b.raw("DELETE FROM utxos WHERE op = ?", (_a_utxo(b)[0],)),
    "utxo-added": lambda b: b.raw("INSERT INTO utxos (op, output) VALUES (?, ?)", (bytes(34), _a_utxo(b)[1])),
    "issued-total": lambda b: b.raw("UPDATE issued SET total = total + 1"),
    "fa-issued-total": lambda b: b.raw("UPDATE fa_issued SET total = total - 1"),
    "nonce": lambda b: b.raw("UPDATE nonces SET nonce = nonce + 1000"),
    "policy-deleted": lambda b: b.raw("DELETE FROM policies WHERE seq = (SELECT MAX(seq) FROM policies)"),
    # same order, other numbers: the next policy would be stored at seq = COUNT(*), before the renumbered one
    "policy-seq-renumbered": lambda b: b.raw(
        "UPDATE policies SET seq = seq + 100 WHERE seq = (SELECT MAX(seq) FROM policies)"
    ),
    "tip-hash-column": lambda b: b.raw(
        "UPDATE blocks SET hash = ? WHERE height = (SELECT MAX(height) FROM blocks)", (bytes(32),)
    ),
}


@pytest.mark.parametrize("case", STATE_TAMPERING)
def test_a_tampered_state_row_is_bad_chain_state(tamper_chain, case):
    backend, store = tamper_chain
    STATE_TAMPERING[case](backend)
    with pytest.raises(Reject) as e:
        verify_store(store)
    assert e.value.code == "bad-chain-state"


def test_a_tampered_tip_time_is_caught(tamper_chain):
    backend, store = tamper_chain
    backend.raw("UPDATE blocks SET time = time + 3600 WHERE height = (SELECT MAX(height) FROM blocks)")
    with pytest.raises(Reject):
        verify_store(store)


def test_gridledger_verify_reports_the_tampered_block(tamper_chain):
    backend, store = tamper_chain
    where = backend.url.removeprefix("sqlite:///")
    runner = CliRunner()
    ok = runner.invoke(app, ["verify", where])
    assert ok.exit_code == 0, ok.output
    assert "valid" in " ".join(ok.output.split())
    raw = bytearray(store.block_bytes(3))
    raw[-1] ^= 0xFF
    backend.raw("UPDATE blocks SET data = ? WHERE height = 3", (bytes(raw),))
    bad = runner.invoke(app, ["verify", where])
    assert bad.exit_code == 1, bad.output
    assert "INVALID" in " ".join(bad.output.split())
    assert "block 3" in " ".join(bad.output.split())
    assert "Traceback" not in " ".join(bad.output.split())
