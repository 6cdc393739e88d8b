"""The welfare-maximizing LP (TRANSAX) on hand-made books, its exact fallback and its MILP steps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from gridledger.market import Feeder, Order, Side, clear, verify_matches
from gridledger.market import highs as highs_module
from gridledger.market import lp as lp_module
from gridledger.market.book import OrderBook
from gridledger.market.price_levels import clear_levels

from .support import books, pairwise_optimum


def offer(ident, feeder, power, price, start=0, end=1):
    return Order(ident, Side.OFFER, feeder, start, end, power, price)


def bid(ident, feeder, power, price, start=0, end=1):
    return Order(ident, Side.BID, feeder, start, end, power, price)


def triples(result):
    return sorted((m.offer_id, m.bid_id, m.slot, m.power_w) for m in result.matches)


def test_uncongested_market_matches_the_merit_order_at_one_price():
    orders = [offer("s1", "A", 10, 5), offer("s2", "A", 10, 8), bid("b1", "A", 15, 12), bid("b2", "A", 10, 6)]
    result = clear(orders, None, "lp")
    assert triples(result) == [("s1", "b1", 0, 10), ("s2", "b1", 0, 5)]
    assert {m.price for m in result.matches} == {10}  # midpoint of the marginal pair (8, 12)
    assert result.surplus == 10 * 7 + 5 * 4


def test_internal_capacity_limits_trade_inside_a_feeder():
    orders = [offer("s", "A", 10, 10), bid("b", "A", 10, 20)]
    result = clear(orders, {"A": Feeder(4, 100)}, "lp")
    assert triples(result) == [("s", "b", 0, 4)]


def test_external_capacity_limits_the_net_flow_between_feeders():
    orders = [offer("s", "A", 10, 10), bid("b", "B", 10, 20)]
    result = clear(orders, {"A": Feeder(100, 3), "B": Feeder(100, 100)}, "lp")
    assert triples(result) == [("s", "b", 0, 3)]


def test_counter_flows_net_out_of_the_external_limit():
    """A feeder may export and import at once; only the net flow counts against its external capacity."""
    orders = [offer("sa", "A", 5, 1), bid("ba", "A", 5, 9), offer("sb", "B", 5, 1), bid("bb", "B", 5, 9)]
    feeders = {"A": Feeder(0, 0), "B": Feeder(0, 0)}
    result = clear(orders, feeders, "lp")
    assert triples(result) == [("sa", "bb", 0, 5), ("sb", "ba", 0, 5)]


def test_price_incompatible_counter_flow_is_not_traded(monkeypatch):
    """The aggregate LP would trade here, but only with the pair (20 -> 12): the exact model refuses.

    A and B may neither trade inside nor change their net flow, so A's offer can only sell to B while B's
    offer sells to A. (C's cheap offer, stranded, keeps bid b1 in the book.)
    """
    orders = [
        offer("s1", "A", 1, 30),
        bid("b1", "A", 1, 12),
        offer("s2", "B", 1, 20),
        bid("b2", "B", 1, 40),
        offer("s0", "C", 1, 0),
    ]
    feeders = {"A": Feeder(0, 0), "B": Feeder(0, 0), "C": Feeder(0, 0)}
    calls = []
    monkeypatch.setattr(lp_module, "clear_levels", lambda book: calls.append(book) or clear_levels(book))
    result = clear(orders, feeders, "lp")
    assert result.matches == () and result.surplus == 0 == pairwise_optimum(orders, feeders)
    assert len(calls) == 1  # the slot went to the exact price-level model
    book = OrderBook.build(orders, feeders)
    sold, _ = lp_module._feeder_totals(book, lp_module.Segments.build(book))
    assert sold.sum() == 2  # ... because the aggregate relaxation trades 2 W


def test_lp_beats_the_greedy_auction_under_binding_feeder_limits():
    orders = [offer("sA", "A", 10, 0), bid("bA", "A", 10, 10), bid("bB", "B", 10, 9), offer("sB", "B", 10, 8)]
    feeders = {"A": Feeder(10, 10), "B": Feeder(0, 10)}
    auction, lp = clear(orders, feeders, "auction"), clear(orders, feeders, "lp")
    assert auction.surplus == 100  # greedy takes sA -> bA first, then sB can sell to no one
    assert lp.surplus == 110 == pairwise_optimum(orders, feeders)  # sA -> bB and sB -> bA
    assert triples(lp) == [("sA", "bB", 0, 10), ("sB", "bA", 0, 10)]


def test_partial_fills_in_time_and_power():
    orders = [offer("s", "A", 100, 10, 0, 4), bid("b1", "A", 60, 20, 1, 3), bid("b2", "A", 70, 15, 2, 6)]
    result = clear(orders, None, "lp")
    assert triples(result) == [("s", "b1", 1, 60), ("s", "b1", 2, 60), ("s", "b2", 2, 40), ("s", "b2", 3, 70)]


def test_a_fractional_aggregate_vertex_is_repaired_by_the_milp(monkeypatch):
    """If the LP relaxation's feeder totals are fractional, the same model is solved as a MILP."""
    real_solve = highs_module.Model.solve
    relaxed = []

    def fractional_relaxation(model, relax=False):
        values = real_solve(model, relax)
        if relax:
            relaxed.append(True)
            values = values + 0.5  # as a fractional vertex would be
        return values

    monkeypatch.setattr(highs_module.Model, "solve", fractional_relaxation)
    orders = [offer("s", "A", 7, 1), bid("b", "B", 9, 5)]
    result = clear(orders, {"A": Feeder(9, 9), "B": Feeder(9, 9)}, "lp")
    assert relaxed and triples(result) == [("s", "b", 0, 7)]


def test_empty_and_one_sided_books_clear_to_nothing():
    assert clear([], None, "lp").matches == ()
    assert clear([offer("s", "A", 5, 1)], None, "lp").matches == ()
    assert clear([offer("s", "A", 5, 9), bid("b", "A", 5, 1)], None, "lp").matches == ()


@settings(max_examples=80, deadline=None)
@given(books(max_orders=9))
def test_the_exact_level_model_alone_is_optimal(book):
    orders, feeders = book
    trades = clear_levels(OrderBook.build(orders, feeders))
    prices = np.array([o.limit_price for o in orders], dtype=np.int64)
    assert int(((prices[trades.bid] - prices[trades.offer]) * trades.power).sum()) == pairwise_optimum(
        orders, feeders
    )


def test_big_numbers_stay_exact():
    """Surplus beyond int64 range is summed exactly; powers and prices at their documented maxima."""
    orders = [offer(f"s{i}", "A", 10**9, -(10**6), 0, 10_000) for i in range(2)]
    orders += [bid(f"b{i}", "A", 10**9, 10**6, 0, 10_000) for i in range(2)]
    result = clear(orders, None, "lp")
    assert result.surplus == 2 * 10**9 * 2 * 10**6 * 10_000
    assert verify_matches(orders, None, result.matches) == result.surplus


@pytest.mark.parametrize("mechanism", ["lp", "auction"])
def test_unknown_feeder_and_duplicate_ids_are_rejected(mechanism):
    with pytest.raises(ValueError, match="unknown feeder 'B'"):
        clear([offer("s", "B", 1, 1)], {"A": Feeder(1, 1)}, mechanism)
    with pytest.raises(ValueError, match="order 's': duplicate id"):
        clear([offer("s", "A", 1, 1), bid("s", "A", 1, 1)], None, mechanism)
