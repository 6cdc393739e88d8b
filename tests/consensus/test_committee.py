"""The committee rule (sortition weighted by efficiency score) and the quorum certificate every verifier checks."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.chain import verify_store
from gridledger.demo import run_demo
from gridledger.ledger.block import Vote
from gridledger.ledger.committee import Weights, committee_for, draw, quorum
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.ledger.members import DEFAULT_SCORE, roster
from gridledger.ledger.ruleset import Tier, ruleset_of, tier_ruleset
from gridledger.store.sqlite import SqliteStore

from .support import METERS, commit_minutes, minute_time, readings

WEIGHTS = st.lists(st.integers(1, 10_001), min_size=1, max_size=40)


@given(st.binary(min_size=32, max_size=32), WEIGHTS, st.integers(0, 45))
@settings(max_examples=60, deadline=None)
def test_draw_is_deterministic_distinct_and_sized(seed, weights, k):
    cumulative = list(itertools.accumulate(weights))
    picked = draw(seed, cumulative, k)
    assert picked == draw(seed, cumulative, k)
    assert len(picked) == len(set(picked)) == min(k, len(weights))
    assert all(0 <= i < len(weights) for i in picked)


def test_draw_is_weighted_by_score():
    # one member of weight 1 001 (the top score) among nine of weight 1: it wins a one-seat draw almost always
    cumulative = list(range(1, 10)) + [9 + 1_001]
    wins = sum(draw(i.to_bytes(32, "big"), cumulative, 1) == [9] for i in range(300))
    assert wins >= 295


@given(st.integers(0, 10_000))
def test_quorum_is_a_strict_majority(k):
    q = quorum(k)
    if k == 0:
        assert q == 0
    else:
        assert 2 * q > k >= 2 * (q - 1)


def test_the_tier_is_the_rule_set_the_genesis_names_not_its_name(nan):
    assert nan.genesis.ruleset == "nan" and ruleset_of(nan.genesis).tier is Tier.NAN
    for name in ("nan-demo", "x", "head:x"):
        assert ruleset_of(dataclasses.replace(nan.genesis, chain=name)).tier is Tier.NAN
    assert ruleset_of(dataclasses.replace(nan.genesis, ruleset="petra")).tier is None
    assert Tier.HAN.parent is Tier.NAN and Tier.HEAD.parent is None


def test_committee_is_drawn_from_the_enrolled_members_and_verifiable(nan):
    for tx in readings(nan, 0):
        nan.coordinator.submit(tx)
    block = nan.coordinator.propose(minute_time(0))
    committee = committee_for(nan.coordinator.chain.state, block.header)
    members = {m.key.public for m in nan.members.values()}
    assert len(committee.members) == tier_ruleset(Tier.NAN).committee_size < METERS
    assert committee.keys <= members and committee.required == 3
    # anyone recomputes the same committee from their own copy of the chain
    assert committee_for(nan.replica.state, block.header) == committee
    assert committee_for(nan.coordinators[1].replica.state, block.header) == committee
    assert len(roster(nan.replica.state)) == METERS


def test_committee_changes_with_the_previous_block(nan):
    committees = set()
    for minute in range(6):
        commit_minutes(nan, range(minute, minute + 1))
        tip = next(nan.coordinator.chain.blocks(nan.coordinator.chain.height))
        committees.add(frozenset(v.pubkey for v in tip.certificate))
    assert len(committees) > 1


def test_weights_follow_committed_scores(nan):
    table = Weights.of(nan.replica.state, 0)
    assert table.cumulative[0] == 1 + DEFAULT_SCORE == 501  # the default score before any reward
    assert len(table.members) == METERS


# ----------------------------------------------------------------- certificates
def certified_block(nan):
    for tx in readings(nan, 0):
        nan.coordinator.submit(tx)
    block = nan.coordinator.propose(minute_time(0))
    committee = nan.coordinator.committee(block)
    votes = [nan.validators[pk].validate(block, nan.coordinator.disclose(block, pk)) for _, pk in committee.members]
    assert all(isinstance(v, Vote) for v in votes)
    return block, sorted(votes, key=lambda v: v.pubkey), committee


def test_a_quorum_of_committee_votes_commits(nan):
    block, votes, committee = certified_block(nan)
    committed = nan.coordinator.commit(block, votes).block
    assert len(committed.certificate) == committee.required
    nan.replica.commit(committed)  # another node checks the certificate and every rule
    assert nan.replica.height == nan.coordinator.chain.height == 2


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        (lambda votes, other: votes[:2], "bad-qc-insufficient"),
        (lambda votes, other: [votes[0], votes[0], votes[1]], "bad-qc-duplicate"),
        (lambda votes, other: [votes[1], votes[0], votes[2]], "bad-qc-order"),
        (lambda votes, other: sorted([*votes[:2], other], key=lambda v: v.pubkey), "bad-qc-nonmember"),
        (
            lambda votes, other: [votes[0], votes[1], Vote(votes[2].pubkey, bytes(64))],
            "bad-qc-signature",
        ),
    ],
)
def test_every_verifier_rejects_a_bad_certificate(nan, tamper, code):
    block, votes, committee = certified_block(nan)
    outsider = KeyPair.from_secret("not a member")
    other = Vote(outsider.public, outsider.sign(block.header.signing_message()))
    bad = dataclasses.replace(block, certificate=tuple(tamper(votes[: committee.required], other)))
    with pytest.raises(Reject) as e:
        nan.replica.commit(bad)
    assert e.value.code == code and e.value.height == block.height
    assert nan.replica.height == 1  # nothing applied


def test_a_vote_for_another_block_does_not_count(nan):
    block, votes, committee = certified_block(nan)
    other = dataclasses.replace(block.header, time=block.header.time + 1)
    moved = [Vote(v.pubkey, nan.validators[v.pubkey].key.sign(other.signing_message())) for v in votes]
    with pytest.raises(Reject, match="bad-qc-signature"):
        nan.replica.commit(dataclasses.replace(block, certificate=tuple(moved[: committee.required])))


def test_the_coordinator_refuses_bad_votes_with_their_codes(nan):
    block, votes, committee = certified_block(nan)
    outsider = KeyPair.from_secret("not a member")
    bogus = [Vote(outsider.public, outsider.sign(block.header.signing_message())), Vote(votes[0].pubkey, bytes(64))]
    result = nan.coordinator.commit(block, [*bogus, *votes])
    assert {e.code for e in result.refused.values()} == {"bad-qc-nonmember", "bad-qc-signature"}
    with pytest.raises(Reject, match="bad-qc-insufficient"):
        nan.coordinators[1].commit(block, bogus)


def test_proposals_skip_the_certificate_and_change_nothing(nan):
    for tx in readings(nan, 0):
        nan.coordinator.submit(tx)
    block = nan.coordinator.propose(minute_time(0))
    before = nan.replica.state.snapshot()
    nan.replica.state.apply_block(block, proposal=True)
    assert nan.replica.state.snapshot() == before
    with pytest.raises(Reject, match="bad-qc-insufficient"):
        nan.replica.state.apply_block(block)


def test_replay_checks_every_stored_certificate(tmp_path: Path):
    from gridledger.tiers.hierarchy import build_neighbourhood

    node = build_neighbourhood(5, directory=tmp_path)
    commit_minutes(node, range(3))
    store = node.coordinator.chain.store
    assert verify_store(store).height == 4
    # strip the certificate of block 3 in the store: replay must refuse it
    raw = store.block_bytes(3)
    block = next(node.coordinator.chain.blocks(3))
    stripped = dataclasses.replace(block, certificate=()).encode()
    assert stripped != raw
    store.db.execute("UPDATE blocks SET data = ? WHERE height = 3", (stripped,))
    with pytest.raises(Reject) as e:
        verify_store(store)
    assert (e.value.code, e.value.height) == ("bad-qc-insufficient", 3)
    node.close()


def test_untagged_chains_keep_the_coordinator_only_rule(tmp_path: Path):
    result = run_demo(tmp_path)  # the PETra demo's chain "nan-demo" has no tier tag and no votes
    store = SqliteStore(result.path)
    assert verify_store(store).height == len(result.blocks) - 1
    store.close()
