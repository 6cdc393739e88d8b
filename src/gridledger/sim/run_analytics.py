"""Analytics of a finished community run, on the run's own data: theft scores, power-quality events, forecast errors.

:func:`analyze_run` reads a run folder written by :mod:`gridledger.sim.run` (what the meters measured and reported:
``readings.parquet``; each meter's own forecasts: ``forecasts.parquet``; the chains' names: ``chains/tiers.json``;
``summary.json``) and runs the existing analytics on it, with nothing fitted to the run's outcome:

* ``theft_scores.parquet`` (meter, feeder, day, score, flagged, pv): the shipped detector
  (:func:`gridledger.analytics.default_model.load_default_model`) on every meter-day of the reported consumption
  (import), one neighbourhood per feeder (its concentrator sees its own meters); ``score`` is the detector's theft
  probability, ``flagged`` the meter agents' decision from the model's prior (no labels, so no learning: what
  ``gridledger theft score`` writes); ``pv``: the home has PV (registered in the community file); the model was
  trained on net-metered homes too (PV and PV + battery import registers), and its false alarms on each kind of
  home are measured in docs/analytics.md. The features compare a day with
  the meter's own other days and with its neighbours that day: in a 1-day run only the neighbour comparison carries
  information (a note says so); runs with slots coarser than the model's 15 minutes are not scored (a note says so).
* ``pq_events.parquet`` (meter, feeder, slot, kind, value, expected, predicted): every slot whose reading is a sag
  or swell (``value``: voltage, V) or a poor power factor (``value``: power factor) by
  :func:`gridledger.analytics.power_quality.flag_events`, the meter's normal being a
  :class:`~gridledger.analytics.power_quality.PowerQualityModel` fitted on its readings of the whole run;
  ``expected``: what the edge predictor — the same model fitted on the meter's *earlier days only*, fed the meter's
  own forecast of the slot's net power — expected there (V or power factor; NaN on a meter's first day);
  ``predicted``: that expectation is itself an event by the same rule. A poor power factor is a departure from the
  meter's normal, which is what the predictor predicts, so it is rarely foreseen; sags and swells are foreseen
  when the expected voltage leaves the band.
* ``forecast_errors.parquet`` (tier, chain, model, horizon_slots, mae_wh, nrmse, n): errors of forecasts of the net
  energy per slot (Wh, import positive) per home (tier ``home``, chain its HAN), per feeder total (``nan``) and for
  the community total (``fan``: what the FAN/WAN chain and the head-end receive), the bottom-up sum of the homes'
  forecasts. Models: ``strategy`` (the run's own forecast that set the orders, ``forecasts.parquet``), the
  analytics baselines ``persistence`` and ``seasonal-naive`` (and ``seasonal-naive-week`` once a run has more than
  a week), and the ``edge`` and ``fog`` models of :mod:`gridledger.analytics.forecast` (consumption and production
  forecast separately, net = difference) when the run is long enough to train them by the analytics' own rule
  (8 training days, the last third tested). Every model is scored on the same slots: the test days when the models
  are trained, else every slot where every model has a forecast. ``horizon_slots`` counts slots from the last
  measured slot a forecast uses to its target.

It returns the keys merged into ``summary.json`` (see :func:`analyze_run`).
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from gridledger.sim.network import concentrator_id

THEFT_COLUMNS = ["meter", "feeder", "day", "score", "flagged", "pv"]
PQ_COLUMNS = ["meter", "feeder", "slot", "kind", "value", "expected", "predicted"]
FORECAST_COLUMNS = ["tier", "chain", "model", "horizon_slots", "mae_wh", "nrmse", "n"]
#: Slots between the last measured slot the run's strategy uses and its target (made during ``t − 1`` from ``≤ t − 2``).
STRATEGY_LEAD = 2


class _RunData:
    """A finished run's meter data as ``(meters, slots)`` arrays, meters sorted, slots from 0."""

    def __init__(self, out: Path) -> None:
        summary = json.loads((out / "summary.json").read_text())
        self.L = int(summary["slot_seconds"])
        self.spd = 86_400 // self.L
        self.days = int(summary["days"])
        self.S = self.days * self.spd
        self.start = pd.Timestamp(summary["start"])
        r = pd.read_parquet(out / "readings.parquet")
        codes, meters = pd.factorize(r["meter"], sort=True)
        self.meters = [str(m) for m in meters]
        feeder_of = dict(zip(r["meter"].astype(str), r["feeder"].astype(str), strict=False))
        self.feeder = np.array([feeder_of[m] for m in self.meters])
        at = (codes, r["slot"].to_numpy())
        self.cons = self._grid(at, r["consumption_wh"])
        self.prod = self._grid(at, r["production_wh"])
        self.volts = self._grid(at, r["voltage_dv"]) / 10
        self.pf = self._grid(at, r["power_factor_pm"]) / 1000
        f = pd.read_parquet(out / "forecasts.parquet")
        index = {m: i for i, m in enumerate(self.meters)}
        self.strategy = self._grid(
            (f["meter"].astype(str).map(index).to_numpy(), f["slot"].to_numpy()), f["forecast_wh"]
        )
        tiers = out / "chains" / "tiers.json"
        names = [c["name"] for c in json.loads(tiers.read_text())["chains"]] if tiers.is_file() else []
        self.fan_chain = next((n for n in names if n.startswith("fan:")), "fan")
        pv = pd.read_parquet(out / "households.parquet", columns=["meter", "pv_wh"]).groupby("meter")["pv_wh"].sum()
        self.pv = np.array([pv.get(m, 0) > 0 for m in self.meters])

    def _grid(self, at: tuple[np.ndarray, np.ndarray], column: pd.Series) -> np.ndarray:
        """``column`` laid out at ``(meter positions, slots)``; NaN where there is no row."""
        out = np.full((len(self.meters), self.S), np.nan)
        out[at] = column.to_numpy(dtype=float)
        return out

    @property
    def net(self) -> np.ndarray:
        return self.cons - self.prod

    def cube(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(len(self.meters), self.days, self.spd)

    def feeders(self) -> list[tuple[str, np.ndarray]]:
        return [(f, np.flatnonzero(self.feeder == f)) for f in sorted(set(self.feeder))]


# ------------------------------------------------------------------------------------------------ theft
def theft_scores(run: _RunData, notes: list[str]) -> pd.DataFrame:
    """The shipped detector on every complete meter-day of reported consumption, one neighbourhood per feeder."""
    from gridledger.analytics.default_model import load_default_model
    from gridledger.analytics.theft import detect

    model = load_default_model()
    if model.step_s % run.L:
        notes.append(
            f"theft: the shipped model needs readings every {model.step_s // 60} min or finer; this run's slots are "
            f"{run.L // 60} min: not scored"
        )
        return pd.DataFrame(columns=THEFT_COLUMNS)
    if run.days == 1:
        notes.append("theft: a 1-day run gives no history per meter: days are scored against the neighbours only")
    k = model.step_s // run.L
    days, export = (run.cube(a).reshape(len(run.meters), run.days, -1, k).sum(axis=3) for a in (run.cons, run.prod))
    frames = []
    for f, rows in run.feeders():
        found = detect(model, [run.meters[i] for i in rows], days[rows], export=export[rows])
        m, d = np.nonzero(np.isfinite(found.logits))
        frames.append(
            pd.DataFrame(
                {
                    "meter": [run.meters[rows[i]] for i in m],
                    "feeder": f,
                    "day": d,
                    "score": found.probability[m, d],
                    "flagged": found.agent_decisions[m, d].astype(bool),
                    "pv": run.pv[rows[m]],
                }
            )
        )
    scores = pd.concat(frames, ignore_index=True)
    if (scores["flagged"] & scores["pv"]).any():
        notes.append(
            f"theft: {int(scores['flagged'].sum())} meter-days flagged, {int((scores['flagged'] & scores['pv']).sum())}"
            " of them of homes with PV (false alarms by kind of home: docs/analytics.md)"
        )
    return scores


# ------------------------------------------------------------------------------------------------ power quality
def pq_events(run: _RunData, notes: list[str]) -> tuple[pd.DataFrame, int]:
    """Sags, swells and poor power factors in the readings, what the meter's edge predictor expected there and whether
    that was an event too; and the number of slots the predictor foresaw an event in (true or not)."""
    from gridledger.analytics.power_quality import (
        EVENTS,
        POWER_BINS_W,
        Limits,
        PowerQualityModel,
        flag_events,
        net_power_w,
    )

    limits = Limits()
    hour = np.arange(run.S) % run.spd * 24 // run.spd
    day = np.arange(run.S) // run.spd
    power = net_power_w(run.cons, run.prod, run.L)
    forecast_power = run.strategy * 3600.0 / run.L
    no_reference = PowerQualityModel(POWER_BINS_W, *np.full((2, len(POWER_BINS_W) - 1), np.nan), np.zeros(24), 0.0)

    def fit(i: int, upto: int) -> PowerQualityModel | None:
        try:
            return PowerQualityModel.fit(hour[:upto], power[i, :upto], run.volts[i, :upto], run.pf[i, :upto])
        except ValueError:  # fewer than 24 readings
            return None

    rows, foreseen = [], 0
    short = False
    for i, meter in enumerate(run.meters):
        reference = fit(i, run.S) or no_reference
        short |= reference is no_reference
        flags = flag_events(run.volts[i], run.pf[i], power[i], reference, limits)
        expected = {"voltage": np.full(run.S, np.nan), "pf": np.full(run.S, np.nan)}
        predicted = {k: np.zeros(run.S, dtype=bool) for k in EVENTS}
        for d in range(1, run.days):
            model = fit(i, d * run.spd)
            span = (day == d) & np.isfinite(forecast_power[i])
            if model is None or not span.any():
                continue
            p_hat = forecast_power[i, span]
            expected["voltage"][span] = model.expected_voltage(hour[span], p_hat)
            expected["pf"][span] = model.expected_pf(p_hat)
            # had the reading been what the predictor expected, would it be an event?
            for kind, flagged in flag_events(expected["voltage"][span], expected["pf"][span], p_hat, reference).items():
                predicted[kind][span] = flagged
        foreseen += int(np.logical_or.reduce(list(predicted.values())).sum())
        for kind in EVENTS:
            value, hat = (run.pf[i], expected["pf"]) if kind == "poor_pf" else (run.volts[i], expected["voltage"])
            for s in np.flatnonzero(flags[kind]):
                rows.append(
                    (meter, run.feeder[i], int(s), kind, float(value[s]), float(hat[s]), bool(predicted[kind][s]))
                )
    if short:
        notes.append(
            "power quality: fewer than 24 readings per meter: no poor-power-factor reference, sags/swells only"
        )
    return pd.DataFrame(rows, columns=PQ_COLUMNS), foreseen


# ------------------------------------------------------------------------------------------------ forecasts
def _net_forecasts(run: _RunData) -> tuple[dict[str, np.ndarray], dict[str, int], int]:
    """Every model's net forecast ``(meters, slots)``, its horizon in slots, and the first scored day."""
    from gridledger.analytics.forecast import NEXT_SLOT, ForecastSettings, build_problem, fit_edge, fit_fog

    settings = ForecastSettings()
    split_day = int(round(run.days * (1 - settings.test_fraction)))
    trained = 8 <= split_day < run.days  # the analytics' own rule (evaluate_forecasts)
    days = pd.date_range(run.start.tz_localize(None).normalize(), periods=run.days, freq="D")
    by_part = []
    for x in (run.cons, run.prod):
        problem = build_problem(run.cube(x), days, NEXT_SLOT)
        found = problem.baselines()
        if trained:
            found["edge"] = fit_edge(problem, split_day)
            found["fog"] = fit_fog(problem, split_day, settings.seed)
        by_part.append(found)
    consumption, production = by_part
    forecasts = {name: consumption[name] - production[name] for name in consumption}
    forecasts["strategy"] = run.strategy
    horizon = {
        "strategy": STRATEGY_LEAD,
        "persistence": 1,
        "seasonal-naive": run.spd,
        "seasonal-naive-week": 7 * run.spd,
        "edge": 1,
        "fog": 1,
    }
    return forecasts, horizon, split_day if trained else 0


def forecast_errors(run: _RunData, notes: list[str]) -> pd.DataFrame:
    """Errors of every model per home, per feeder total and for the community total, on common slots."""
    from gridledger.analytics.metrics import forecast_errors as errors

    forecasts, horizon, first_day = _net_forecasts(run)
    period = np.arange(run.S) >= first_day * run.spd
    # a model with no forecast for some home at every slot of the period (too little history) is left out
    usable = {n: f for n, f in forecasts.items() if (np.isfinite(f[:, period]).all(axis=0)).any()}
    common = period & np.isfinite(run.net).all(axis=0)
    for f in usable.values():
        common &= np.isfinite(f).all(axis=0)
    if not common.any():
        notes.append("forecasts: no slot where every model has a forecast: no forecast errors")
        return pd.DataFrame(columns=FORECAST_COLUMNS)
    if first_day == 0:
        notes.append("forecasts: too few days to train the edge and fog models (8 training days): baselines only")
    series = [("home", f"han:{m}", [i]) for i, m in enumerate(run.meters)]
    series += [("nan", f"nan:{concentrator_id(f)}", rows) for f, rows in run.feeders()]
    series.append(("fan", run.fan_chain, list(range(len(run.meters)))))
    rows, net = [], run.net
    for tier, chain, members in series:
        observed = net[members][:, common].sum(axis=0)
        for name, f in usable.items():
            e = errors(observed, f[members][:, common].sum(axis=0))
            rows.append((tier, chain, name, horizon[name], e["mae"], e["nrmse"], e["n"]))
    return pd.DataFrame(rows, columns=FORECAST_COLUMNS)


# ------------------------------------------------------------------------------------------------ the run's analytics
def _median(frame: pd.DataFrame, tier: str, model: str = "strategy") -> float | None:
    values = frame.loc[(frame["tier"] == tier) & (frame["model"] == model), "nrmse"].to_numpy(dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: a home with no net energy
        value = float(np.nanmedian(values)) if values.size else float("nan")
    return round(value, 4) if np.isfinite(value) else None


def analyze_run(out_dir: Path) -> dict:
    """Write ``theft_scores``, ``pq_events`` and ``forecast_errors`` (Parquet) into a finished run folder.

    Returns the summary additions: ``theft_meter_days`` (scored), ``theft_flagged_meter_days`` (of which
    ``theft_flagged_pv_meter_days`` of homes with PV), ``pq_events``,
    ``pq_events_predicted``, ``pq_predicted_slots`` (slots where the predictor foresaw an event, true or not),
    ``forecast_nrmse_home`` (median over homes), ``forecast_nrmse_nan`` (median over
    feeders) and ``forecast_nrmse_fan`` (the community total) of the run's own strategy forecast (None when not
    scored), ``forecast_models``, ``analytics_notes`` (what could not be done on this run, and why) and
    ``analytics_s`` (wall seconds).
    """
    from threadpoolctl import threadpool_limits

    wall = time.perf_counter()
    out = Path(out_dir)
    run = _RunData(out)
    notes: list[str] = []
    with threadpool_limits(limits=1, user_api="blas"):  # small least squares: threads cost 100x on a busy machine
        theft = theft_scores(run, notes)
        events, foreseen = pq_events(run, notes)
        fc = forecast_errors(run, notes)
    theft.to_parquet(out / "theft_scores.parquet", index=False)
    events.to_parquet(out / "pq_events.parquet", index=False)
    fc.to_parquet(out / "forecast_errors.parquet", index=False)
    return {
        "theft_meter_days": len(theft),
        "theft_flagged_meter_days": int(theft["flagged"].sum()),
        "theft_flagged_pv_meter_days": int((theft["flagged"] & theft["pv"]).sum()),
        "pq_events": len(events),
        "pq_events_predicted": int(events["predicted"].sum()),
        "pq_predicted_slots": foreseen,
        "forecast_nrmse_home": _median(fc, "home"),
        "forecast_nrmse_nan": _median(fc, "nan"),
        "forecast_nrmse_fan": _median(fc, "fan"),
        "forecast_models": sorted(set(fc["model"])),
        "analytics_notes": notes,
        "analytics_s": round(time.perf_counter() - wall, 3),
    }
