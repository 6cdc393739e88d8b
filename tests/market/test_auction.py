"""The per-slot double auction: merit order, pay-as-clear price, ties, feeder bookkeeping."""

from __future__ import annotations

from gridledger.market import Feeder, clear

from .test_lp import bid, offer, triples


def test_sorted_merge_matches_while_the_bid_covers_the_offer():
    orders = [offer("s2", "A", 10, 8), offer("s1", "A", 10, 5), bid("b2", "A", 10, 6), bid("b1", "A", 15, 12)]
    result = clear(orders, None, "auction")
    assert triples(result) == [("s1", "b1", 0, 10), ("s2", "b1", 0, 5)]
    assert {m.price for m in result.matches} == {10}  # floor((8 + 12) / 2): the marginal pair's midpoint


def test_equal_limits_trade_and_ties_go_to_the_earlier_row():
    orders = [offer("late", "A", 5, 7), bid("b", "A", 5, 7), offer("early", "A", 5, 7)]
    orders = [orders[2], orders[1], orders[0]]  # "early" is now the first row
    result = clear(orders, None, "auction")
    assert triples(result) == [("early", "b", 0, 5)]
    assert result.matches[0].price == 7 and result.surplus == 0


def test_each_slot_clears_on_its_own():
    orders = [offer("s", "A", 10, 1, 0, 3), bid("b0", "A", 4, 9, 0, 1), bid("b2", "A", 20, 3, 2, 3)]
    result = clear(orders, None, "auction")
    assert triples(result) == [("s", "b0", 0, 4), ("s", "b2", 2, 10)]
    assert {(m.slot, m.price) for m in result.matches} == {(0, 5), (2, 2)}


def test_feeder_limits_are_booked_as_trades_are_made():
    orders = [offer("sA", "A", 10, 1), bid("bA", "A", 10, 9), bid("bB", "B", 10, 8)]
    feeders = {"A": Feeder(internal_capacity_w=3, external_capacity_w=4), "B": Feeder(0, 100)}
    result = clear(orders, feeders, "auction")
    assert triples(result) == [("sA", "bA", 0, 3), ("sA", "bB", 0, 4)]


def test_a_counter_trade_reopens_external_capacity():
    """Once B sells to A, A may export as much more to B."""
    orders = [offer("sA", "A", 10, 1), bid("bB", "B", 10, 9), offer("sB", "B", 5, 2), bid("bA", "A", 5, 8)]
    feeders = {"A": Feeder(0, 2), "B": Feeder(0, 100)}
    result = clear(orders, feeders, "auction")
    assert triples(result) == [("sA", "bB", 0, 7), ("sB", "bA", 0, 5)]
