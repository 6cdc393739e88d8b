"""Property tests of both mechanisms: every match is feasible, conserves energy, respects both limit prices
and the feeder limits; the LP's welfare is optimal (independent MILP and brute force)."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridledger.market import Side, clear, verify_matches
from gridledger.market.clearing import welfare_of

from .support import books, brute_force_optimum, pairwise_optimum

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _filled(matches):
    """Power per (order, slot), counted once on each side of every match."""
    sold, bought = defaultdict(int), defaultdict(int)
    for m in matches:
        sold[m.offer_id, m.slot] += m.power_w
        bought[m.bid_id, m.slot] += m.power_w
    return sold, bought


@FAST
@given(books(), st.sampled_from(["lp", "auction"]))
def test_every_match_is_feasible_and_respects_limits(book, mechanism):
    orders, feeders = book
    result = clear(orders, feeders, mechanism)
    # verify_matches re-checks orders, sides, slots, power, both limit prices and the feeder limits
    assert verify_matches(orders, feeders, result.matches) == result.surplus
    by_id = {o.id: o for o in orders}
    for m in result.matches:
        offer, bid = by_id[m.offer_id], by_id[m.bid_id]
        assert offer.side is Side.OFFER and bid.side is Side.BID
        assert offer.limit_price <= m.price <= bid.limit_price
        assert m.power_w > 0 and isinstance(m.price, int)
    assert result.welfare == welfare_of(result.surplus, 900)


@FAST
@given(books())
def test_energy_is_conserved(book):
    """What the offers deliver is what the bids receive, per slot, and no order exceeds its power."""
    orders, feeders = book
    result = clear(orders, feeders, "lp")
    sold, bought = _filled(result.matches)
    slots = {m.slot for m in result.matches}
    for t in slots:
        assert sum(v for (_, s), v in sold.items() if s == t) == sum(
            v for (_, s), v in bought.items() if s == t
        )
    by_id = {o.id: o for o in orders}
    for (ident, t), power in {**sold, **bought}.items():
        order = by_id[ident]
        assert order.start_slot <= t < order.end_slot and power <= order.power_w


@settings(max_examples=120, deadline=None)
@given(books(max_orders=9))
def test_lp_welfare_equals_an_independent_milp(book):
    orders, feeders = book
    lp = clear(orders, feeders, "lp")
    assert lp.surplus == pairwise_optimum(orders, feeders)
    assert clear(orders, feeders, "auction").surplus <= lp.surplus


@settings(max_examples=120, deadline=None)
@given(books(max_orders=5, max_feeders=2, max_slots=2, max_power=3, max_price=6))
def test_lp_welfare_equals_brute_force(book):
    orders, feeders = book
    assert clear(orders, feeders, "lp").surplus == brute_force_optimum(orders, feeders)


@FAST
@given(books(max_orders=12, feeders_optional=False))
def test_without_feeder_limits_the_auction_is_optimal_and_prices_are_uniform(book):
    orders, _ = book
    auction, lp = clear(orders, None, "auction"), clear(orders, None, "lp")
    assert auction.surplus == lp.surplus
    for result in (auction, lp):
        per_slot = defaultdict(set)
        for m in result.matches:
            per_slot[m.slot].add(m.price)
        assert all(len(prices) == 1 for prices in per_slot.values())


@FAST
@given(books(max_orders=10))
def test_clearing_is_deterministic(book):
    orders, feeders = book
    assert clear(orders, feeders, "lp").matches == clear(list(orders), feeders, "lp").matches
