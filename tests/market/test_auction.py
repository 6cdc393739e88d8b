"""The per-slot double auction: merit order, pay-as-clear price, ties, feeder bookkeeping."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.market import Feeder, Order, Side, clear

from .support import books
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


def _ask(order):
    return order.limit_price


def _pay(order):
    return -order.limit_price


def reference_auction(orders, feeders):
    """The greedy double auction written plainly: one step per (slot, best pair), dictionaries, no numpy.

    Returns ``{(offer id, bid id, slot): power}``. Each step scans every (seller feeder, buyer feeder) pair
    in name order and keeps the first with the largest surplus that both queue heads and the limits allow.
    """
    names = sorted(feeders) if feeders is not None else sorted({o.feeder for o in orders})
    internal_cap = {n: feeders[n].internal_capacity_w if feeders else math.inf for n in names}
    external_cap = {n: feeders[n].external_capacity_w if feeders else math.inf for n in names}
    trades = defaultdict(int)
    for slot in sorted({t for o in orders for t in range(o.start_slot, o.end_slot)}):
        live = [o for o in orders if o.start_slot <= slot < o.end_slot and o.power_w > 0]
        left = {o.id: o.power_w for o in live}
        # sorted() is stable: equal limit prices keep the input order
        offers = {n: sorted((o for o in live if o.side is Side.OFFER and o.feeder == n), key=_ask) for n in names}
        bids = {n: sorted((o for o in live if o.side is Side.BID and o.feeder == n), key=_pay) for n in names}
        inside = dict.fromkeys(names, 0)
        net_export = dict.fromkeys(names, 0)
        while True:
            best = None
            for f in names:
                for g in names:
                    if not offers[f] or not bids[g]:
                        continue
                    s, b = offers[f][0], bids[g][0]
                    if f == g:
                        room = internal_cap[f] - inside[f]
                    else:
                        room = min(external_cap[f] - net_export[f], external_cap[g] + net_export[g])
                    power = min(left[s.id], left[b.id], room)
                    surplus = b.limit_price - s.limit_price
                    if surplus >= 0 and power > 0 and (best is None or surplus > best[0]):
                        best = (surplus, f, g, power)
            if best is None:
                break
            _, f, g, power = best
            s, b = offers[f][0], bids[g][0]
            trades[s.id, b.id, slot] += power
            left[s.id] -= power
            left[b.id] -= power
            if f == g:
                inside[f] += power
            else:
                net_export[f] += power
                net_export[g] -= power
            if not left[s.id]:
                offers[f].pop(0)
            if not left[b.id]:
                bids[g].pop(0)
    return dict(trades)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        books(max_orders=12),
        # many orders, few prices (ties everywhere) and tight feeder limits
        books(max_orders=24, max_feeders=4, max_slots=2, max_power=6, max_price=3),
    )
)
def test_the_auction_equals_a_plain_reference_implementation(book):
    orders, feeders = book
    result = clear(orders, feeders, "auction")
    assert {(m.offer_id, m.bid_id, m.slot): m.power_w for m in result.matches} == reference_auction(
        orders, feeders
    )


def congested_book(seed: int, n: int = 100, n_feeders: int = 10):
    """One slot of ``n`` orders shaped like ``benchmarks/clearing.py``: few prices, binding feeder limits."""
    rng = np.random.default_rng(seed)
    orders = [
        Order(f"o{k}", Side.OFFER if is_offer else Side.BID, f"F{f}", 0, 1, int(power), int(price))
        for k, (is_offer, f, power, ask, pay) in enumerate(
            zip(
                rng.random(n) < 0.5,
                rng.integers(0, n_feeders, n),
                rng.integers(100, 5001, n),
                rng.integers(5, 36, n),
                rng.integers(15, 46, n),
                strict=True,
            )
        )
        for price in [ask if is_offer else pay]
    ]
    mean = n / 2 / n_feeders * 2550
    return orders, {
        f"F{f}": Feeder(int(mean * rng.uniform(0.3, 0.8)), int(mean * rng.uniform(0.1, 0.5)))
        for f in range(n_feeders)
    }


def test_the_auction_equals_the_reference_on_congested_books():
    """Larger books than hypothesis draws: here a cross trade reopens capacity for a better pair mid-run
    (seed 64), so the greedy must re-decide after each order there, not only after each price level."""
    for seed in range(80):
        orders, feeders = congested_book(seed)
        result = clear(orders, feeders, "auction")
        assert {(m.offer_id, m.bid_id, m.slot): m.power_w for m in result.matches} == reference_auction(
            orders, feeders
        ), seed
