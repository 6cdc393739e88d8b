"""The market report shows a simulated microgrid's own records; its DSO view only what the DSO receives."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from gridledger.market.orders import Side
from gridledger.report import Provenance
from gridledger.report.market_report import market_report, round_facts
from gridledger.sim.market_rounds import run_rounds


@pytest.fixture(scope="module")
def microgrid(tmp_path_factory):
    return asyncio.run(run_rounds(tmp_path_factory.mktemp("sim") / "chain.sqlite", 6, 3, seed=4))


@pytest.fixture(scope="module")
def made(microgrid):
    return market_report(microgrid, Provenance("gridledger market simulate --seed 4", 4))


def figure(made, title):
    return next(f for f in made.figures if f.title == title)


def test_round_facts_are_the_rounds_records(microgrid):
    facts = round_facts(microgrid)
    assert [f.report.slot for f in facts] == [r.slot for r in microgrid.reports]
    for f in facts:
        assert len(f.offer_limits) + len(f.bid_limits) == len(f.report.orders)
        assert len(f.committed_trades) == f.report.committed_trades
        # every committed match is one of the round's trades, and it is within both sides' limits
        assert all(min(f.offer_limits) <= m.price <= max(f.bid_limits) for m in f.committed)
    assert sum(len(f.committed) for f in facts) > 0


def test_the_summary_has_one_row_per_round(made, microgrid):
    assert [row[0] for row in made.summary.rows] == [str(r.slot) for r in microgrid.reports]
    assert [row[4] for row in made.summary.rows] == [
        f"{r.committed_trades}/{len(r.trades)}" for r in microgrid.reports
    ]


def test_the_dso_figure_is_exactly_the_dso_view(made, microgrid):
    heat, *bills = figure(made, "What the DSO sees").plot.data
    view = microgrid.dso_view
    assert list(heat.y) == list(microgrid.prosumers)
    for i, meter in enumerate(heat.y):
        for j, slot in enumerate(heat.x):
            assert heat.z[i][j] == view.energy_ws[(meter, int(slot))] / 3600
    assert len(heat.z) * len(heat.x) == len(view.energy_ws)
    assert {
        (m, int(b.name.split()[-1])): x for b in bills for m, x in zip(b.y, b.x, strict=True)
    } == view.period_bills


def test_who_traded_with_whom_adds_up_to_the_energy_traded(made, microgrid):
    (matrix,) = figure(made, "What the DSO cannot see: who traded with whom").plot.data
    traded_kwh = sum(m.power_w for f in round_facts(microgrid) for m in f.committed) * 900 / 3.6e6
    assert np.nansum(np.asarray(matrix.z, dtype=float)) == pytest.approx(traded_kwh)
    sellers = {
        microgrid.truth[p.order_id] for p in microgrid.operator.store.history if p.order.side is Side.OFFER
    }
    rows = {matrix.y[i] for i, row in enumerate(matrix.z) if np.nansum(np.asarray(row, dtype=float)) > 0}
    assert rows <= sellers


def test_prices_plot_every_limit_and_every_committed_clearing_price(made, microgrid):
    offers, bids, cleared = figure(made, "Limit prices and clearing prices").plot.data
    facts = round_facts(microgrid)
    assert sorted(offers.y) == sorted(p for f in facts for p in f.offer_limits)
    assert sorted(bids.y) == sorted(p for f in facts for p in f.bid_limits)
    assert sorted(cleared.y) == sorted(m.price for f in facts for m in f.committed)
