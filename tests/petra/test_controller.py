"""The microgrid controller: net-load prediction, control signals, price policy as a DSO transaction."""

from __future__ import annotations

from fractions import Fraction

import pytest

from gridledger.market.orders import Match, Order, Side
from gridledger.petra.controller import Band, ControlSignal, MicrogridController, Prediction

from .conftest import PRICES, build_grid

BAND = Band(-1_000, 2_000)


def _order(oid: str, side: str, power: int, start: int = 1, end: int = 2) -> Order:
    return Order(oid, Side(side), "F0", start, end, power, 100)


def test_prediction_counts_what_stays_unmatched():
    c = MicrogridController(BAND, PRICES, base_load_w={1: 400})
    orders = [_order("o1", "offer", 1_000), _order("o2", "offer", 700), _order("b1", "bid", 1_500, 0, 3)]
    committed = [Match("o1", "b1", 1, 900, 100), Match("o2", "b1", 2, 300, 100)]
    p = c.predict(1, committed, orders)
    # slot 1: o1 has 100 W left, o2 700 W, b1 600 W; the 900 W traded stay inside the microgrid
    assert (p.base_w, p.open_offers_w, p.open_bids_w, p.traded_w) == (400, 800, 600, 900)
    assert p.net_load_w == 400 + 600 - 800
    assert c.predict(5, committed, orders).net_load_w == 0  # no order covers slot 5
    assert MicrogridController(BAND, PRICES, base_load_w=lambda t: 10 * t).predict(3, [], []).base_w == 30


@pytest.mark.parametrize(
    ("load", "signal"),
    [
        (2_500, ControlSignal(1, "shed", 500, 2_500)),
        (-1_600, ControlSignal(1, "add", 600, -1_600)),
        (0, None),
        (2_000, None),
        (-1_000, None),
    ],
)
def test_control_signal_leaves_the_band_only(load, signal):
    c = MicrogridController(BAND, PRICES)
    assert c.signal(Prediction(1, load, 0, 0, 0)) == signal


def test_prices_rise_above_and_fall_below_the_band_proportionally():
    c = MicrogridController(BAND, (120, 80), gain=Fraction(1, 2), max_factor=Fraction(2))
    assert c.prices(Prediction(1, 500, 0, 0, 0)) == (120, 80)
    assert c.prices(Prediction(1, 5_000, 0, 0, 0)) == (180, 120)  # one band width above: x 1.5
    assert c.prices(Prediction(1, 50_000, 0, 0, 0)) == (240, 160)  # clamped at x 2
    assert c.prices(Prediction(1, -2_500, 0, 0, 0)) == (90, 60)  # half a band width below: x 0.75
    assert c.prices(Prediction(1, -100_000, 0, 0, 0)) == (0, 0)  # never negative


def test_step_commits_a_dso_price_policy_and_restores_the_base_prices():
    grid = build_grid(1)
    c = MicrogridController(BAND, PRICES)
    heavy = [_order("b", "bid", 5_000, 2, 3)]
    p, sig, policy = c.step(grid.chain, grid.dso, 2, [], heavy)
    assert sig.action == "shed" and sig.amount_w == 3_000 and policy is not None
    grid.commit()
    assert grid.chain.state.policy.prices(2) == c.prices(p) != PRICES
    assert grid.chain.state.policy.prices(1) == PRICES  # only from the signalled slot on
    _, sig, policy = c.step(grid.chain, grid.dso, 3, [], [])
    assert sig is None and policy is not None
    grid.commit()
    assert grid.chain.state.policy.prices(3) == PRICES
    assert c.step(grid.chain, grid.dso, 3, [], [])[2] is None  # nothing to change
    assert c.signals == [ControlSignal(2, "shed", 3_000, 5_000)]


def test_band_must_be_an_interval():
    with pytest.raises(ValueError):
        Band(10, 10)
