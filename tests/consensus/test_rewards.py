"""PoEf rewards: amounts follow the published rule from efficiency scores, and nobody mints outside it."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridledger.consensus.committee import Weights
from gridledger.consensus.members import score
from gridledger.consensus.rewards import POOL_CAP, THRESHOLD, Reward, make_reward, reward_amounts
from gridledger.ledger import crypto
from gridledger.ledger.assets import ECA, FA, Output, outpoint
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.ledger.rules import check_transaction
from gridledger.ledger.transactions import Transfer, decode_transaction

from .support import minute_time

DSO = KeyPair.from_secret("dso")
SCORES = {0: 9_000, 1: 7_000, 2: 5_000, 3: 1_000}


@given(st.integers(0, POOL_CAP), st.lists(st.integers(0, 10_000), min_size=1, max_size=30))
def test_the_rule_never_pays_more_than_the_pool_and_follows_the_excess(pool, scores):
    paid = reward_amounts(pool, list(enumerate(scores)))
    assert sum(a for _, a in paid) <= pool
    excess = {m: max(0, s - THRESHOLD) for m, s in enumerate(scores)}
    assert all(excess[m] > 0 and a > 0 for m, a in paid)
    for (m1, a1), (m2, a2) in zip(paid, paid[1:], strict=False):
        if excess[m1] > excess[m2]:
            assert a1 >= a2
        elif excess[m1] == excess[m2]:
            assert a1 == a2


def test_nothing_is_paid_at_or_below_the_threshold():
    assert reward_amounts(1_000, [(0, THRESHOLD), (1, 0)]) == []


def commit(nan, tx, second=0):
    nan.coordinator.submit(tx)
    return nan.round(minute_time(0) + second)


def test_a_reward_pays_the_rule_to_the_members_keys_and_commits_their_scores(nan):
    tx = make_reward(nan.coordinator.chain.state, 0, 100_000, SCORES, DSO)
    assert decode_transaction(tx.raw) == tx
    result = commit(nan, tx)
    assert result.committed is not None and tx in result.committed.transactions
    state = nan.replica.state
    paid = {o.owner: o.asset.amount for o in tx.outputs}
    keys = {m.index: m.key for m in nan.members.values()}
    assert paid == {crypto.address_of(keys[0].public): 66_666, crypto.address_of(keys[1].public): 33_333}
    for i, o in enumerate(tx.outputs):
        assert state.output(tx.txid + i.to_bytes(2, "big")) == o
    assert [score(state, m) for m in range(5)] == [9_000, 7_000, 5_000, 1_000, 5_000]
    # the committed scores weight the next committees
    weights = Weights.of(state, 0)
    assert weights.cumulative[0] == 9_001 and weights.cumulative[3] - weights.cumulative[2] == 1_001


def signed(nan, tx: Reward, key: KeyPair = DSO) -> Reward:
    return dataclasses.replace(tx, signature=key.sign(tx.sighash(nan.chain_id)))


def outsider_output():
    return Output(FA(1), KeyPair.from_secret("outsider").address)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda tx: dataclasses.replace(tx, outputs=(*tx.outputs, outsider_output())), "bad-reward-rule"),
        (lambda tx: dataclasses.replace(tx, outputs=tx.outputs[:1]), "bad-reward-rule"),
        (
            lambda tx: dataclasses.replace(tx, outputs=(Output(FA(66_667), tx.outputs[0].owner), *tx.outputs[1:])),
            "bad-reward-rule",
        ),
        (lambda tx: dataclasses.replace(tx, outputs=(outsider_output(), *tx.outputs[1:])), "bad-reward-rule"),
        (lambda tx: dataclasses.replace(tx, scores=((0, 10_000), *tx.scores[1:])), "bad-reward-rule"),
        (lambda tx: dataclasses.replace(tx, scores=(*tx.scores, (40, 9_000))), "bad-reward-member"),
    ],
)
def test_minting_outside_the_rule_is_refused(nan, change, code):
    tx = signed(nan, change(make_reward(nan.coordinator.chain.state, 0, 100_000, SCORES, DSO)))
    check_transaction(tx)
    assert commit(nan, tx).block is None
    assert nan.coordinator.rejected[tx.txid].code == code


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda tx: dataclasses.replace(tx, pool=POOL_CAP + 1), "bad-reward-pool"),
        (lambda tx: dataclasses.replace(tx, scores=()), "bad-reward-scores"),
        (lambda tx: dataclasses.replace(tx, scores=((1, 7_000), (0, 9_000))), "bad-reward-order"),
        (lambda tx: dataclasses.replace(tx, scores=((0, 9_000), (0, 9_000))), "bad-reward-order"),
        (lambda tx: dataclasses.replace(tx, scores=((0, 10_001),)), "bad-reward-score"),
        (lambda tx: dataclasses.replace(tx, outputs=(Output(ECA(5, 1, 2), tx.outputs[0].owner),)), "bad-reward-rule"),
    ],
)
def test_malformed_rewards_are_refused_without_context(nan, change, code):
    tx = change(make_reward(nan.coordinator.chain.state, 0, 100_000, SCORES, DSO))
    with pytest.raises(Reject) as e:
        check_transaction(tx)
    assert e.value.code == code


def test_only_the_dso_rewards_and_each_period_once(nan):
    state = nan.coordinator.chain.state
    forged = signed(nan, make_reward(state, 0, 100_000, SCORES, DSO), key=nan.coordinator.key)
    assert commit(nan, forged).block is None
    assert nan.coordinator.rejected[forged.txid].code == "bad-reward-signature"
    first = make_reward(state, 3, 100_000, SCORES, DSO)
    assert commit(nan, first, 1).committed is not None
    again = make_reward(nan.coordinator.chain.state, 3, 50_000, SCORES, DSO)
    assert commit(nan, again, 2).block is None
    assert nan.coordinator.rejected[again.txid].code == "bad-reward-period"


def test_rewards_are_spendable_money(nan):
    tx = make_reward(nan.coordinator.chain.state, 0, 100_000, SCORES, DSO)
    commit(nan, tx)
    op = outpoint(tx.txid, 0)
    meter = next(m for m in nan.members.values() if m.index == 0)
    spend = Transfer((op,), (Output(FA(66_666), KeyPair.from_secret("shop").address),))
    result = commit(nan, spend.signed(nan.chain_id, {op: meter.key}), 1)
    assert result.committed is not None and op not in nan.replica.state.utxos
