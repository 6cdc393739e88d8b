"""Coordinator fail-over: the backup takes over, finishes what the primary left in flight, and loses nothing."""

from __future__ import annotations

import pytest

from gridledger.consensus.failover import Lease, Submitter, take_over
from gridledger.consensus.poef import run_round
from gridledger.ledger.block import Vote
from gridledger.ledger.kinds.alarm import Alarm, AlarmCode, raise_alarm
from gridledger.ledger.kinds.reading import Reading

from .support import commit_minutes, minute_time, readings


def test_the_lease_is_sticky_and_ordered():
    lease = Lease((b"primary", b"backup"), timeout_s=10)
    assert lease.active(0) is None
    lease.heartbeat(b"primary", 0)
    lease.heartbeat(b"backup", 0)
    assert lease.active(5) == b"primary"
    lease.heartbeat(b"backup", 12)
    assert lease.active(12) == b"backup"  # the primary's heartbeat is 12 s old
    lease.heartbeat(b"primary", 13)
    assert lease.active(14) == b"backup"  # a recovered primary does not snatch the role back
    assert lease.active(30) is None  # both silent
    lease.heartbeat(b"backup", 31)
    lease.heartbeat(b"primary", 31)
    assert lease.active(31) == b"primary"  # a fresh election follows the genesis order
    with pytest.raises(ValueError):
        lease.heartbeat(b"stranger", 1)


def test_the_backup_finishes_the_block_the_primary_left_in_flight(nan):
    commit_minutes(nan, range(2))
    primary, backup = nan.coordinators
    client = Submitter()
    for tx in readings(nan, 2):
        client.submit(tx, primary)
    block = primary.propose(minute_time(2))
    committee = [pk for _, pk in primary.committee(block).members]
    # one member votes, then the primary stops (DoS) before it has a quorum
    first = nan.validators[committee[0]].validate(block, primary.disclose(block, committee[0]))
    assert isinstance(first, Vote)
    nan.down.add(0)
    nan.active = 1
    backup.replica.catch_up(primary.chain.blocks(backup.replica.height + 1))
    adopted = take_over(backup, nan.validators.values(), previous=primary.key.public)
    assert adopted == block  # the primary's block, not a conflicting one of its own
    client.resubmit(backup)
    result = run_round(backup, nan.validators, minute_time(2) + 30, nan.replicas())
    assert result.committed.hash == block.hash and result.committed.header.proposer == primary.key.public
    client.observe(result.committed)
    assert not client.pending  # nothing lost
    # the hand-over itself is on the ledger
    result = run_round(backup, nan.validators, minute_time(2) + 31, nan.replicas())
    alarm = next(tx for tx in result.committed.transactions if isinstance(tx, Alarm))
    assert alarm.code == AlarmCode.COORDINATOR_DOWN and alarm.subject == primary.key.public
    assert result.committed.header.proposer == backup.key.public


def test_pending_transactions_are_resubmitted_to_the_backup(nan):
    primary, backup = nan.coordinators
    client = Submitter()
    sent = readings(nan, 0)
    for tx in sent:
        client.submit(tx, primary)
    nan.down.add(0)  # the primary stops before proposing anything
    nan.active = 1
    assert take_over(backup, nan.validators.values()) is None
    assert len(client.resubmit(backup)) == len(sent)
    result = nan.round(minute_time(0))
    client.observe(result.committed)
    assert not client.pending
    committed = [tx.txid for tx in result.committed.transactions if isinstance(tx, Reading)]
    assert sorted(committed) == sorted(tx.txid for tx in sent)


def test_a_recovered_primary_catches_up_from_a_peer(nan):
    primary, backup = nan.coordinators
    nan.down.add(0)
    nan.active = 1
    commit_minutes(nan, range(3))
    assert primary.chain.height == 1 and backup.chain.height == 4
    assert primary.replica.catch_up(backup.chain.blocks(primary.chain.height + 1)) == 3
    assert primary.chain.state.snapshot() == backup.chain.state.snapshot()


def _down_alarms(node, start: int) -> list[Alarm]:
    return [
        tx
        for b in node.coordinators[node.active].chain.blocks(start)
        for tx in b.transactions
        if isinstance(tx, Alarm) and tx.code == AlarmCode.COORDINATOR_DOWN
    ]


def test_a_coordinator_down_alarm_is_committed_once_and_a_replay_is_refused(nan):
    """Every fail-over is its own alarm (it names the height taken over); an old alarm resubmitted is refused."""
    primary, backup = nan.coordinators
    start = backup.chain.height + 1
    nan.down.add(0)
    nan.active = 1
    take_over(backup, nan.validators.values(), previous=primary.key.public)
    commit_minutes(nan, range(1))
    (first,) = _down_alarms(nan, start)
    assert first.height == start
    # the same alarm resubmitted (by anyone: it is already signed) is never committed again
    backup.submit(first)
    nan.round(minute_time(1))
    assert backup.rejected[first.txid].code == "bad-alarm-replay"
    assert _down_alarms(nan, start) == [first]
    # a later fail-over between the same two coordinators is a new alarm, committed
    take_over(backup, nan.validators.values(), previous=primary.key.public)
    commit_minutes(nan, range(2, 3))
    alarms = _down_alarms(nan, start)
    assert len(alarms) == 2 and alarms[1].txid != first.txid and alarms[1].height > first.height


def test_an_alarm_for_a_height_the_chain_has_not_reached_is_refused(nan):
    coordinator = nan.coordinators[0]
    ahead = coordinator.chain.height + 2
    alarm = raise_alarm(nan.chain_id, AlarmCode.TAMPERING, bytes(32), ahead, "twin", coordinator.key)
    coordinator.submit(alarm)
    nan.round(minute_time(0))
    assert coordinator.rejected[alarm.txid].code == "bad-alarm-height"
