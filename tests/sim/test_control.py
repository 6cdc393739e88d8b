"""The DSO's microgrid controller in the community run: its prediction, its signal and the reprice that reaches the
feeder's NAN through the tiers and is billed."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from gridledger.ledger.billing import energy_charge
from gridledger.market.orders import Match, Order, Side
from gridledger.profiles.community import Feeder, generate_community
from gridledger.sim.control import REPRICE_LAG_SLOTS, FeederControl
from gridledger.sim.run import run_community

PRICES = (120, 60)


def control(external_w: int = 1000) -> FeederControl:
    c = FeederControl.create(Feeder("F1", 10_000, external_w), PRICES, 900, slots=200)
    for s in range(100):
        c.record(s, 500, 0)  # 500 Wh per 15 min: a steady 2,000 W import
    return c


def test_prediction_is_the_dso_forecast_plus_the_unmatched_power():
    c = control()
    orders = [Order("b", Side.BID, "F1", 100, 101, 800, 100), Order("o", Side.OFFER, "F1", 100, 101, 300, 90)]
    matched = [Match("o", "b", 100, 300, 100)]
    p, signal, prices = c.step(100, matched, orders)
    # base = 2,000 W forecast − the book's net (800 − 300); unmatched: 500 W of the bid, none of the offer
    assert (p.base_w, p.open_bids_w, p.open_offers_w, p.net_load_w) == (1500, 500, 0, 2000)
    assert signal is not None and (signal.action, signal.amount_w) == ("shed", 1000)
    assert prices is not None and prices[0] > PRICES[0]


def test_reprices_only_on_change_and_restores_the_tariff_in_band():
    c = control()
    assert c.step(100, [], [])[2] is not None
    assert c.step(101, [], [])[2] is None  # still out of band, the same prices: nothing to publish
    c.net_wh[:] = 0  # the feeder is quiet again
    p, signal, prices = c.step(150, [], [])
    assert signal is None and prices == PRICES


@pytest.fixture(scope="module")
def tight_run(tmp_path_factory):
    """A feeder whose upstream link (external capacity) its homes overload: the controller must act."""
    community = generate_community(6, 2, 3, feeders=1)
    community = dataclasses.replace(
        community, feeders=(dataclasses.replace(community.feeders[0], external_capacity_w=300),)
    )
    out = tmp_path_factory.mktemp("tight") / "run"
    run_community(community, out)
    return community, out


def test_controller_reprices_the_feeder_and_the_meters_bill_at_the_new_prices(tight_run):
    community, out = tight_run
    control = pd.read_parquet(out / "control.parquet")
    assert (control.signal == "shed").any() or (control.signal == "add").any()
    reprices = control[control.prices_from_slot >= 0]
    assert len(reprices) and (reprices.prices_from_slot == reprices.slot - 1 + REPRICE_LAG_SLOTS).all()
    base = (community.prices.consumption_per_kwh, community.prices.production_per_kwh)
    first = reprices.iloc[0]
    assert (int(first.consumption_per_kwh), int(first.production_per_kwh)) != base
    timeline = sorted(
        (int(r.prices_from_slot), (int(r.consumption_per_kwh), int(r.production_per_kwh)))
        for r in reprices.itertuples()
    )

    def in_force(slot: int) -> tuple[int, int]:
        return max(((s, p) for s, p in timeline if s <= slot), default=(0, base))[1]

    bills = pd.read_parquet(out / "bills.parquet")
    differs = 0
    for b in bills.itertuples():
        prices = in_force(b.slot)
        assert b.baseline_amount == energy_charge(b.measured_ws, prices), b
        differs += energy_charge(b.measured_ws, prices) != energy_charge(b.measured_ws, base)
    assert differs > 0  # the reprice changed what some homes pay


def test_the_reprices_came_down_the_tiers(tight_run):
    """Every chain of the run verifies: a NAN price that the head-end and FAN/WAN did not commit first is refused."""
    from typer.testing import CliRunner

    from gridledger.cli import app

    _, out = tight_run
    result = CliRunner().invoke(app, ["verify", str(out)])
    assert result.exit_code == 0, result.output
