"""PoEf rewards: scores follow the rule from the published components, amounts follow the rule from the scores,
every validator recomputes both, and nobody mints outside the rule."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridledger.ledger import crypto
from gridledger.ledger.assets import ECA, FA, Output, outpoint
from gridledger.ledger.block import Vote, make_block
from gridledger.ledger.committee import Weights
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds import check_transaction, decode_transaction
from gridledger.ledger.kinds.reward import (
    RATE_CAP,
    THRESHOLD,
    Reward,
    Scorecard,
    make_reward,
    reward_amounts,
    score_of,
)
from gridledger.ledger.kinds.transfer import Transfer
from gridledger.ledger.members import DEFAULT_SCORE, MAX_SCORE, score

from .support import minute_time

DSO = KeyPair.from_secret("dso")
#: member → (forecast adherence, power quality, peak reduction), per mille
COMPONENTS = {0: (900, 950, 850), 1: (700, 700, 700), 2: (500, 400, 600), 3: (100, 100, 100)}
RATE = 100
#: Just after period 0 (the chain's first day) ended.
DAY_1 = minute_time(1_439)

component = st.integers(0, MAX_SCORE)
cards = st.lists(st.tuples(component, component, component), min_size=1, max_size=30)


@given(cards)
def test_the_score_is_the_integer_mean_of_the_components(parts):
    for c in parts:
        s = score_of(c)
        assert s == sum(c) // 3 and min(c) <= s <= max(c)


@given(st.integers(0, RATE_CAP), cards)
def test_amounts_are_the_rate_times_the_score_above_the_threshold(rate, parts):
    scored = [Scorecard(m, *c, score_of(c)) for m, c in enumerate(parts)]
    paid = dict(reward_amounts(rate, scored))
    for card in scored:
        expected = rate * max(0, card.score - THRESHOLD)
        assert paid.get(card.member, 0) == expected and (card.member in paid) == (expected > 0)
    assert sum(paid.values()) <= rate * (MAX_SCORE - THRESHOLD) * len(scored)


def reward(nan, period=0, rate=RATE, components=COMPONENTS, key=DSO) -> Reward:
    return make_reward(nan.coordinator.chain.state, period, rate, components, key)


def commit(nan, tx, time=DAY_1):
    nan.coordinator.submit(tx)
    return nan.round(time)


def refused(nan, tx, time=DAY_1) -> str:
    """The code ``tx`` is refused with: on submission (context-free rules) or when the coordinator orders it."""
    try:
        nan.coordinator.submit(tx)
    except Reject as e:
        return e.code
    assert nan.round(time).block is None
    return nan.coordinator.rejected[tx.txid].code


def test_a_reward_pays_the_rule_to_the_members_keys_and_commits_their_scores(nan):
    tx = reward(nan)
    assert decode_transaction(tx.raw) == tx
    assert [c.score for c in tx.cards] == [900, 700, 500, 100]
    result = commit(nan, tx)
    assert result.committed is not None and tx in result.committed.transactions
    state = nan.replica.state
    paid = {o.owner: o.asset.amount for o in tx.outputs}
    keys = {m.index: m.key for m in nan.members.values()}
    assert paid == {crypto.address_of(keys[0].public): 40_000, crypto.address_of(keys[1].public): 20_000}
    for i, o in enumerate(tx.outputs):
        assert state.output(tx.txid + i.to_bytes(2, "big")) == o
    assert [score(state, m) for m in range(5)] == [900, 700, 500, 100, DEFAULT_SCORE]
    # the committed scores weight the next committees
    weights = Weights.of(state, 0)
    assert weights.cumulative[0] == 901 and weights.cumulative[3] - weights.cumulative[2] == 101


def signed(nan, tx: Reward, key: KeyPair = DSO) -> Reward:
    return dataclasses.replace(tx, signature=key.sign(tx.sighash(nan.chain_id)))


def outsider_output(amount=1):
    return Output(FA(amount), KeyPair.from_secret("outsider").address)


def more(tx: Reward) -> Reward:
    first = tx.outputs[0]
    return dataclasses.replace(tx, outputs=(Output(FA(first.asset.amount + 1), first.owner), *tx.outputs[1:]))


def wrong_member(tx: Reward) -> Reward:
    a, b = tx.outputs
    return dataclasses.replace(tx, outputs=(Output(a.asset, b.owner), Output(b.asset, a.owner)))


def wrong_score(tx: Reward) -> Reward:
    """Member 3 claims a score its components do not give, and is paid for it."""
    cards = (*tx.cards[:3], tx.cards[3]._replace(score=900))
    return dataclasses.replace(tx, cards=cards, outputs=(*tx.outputs, Output(FA(40_000), outsider_output().owner)))


def better_components(tx: Reward) -> Reward:
    """Member 0's components raised, its score and outputs left as they were."""
    return dataclasses.replace(tx, cards=(tx.cards[0]._replace(forecast_adherence=1000), *tx.cards[1:]))


MINTING = [
    (more, "bad-reward-rule"),
    (lambda tx: dataclasses.replace(tx, outputs=(*tx.outputs, outsider_output())), "bad-reward-rule"),
    (lambda tx: dataclasses.replace(tx, outputs=tx.outputs[:1]), "bad-reward-rule"),
    (lambda tx: dataclasses.replace(tx, outputs=(outsider_output(40_000), *tx.outputs[1:])), "bad-reward-rule"),
    (wrong_member, "bad-reward-rule"),
    (lambda tx: dataclasses.replace(tx, rate=RATE - 1), "bad-reward-rule"),
    (lambda tx: dataclasses.replace(tx, cards=(*tx.cards, Scorecard(40, 900, 900, 900, 900))), "bad-reward-member"),
    (wrong_score, "bad-reward-score-rule"),
    (better_components, "bad-reward-score-rule"),
]


@pytest.mark.parametrize(("change", "code"), MINTING)
def test_minting_outside_the_rule_is_refused(nan, change, code):
    assert refused(nan, signed(nan, change(reward(nan)))) == code


def votes(nan, tx, time=DAY_1) -> dict[bytes, Vote | Reject]:
    """Every committee member's verdict on a block that a dishonest coordinator made of ``tx`` alone."""
    state = nan.coordinator.chain.state
    block = make_block(nan.chain_id, state.height + 1, state.tip_hash, time, (tx,), nan.coordinator.key)
    committee = nan.coordinator.committee(block)
    return {pk: nan.validators[pk].validate(block) for _, pk in committee.members}


@pytest.mark.parametrize(
    ("change", "code"),
    [(more, "bad-reward-rule"), (wrong_member, "bad-reward-rule"), (wrong_score, "bad-reward-score-rule")],
)
def test_every_validator_recomputes_the_rule_and_votes_no(nan, change, code):
    """A coordinator that proposes a reward outside the rule gets no vote: each member recomputes it."""
    verdicts = votes(nan, signed(nan, change(reward(nan))))
    assert len(verdicts) == 5
    assert {(v.code, v.tx_index) for v in verdicts.values()} == {(code, 0)}


def test_only_the_dso_mints_not_the_coordinator(nan):
    minted = signed(nan, reward(nan), key=nan.coordinator.key)
    assert {v.code for v in votes(nan, minted).values()} == {"bad-reward-signature"}
    assert refused(nan, minted) == "bad-reward-signature"


def test_each_member_is_rewarded_once_per_period(nan):
    first = reward(nan, period=3)
    assert commit(nan, first, minute_time(4 * 1_440)).committed is not None
    again = reward(nan, period=3, components={2: (900, 900, 900)} | {0: COMPONENTS[0]})
    assert {v.code for v in votes(nan, again, minute_time(4 * 1_440 + 1)).values()} == {"bad-reward-period"}
    assert refused(nan, again, minute_time(4 * 1_440 + 1)) == "bad-reward-period"
    earlier = reward(nan, period=2, components={0: COMPONENTS[0]})
    assert refused(nan, earlier, minute_time(4 * 1_440 + 2)) == "bad-reward-period"
    # the period's other members may still be paid, in another part, at the period's rate
    rest = {m: (800, 800, 800) for m in (4, 5, 6)}
    assert refused(nan, reward(nan, period=3, rate=RATE - 1, components=rest), minute_time(4 * 1_440 + 3)) == (
        "bad-reward-rate"
    )
    part = reward(nan, period=3, components=rest)
    assert commit(nan, part, minute_time(4 * 1_440 + 4)).committed is not None
    assert [score(nan.replica.state, m) for m in range(7)] == [900, 700, 500, 100, 800, 800, 800]


def test_a_period_is_rewarded_only_once_it_is_over(nan):
    assert refused(nan, reward(nan, period=1), DAY_1) == "bad-reward-early"
    assert commit(nan, reward(nan, period=0), DAY_1).committed is not None


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda tx: dataclasses.replace(tx, rate=RATE_CAP + 1), "bad-reward-rate"),
        (lambda tx: dataclasses.replace(tx, cards=()), "bad-reward-scores"),
        (lambda tx: dataclasses.replace(tx, cards=(tx.cards[1], tx.cards[0])), "bad-reward-order"),
        (lambda tx: dataclasses.replace(tx, cards=(tx.cards[0], tx.cards[0])), "bad-reward-order"),
        (
            lambda tx: dataclasses.replace(tx, cards=(Scorecard(0, 1001, 1000, 1000, 1000),)),
            "bad-reward-score",
        ),
        (lambda tx: dataclasses.replace(tx, cards=(Scorecard(0, 900, 900, 900, 1001),)), "bad-reward-score"),
        (wrong_score, "bad-reward-score-rule"),
        (lambda tx: dataclasses.replace(tx, outputs=(Output(ECA(5, 1, 2), tx.outputs[0].owner),)), "bad-reward-rule"),
    ],
)
def test_malformed_rewards_are_refused_without_context(nan, change, code):
    tx = change(reward(nan))
    with pytest.raises(Reject) as e:
        check_transaction(tx)
    assert e.value.code == code


def test_rewards_are_spendable_money(nan):
    tx = reward(nan)
    commit(nan, tx)
    op = outpoint(tx.txid, 0)
    meter = next(m for m in nan.members.values() if m.index == 0)
    spend = Transfer((op,), (Output(FA(40_000), KeyPair.from_secret("shop").address),))
    result = commit(nan, spend.signed(nan.chain_id, {op: meter.key}), DAY_1 + 1)
    assert result.committed is not None and op not in nan.replica.state.utxos
