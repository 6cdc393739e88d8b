"""Anchors link every block to the tier above; alarms record anomalies; both are refused when forged."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds import check_transaction, decode_transaction
from gridledger.ledger.kinds.alarm import Alarm, AlarmCode, raise_alarm
from gridledger.ledger.kinds.anchor import MAX_ANCHOR_BLOCKS, Anchor, make_anchor
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.ledger.ruleset import Tier
from gridledger.ledger.units import DEFAULT_SLOT_SECONDS
from gridledger.tiers.audit import check_anchors
from gridledger.tiers.hierarchy import START_TIME, Hierarchy, TierChain, chain_name

from .support import outcome


@pytest.fixture
def tiers() -> Iterator[Hierarchy]:
    h = Hierarchy(fans=1, nans=1, homes=2, appliances=1)
    for _ in range(3):
        h.step(anchor=False)
    yield h
    h.close()


@pytest.fixture
def han(tiers) -> TierChain:
    return tiers.chains["han:MI-0-0-0"]


def anchor(child: TierChain, parent: TierChain, first: int, key: KeyPair | None = None, genesis=None) -> Anchor:
    hashes = child.block_hashes(first)
    signer = key or child.coordinator.key
    genesis = genesis or (child.genesis if first == 0 else None)
    return make_anchor(parent.chain_id, child.chain_id, first, hashes, signer, genesis)


def test_anchors_round_trip():
    key = KeyPair.from_secret("k")
    g = Genesis(chain_name(Tier.HAN, "h"), DEFAULT_SLOT_SECONDS, START_TIME, key.public, (key.public,), ruleset="han")
    tx = make_anchor(bytes(32), g.chain_id, 0, [bytes([i]) * 32 for i in range(5)], key, g)
    assert decode_transaction(tx.raw) == tx and tx.covers(4) and not tx.covers(5)


def test_contiguous_anchors_by_the_childs_coordinator_are_accepted(tiers, han):
    nan = han.parent
    t = tiers.time
    assert outcome(nan, anchor(han, nan, 0), t + 1) == "ok"
    first_next = han.anchored()
    assert first_next == han.coordinator.chain.height + 1
    tiers.step(anchor=False)
    assert outcome(nan, anchor(han, nan, first_next), tiers.time + 1) == "ok"
    covered = check_anchors(c.coordinator.chain for c in tiers.chains.values())
    assert covered[han.name] == han.anchored()


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda han, nan: dataclasses.replace(anchor(han, nan, 0), genesis=b""), "bad-anchor-genesis"),
        (lambda han, nan: dataclasses.replace(anchor(han, nan, 1), genesis=han.genesis.raw), "bad-anchor-genesis"),
        (
            lambda han, nan: dataclasses.replace(anchor(han, nan, 0), genesis=nan.genesis.raw),
            "bad-anchor-genesis",
        ),
        (lambda han, nan: dataclasses.replace(anchor(han, nan, 3), first=4, last=3), "bad-anchor-range"),
        (lambda han, nan: dataclasses.replace(anchor(han, nan, 3), last=3 + MAX_ANCHOR_BLOCKS), "bad-anchor-range"),
        (
            lambda han, nan: anchor(han, nan, 0, key=nan.members["MI-0-0-1"].key),
            "bad-anchor-signer",
        ),
    ],
)
def test_malformed_anchors_are_refused_without_context(han, make, code):
    with pytest.raises(Reject) as e:
        check_transaction(make(han, han.parent))
    assert e.value.code == code


def test_anchors_out_of_order_or_by_others_are_refused(tiers):
    child = tiers.chains["han:MI-0-0-1"]
    nan = child.parent
    t = tiers.time + 5
    assert outcome(nan, anchor(child, nan, 2), t) == "bad-anchor-gap"
    assert outcome(nan, anchor(child, nan, 0), t) == "ok"
    assert outcome(nan, anchor(child, nan, 0), t + 1) == "bad-anchor-overlap"
    tiers.step(anchor=False)
    other_meter = nan.members["MI-0-0-0"].key
    assert outcome(nan, anchor(child, nan, child.anchored(), key=other_meter), tiers.time + 1) == "bad-anchor-signer"
    forged = anchor(child, nan, child.anchored())
    forged = dataclasses.replace(forged, signature=bytes(64))
    assert outcome(nan, forged, tiers.time + 2) == "bad-anchor-signature"


def test_only_members_anchor_and_only_into_the_tier_above(tiers):
    nan = tiers.chains["nan:DC-0-0"]
    fan = nan.parent
    outsider = KeyPair.from_secret("outsider")
    rogue = Genesis(
        chain_name(Tier.HAN, "rogue"),
        DEFAULT_SLOT_SECONDS,
        START_TIME,
        outsider.public,
        (outsider.public,),
        ruleset="han",
    )
    tx = make_anchor(nan.chain_id, rogue.chain_id, 0, [bytes(32)], outsider, rogue)
    assert outcome(nan, tx, tiers.time + 3) == "bad-anchor-signer-unknown"
    dc = nan.coordinator.key  # a member of the FAN chain, but a HAN does not anchor into a FAN
    for ruleset in ("han", "petra"):  # the tier is the child's rule set, whatever its name says
        skipping = Genesis(
            chain_name(Tier.NAN, "skip"), DEFAULT_SLOT_SECONDS, START_TIME, dc.public, (dc.public,), ruleset=ruleset
        )
        tx = make_anchor(fan.chain_id, skipping.chain_id, 0, [bytes(32)], dc, skipping)
        assert outcome(fan, tx, tiers.time + 3) == "bad-anchor-tier"
    unknown = Genesis("nan:odd", DEFAULT_SLOT_SECONDS, START_TIME, dc.public, (dc.public,), ruleset="wan")
    tx = make_anchor(fan.chain_id, unknown.chain_id, 0, [bytes(32)], dc, unknown)
    assert outcome(fan, tx, tiers.time + 3) == "bad-genesis-ruleset"
    own = make_anchor(fan.chain_id, fan.chain_id, 0, [bytes(32)], fan.coordinator.key, fan.genesis)
    assert outcome(fan, own, tiers.time + 4) == "bad-anchor-self"


def test_an_anchor_that_does_not_match_the_child_fails_the_audit(tiers):
    nan = tiers.chains["nan:DC-0-0"]
    fan = nan.parent
    hashes = nan.block_hashes(0)
    hashes[1] = bytes(32)  # a forked or altered child block
    tx = make_anchor(fan.chain_id, nan.chain_id, 0, hashes, nan.coordinator.key, nan.genesis)
    # the members above that hold the child (its coordinators) vote no
    fan.coordinator.submit(tx)
    refused = fan.round(tiers.time + 5)
    assert refused.committed is None
    assert {v.code for v in refused.votes.values() if isinstance(v, Reject)} == {"bad-poef-anchor-mismatch"}
    fan.coordinator.abandon([tx.txid])
    for member in fan.members.values():  # members that do not replicate the child cannot see it...
        member.validator.children.clear()
    assert outcome(fan, tx, tiers.time + 6) == "ok"
    with pytest.raises(Reject, match="differs from the stored blocks"):  # ...an auditor with both chains can
        check_anchors(c.coordinator.chain for c in tiers.chains.values())


def test_an_anchor_beyond_the_child_tip_fails_the_audit(tiers):
    nan = tiers.chains["nan:DC-0-0"]
    fan = nan.parent
    hashes = [*nan.block_hashes(0), bytes(32)]  # one block more than the child has
    tx = make_anchor(fan.chain_id, nan.chain_id, 0, hashes, nan.coordinator.key, nan.genesis)
    assert outcome(fan, tx, tiers.time + 5) == "ok"
    with pytest.raises(Reject, match="which it does not have"):
        check_anchors(c.coordinator.chain for c in tiers.chains.values())


# ------------------------------------------------------------------ alarms
def test_alarms_are_raised_by_coordinators_the_dso_or_members(tiers):
    nan = tiers.chains["nan:DC-0-0"]
    subject = bytes([7]) * 32
    t = tiers.time + 10
    for i, key in enumerate((nan.coordinator.key, KeyPair.from_secret("dso"), nan.members["MI-0-0-1"].key)):
        tx = raise_alarm(nan.chain_id, AlarmCode.TAMPERING, subject, 1, f"twin-{i}", key)
        assert decode_transaction(tx.raw) == tx
        assert outcome(nan, tx, t + i) == "ok"
    stranger = raise_alarm(nan.chain_id, AlarmCode.TAMPERING, subject, 1, "twin", KeyPair.from_secret("stranger"))
    assert outcome(nan, stranger, t + 5) == "bad-alarm-raiser"
    genuine = raise_alarm(nan.chain_id, AlarmCode.TAMPERING, subject, 1, "x", nan.coordinator.key)
    forged = dataclasses.replace(genuine, signature=bytes(64))
    assert outcome(nan, forged, t + 6) == "bad-alarm-signature"


@pytest.mark.parametrize(
    ("alarm", "code"),
    [
        (Alarm(99, bytes(32), 0, "band", bytes(32)), "bad-alarm-code"),
        (Alarm(1, bytes(32), 0, "no spaces", bytes(32)), "bad-encoding-name"),
        (Alarm(1, bytes(31), 0, "band", bytes(32)), "bad-encoding-size"),
    ],
)
def test_malformed_alarms_are_refused(alarm, code):
    with pytest.raises(Reject) as e:
        check_transaction(alarm)
    assert e.value.code == code
