"""Order and Feeder reject bad values with a message naming the order and the field."""

from __future__ import annotations

import pytest

from gridledger.market import Feeder, MarketInputError, Order, Side, clear

GOOD = dict(id="o1", side="offer", feeder="A", start_slot=0, end_slot=4, power_w=100, limit_price=12)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": ""}, "id must be a non-empty string"),
        ({"side": "sell"}, "side must be 'offer' or 'bid'"),
        ({"feeder": ""}, "feeder must be a non-empty string"),
        ({"start_slot": -1}, "start_slot must be in"),
        ({"start_slot": 4}, r"start_slot \(4\) must be < end_slot \(4\)"),
        ({"end_slot": 1.5}, "end_slot must be an integer"),
        ({"end_slot": 20_000}, "an order may cover at most 10000 slots"),
        ({"power_w": -5}, "power_w must be in"),
        ({"power_w": True}, "power_w must be an integer"),
        ({"limit_price": "12"}, "limit_price must be an integer"),
        ({"limit_price": 10**7}, "limit_price must be in"),
    ],
)
def test_bad_orders_are_rejected(change, message):
    with pytest.raises(MarketInputError, match=f"order '.*': {message}"):
        Order(**{**GOOD, **change})


def test_side_is_normalised_to_the_enum():
    assert Order(**GOOD).side is Side.OFFER


@pytest.mark.parametrize("change", [{"internal_capacity_w": -1}, {"external_capacity_w": 2.0}])
def test_bad_feeders_are_rejected(change):
    with pytest.raises(MarketInputError, match="feeder: .*_capacity_w must be"):
        Feeder(**{"internal_capacity_w": 1, "external_capacity_w": 1, **change})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mechanism": "vickrey"}, "unknown mechanism 'vickrey'"),
        ({"slot_seconds": 0}, "slot length must be a positive integer"),
    ],
)
def test_bad_clear_arguments_are_rejected(kwargs, message):
    with pytest.raises(MarketInputError, match=message):
        clear([Order(**GOOD)], None, **kwargs)


def test_only_orders_are_accepted():
    with pytest.raises(MarketInputError, match="not an Order"):
        clear([GOOD])
