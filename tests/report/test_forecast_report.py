"""The forecast report plots the evaluation's own forecasts, scored on the same steps as its error tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gridledger.analytics.data import to_cube, validate_readings
from gridledger.analytics.forecast import DAY_AHEAD, NEXT_SLOT, ForecastSettings, evaluate_forecasts
from gridledger.analytics.metrics import forecast_errors
from gridledger.profiles import community_readings
from gridledger.report import Provenance
from gridledger.report.forecast_report import forecast_report, per_meter_nrmse, step_times


@pytest.fixture(scope="module")
def cube():
    """4 meters x 12 days, hourly; the first meter has no readings on day 9, the first test day."""
    readings = community_readings(4, 12, "1h", seed=8)
    ts = pd.to_datetime(readings["timestamp"])
    gone = (readings["meter_id"] == readings["meter_id"].min()) & (
        ts.dt.normalize() == ts.min().normalize() + pd.Timedelta(days=9)
    )
    return to_cube(validate_readings(readings[~gone]), ("consumption_wh",))


@pytest.fixture(scope="module")
def evaluations(cube):
    settings = ForecastSettings(slot_seconds=3600, test_fraction=0.25)
    return [evaluate_forecasts(cube, "consumption_wh", h, settings) for h in (NEXT_SLOT, DAY_AHEAD)]


def test_per_meter_nrmse_has_the_medians_the_evaluation_reported(evaluations):
    for ev in evaluations:
        for method, values in per_meter_nrmse(ev).items():
            assert np.nanmedian(values) == pytest.approx(ev.meter_errors[method]["nrmse"], rel=1e-12), method


def test_the_neighbourhood_plot_scores_as_the_evaluation(cube, evaluations):
    made = forecast_report(cube.days, cube.meters, evaluations, Provenance("cmd", 0))
    for ev, over_time in zip(evaluations, made.figures[::3], strict=True):
        series = {t.name: np.asarray(t.y, dtype=float) for t in over_time.plot.data}
        for method in ev.forecasts:
            got = forecast_errors(series["observed"], series[method])
            assert got["nrmse"] == pytest.approx(ev.neighbourhood_errors[method]["nrmse"], rel=1e-12)
        observed = np.asarray(over_time.plot.data[0].y, dtype=float)
        assert observed.size == 3 * 24  # the three test days, hourly
        # day 9 lacks a meter; on day 10 that meter has no day-ago forecast, so only day 11 is scored
        assert np.isnan(observed[:48]).all() and np.isfinite(observed[48:]).all()
        assert over_time.drawn_traces == 4  # observed, seasonal-naive, edge, fog; the others one click away


def test_the_error_bars_and_the_summary_are_the_evaluations_numbers(cube, evaluations):
    made = forecast_report(cube.days, cube.meters, evaluations, Provenance("cmd", 0))
    bars = made.figures[1].plot.data
    nrmse_nb = next(t for t in bars if t.name == "neighbourhood" and t.xaxis == "x2")
    ev = evaluations[0]
    assert list(nrmse_nb.y) == [ev.neighbourhood_errors[m]["nrmse"] for m in ev.forecasts]
    row = made.summary.rows[0]
    assert row[:3] == ("consumption_wh next-slot", "1 h", "3") and row[-1] == f"{ev.gain():+.1%}"
    assert [f.title for f in made.figures[:3]] == [
        "consumption_wh next-slot: neighbourhood actual vs forecast",
        "consumption_wh next-slot: error per method against the baselines",
        "consumption_wh next-slot: per-meter NRMSE",
    ]


def test_step_times_count_from_each_local_midnight():
    days = pd.DatetimeIndex(["2024-03-30", "2024-03-31"])
    times = step_times(days, 6 * 3600)
    assert list(times.strftime("%d %H:%M")) == [
        "30 00:00",
        "30 06:00",
        "30 12:00",
        "30 18:00",
        "31 00:00",
        "31 06:00",
        "31 12:00",
        "31 18:00",
    ]
