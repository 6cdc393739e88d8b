"""verify_matches: a table of wrong match sets, each rejected with its reject code."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gridledger.market import Feeder, MarketInputError, Match, verify_matches

from .test_lp import bid, offer

ORDERS = [offer("s", "A", 10, 10, 0, 2), bid("b", "A", 10, 20, 0, 2), bid("c", "B", 10, 30, 0, 2)]
FEEDERS = {"A": Feeder(8, 5), "B": Feeder(100, 100)}
GOOD = Match("s", "b", 0, 6, 15)


def test_a_valid_set_returns_its_surplus():
    assert verify_matches(ORDERS, FEEDERS, [GOOD, Match("s", "c", 1, 5, 20)]) == 6 * 10 + 5 * 20


@pytest.mark.parametrize(
    ("matches", "code"),
    [
        ([replace(GOOD, offer_id="x")], "unknown-order"),
        ([replace(GOOD, offer_id="b", bid_id="s")], "wrong-side"),
        ([replace(GOOD, power_w=0)], "bad-power"),
        ([replace(GOOD, power_w=2.5)], "bad-power"),
        ([replace(GOOD, price=15.0)], "bad-price"),
        ([replace(GOOD, slot=2)], "slot-outside-order"),
        ([replace(GOOD, price=9)], "price-below-offer"),
        ([replace(GOOD, price=21)], "price-above-bid"),
        ([GOOD, Match("s", "c", 0, 5, 20)], "order-overfilled"),
        ([replace(GOOD, power_w=9)], "internal-capacity"),
        ([Match("s", "c", 1, 6, 20)], "external-capacity"),
    ],
)
def test_each_broken_rule_is_named(matches, code):
    with pytest.raises(MarketInputError, match=rf"\[{code}\]"):
        verify_matches(ORDERS, FEEDERS, matches)


def test_a_feeder_missing_from_the_limits_is_named():
    with pytest.raises(MarketInputError, match=r"unknown feeder 'B' \[unknown-feeder\]"):
        verify_matches(ORDERS, {"A": FEEDERS["A"]}, [Match("s", "c", 0, 1, 20)])


def test_without_feeders_only_the_orders_bind():
    assert verify_matches(ORDERS, None, [replace(GOOD, power_w=10)]) == 100
