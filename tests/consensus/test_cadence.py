"""When a PoEf coordinator cuts its next block (``Cadence``): on demand, bounded below, at once when full."""

from __future__ import annotations

from gridledger.consensus.poef import Cadence


def test_the_first_block_is_cut_as_soon_as_something_is_pending():
    c = Cadence(0.25, max_txs=100)
    assert not c.due(5.0, 0)
    assert c.due(5.0, 1)


def test_a_block_waits_for_the_lower_bound_after_the_previous_cut():
    c = Cadence(0.25, max_txs=100)
    c.cut(10.0)
    assert not c.due(10.1, 5)
    assert c.next_at() == 10.25
    assert c.due(10.25, 5)
    assert not c.due(10.3, 0)  # nothing pending: no empty block


def test_a_full_block_is_cut_at_once():
    c = Cadence(0.25, max_txs=100)
    c.cut(10.0)
    assert not c.due(10.01, 99)
    assert c.due(10.01, 100)
