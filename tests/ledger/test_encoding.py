"""Canonical encoding: the byte layout, round trips of every transaction kind and of blocks, and fuzzing.

Properties (hypothesis): ``decode(encode(x)) == x`` and ``encode(decode(b)) == b`` for every kind, where the
second re-encodes from freshly built objects (not from the bytes a decoder caches), so a decoder that accepted
two spellings of one object would be caught. Random and mutated bytes make the decoders raise ``Reject`` and
nothing else; whenever mutated bytes do decode, they are the canonical encoding of what they decode to.
"""

from __future__ import annotations

import string
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gridledger.ledger.assets import (
    ECA,
    EPA,
    FA,
    MAX_AMOUNT,
    OUTPUT_BYTES,
    Asset,
    AssetKind,
    Output,
    outpoint,
    split_outpoint,
)
from gridledger.ledger.block import Block, BlockHeader, Vote
from gridledger.ledger.crypto import KeyPair, sha256
from gridledger.ledger.encoding import FORMAT_VERSION, Reader, Writer, check_name
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds import decode_transaction
from gridledger.ledger.kinds.dso_policy import DsoPolicy, MeterLimits
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.ledger.kinds.meter_issue import MeterIssue
from gridledger.ledger.kinds.transfer import Transfer, Witness
from gridledger.ledger.transactions import Transaction, TxKind, sighash
from gridledger.petra.wallet import combine

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import Net

# --------------------------------------------------------------------------- strategies

u16 = st.integers(0, 2**16 - 1)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
names = st.text(string.ascii_letters + string.digits + "_.:-", min_size=1, max_size=32)
addresses = st.binary(min_size=20, max_size=20)
pubkeys = st.binary(min_size=32, max_size=32)
signatures = st.binary(min_size=64, max_size=64)
hashes = st.binary(min_size=32, max_size=32)


@st.composite
def assets(draw) -> Asset:
    kind = draw(st.sampled_from(AssetKind))
    amount = draw(st.integers(1, MAX_AMOUNT))
    if kind == AssetKind.FA:
        return Asset(kind, amount)
    start = draw(st.integers(0, 2**32 - 2))
    return Asset(kind, amount, start, draw(st.integers(start + 1, 2**32 - 1)))


outputs = st.builds(Output, assets(), addresses)
output_lists = st.lists(outputs, max_size=6).map(tuple)
witnesses = st.builds(Witness, pubkeys, signatures)

transfers = st.builds(
    Transfer,
    st.lists(st.binary(min_size=34, max_size=34), max_size=6).map(tuple),
    output_lists,
    st.lists(witnesses, max_size=6).map(tuple),
)
meter_issues = st.builds(MeterIssue, names, u64, output_lists, signatures)
limits = st.builds(MeterLimits, names, u64, u64, u64)
dso_policies = st.builds(
    DsoPolicy,
    u64,
    u64,
    st.none() | st.tuples(u64, u64),
    st.lists(st.tuples(names, pubkeys), max_size=4).map(tuple),
    st.lists(limits, max_size=4).map(tuple),
    st.lists(names, max_size=4).map(tuple),
    signatures,
)
geneses = st.builds(Genesis, names, u32, u64, pubkeys, st.lists(pubkeys, max_size=4).map(tuple), u32)
transactions = st.one_of(transfers, meter_issues, dso_policies, geneses)
headers = st.builds(BlockHeader, hashes, u64, hashes, hashes, u64, pubkeys)
blocks = st.builds(
    Block,
    headers,
    signatures,
    st.lists(transactions, max_size=5).map(tuple),
    st.lists(st.builds(Vote, pubkeys, signatures), max_size=3).map(tuple),
)

ROUND_TRIP = settings(max_examples=150, deadline=None)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def fresh_copy(x):
    """The same object rebuilt field by field, so nothing cached from decoding survives."""
    if isinstance(x, Block):
        return Block(
            replace(x.header), x.signature, tuple(replace(tx) for tx in x.transactions), x.certificate
        )
    return replace(x)


def witness_of(tx: Transaction) -> object:
    """The fields a transaction's equality ignores (its witness)."""
    return getattr(tx, "witnesses", None) or getattr(tx, "signature", None)


# --------------------------------------------------------------------------- layout


def test_integers_are_fixed_width_big_endian() -> None:
    raw = Writer().u8(1).u16(0x0203).u32(0x04050607).u64(0x08090A0B0C0D0E0F).bytes()
    assert raw == bytes(range(1, 16))
    r = Reader(raw)
    assert (r.u8(), r.u16(), r.u32(), r.u64()) == (1, 0x0203, 0x04050607, 0x08090A0B0C0D0E0F)
    r.end("test")


@pytest.mark.parametrize(
    ("width", "value", "code"),
    [
        ("u8", 256, "bad-encoding-overflow"),
        ("u16", 2**16, "bad-encoding-overflow"),
        ("u32", 2**32, "bad-encoding-overflow"),
        ("u64", 2**64, "bad-encoding-overflow"),
        ("u64", -1, "bad-encoding-negative"),
        ("u32", True, "bad-encoding-type"),
        ("u16", 1.0, "bad-encoding-type"),
    ],
)
def test_integer_out_of_range_is_rejected(width: str, value: object, code: str) -> None:
    with pytest.raises(Reject) as e:
        getattr(Writer(), width)(value, "field")
    assert e.value.code == code


def test_lengths_names_and_fixed_fields() -> None:
    w = Writer().blob(b"abc").name("MI-1.a:b_c").count(3).fixed(b"\x00" * 4, 4)
    assert w.bytes() == b"\x00\x00\x00\x03abc" + b"\x0aMI-1.a:b_c" + b"\x00\x03" + b"\x00" * 4
    r = Reader(w.bytes())
    assert (r.blob(), r.name(), r.count(), r.take(4)) == (b"abc", "MI-1.a:b_c", 3, bytes(4))
    with pytest.raises(Reject, match="bad-encoding-size"):
        Writer().fixed(b"\x00" * 3, 4)
    for bad in ("", "x" * 33, "é", "a b", "a/b", 7):
        with pytest.raises(Reject, match="bad-encoding-name"):
            check_name(bad)


def test_reader_rejects_shortfall_leftover_and_other_versions() -> None:
    with pytest.raises(Reject, match="bad-encoding-truncated"):
        Reader(b"\x00").u16("x")
    with pytest.raises(Reject, match="bad-encoding-trailing"):
        Reader(b"\x00").end("x")
    with pytest.raises(Reject, match="bad-encoding-version"):
        Reader(bytes([FORMAT_VERSION + 1])).version("x")
    with pytest.raises(Reject, match="bad-encoding-type"):
        Reader("text")


def test_output_and_outpoint_layout() -> None:
    owner = bytes(range(20))
    raw = Output(Asset(AssetKind.EPA, 2_000, 3, 7), owner).encode()
    assert len(raw) == OUTPUT_BYTES
    assert (
        raw == b"\x01" + (2_000).to_bytes(8, "big") + (3).to_bytes(4, "big") + (7).to_bytes(4, "big") + owner
    )
    assert Output.decode(raw) == Output(Asset(AssetKind.EPA, 2_000, 3, 7), owner)
    txid = sha256(b"t")
    assert outpoint(txid, 258) == txid + b"\x01\x02"
    assert split_outpoint(outpoint(txid, 258)) == (txid, 258)


def test_transaction_envelope_and_txid_exclude_the_witness() -> None:
    """Envelope ``version | kind | body | witness``; the txid covers only ``version | kind | body``."""
    key = KeyPair.from_secret("k")
    tx = MeterIssue("MI1", 7, (Output(Asset(AssetKind.FA, 5), key.address),))
    signed = tx.signed(b"c" * 32, key)
    assert signed.encode()[:2] == bytes([FORMAT_VERSION, TxKind.METER_ISSUE])
    assert (
        signed.encode().startswith(tx.body_bytes)
        and signed.encode()[len(tx.body_bytes) :] == signed.signature
    )
    assert signed.txid == tx.txid == sha256(tx.body_bytes)
    assert signed.sighash(b"c" * 32) == sighash(b"c" * 32, tx.txid) != sighash(b"d" * 32, tx.txid)


def test_genesis_names_its_chain() -> None:
    g = Genesis("nan", 900, 0, bytes(32), (bytes(32),))
    assert g.chain_id == g.txid
    assert replace(g, chain="nan2").chain_id != g.chain_id


# --------------------------------------------------------------------------- round trips


@ROUND_TRIP
@given(transactions)
def test_transaction_round_trip(tx: Transaction) -> None:
    raw = tx.encode()
    back = decode_transaction(raw)
    assert type(back) is type(tx) and back == tx and witness_of(back) == witness_of(tx)
    assert back.txid == tx.txid
    assert back.encode() == raw and fresh_copy(back).encode() == raw


@ROUND_TRIP
@given(blocks)
def test_block_round_trip(block: Block) -> None:
    raw = block.encode()
    back = Block.decode(raw)
    assert back == block and back.hash == block.hash
    assert [witness_of(t) for t in back.transactions] == [witness_of(t) for t in block.transactions]
    assert back.compute_merkle_root() == block.compute_merkle_root()
    assert back.encode() == raw and fresh_copy(back).encode() == raw


# --------------------------------------------------------------------------- fuzzing


def decodes_canonically_or_rejects(decode, raw: bytes) -> None:
    """``decode(raw)`` raises ``Reject`` and nothing else, or ``raw`` is the canonical encoding of it."""
    try:
        obj = decode(raw)
    except Reject as e:
        assert e.code.startswith("bad-") and e.message
        return
    assert fresh_copy(obj).encode() == raw


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_never_crash_the_block_decoder(raw: bytes) -> None:
    decodes_canonically_or_rejects(Block.decode, raw)


@FUZZ
@given(st.sampled_from([b"", b"\x01", *(bytes([1, k]) for k in TxKind)]), st.binary(max_size=300))
def test_random_bytes_never_crash_the_transaction_decoder(prefix: bytes, raw: bytes) -> None:
    """Random bodies behind a valid version and kind, so that every kind's reader is reached."""
    decodes_canonically_or_rejects(decode_transaction, prefix + raw)


@st.composite
def mutations(draw, raw: bytes) -> bytes:
    """``raw`` with one to three byte-level mutations: flip, set, insert, delete, truncate, extend."""
    raw = bytearray(raw)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "extend"]))
        at = draw(st.integers(0, max(len(raw) - 1, 0)))
        if op == "flip" and raw:
            raw[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and raw:
            raw[at] = draw(st.sampled_from([0, 1, 2, 0x7F, 0x80, 0xFF]))
        elif op == "insert":
            raw[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and raw:
            del raw[at : at + draw(st.integers(1, 4))]
        elif op == "truncate":
            del raw[at:]
        elif op == "extend":
            raw += draw(st.binary(min_size=1, max_size=4))
    return bytes(raw)


@FUZZ
@given(transactions.flatmap(lambda tx: mutations(tx.encode())))
def test_mutated_transactions_are_rejected_or_canonical(raw: bytes) -> None:
    decodes_canonically_or_rejects(decode_transaction, raw)


@FUZZ
@given(blocks.flatmap(lambda b: mutations(b.encode())))
def test_mutated_blocks_are_rejected_or_canonical(raw: bytes) -> None:
    decodes_canonically_or_rejects(Block.decode, raw)


def rich_block(net: Net) -> Block:
    """A valid next block holding every kind: an atomic trade, a meter issue and a DSO policy."""
    seller, buyer = net.wallets["seller"], net.wallets["buyer"]
    trade = combine(
        seller.leg(EPA(1_000, 1, 3), buyer.new_address()),
        buyer.leg(FA(40), seller.new_address()),
        buyer.leg(ECA(1_000, 1, 3), seller.new_address()),
    )
    trade = buyer.sign(seller.sign(trade, net.chain_id), net.chain_id)
    issue = net.issue("MI1", (EPA(100, 6, 7), seller.new_address()))
    return net.next_block(trade, issue, net.dso.policy(3, prices=(130, 70)))


@pytest.fixture(scope="module")
def pending(new_net: Callable[..., Net]) -> tuple[Net, bytes]:
    """A chain and the encoding of a valid next block it has not seen."""
    net = new_net()
    return net, rich_block(net).encode()


def test_the_unmutated_block_is_accepted(new_net: Callable[..., Net]) -> None:
    net = new_net()
    net.chain.append(Block.decode(rich_block(net).encode()))
    assert net.state.height == 3


@FUZZ
@given(st.data())
def test_a_node_accepts_no_mutation_of_a_valid_block(pending: tuple[Net, bytes], data: st.DataObject) -> None:
    """Every byte of a block is covered: header by the proposer's signature, transactions (witnesses included)
    by the Merkle root. A mutated block fails to decode or to append; the node's store and state stay put."""
    net, raw = pending
    bad = data.draw(mutations(raw))
    assume(bad != raw)
    tables, snap = net.tables(), net.state.snapshot()
    with pytest.raises(Reject):
        net.chain.append(Block.decode(bad))
    assert net.tables() == tables and net.state.snapshot() == snap


@ROUND_TRIP
@given(st.one_of(transactions, blocks), st.integers(1, 10))
def test_encodings_are_self_delimiting(x: Transaction | Block, n: int) -> None:
    """A strict prefix is always truncated and an extension always trailing: no encoding prefixes another."""
    raw = x.encode()
    assume(n <= len(raw))
    decode = Block.decode if isinstance(x, Block) else decode_transaction
    for bad, code in ((raw[:-n], "bad-encoding-truncated"), (raw + bytes(n), "bad-encoding-trailing")):
        with pytest.raises(Reject) as e:
            decode(bad)
        assert e.value.code == code, str(e.value)
