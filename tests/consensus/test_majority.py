"""The 51 % scenario: the NAN coordinator and a majority of a block's committee collude and certify a block that
breaks a ledger rule (an over-issue, a fake (replayed) reading). The certificate is valid, yet every replica refuses
the block, the FAN refuses its anchor, and an alarm about it is committed on the FAN, where the DSO reads it."""

from __future__ import annotations

import dataclasses
import time

import pytest

from gridledger.consensus.anchoring import REFUSED_DETECTOR, refusal_alarms
from gridledger.ledger.assets import EPA, Output
from gridledger.ledger.block import Block, Vote, make_block
from gridledger.ledger.committee import certify, check_block_certificate, committee_for
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds.alarm import Alarm, AlarmCode
from gridledger.ledger.kinds.anchor import make_anchor
from gridledger.ledger.kinds.meter_issue import MeterIssue
from gridledger.ledger.kinds.reading import Reading
from gridledger.tiers.hierarchy import METER_LIMITS, Hierarchy


@pytest.fixture
def world():
    h = Hierarchy(fans=1, nans=1, homes=5, appliances=1, anchor_minutes=2, summary_minutes=2)
    h.run(4)
    yield h
    h.close()


def collude(nan, txs) -> Block:
    """The captured coordinator proposes ``txs``; the committee majority signs without checking."""
    state = nan.coordinator.chain.state
    block = make_block(
        nan.chain_id, state.height + 1, state.tip_hash, state.tip_time + 1, tuple(txs), nan.coordinator.key
    )
    committee = committee_for(state, block.header)
    signers = sorted(committee.keys)[: committee.required]
    votes = [Vote(pk, nan.validators[pk].key.sign(block.header.signing_message())) for pk in signers]
    return dataclasses.replace(block, certificate=certify(committee, votes))


def over_issue(nan) -> list:
    ident, member = next(iter(nan.members.items()))
    slot = nan.coordinator.chain.state.slot_of(nan.coordinator.chain.state.tip_time + 1)
    too_much = Output(EPA(METER_LIMITS[0] + 1, slot, slot + 1), KeyPair.from_secret("colluder").address)
    return [MeterIssue(ident, 1, (too_much,)).signed(nan.chain_id, member.key)]


def fake_reading(nan) -> list:
    """A reading committed before, submitted again (as a meter's fresh one)."""
    return [next(tx for b in nan.coordinator.chain.blocks(1) for tx in b.transactions if isinstance(tx, Reading))]


@pytest.mark.parametrize(
    ("attack", "code"), [(over_issue, "bad-issue-over-limit"), (fake_reading, "bad-reading-replay")]
)
def test_a_colluding_committee_majority_cannot_commit_a_rule_breaking_block(world, attack, code):
    nan = world.chains["nan:DC-0-0"]
    fan = nan.parent
    primary, backup = nan.coordinators
    bad = collude(nan, attack(nan))
    check_block_certificate(nan.coordinator.chain.state, bad)  # the certificate itself is valid

    # every replica re-runs every ledger rule and refuses it, whatever the votes
    started = time.perf_counter()
    before = {id(r): (r.height, r.state.tip_hash) for r in nan.replicas()}
    for replica in nan.replicas():
        with pytest.raises(Reject) as refused:
            replica.commit(bad)
        assert refused.value.code == code
        assert (replica.height, replica.state.tip_hash) == before[id(replica)]
        assert replica.refused[bad.height][0] == bad.hash

    # the honest backup concentrator (a FAN member) reports it on the FAN, out of the captured chain's reach
    (alarm,) = refusal_alarms(backup.replica, fan.chain_id, fan.coordinator.chain.height, backup.key)
    assert refusal_alarms(backup.replica, fan.chain_id, fan.coordinator.chain.height, backup.key) == []
    fan.coordinator.submit(alarm)
    committed = fan.round(world.time + 1).committed
    detection_s = time.perf_counter() - started
    assert committed is not None and alarm in committed.transactions
    # the DSO reads the FAN's alarms: one names the refused block
    seen = [
        tx
        for b in fan.replica.chain.blocks(1)
        for tx in b.transactions
        if isinstance(tx, Alarm) and tx.code == AlarmCode.TAMPERING and tx.detector == REFUSED_DETECTOR
    ]
    assert [a.subject for a in seen] == [bad.hash] and seen[0].raiser == backup.key.public

    # the captured coordinator anchors its chain with the bad block: the FAN's members that hold the NAN vote no
    first = nan.anchored()
    hashes = [b.hash for b in primary.chain.blocks(first)] + [bad.hash]
    anchor = make_anchor(fan.chain_id, nan.chain_id, first, hashes, primary.key)
    fan.coordinator.submit(anchor)
    result = fan.round(world.time + 2)
    assert result.committed is None
    assert {v.code for v in result.votes.values() if isinstance(v, Reject)} == {"bad-poef-anchor-refused"}
    print(f"\n{attack.__name__}: refused by {len(nan.replicas())} replicas, alarm on the FAN in {detection_s:.3f} s")


def test_an_anchor_that_differs_from_the_held_child_blocks_is_refused(world):
    nan = world.chains["nan:DC-0-0"]
    fan = nan.parent
    world.step()
    first = nan.anchored()
    hashes = nan.block_hashes(first)
    hashes[-1] = bytes(32)  # a block no replica holds
    anchor = make_anchor(fan.chain_id, nan.chain_id, first, hashes, nan.coordinator.key)
    fan.coordinator.submit(anchor)
    result = fan.round(world.time + 1)
    assert result.committed is None
    assert {v.code for v in result.votes.values() if isinstance(v, Reject)} == {"bad-poef-anchor-mismatch"}
