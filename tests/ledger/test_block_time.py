"""The future bound on block times (``bad-blk-time-future``): only where a node passes its clock in."""

from __future__ import annotations

import pytest

from gridledger.chain import verify_store
from gridledger.ledger.block import MAX_FUTURE_SLOTS
from gridledger.ledger.errors import Reject


def test_the_bound_is_two_slots_and_a_block_at_it_is_accepted(net):
    state = net.state
    assert state.max_future_s == MAX_FUTURE_SLOTS * state.genesis.slot_seconds == 2 * state.genesis.slot_seconds
    now = state.tip_time
    ahead = net.next_block(time=now + state.max_future_s + 1)
    with pytest.raises(Reject) as e:
        net.chain.append(ahead, now)
    assert e.value.code == "bad-blk-time-future" and net.chain.height == ahead.height - 1
    at_bound = net.next_block(time=now + state.max_future_s)
    net.chain.append(at_bound, now)
    assert net.chain.height == at_bound.height


def test_a_replay_checks_no_clock(net):
    """``gridledger verify`` (a replay of stored blocks) is not affected: blocks once accepted stay valid, and a
    chain appended without a clock (an old chain, or one whose blocks are far ahead of any clock) verifies."""
    far = net.next_block(time=net.state.tip_time + 100 * net.state.max_future_s)
    net.chain.append(far)  # no clock passed: no bound
    verify_store(net.store)
