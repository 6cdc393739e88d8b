"""PoEf with READING_BATCHes: every minute of a batch is disclosed, opened and checked for plausibility alone."""

from __future__ import annotations

import dataclasses

from gridledger.consensus.poef import Disclosure
from gridledger.ledger.block import Vote
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds.alarm import Alarm, AlarmCode
from gridledger.ledger.kinds.reading import ReadingValues
from gridledger.ledger.kinds.reading_batch import ReadingBatch

from .support import commit_minutes, minute_time
from .test_poef import forged, propose, verdicts


def batches(nan, first, m, wh=10, spike=None):
    """Every meter's batch of minutes ``first .. first + m − 1`` (``spike``: (meter, minute, Wh) to put in)."""
    out = []
    for ident, member in nan.members.items():
        vs = [ReadingValues(wh)] * m
        if spike is not None and spike[0] == ident:
            vs = [ReadingValues(spike[2]) if first + i == spike[1] else v for i, v in enumerate(vs)]
        out.append(member.device.batch(first, vs))
    return out


def test_a_block_of_batches_commits_and_the_replicas_index_each_minute(nan):
    commit_minutes(nan, range(2), wh=10)  # single readings first: the history runs on across both kinds
    for tx in batches(nan, 2, 5):
        nan.coordinator.submit(tx)
    result = nan.round(minute_time(6))
    assert result.failure is None and result.committed is not None
    assert all(isinstance(v, Vote) for v in result.votes.values())
    assert sum(isinstance(tx, ReadingBatch) for tx in result.committed.transactions) == 7
    member = nan.members["MI-00004"].index
    history = nan.replica.history(member)
    assert [r.minute for r in history] == list(range(7))
    assert nan.replica.state.nonces[f"reading:{member}"] == 7


def test_each_minute_of_a_batch_is_disclosed_with_its_own_key(nan):
    commit_minutes(nan, range(3), wh=10)
    block = propose(nan, batches(nan, 3, 4), minute=6)
    window = nan.coordinator.plausibility.window
    member = nan.coordinator.committee(block).members[0][1]
    keys = nan.coordinator.disclose(block, member).keys
    views = [r for tx in block.transactions for r in tx.readings]
    assert len(views) == 7 * 4 and {r.txid for r in views} <= set(keys)
    assert len(keys) == 7 * (3 + 4)  # each minute of the block and its history (< window), nothing else
    assert window > 6
    for r in views:
        assert keys[r.txid] == nan.coordinator.content.key_of(r)
    validator = nan.validators[member]
    wrong = dict(keys)
    wrong[views[5].txid] = keys[views[6].txid]  # another minute's key
    assert validator.validate(block, Disclosure(block.hash, wrong)).code == "bad-poef-disclosure"
    del wrong[views[5].txid]
    assert validator.validate(block, Disclosure(block.hash, wrong)).code == "bad-poef-disclosure-missing"


def test_an_implausible_minute_of_a_batch_raises_an_alarm_about_that_minute(nan):
    commit_minutes(nan, range(4), wh=10)
    block = propose(nan, batches(nan, 4, 5, spike=("MI-00003", 6, 500)), minute=8)
    txs = block.transactions
    alarms = [(i, tx) for i, tx in enumerate(txs) if isinstance(tx, Alarm)]
    assert len(alarms) == 1
    i, alarm = alarms[0]
    spiked = txs[i - 1]
    assert isinstance(spiked, ReadingBatch) and spiked.member == nan.members["MI-00003"].index
    assert alarm.code == AlarmCode.IMPLAUSIBLE_READING and alarm.subject == spiked.readings[2].txid
    assert all(isinstance(v, Vote) for v in verdicts(nan, block).values())


def test_validators_vote_no_when_a_minutes_alarm_is_missing(nan):
    commit_minutes(nan, range(4), wh=10)
    block = propose(nan, batches(nan, 4, 5, spike=("MI-00003", 6, 500)), minute=8)
    silent = forged(nan, block, [tx for tx in block.transactions if not isinstance(tx, Alarm)])
    for v in verdicts(nan, silent).values():
        assert isinstance(v, Reject) and v.code == "bad-poef-alarm-missing"
        spiked = silent.transactions[v.tx_index]
        assert isinstance(spiked, ReadingBatch) and spiked.member == nan.members["MI-00003"].index


def test_a_dropped_batch_leaves_no_minutes_in_the_plausibility_history(nan):
    """The coordinator opens a batch minute by minute; when a later minute does not open, the batch is dropped and
    its earlier minutes must not count as history for the member's next batch in the same block."""
    commit_minutes(nan, range(4), wh=10)
    meter = nan.members["MI-00000"]
    copy = dataclasses.replace(meter.device)
    high = meter.device.batch(4, [ReadingValues(400)] * 5 + [ReadingValues(10)])
    garbled = dataclasses.replace(high, sealed=(*high.sealed[:5], bytes(len(high.sealed[5])))).signed(
        nan.chain_id, meter.key
    )
    valid = copy.batch(4, [ReadingValues(400)] * 3)
    block = propose(nan, [garbled, valid], minute=8)
    assert nan.coordinator.rejected[garbled.txid].code == "bad-reading-content"
    # each minute of the valid batch is implausible after 10 Wh minutes; five 400 Wh minutes of the dropped batch
    # in the history would have moved the median to 400 and hidden the alarms
    alarms = [tx for tx in block.transactions if isinstance(tx, Alarm)]
    assert [a.subject for a in alarms] == [r.txid for r in valid.readings]
    assert all(isinstance(v, Vote) for v in verdicts(nan, block).values())
