"""Forecasts: the baselines are what they claim, the models beat them, and errors follow the conventions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gridledger.analytics.data import DayCube
from gridledger.analytics.forecast import (
    DAY_AHEAD,
    NEXT_SLOT,
    ForecastSettings,
    build_problem,
    evaluate_forecasts,
)
from gridledger.analytics.metrics import classification_report, forecast_errors

DAYS = pd.date_range("2024-01-01", periods=21, freq="D")


def periodic_cube(n_meters: int = 3, slots: int = 24, noise: float = 0.0) -> DayCube:
    """Each meter repeats the same day (plus optional noise): seasonal-naive is exact without noise."""
    rng = np.random.default_rng(0)
    base = 10 + 5 * np.sin(np.linspace(0, 2 * np.pi, slots, endpoint=False))
    x = np.broadcast_to(base, (n_meters, len(DAYS), slots)) * (1 + np.arange(n_meters))[:, None, None]
    x = x + noise * rng.normal(size=x.shape)
    return DayCube(
        [f"M{i}" for i in range(n_meters)],
        DAYS,
        86_400 // slots,
        {"consumption_wh": x},
        np.full((n_meters, len(DAYS)), -1, dtype=np.int8),
    )


def test_baselines_are_persistence_and_seasonal_naive():
    cube = periodic_cube()
    x = cube.values["consumption_wh"]
    ns = build_problem(x, DAYS, NEXT_SLOT).baselines()
    y = x.reshape(3, -1)
    np.testing.assert_array_equal(ns["persistence"][:, 1:], y[:, :-1])
    np.testing.assert_array_equal(ns["seasonal-naive"][:, 24:], y[:, :-24])
    np.testing.assert_array_equal(ns["seasonal-naive-week"][:, 168:], y[:, :-168])
    da = build_problem(x, DAYS, DAY_AHEAD).baselines()
    # the day-ahead persistence is the last value known at midnight, for every hour of the day
    np.testing.assert_array_equal(da["persistence"][:, 24:48], np.repeat(y[:, 23:24], 24, axis=1))


def test_seasonal_naive_is_exact_on_a_periodic_series():
    ev = evaluate_forecasts(periodic_cube(), "consumption_wh", DAY_AHEAD)
    assert ev.neighbourhood_errors["seasonal-naive"]["nrmse"] == pytest.approx(0.0, abs=1e-12)
    assert ev.neighbourhood_errors["persistence"]["nrmse"] > 0.1


def test_no_future_value_leaks_into_the_features():
    x = periodic_cube(noise=1.0).values["consumption_wh"]
    for horizon in (NEXT_SLOT, DAY_AHEAD):
        base = build_problem(x, DAYS, horizon).features
        changed = x.copy()
        changed[:, 15, 10] += 1000.0  # change one value: only later targets may see it
        after = build_problem(changed, DAYS, horizon).features
        t = 15 * 24 + 10
        differs = np.flatnonzero(~np.isclose(base, after, equal_nan=True).all(axis=(0, 2)))
        assert differs.size and differs.min() > t


@pytest.mark.parametrize("horizon", [NEXT_SLOT, DAY_AHEAD])
def test_models_beat_seasonal_naive_on_community_consumption(cube, horizon):
    ev = evaluate_forecasts(cube, "consumption_wh", horizon, ForecastSettings(test_fraction=0.3))
    assert ev.split_day == 10 and ev.observed.shape[0] == 16
    assert ev.gain("fog") > 0.2, ev.neighbourhood_errors
    assert ev.meter_errors["fog"]["nrmse"] < ev.meter_errors["seasonal-naive"]["nrmse"]
    assert set(ev.forecasts) == {"persistence", "seasonal-naive", "seasonal-naive-week", "edge", "fog"}
    assert ev.step_s == (900 if horizon == NEXT_SLOT else 3600)


def test_production_of_meters_without_pv_is_forecast_as_zero(cube):
    ev = evaluate_forecasts(cube, "production_wh", DAY_AHEAD)
    no_pv = cube.values["production_wh"].sum(axis=(1, 2)) == 0
    assert no_pv.any() and (ev.forecasts["fog"][no_pv] == 0).all()


def test_too_few_days_are_refused():
    cube = periodic_cube()
    short = DayCube(
        cube.meters,
        DAYS[:9],
        cube.step_s,
        {"consumption_wh": cube.values["consumption_wh"][:, :9]},
        cube.labels[:, :9],
    )
    with pytest.raises(ValueError, match="at least 8 training days"):
        evaluate_forecasts(short, "consumption_wh", DAY_AHEAD)
    with pytest.raises(ValueError, match="unknown horizon"):
        build_problem(cube.values["consumption_wh"], DAYS, "next-week")


def test_forecast_errors():
    e = forecast_errors(np.array([10.0, 20.0, 0.0, np.nan]), np.array([12.0, 18.0, 1.0, 5.0]))
    assert e["n"] == 3
    assert e["mae"] == pytest.approx(5 / 3)
    assert e["nrmse"] == pytest.approx(np.sqrt(9 / 3) / 10)
    assert e["mape"] == pytest.approx(100 * (0.2 + 0.1) / 2)  # the zero observation is left out of MAPE
    assert np.isnan(forecast_errors(np.array([np.nan]), np.array([1.0]))["mae"])


def test_classification_report_uses_the_papers_table_6_layout():
    r = classification_report(
        np.array([1, 1, 1, 0, 0]), np.array([0.9, 0.8, 0.2, 0.7, 0.1]), np.array([1, 1, 0, 1, 0])
    )
    assert r["confusion"] == [[2, 1], [1, 1]]  # [[TP, FN], [FP, TN]]
    assert r["accuracy"] == pytest.approx(0.6) and r["precision"] == pytest.approx(2 / 3)
    assert r["recall"] == pytest.approx(2 / 3) and r["auc"] == pytest.approx(5 / 6)


def test_a_method_without_any_forecast_is_left_out_not_fatal():
    """Daily data: the next-slot edge model has too little history (20 rows for 11 features) and abstains."""
    rng = np.random.default_rng(0)
    days = pd.date_range("2024-01-01", periods=30, freq="D")
    x = rng.gamma(20.0, 200.0, size=(4, 30, 1))
    cube = DayCube(
        [f"M{i}" for i in range(4)], days, 86_400, {"consumption_wh": x}, np.full((4, 30), -1, np.int8)
    )
    ev = evaluate_forecasts(cube, "consumption_wh", NEXT_SLOT)
    assert ev.step_s == 86_400
    assert np.isnan(ev.neighbourhood_errors["edge"]["nrmse"])
    assert np.isfinite(ev.neighbourhood_errors["fog"]["nrmse"]) and ev.neighbourhood_errors["fog"]["n"] == 10
