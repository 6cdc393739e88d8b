"""PoEf rounds: the coordinator proposes, every committee member re-validates (rules, plausibility, alarms), a
majority commits; what a dishonest coordinator may try is refused with a specific code."""

from __future__ import annotations

import dataclasses

import pytest

from gridledger.consensus.plausibility import Implausible
from gridledger.consensus.poef import Disclosure, Replica, Validator, run_round
from gridledger.ledger.assets import EPA, FA
from gridledger.ledger.block import Vote, make_block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds.alarm import Alarm, AlarmCode
from gridledger.ledger.kinds.dso_policy import MeterLimits
from gridledger.ledger.kinds.reading import Reading, ReadingValues, reading_key, seal
from gridledger.petra.meter import SmartMeter
from gridledger.petra.wallet import Wallet, combine
from gridledger.tiers.hierarchy import METER_LIMITS, replica_chain

from .support import commit_minutes, minute_time, readings


def propose(nan, txs, minute=0):
    for tx in txs:
        nan.coordinator.submit(tx)
    return nan.coordinator.propose(minute_time(minute))


def verdicts(nan, block, disclose=True):
    """Every committee member's vote or reject."""
    return {
        pk: nan.validators[pk].validate(block, nan.coordinator.disclose(block, pk) if disclose else None)
        for _, pk in nan.coordinator.committee(block).members
    }


def forged(nan, block, txs):
    """The same block with other transactions, validly signed by the coordinator (a dishonest coordinator)."""
    h = block.header
    return make_block(h.chain_id, h.height, h.prev_hash, h.time, tuple(txs), nan.coordinator.key)


def test_a_round_commits_on_every_replica(nan):
    for tx in readings(nan, 0):
        nan.coordinator.submit(tx)
    result = nan.round(minute_time(0))
    assert result.failure is None and result.committed is not None
    assert all(isinstance(v, Vote) for v in result.votes.values()) and len(result.votes) == 5
    assert len(result.committed.certificate) == 3
    assert sum(isinstance(tx, Reading) for tx in result.committed.transactions) == 7
    assert {r.height for r in nan.replicas()} == {2}
    assert not nan.coordinator.pending


def test_an_implausible_reading_raises_an_alarm_in_its_block(nan):
    commit_minutes(nan, range(4), wh=10)
    spike = "MI-00003"
    block = propose(nan, readings(nan, 4, {spike: 500}), minute=4)
    txs = block.transactions
    alarms = [(i, tx) for i, tx in enumerate(txs) if isinstance(tx, Alarm)]
    assert len(alarms) == 1
    i, alarm = alarms[0]
    assert alarm.code == AlarmCode.IMPLAUSIBLE_READING and alarm.detector == nan.coordinator.plausibility.name
    assert alarm.subject == txs[i - 1].txid and txs[i - 1].member == nan.members[spike].index
    assert all(isinstance(v, Vote) for v in verdicts(nan, block).values())


def test_validators_vote_no_when_the_alarm_is_missing(nan):
    commit_minutes(nan, range(4), wh=10)
    block = propose(nan, readings(nan, 4, {"MI-00003": 500}), minute=4)
    silent = forged(nan, block, [tx for tx in block.transactions if not isinstance(tx, Alarm)])
    for v in verdicts(nan, silent).values():
        assert isinstance(v, Reject) and v.code == "bad-poef-alarm-missing"
        assert silent.transactions[v.tx_index].member == nan.members["MI-00003"].index


def test_validators_rerun_every_ledger_rule(nan):
    block = propose(nan, readings(nan, 0))
    r = block.transactions[0]
    bad = dataclasses.replace(r, signature=bytes(64))  # a reading the meter never signed
    block = forged(nan, block, [bad, *block.transactions[1:]])
    votes = verdicts(nan, block)
    assert {(v.code, v.tx_index) for v in votes.values()} == {("bad-reading-signature", 0)}
    with pytest.raises(Reject, match="bad-qc-insufficient"):
        nan.coordinator.commit(block, [])


def test_the_committee_needs_the_disclosed_keys(nan):
    block = propose(nan, readings(nan, 0))
    member = nan.coordinator.committee(block).members[0][1]
    validator = nan.validators[member]
    assert validator.validate(block, None).code == "bad-poef-disclosure-missing"
    wrong_block = Disclosure(bytes(32), nan.coordinator.disclose(block, member).keys)
    assert validator.validate(block, wrong_block).code == "bad-poef-disclosure-missing"
    keys = dict(nan.coordinator.disclose(block, member).keys)
    first = block.transactions[0].txid
    keys[first] = bytes(16)
    assert validator.validate(block, Disclosure(block.hash, keys)).code == "bad-poef-disclosure"
    del keys[first]
    assert validator.validate(block, Disclosure(block.hash, keys)).code == "bad-poef-disclosure-missing"


def test_a_disclosure_holds_the_block_readings_and_their_history_only(nan):
    window = nan.coordinator.plausibility.window
    commit_minutes(nan, range(window + 2), wh=10)
    block = propose(nan, readings(nan, window + 2), minute=window + 2)
    member = nan.coordinator.committee(block).members[0][1]
    keys = nan.coordinator.disclose(block, member).keys
    expected = {tx.txid for tx in block.transactions}
    for tx in block.transactions:
        expected |= {r.txid for r in nan.coordinator.replica.history(tx.member)[-window:]}
    assert set(keys) == expected and len(keys) == 7 * (window + 1)
    with pytest.raises(Reject, match="bad-poef-not-member"):
        outsider = next(pk for pk in nan.validators if pk not in nan.coordinator.committee(block))
        nan.coordinator.disclose(block, outsider)


def test_disclosures_are_sealed_to_their_member(nan):
    block = propose(nan, readings(nan, 0))
    member = nan.coordinator.committee(block).members[0][1]
    disclosure = nan.coordinator.disclose(block, member)
    sealed = disclosure.seal(member)
    assert Disclosure.open(sealed, nan.validators[member].key) == disclosure
    with pytest.raises(Reject, match="bad-poef-disclosure"):
        Disclosure.open(sealed, KeyPair.from_secret("someone else"))
    assert Disclosure.decode(disclosure.encode()) == disclosure


def test_non_members_and_lagging_nodes_do_not_vote(nan):
    block = propose(nan, readings(nan, 0))
    outsider = next(pk for pk in nan.validators if pk not in nan.coordinator.committee(block))
    assert nan.validators[outsider].validate(block).code == "bad-poef-not-member"
    commit_minutes(nan, range(1, 2))  # the chain moves on without this block
    stale = Validator(nan.validators[outsider].key, nan.replica)
    assert stale.validate(block).code == "bad-blk-prev"


def test_a_validator_votes_once_per_height(nan):
    block = propose(nan, readings(nan, 0))
    member = nan.coordinator.committee(block).members[0][1]
    validator = nan.validators[member]
    disclosure = nan.coordinator.disclose(block, member)
    vote = validator.validate(block, disclosure)
    assert validator.validate(block, disclosure) == vote
    other = forged(nan, block, block.transactions[:3])
    refusal = validator.validate(other, nan.coordinator.disclose(other, member))
    assert refusal.code == "bad-poef-equivocation"
    assert validator.last_vote(block.height) == (block, vote)


def test_the_coordinator_drops_what_fails_and_unreadable_readings(nan):
    good = readings(nan, 0)
    m = nan.members["MI-00001"]
    garbled = seal(nan.chain_id, m.index, 1, ReadingValues(10), bytes(16)).signed(nan.chain_id, m.key)
    replayed_later = good[2]
    block = propose(nan, [*good, garbled])
    assert garbled not in block.transactions and len(block.transactions) == 7
    assert nan.coordinator.rejected[garbled.txid].code == "bad-reading-content"
    nan.round(minute_time(0))
    nan.coordinator.submit(replayed_later)
    assert nan.coordinator.propose(minute_time(1)) is None
    assert nan.coordinator.rejected[replayed_later.txid].code == "bad-reading-replay"


class Lenient:
    """A coordinator-side check that never flags anything (an outdated analytics model)."""

    name = "lenient"
    window = 6

    def check(self, values, history):
        return None


def test_a_block_the_committee_refuses_is_abandoned_and_its_culprit_dropped(nan):
    commit_minutes(nan, range(4), wh=10)
    nan.coordinator.plausibility = Lenient()
    txs = readings(nan, 4, {"MI-00005": 900})
    spike = txs[nan.members["MI-00005"].index]
    for tx in txs:
        nan.coordinator.submit(tx)
    first = run_round(nan.coordinator, nan.validators, minute_time(4), nan.replicas())
    assert first.committed is None and first.failure.code == "bad-qc-insufficient"
    assert {v.code for v in first.votes.values()} == {"bad-poef-alarm-missing"}
    assert spike.txid not in nan.coordinator.pending and nan.coordinator.in_flight is None
    second = run_round(nan.coordinator, nan.validators, minute_time(4), nan.replicas())
    assert second.committed is not None and spike not in second.committed.transactions


def test_an_offline_committee_keeps_the_block_for_the_next_round(nan):
    block = propose(nan, readings(nan, 0))
    committee = [pk for _, pk in nan.coordinator.committee(block).members]
    few = {pk: nan.validators[pk] for pk in committee[:2]}
    first = run_round(nan.coordinator, few, minute_time(0))
    assert first.committed is None and nan.coordinator.in_flight == block
    second = run_round(nan.coordinator, nan.validators, minute_time(0) + 5, nan.replicas())
    assert second.committed is not None and second.committed.hash == block.hash


def test_a_custom_plausibility_check_plugs_in(nan):
    class FlagEverything:
        name = "model-v2"
        window = 0

        def check(self, values, history):
            return Implausible(self.name, "every reading is suspect")

    check = FlagEverything()
    nan.coordinator.plausibility = check
    for v in nan.validators.values():
        v.plausibility = check
    for tx in readings(nan, 0):
        nan.coordinator.submit(tx)
    result = nan.round(minute_time(0))
    alarms = [tx for tx in result.committed.transactions if isinstance(tx, Alarm)]
    assert len(alarms) == 7 and {a.detector for a in alarms} == {"model-v2"}


def test_replicas_catch_up_and_reverify(nan):
    commit_minutes(nan, range(3))
    backup = nan.coordinators[1].replica
    blocks = list(nan.coordinator.chain.blocks(1))
    assert backup.height == 4 and backup.catch_up(blocks) == 0
    fresh = Replica(replica_chain(None, nan.coordinator.chain.genesis_block))
    tampered = dataclasses.replace(blocks[2], certificate=blocks[2].certificate[:1])
    with pytest.raises(Reject, match="bad-qc-insufficient"):
        fresh.catch_up([*blocks[:2], tampered])
    assert fresh.height == 2
    assert fresh.catch_up(blocks) == 2 and fresh.state.snapshot() == nan.replica.state.snapshot()
    assert len(fresh.history(0)) == 3


def test_readings_are_keyed_per_reading(nan):
    m = nan.members["MI-00000"]
    r0, r1 = (m.device.reading(t, ReadingValues(10)) for t in (0, 1))
    k0 = nan.coordinator.content.key_of(r0)
    assert k0 == reading_key(nan.coordinator.content.member_key(m.index), nan.chain_id, m.index, 0)
    assert k0 != nan.coordinator.content.key_of(r1)


def test_petra_market_transactions_run_on_the_nan_under_poef(nan):
    member = nan.members["MI-00002"]
    limits = MeterLimits("MI-00002", *METER_LIMITS)
    meter = SmartMeter("MI-00002", member.key, nan.chain_id, nan.genesis.slot_seconds, limits)
    seller, buyer = Wallet(), Wallet()
    nan.coordinator.submit(meter.issue([(EPA(1_500, 1, 2), seller.new_address()), (FA(300), buyer.new_address())], 0))
    first = nan.round(minute_time(0))
    assert first.committed is not None and len(first.committed.certificate) == 3
    for w in (seller, buyer):
        w.scan(first.committed)
    trade = combine(seller.leg(EPA(1_000, 1, 2), buyer.new_address()), buyer.leg(FA(100), seller.new_address()))
    nan.coordinator.submit(buyer.sign(seller.sign(trade, nan.chain_id), nan.chain_id))
    second = nan.round(minute_time(1))
    assert second.committed is not None and nan.replica.height == nan.coordinator.chain.height == 3
