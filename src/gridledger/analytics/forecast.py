"""Consumption and production forecasting at the meter (edge) and the concentrator (fog).

Two horizons, as a transactive market needs them:

* **next slot** (short term): the energy of the next market slot (15 min by default) from everything up to
  the slot's start;
* **day ahead**: the 24 hourly energies of tomorrow from everything up to midnight. The 1-minute data are
  summed to hourly energy first (slots coarser than the data are sums of whole steps).

Each horizon has two baselines beside the models: **persistence** (the last observed value) and
**seasonal-naive** (the same slot one day earlier; the one-week version is reported too). The models use
lagged values, seasonal means and calendar features:

* the **edge** model runs on one meter's own history: ridge regression (light enough for a meter's SBC);
* the **fog** model runs at the concentrator over all its meters: gradient boosting on scale-free features
  (each meter's values divided by its mean), so one model serves every meter; the neighbourhood forecast is
  the sum of the per-meter forecasts (bottom-up).

Everything here is I/O-free: arrays in, arrays out. See :mod:`.store` for the Tables 3/4 stores.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from threadpoolctl import threadpool_limits

from gridledger.ledger.units import DEFAULT_SLOT_SECONDS

from .data import DayCube, coarser_step
from .metrics import forecast_errors

NEXT_SLOT = "next-slot"
DAY_AHEAD = "day-ahead"
HORIZONS = (NEXT_SLOT, DAY_AHEAD)
N_CALENDAR = 4


@dataclass(frozen=True)
class ForecastSettings:
    """Forecasting set-up.

    Parameters
    ----------
    slot_seconds : next-slot horizon length, s (the data's step if coarser).
    day_ahead_step_s : resolution of the day-ahead forecast, s (hourly by default).
    test_fraction : the last share of the days is the test period; earlier days train the models.
    seed : seeds the gradient boosting.
    """

    slot_seconds: int = DEFAULT_SLOT_SECONDS
    day_ahead_step_s: int = 3600
    test_fraction: float = 1 / 3
    seed: int = 0


def _nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=axis)


def _shift(y: np.ndarray, k: int) -> np.ndarray:
    """``out[..., t] = y[..., t - k]`` along the last axis (NaN where t - k < 0)."""
    out = np.full_like(y, np.nan)
    if k < y.shape[-1]:
        out[..., k:] = y[..., : y.shape[-1] - k]
    return out


@dataclass(frozen=True)
class Problem:
    """One forecasting problem: a series per meter on a flat time axis, and what is known when.

    Attributes
    ----------
    y : ``(n_meters, n_steps)`` observed energy per step (Wh), NaN where missing.
    steps_per_day : steps per day (the seasonal period).
    lead : the number of steps between the last known value and the target (1 for next slot; for day ahead,
        the step of the day, since the forecast is made at midnight).
    features : ``(n_meters, n_steps, k)`` the features known before each target: first the meter's own
        values (in Wh), then :data:`N_CALENDAR` calendar columns.
    seasonal_index : the column of ``features`` that holds the step's 7-day mean.
    day_of_step : ``(n_steps,)`` the day index of each step.
    """

    y: np.ndarray
    steps_per_day: int
    lead: np.ndarray
    features: np.ndarray
    seasonal_index: int
    day_of_step: np.ndarray

    def baselines(self) -> dict[str, np.ndarray]:
        """Persistence, seasonal-naive (1 day) and seasonal-naive (1 week) forecasts for every target."""
        s = self.steps_per_day
        last_known = np.take_along_axis(
            np.concatenate([np.full((self.y.shape[0], 1), np.nan), self.y], axis=1),
            np.broadcast_to(np.arange(self.y.shape[1]) + 1 - self.lead, self.y.shape).clip(0),
            axis=1,
        )
        return {
            "persistence": last_known,
            "seasonal-naive": _shift(self.y, s),
            "seasonal-naive-week": _shift(self.y, 7 * s),
        }


def _calendar(days: pd.DatetimeIndex, steps_per_day: int) -> tuple[np.ndarray, np.ndarray]:
    """Per flat step: the day-of-week (0 = Monday) and the fraction of the day elapsed."""
    dow = np.repeat(np.asarray(days.day_of_week), steps_per_day)
    frac = np.tile(np.arange(steps_per_day) / steps_per_day, len(days))
    return dow, frac


def build_problem(cube_values: np.ndarray, days: pd.DatetimeIndex, horizon: str) -> Problem:
    """Features for a ``(n_meters, n_days, steps_per_day)`` energy cube and a horizon.

    Next slot: the last four values, the same step 1 and 7 days before, the mean of that step over the
    last 7 days, and the calendar. Day ahead: the same step 1, 2 and 7 days before, its 7-day mean, the
    mean of the last known day and the calendar. Everything is in the meter's own units; see
    :func:`fit_fog` for the scale-free version.
    """
    if horizon not in HORIZONS:
        raise ValueError(f"unknown horizon {horizon!r}; choose one of {', '.join(HORIZONS)}")
    n_m, n_d, s = cube_values.shape
    y = cube_values.reshape(n_m, n_d * s)
    dow, frac = _calendar(days, s)
    same_step = np.stack([_shift(y, k * s) for k in range(1, 8)], axis=-1)
    seasonal_mean = _nanmean(same_step, axis=-1)
    calendar = np.broadcast_to(
        np.stack([np.sin(2 * np.pi * frac), np.cos(2 * np.pi * frac), dow, dow >= 5], axis=-1).astype(float),
        (n_m, n_d * s, N_CALENDAR),
    )
    if horizon == NEXT_SLOT:
        lead = np.ones(n_d * s, dtype=int)
        lags = np.stack([_shift(y, k) for k in range(1, 5)], axis=-1)
        own = np.concatenate([lags, same_step[..., [0, 6]], seasonal_mean[..., None]], axis=-1)
        seasonal_index = 6
    else:
        lead = np.tile(np.arange(1, s + 1), n_d)
        daily_mean = _nanmean(cube_values, axis=2)
        yesterday = np.repeat(
            np.concatenate([np.full((n_m, 1), np.nan), daily_mean[:, :-1]], axis=1), s, axis=1
        )
        own = np.concatenate(
            [same_step[..., [0, 1, 6]], seasonal_mean[..., None], yesterday[..., None]], axis=-1
        )
        seasonal_index = 3
    features = np.concatenate([own, calendar], axis=-1)
    return Problem(y, s, lead, features, seasonal_index, np.repeat(np.arange(n_d), s))


def _train_mask(problem: Problem, split_day: int) -> np.ndarray:
    return (problem.day_of_step < split_day)[None, :] & np.isfinite(problem.y)


def fit_edge(problem: Problem, split_day: int, alpha: float = 1.0) -> np.ndarray:
    """Edge forecasts: one ridge regression per meter on its own history before ``split_day``.

    Missing lags are replaced by the seasonal mean (the step's 7-day mean). Returns ``(n_meters, n_steps)``
    forecasts for every step (NaN where a meter has too little history).
    """
    n_m, n_t, k = problem.features.shape
    train = _train_mask(problem, split_day)
    out = np.full((n_m, n_t), np.nan)
    seasonal = problem.features[..., problem.seasonal_index]
    for m in range(n_m):
        x = problem.features[m].copy()
        fallback = np.where(
            np.isfinite(seasonal[m]), seasonal[m], problem.y[m, train[m]].mean() if train[m].any() else np.nan
        )
        gaps = ~np.isfinite(x)
        x[gaps] = np.broadcast_to(fallback[:, None], x.shape)[gaps]
        usable = np.isfinite(x).all(axis=1)
        rows = train[m] & usable
        if rows.sum() < 2 * k:
            continue
        model = Ridge(alpha=alpha).fit(x[rows], problem.y[m, rows])
        out[m, usable] = np.maximum(model.predict(x[usable]), 0.0)
    return out


def fit_fog(problem: Problem, split_day: int, seed: int = 0) -> np.ndarray:
    """Fog forecasts: one gradient-boosting model over all meters, on values scaled by each meter's mean.

    The scale is the meter's mean energy per step over the training days; meters with zero scale (no PV,
    say) are forecast as 0. Returns ``(n_meters, n_steps)``.
    """
    n_m, n_t, k = problem.features.shape
    train = _train_mask(problem, split_day)
    scale = np.array([problem.y[m, train[m]].mean() if train[m].any() else np.nan for m in range(n_m)])
    active = np.isfinite(scale) & (scale > 0)
    out = np.where(np.isfinite(scale) & (scale == 0), 0.0, np.nan)[:, None] * np.ones((1, n_t))
    if not active.any():
        return out
    n_own = k - N_CALENDAR
    x = problem.features[active].copy()
    x[..., :n_own] /= scale[active, None, None]
    target = problem.y[active] / scale[active, None]
    rows = train[active]
    model = HistGradientBoostingRegressor(
        max_iter=300,
        learning_rate=0.05,
        max_leaf_nodes=31,
        l2_regularization=1.0,
        early_stopping=False,
        random_state=seed,
    )
    with threadpool_limits(limits=1, user_api="openmp"):  # the same forecasts on any machine
        model.fit(x[rows], target[rows])
        pred = model.predict(x.reshape(-1, k)).reshape(x.shape[:2])
    out[active] = np.maximum(pred, 0.0) * scale[active, None]
    return out


@dataclass(frozen=True)
class ForecastEvaluation:
    """Forecasts and their errors over the test period.

    Attributes
    ----------
    column, horizon : what was forecast.
    step_s : the forecast resolution, s.
    split_day : index of the first test day.
    observed : ``(n_meters, n_steps)``; ``forecasts[method]`` the same shape.
    meter_errors : method -> median over meters of each meter's MAE / NRMSE / MAPE.
    neighbourhood_errors : method -> errors of the neighbourhood total.
    """

    column: str
    horizon: str
    step_s: int
    split_day: int
    observed: np.ndarray
    forecasts: dict[str, np.ndarray]
    meter_errors: dict[str, dict[str, float]]
    neighbourhood_errors: dict[str, dict[str, float]]

    def gain(self, method: str = "fog", baseline: str = "seasonal-naive") -> float:
        """Fraction by which ``method``'s neighbourhood NRMSE is below ``baseline``'s."""
        return 1.0 - self.neighbourhood_errors[method]["nrmse"] / self.neighbourhood_errors[baseline]["nrmse"]


def evaluate_forecasts(
    cube: DayCube, column: str, horizon: str, settings: ForecastSettings = ForecastSettings()
) -> ForecastEvaluation:
    """Fit the edge and fog models on the early days and score every method on the test days.

    Scores cover the test steps where the observation and every method's forecast exist (the week-ago
    baseline needs 7 days of history, so the training period should be at least a week); a method that
    could not forecast at all (the edge model with too little history) is scored NaN and left out of that
    intersection.
    """
    target = settings.slot_seconds if horizon == NEXT_SLOT else settings.day_ahead_step_s
    step = coarser_step(cube.step_s, target)
    coarse = cube.coarsen(step) if step != cube.step_s else cube
    n_days = len(cube.days)
    split_day = int(round(n_days * (1 - settings.test_fraction)))
    if split_day < 8 or split_day >= n_days:
        raise ValueError(
            f"forecasting needs at least 8 training days and 1 test day; {n_days} days with test fraction "
            f"{settings.test_fraction:.2f} give {split_day} training days"
        )
    problem = build_problem(coarse.values[column], cube.days, horizon)
    forecasts = problem.baselines()
    forecasts["edge"] = fit_edge(problem, split_day)
    forecasts["fog"] = fit_fog(problem, split_day, settings.seed)

    period = (problem.day_of_step >= split_day)[None, :] & np.isfinite(problem.y)
    test = period.copy()
    for f in forecasts.values():
        if np.isfinite(f[period]).any():  # a method with no forecast at all (too little history) is left out
            test &= np.isfinite(f)
    meter_errors: dict[str, dict[str, float]] = {}
    nb_errors: dict[str, dict[str, float]] = {}
    nb_steps = test.all(axis=0)  # the neighbourhood total is scored where every meter is
    observed_nb = problem.y.sum(axis=0)
    for name, f in forecasts.items():
        per_meter = [forecast_errors(problem.y[m, test[m]], f[m, test[m]]) for m in range(problem.y.shape[0])]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # e.g. NRMSE of meters that never export
            meter_errors[name] = {
                key: float(np.nanmedian([e[key] for e in per_meter])) for key in ("mae", "nrmse", "mape")
            }
        nb_errors[name] = forecast_errors(observed_nb[nb_steps], f.sum(axis=0)[nb_steps])
    return ForecastEvaluation(column, horizon, step, split_day, problem.y, forecasts, meter_errors, nb_errors)
