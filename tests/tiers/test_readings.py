"""Signed readings: compact encoding, AES-GCM-128 content with per-reading keys, and the ledger rules."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds import check_transaction, decode_transaction
from gridledger.ledger.kinds.reading import (
    KNOWN_FLAGS,
    POWER_FACTOR,
    VOLTAGE,
    WIDE,
    ChainKeys,
    ContentKeys,
    Reading,
    ReadingDevice,
    ReadingError,
    ReadingValues,
    open_reading,
    reading_key,
    reading_nonce,
    seal,
    summarize,
)
from gridledger.ledger.merkle import leaf_hash
from gridledger.petra.dso import DSO
from gridledger.tiers.hierarchy import START_TIME, TierChain, build_neighbourhood

from .support import outcome as committed_or_code

CHAIN = bytes(range(32))
KEY = bytes(16)

values = st.builds(
    ReadingValues,
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.none() | st.integers(0, 0xFFFF),
    st.none() | st.integers(0, 0xFFFF),
    st.none() | st.integers(-1000, 1000),
)


@given(st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1), values)
def test_readings_round_trip_through_bytes_and_encryption(member, minute, v):
    tx = seal(CHAIN, member, minute, v, KEY)
    decoded = decode_transaction(tx.raw)
    assert decoded == tx and decoded.raw == tx.raw
    assert open_reading(CHAIN, decoded, KEY) == v


def test_a_plain_reading_is_93_bytes():
    device = ReadingDevice(CHAIN, 17, KeyPair.from_secret("meter"), bytes(32))
    tx = device.reading(5, ReadingValues(120, 30))
    assert len(tx.raw) == 93  # 2 envelope + 2 member + 4 minute + 1 flags + 4 content + 16 tag + 64 signature
    assert len(device.reading(6, ReadingValues(120, 30, 2301, 512, -950)).raw) == 99
    assert tx.flags == 0 and device.reading(7, ReadingValues(70_000)).flags == WIDE


def test_content_is_bound_to_its_key_chain_member_and_minute():
    tx = seal(CHAIN, 3, 9, ReadingValues(42, 1), KEY)
    with pytest.raises(ReadingError):
        open_reading(CHAIN, tx, bytes([1]) * 16)
    with pytest.raises(ReadingError):
        open_reading(bytes(32), tx, KEY)  # another chain
    for moved in (dataclasses.replace(tx, member=4), dataclasses.replace(tx, minute=10)):
        with pytest.raises(ReadingError):
            open_reading(CHAIN, moved, KEY)
    flipped = dataclasses.replace(tx, sealed=bytes([tx.sealed[0] ^ 1]) + tx.sealed[1:])
    with pytest.raises(ReadingError):
        open_reading(CHAIN, flipped, KEY)


def test_nonces_and_keys_are_derived_per_reading():
    assert reading_nonce(CHAIN, 1, 5) == reading_nonce(CHAIN, 1, 5)
    assert len({reading_nonce(CHAIN, m, t) for m in range(3) for t in range(3)}) == 9
    member_key = ChainKeys(CHAIN, bytes(32)).member_key(1)
    assert reading_key(member_key, CHAIN, 1, 5) != reading_key(member_key, CHAIN, 1, 6)
    # a disclosed per-reading key opens that reading only
    device = ReadingDevice(CHAIN, 1, KeyPair.from_secret("m"), member_key)
    r5, r6 = device.reading(5, ReadingValues(1)), device.reading(6, ReadingValues(2))
    k5 = reading_key(member_key, CHAIN, 1, 5)
    assert open_reading(CHAIN, r5, k5) == ReadingValues(1)
    with pytest.raises(ReadingError):
        open_reading(CHAIN, r6, k5)


def test_the_dso_and_the_coordinator_derive_the_members_keys():
    root = ContentKeys(bytes(32))
    coordinator = root.chain(CHAIN)
    assert coordinator == root.chain(CHAIN) and coordinator.master != root.chain(bytes(32)).master
    device = ReadingDevice(CHAIN, 2, KeyPair.from_secret("m"), coordinator.member_key(2))
    tx = device.reading(0, ReadingValues(7))
    assert open_reading(CHAIN, tx, root.chain(CHAIN).key_of(tx)) == ReadingValues(7)


def test_a_device_never_encrypts_twice_for_one_minute():
    device = ReadingDevice(CHAIN, 0, KeyPair.from_secret("m"), bytes(32))
    device.reading(3, ReadingValues(1))
    for minute in (3, 2):
        with pytest.raises(ReadingError, match="not after"):
            device.reading(minute, ReadingValues(2))


@pytest.mark.parametrize(
    "bad",
    [
        ReadingValues(-1),
        ReadingValues(2**32),
        ReadingValues(1, -5),
        ReadingValues(1, 0, 70_000),
        ReadingValues(1, 0, None, -1),
        ReadingValues(1, 0, None, None, 1001),
        ReadingValues(True),
        ReadingValues(1.5),
    ],
)
def test_values_out_of_range_are_refused(bad):
    with pytest.raises(ReadingError):
        bad.encode()


def test_content_must_be_canonical_for_its_flags():
    with pytest.raises(ReadingError, match="not canonical"):
        ReadingValues.decode(WIDE, (5).to_bytes(4, "big") + (0).to_bytes(4, "big"))
    with pytest.raises(ReadingError, match="does not match"):
        ReadingValues.decode(VOLTAGE, bytes(4))
    with pytest.raises(ReadingError, match="power_factor_pm"):  # a u16 field holds up to 65535 − 1000
        ReadingValues.decode(POWER_FACTOR, bytes(4) + (1000 + 1001).to_bytes(2, "big"))
    full = ReadingValues(70_000, 3, 2_300, 512, -950)
    assert ReadingValues.decode(full.flags, full.encode()) == full


def test_summaries_add_energies():
    total = summarize([ReadingValues(10, 1, 2300), ReadingValues(5, 0)])
    assert total == ReadingValues(15, 1)
    with pytest.raises(ReadingError):
        summarize([ReadingValues(2**32 - 1), ReadingValues(1)])


def test_unknown_flags_and_wrong_lengths_are_refused():
    tx = seal(CHAIN, 0, 0, ReadingValues(1), KEY)
    raw = bytearray(tx.raw)
    raw[8] = 0x80  # the flags byte
    with pytest.raises(Reject, match="bad-reading-flags"):
        decode_transaction(bytes(raw))
    with pytest.raises(Reject, match="bad-reading-flags"):
        check_transaction(dataclasses.replace(tx, flags=KNOWN_FLAGS + 1))
    with pytest.raises(Reject, match="bad-reading-length"):
        check_transaction(dataclasses.replace(tx, sealed=tx.sealed[:-1]))
    with pytest.raises(Reject, match="bad-encoding-truncated"):
        decode_transaction(tx.raw[:-1])


# ------------------------------------------------------------------ ledger rules on a NAN chain
@pytest.fixture
def nan() -> Iterator[TierChain]:
    node = build_neighbourhood(3)
    yield node
    node.close()


def at(minute: int) -> int:
    return START_TIME + 60 * (minute + 1) + 1


def outcome(nan: TierChain, tx: Reading, minute: int) -> str:
    return committed_or_code(nan, tx, at(minute))


def test_an_enrolled_members_reading_is_committed_once(nan):
    meter = nan.members["MI-00001"]
    tx = meter.device.reading(4, ReadingValues(10))
    assert outcome(nan, tx, 4) == "ok"
    assert nan.replica.state.nonces["reading:1"] == 5
    assert outcome(nan, tx, 5) == "bad-reading-replay"
    older = dataclasses.replace(meter.device, last_minute=-1).reading(3, ReadingValues(9))
    assert outcome(nan, older, 5) == "bad-reading-replay"


def test_readings_of_strangers_forgers_and_the_future_are_refused(nan):
    meter = nan.members["MI-00000"]
    stranger = ReadingDevice(nan.chain_id, 9, KeyPair.from_secret("x"), bytes(32))
    assert outcome(nan, stranger.reading(0, ReadingValues(1)), 0) == "bad-reading-member-unknown"
    impostor = ReadingDevice(nan.chain_id, meter.index, KeyPair.from_secret("x"), meter.device.content_key)
    assert outcome(nan, impostor.reading(0, ReadingValues(1)), 0) == "bad-reading-signature"
    # the block of minute 1 is in slot 0; a reading for minute 15 ends in slot 1
    assert outcome(nan, meter.device.reading(15, ReadingValues(1)), 1) == "bad-reading-future"


def test_a_banned_meter_can_no_longer_report(nan):
    dso = DSO(KeyPair.from_secret("dso"), nan.chain_id, nonce=1)
    nan.coordinator.submit(dso.policy(0, ban=["MI-00002"]))
    assert nan.round(at(0)).committed is not None
    tx = nan.members["MI-00002"].device.reading(1, ReadingValues(1))
    assert outcome(nan, tx, 1) == "bad-reading-member-banned"


def test_the_merkle_leaf_commits_to_the_ciphertext(nan):
    tx = nan.members["MI-00000"].device.reading(0, ReadingValues(10))
    nan.coordinator.submit(tx)
    block = nan.round(at(0)).committed
    altered = dataclasses.replace(tx, sealed=bytes([tx.sealed[0] ^ 1]) + tx.sealed[1:])
    assert leaf_hash(altered.raw) != leaf_hash(tx.raw)
    tampered = dataclasses.replace(block, transactions=(altered,))
    other = build_neighbourhood(3)
    with pytest.raises(Reject, match="bad-blk-merkle"):
        other.replica.commit(tampered)
    other.close()
