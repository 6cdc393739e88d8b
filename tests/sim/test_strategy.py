"""The prosumers' forecast reads only what the meter has measured, and the order strategy follows it."""

from __future__ import annotations

import numpy as np

from gridledger.market.orders import Side
from gridledger.sim.strategy import Strategy, forecast_next


def test_the_forecast_never_reads_the_slot_being_traded_or_the_current_one():
    rng = np.random.default_rng(0)
    net = rng.integers(-500, 500, size=(4, 96 * 3))
    for t in (1, 2, 5, 96, 97, 200):
        before = forecast_next(net, t, 96)
        future = net.copy()
        future[:, t - 1 :] = 10**6
        assert (forecast_next(future, t, 96) == before).all()


def test_seasonal_mean_of_the_same_slot_on_earlier_days_else_persistence():
    net = np.arange(3 * 96).reshape(1, -1)
    assert forecast_next(net, 2 * 96 + 5, 96)[0] == round((96 + 5 + 5) / 2)
    assert forecast_next(net, 50, 96)[0] == 48


def test_surplus_offers_deficit_bids_only_after_offers_were_seen():
    s = Strategy((120, 80), 150)
    assert (s.ask, s.bid) == (90, 110)
    forecast = np.array([-300, 300, 10])  # Wh in a 900 s slot: -1200 W, +1200 W, 40 W (dead band)
    got = s.intents(["a", "b", "c"], forecast, 900, offers_seen=True)
    assert {k: (v.side, v.power_w, v.limit_price) for k, v in got.items()} == {
        "a": (Side.OFFER, 1200, 90),
        "b": (Side.BID, 1200, 110),
    }
    assert set(s.intents(["a", "b", "c"], forecast, 900, offers_seen=False)) == {"a"}
