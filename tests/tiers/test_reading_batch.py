"""READING_BATCH: one meter's consecutive minutes under one signature, each minute sealed and opened as a READING."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridledger.analytics.scorecards import member_readings
from gridledger.chain import verify_store
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds import check_transaction, decode_transaction
from gridledger.ledger.kinds.reading import (
    Reading,
    ReadingDevice,
    ReadingError,
    ReadingValues,
    open_reading,
    reading_key,
    seal,
)
from gridledger.ledger.kinds.reading_batch import (
    MAX_MINUTE,
    BatchingDevice,
    ReadingBatch,
    batch_of,
    readings_of,
)
from gridledger.ledger.ruleset import MAX_READING_BATCH, Tier, tier_ruleset
from gridledger.petra.dso import DSO
from gridledger.tiers.audit import check_anchors
from gridledger.tiers.hierarchy import Hierarchy, TierChain, build_neighbourhood
from gridledger.tiers.prove import Index, check_proof, head_hash, prove

from .test_readings import CHAIN, at, outcome, values

MEMBER_KEY = bytes(range(32))


def key_of(member: int, minute: int) -> bytes:
    return reading_key(MEMBER_KEY, CHAIN, member, minute)


@given(st.integers(0, 0xFFFF), st.integers(0, 2**32 - 64), st.lists(values, min_size=1, max_size=8))
def test_batches_round_trip_and_each_minute_opens_alone(member, first, minutes):
    views = [seal(CHAIN, member, first + i, v, key_of(member, first + i)) for i, v in enumerate(minutes)]
    tx = batch_of(views).signed(CHAIN, KeyPair.from_secret("m"))
    decoded = decode_transaction(tx.raw)
    assert decoded == tx and decoded.raw == tx.raw and decoded.signature == tx.signature
    check_transaction(decoded)
    assert decoded.readings == tuple(views)
    for i, view in enumerate(decoded.readings):
        assert open_reading(CHAIN, view, key_of(member, first + i)) == minutes[i]
        if i:  # another minute's key does not open it
            with pytest.raises(ReadingError):
                open_reading(CHAIN, view, key_of(member, first))


def test_a_batch_of_m_plain_minutes_is_73_plus_21_m_bytes():
    device = BatchingDevice(CHAIN, 17, KeyPair.from_secret("meter"), MEMBER_KEY)
    for m in (2, 5, 15):
        tx = device.batch(device.last_minute + 1, [ReadingValues(120, 30)] * m)
        # 2 envelope + 2 member + 4 first minute + 1 count + m × (1 flags + 4 content + 16 tag) + 64 signature
        assert len(tx.raw) == 73 + 21 * m and tx.count == m


def test_each_minute_is_sealed_exactly_as_its_reading():
    single = ReadingDevice(CHAIN, 4, KeyPair.from_secret("m"), MEMBER_KEY)
    batching = BatchingDevice(CHAIN, 4, KeyPair.from_secret("m"), MEMBER_KEY)
    vs = [ReadingValues(5), ReadingValues(70_000, 1), ReadingValues(3, 0, 2301, 512, -950)]
    tx = batching.batch(10, vs)
    assert tx.readings == tuple(single.seal_minute(10 + i, v) for i, v in enumerate(vs))
    assert [r.flags for r in tx.readings] == [v.flags for v in vs] and readings_of(tx) == tx.readings


def test_a_batching_device_sends_runs_of_consecutive_minutes():
    device = BatchingDevice(CHAIN, 1, KeyPair.from_secret("m"), MEMBER_KEY, batch_minutes=3)
    sent = [device.report(minute, ReadingValues(minute)) for minute in (0, 1, 2, 3, 4, 7)]
    assert [len(s) for s in sent] == [0, 0, 1, 0, 0, 1]
    assert (sent[2][0].first_minute, sent[2][0].count) == (0, 3)
    assert (sent[5][0].first_minute, sent[5][0].count) == (3, 2)  # minute 7 does not follow 4: 3..4 go out
    (last,) = device.flush()
    assert isinstance(last, Reading) and last.minute == 7 and device.flush() == []
    with pytest.raises(ReadingError, match="not after"):
        device.report(7, ReadingValues(1))
    device.report(8, ReadingValues(1))
    with pytest.raises(ReadingError, match="not after"):
        device.report(8, ReadingValues(1))
    one = BatchingDevice(CHAIN, 1, KeyPair.from_secret("m"), MEMBER_KEY)
    assert [type(tx) for tx in one.report(0, ReadingValues(1))] == [Reading]
    # restored with a smaller batch than it held minutes for (a meter daemon restarted with a new batch_minutes):
    # what it held goes out in batches of the new size, the last one short
    held = [(m, ReadingValues(m)) for m in range(10, 15)]
    smaller = BatchingDevice(CHAIN, 1, KeyPair.from_secret("m"), MEMBER_KEY, 9, batch_minutes=2, held=held)
    sent = smaller.report(15, ReadingValues(15))
    assert [(tx.first_minute, tx.count) for tx in sent] == [(10, 2), (12, 2), (14, 2)] and smaller.held == []
    smaller.report(16, ReadingValues(16))
    (alone,) = smaller.flush()
    assert isinstance(alone, Reading) and alone.minute == 16
    with pytest.raises(ReadingError, match="at least one"):
        batch_of([])
    with pytest.raises(ReadingError, match="not member"):
        batch_of([seal(CHAIN, 1, 0, ReadingValues(1), bytes(16)), seal(CHAIN, 1, 2, ReadingValues(1), bytes(16))])


def test_malformed_batches_are_refused_with_specific_codes():
    device = BatchingDevice(CHAIN, 2, KeyPair.from_secret("m"), MEMBER_KEY)
    tx = device.batch(0, [ReadingValues(1), ReadingValues(2)])
    count_at, flags_at = 2 + 2 + 4, 2 + 2 + 4 + 1
    empty = tx.raw[:count_at] + bytes(1) + bytes(64)
    with pytest.raises(Reject, match="bad-reading-batch-empty"):
        decode_transaction(empty)
    with pytest.raises(Reject, match="bad-reading-batch-empty"):
        check_transaction(dataclasses.replace(tx, flags=(), sealed=()))
    raw = bytearray(tx.raw)
    raw[flags_at + 1] = 0x80
    with pytest.raises(Reject, match="bad-reading-flags"):
        decode_transaction(bytes(raw))
    with pytest.raises(Reject, match="bad-reading-flags"):
        check_transaction(dataclasses.replace(tx, flags=(0, 0x10)))
    with pytest.raises(Reject, match="bad-encoding-trailing"):
        decode_transaction(tx.raw + b"\0")
    with pytest.raises(Reject, match="bad-encoding-truncated"):
        decode_transaction(tx.raw[:-1])
    with pytest.raises(Reject, match="bad-reading-length"):
        check_transaction(dataclasses.replace(tx, sealed=tx.sealed[:1]))
    with pytest.raises(Reject, match="bad-reading-length"):
        check_transaction(dataclasses.replace(tx, sealed=list(tx.sealed)))
    with pytest.raises(Reject, match="bad-reading-length"):
        check_transaction(dataclasses.replace(tx, sealed=(tx.sealed[0], tx.sealed[1][:-1])))
    late = bytearray(tx.raw)
    late[4:8] = MAX_MINUTE.to_bytes(4, "big")  # minutes 2^32 − 1 and 2^32
    with pytest.raises(Reject, match="bad-reading-batch-minute"):
        decode_transaction(bytes(late))
    with pytest.raises(Reject, match="bad-encoding-overflow"):  # the count is a u8
        check_transaction(dataclasses.replace(tx, flags=(0,) * 256, sealed=(tx.sealed[0],) * 256))


# ------------------------------------------------------------------ ledger rules on a NAN chain
@pytest.fixture
def nan() -> Iterator[TierChain]:
    node = build_neighbourhood(3, batch_minutes=5)
    yield node
    node.close()


def batch(device: BatchingDevice, first: int, m: int = 5, wh: int = 10) -> ReadingBatch:
    return device.batch(first, [ReadingValues(wh)] * m)


def test_a_batch_is_committed_once_and_moves_the_members_counter(nan):
    meter = nan.members["MI-00001"]
    tx = batch(meter.device, 0)
    assert outcome(nan, tx, 4) == "ok"
    assert nan.replica.state.nonces["reading:1"] == 5
    assert outcome(nan, tx, 5) == "bad-reading-replay"
    fresh = dataclasses.replace(meter.device, last_minute=-1)
    assert outcome(nan, batch(fresh, 4, 3), 6) == "bad-reading-replay"  # overlaps minute 4
    again = dataclasses.replace(meter.device, last_minute=-1)
    assert outcome(nan, again.reading(4, ReadingValues(1)), 6) == "bad-reading-replay"
    assert outcome(nan, batch(meter.device, 5, 2), 6) == "ok"
    assert outcome(nan, meter.device.reading(7, ReadingValues(1)), 7) == "ok"


def test_batches_of_strangers_forgers_the_future_and_the_banned_are_refused(nan):
    meter = nan.members["MI-00000"]
    stranger = BatchingDevice(nan.chain_id, 9, KeyPair.from_secret("x"), bytes(32))
    assert outcome(nan, batch(stranger, 0), 4) == "bad-reading-member-unknown"
    impostor = BatchingDevice(nan.chain_id, meter.index, KeyPair.from_secret("x"), meter.device.content_key)
    assert outcome(nan, batch(impostor, 0), 4) == "bad-reading-signature"
    # the block of minute 9 is in slot 0 (minutes 0..14); a batch whose last minute is 15 ends in slot 1
    assert outcome(nan, batch(meter.device, 11), 9) == "bad-reading-future"
    tx = batch(meter.device, 20)
    signed = dataclasses.replace(tx, sealed=(bytes([tx.sealed[0][0] ^ 1]) + tx.sealed[0][1:], *tx.sealed[1:]))
    assert outcome(nan, signed, 24) == "bad-reading-signature"  # the signature covers every minute
    dso = DSO(KeyPair.from_secret("dso"), nan.chain_id, nonce=1)
    nan.coordinator.submit(dso.policy(1, ban=["MI-00002"]))
    assert nan.round(at(25)).committed is not None
    assert outcome(nan, batch(nan.members["MI-00002"].device, 25), 30) == "bad-reading-member-banned"


def test_the_rule_set_caps_the_minutes_of_a_batch(nan):
    meter = nan.members["MI-00000"]
    assert tier_ruleset(Tier.NAN).max_reading_batch == MAX_READING_BATCH == 60
    assert outcome(nan, batch(meter.device, 0, MAX_READING_BATCH + 1), 61) == "bad-reading-batch-count"
    assert outcome(nan, batch(meter.device, 100, MAX_READING_BATCH), 160) == "ok"
    for i, tier in enumerate((Tier.HAN, Tier.FAN, Tier.HEAD)):  # summaries and appliances: one READING each
        assert tier_ruleset(tier).max_reading_batch == 0
        with pytest.raises(Reject, match="bad-tx-kind-not-in-ruleset"):
            tier_ruleset(tier).check_transaction(batch(meter.device, 200 + 2 * i, 2))


# ------------------------------------------------------------------ a whole hierarchy whose meters batch
def test_a_hierarchy_whose_meters_send_batches_of_five_minutes():
    h = Hierarchy(fans=1, nans=1, homes=2, appliances=1, summary_minutes=5, anchor_minutes=5, batch_minutes=5)
    try:
        h.publish_prices((120, 80), 1)
        h.run(12)
        h.settle()  # sends minutes 10 and 11, still held by the meters, as batches of 2
        nan = h.chains["nan:DC-0-0"]
        txs = [tx for b in nan.coordinator.chain.blocks(1) for tx in b.transactions]
        assert not any(isinstance(tx, Reading) for tx in txs)
        runs = sorted((tx.member, tx.first_minute, tx.count) for tx in txs if isinstance(tx, ReadingBatch))
        assert runs == [(m, first, n) for m in (0, 1) for first, n in ((0, 5), (5, 5), (10, 2))]
        keys = nan.coordinator.content
        nan_total = sum(
            open_reading(nan.chain_id, r, keys.key_of(r)).consumption_wh for tx in txs for r in readings_of(tx)
        )
        han_total = sum(
            open_reading(han.chain_id, tx, han.coordinator.content.key_of(tx)).consumption_wh
            for han in h.chains.values()
            if han.tier == Tier.HAN
            for b in han.coordinator.chain.blocks(1)
            for tx in b.transactions
            if isinstance(tx, Reading)
        )
        assert nan_total == han_total > 0  # each meter's minute is the total of its home's appliances
        assert nan.replica.state.nonces["reading:0"] == nan.replica.state.nonces["reading:1"] == 12
        for node in h.chains.values():
            assert verify_store(node.coordinator.chain.store).snapshot() == node.replica.state.snapshot()
        check_anchors(n.coordinator.chain for n in h.chains.values())
        batch_tx = next(tx for tx in txs if isinstance(tx, ReadingBatch))
        minute = batch_tx.readings[3]
        proof = prove(Index(n.coordinator.chain for n in h.chains.values()), minute.txid)
        assert [link.chain for link in proof.links] == ["nan:DC-0-0", "fan:FAN-0", "head:utility"]
        assert decode_transaction(proof.reading).readings[3] == minute
        head = h.head.coordinator.chain
        assert check_proof(proof, head.chain_id, head_hash(head, proof.head.height))[-1].startswith("head-end block")
        # the DSO's side of a reward scores every minute, batched or not
        scored = member_readings(nan.coordinator.chain, keys, 0, 12)
        assert {m: [minute for minute, _ in rs] for m, rs in scored.items()} == {0: list(range(12)), 1: list(range(12))}
    finally:
        h.close()
