"""The report of ``gridledger forecast evaluate``: neighbourhood over time, errors by method, meters' NRMSE.

Built from :class:`gridledger.analytics.forecast.ForecastEvaluation` (its observations, forecasts and errors);
no model is refitted. Errors follow :mod:`gridledger.analytics.metrics`: MAE in Wh per step, NRMSE = RMSE /
mean observation, MAPE in %. Persistence and seasonal-naive are the baselines (docs/analytics.md).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gridledger.analytics.data import describe_step
from gridledger.analytics.forecast import ForecastEvaluation
from gridledger.analytics.metrics import forecast_errors

from .html import Figure, Report, Table
from .provenance import Provenance

BASELINES = ("persistence", "seasonal-naive", "seasonal-naive-week")
SHOWN = ("seasonal-naive", "edge", "fog")  # drawn on opening; the other methods are one legend click away
COLORS = {
    "observed": "#222222",
    "persistence": "#bcbd22",
    "seasonal-naive": "#7f7f7f",
    "seasonal-naive-week": "#c7c7c7",
    "edge": "#1f77b4",
    "fog": "#d62728",
}
ERRORS = (("mae", "MAE (Wh per step)"), ("nrmse", "NRMSE"), ("mape", "MAPE (%)"))


def scored_steps(ev: ForecastEvaluation) -> np.ndarray:
    """``(n_meters, n_steps)``: the test steps that :func:`.evaluate_forecasts` scored.

    Test days with an observation, where every method that forecast anything in the test period has a value.
    """
    day = np.arange(ev.observed.shape[1]) // (86_400 // ev.step_s)
    period = (day >= ev.split_day)[None, :] & np.isfinite(ev.observed)
    scored = period.copy()
    for f in ev.forecasts.values():
        if np.isfinite(f[period]).any():
            scored &= np.isfinite(f)
    return scored


def step_times(days: pd.DatetimeIndex, step_s: int) -> pd.DatetimeIndex:
    """Start of every step of ``days`` at ``step_s`` seconds (local clock time from each midnight)."""
    per_day = 86_400 // step_s
    offsets = pd.to_timedelta(np.tile(np.arange(per_day) * step_s, len(days)), unit="s")
    return days.repeat(per_day) + offsets


def per_meter_nrmse(ev: ForecastEvaluation) -> dict[str, np.ndarray]:
    """Method -> each meter's NRMSE over its scored steps (the values whose median is ``meter_errors``)."""
    scored = scored_steps(ev)
    return {
        name: np.array(
            [forecast_errors(ev.observed[m, scored[m]], f[m, scored[m]])["nrmse"] for m in range(len(f))]
        )
        for name, f in ev.forecasts.items()
    }


def _label(ev: ForecastEvaluation) -> str:
    return f"{ev.column} {ev.horizon}"


def _over_time(ev: ForecastEvaluation, days: pd.DatetimeIndex) -> Figure:
    in_test = np.arange(ev.observed.shape[1]) >= ev.split_day * (86_400 // ev.step_s)
    whole = scored_steps(ev).all(axis=0)[in_test]  # the neighbourhood is scored where every meter is
    times = step_times(days, ev.step_s)[in_test]
    fig = go.Figure()
    series = {"observed": ev.observed, **ev.forecasts}
    for name, values in series.items():
        total = np.where(whole, values[:, in_test].sum(axis=0), np.nan)
        fig.add_trace(
            go.Scatter(
                x=times,
                y=total,
                mode="lines",
                name=name,
                line={"color": COLORS.get(name), "width": 2.5 if name == "observed" else 1.5},
                visible=True if name == "observed" or name in SHOWN else "legendonly",
            )
        )
    fig.update_layout(
        height=430,
        xaxis={"title": "time (start of step)"},
        yaxis={"title": f"neighbourhood energy per {describe_step(ev.step_s)} step (Wh)"},
        hovermode="x unified",
    )
    return Figure(
        f"{_label(ev)}: neighbourhood actual vs forecast",
        fig,
        "The test days, summed over all meters (gaps: a meter had no reading). Click a legend entry to "
        "show or hide a method; persistence and the week-ago baseline start hidden.",
    )


def _errors(ev: ForecastEvaluation) -> Figure:
    fig = make_subplots(
        rows=1, cols=3, subplot_titles=[title for _, title in ERRORS], horizontal_spacing=0.07
    )
    methods = list(ev.forecasts)
    for col, (key, _) in enumerate(ERRORS, start=1):
        for level, errors, color in (
            ("median meter", ev.meter_errors, "#9ecae1"),
            ("neighbourhood", ev.neighbourhood_errors, "#08519c"),
        ):
            fig.add_trace(
                go.Bar(
                    x=methods,
                    y=[errors[m][key] for m in methods],
                    name=level,
                    legendgroup=level,
                    showlegend=col == 1,
                    marker={"color": color},
                ),
                row=1,
                col=col,
            )
    fig.update_layout(barmode="group", height=420)
    return Figure(
        f"{_label(ev)}: error per method against the baselines",
        fig,
        f"{', '.join(BASELINES)} are the baselines; edge (per-meter ridge) and fog (concentrator gradient "
        "boosting) the models. Lower is better. Median meter = median of the meters' own errors.",
    )


def _spread(ev: ForecastEvaluation, meters: list[str]) -> Figure:
    fig = go.Figure()
    for name, values in per_meter_nrmse(ev).items():
        fig.add_trace(
            go.Box(
                y=values,
                name=name,
                text=meters,
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                marker={"color": COLORS.get(name), "size": 5},
                hovertemplate="meter %{text}: NRMSE %{y:.3f}<extra>%{x}</extra>",
            )
        )
    fig.update_layout(height=430, yaxis={"title": "NRMSE of one meter"}, showlegend=False)
    return Figure(
        f"{_label(ev)}: per-meter NRMSE",
        fig,
        "One point per meter (hover for its id); the box spans the middle half of the meters, the line "
        "is the median over meters (the `m.` columns of the command's table).",
    )


def _gain(ev: ForecastEvaluation) -> str:
    gain = ev.gain()
    return f"{gain:+.1%}" if np.isfinite(gain) else "n/a"


def _summary(evaluations: list[ForecastEvaluation], n_days: int) -> Table:
    def nrmse(ev: ForecastEvaluation, method: str) -> str:
        value = ev.neighbourhood_errors[method]["nrmse"]
        return f"{value:.3f}" if np.isfinite(value) else "n/a"

    rows = tuple(
        (
            _label(ev),
            describe_step(ev.step_s),
            str(n_days - ev.split_day),
            *(nrmse(ev, m) for m in ("persistence", "seasonal-naive", "edge", "fog")),
            _gain(ev),
        )
        for ev in evaluations
    )
    columns = (
        "forecast",
        "step",
        "test days",
        "persistence",
        "seasonal-naive",
        "edge",
        "fog",
        "fog below s.-naive",
    )
    return Table(columns, rows, "NRMSE of the neighbourhood total per method (lower is better).")


def forecast_report(
    days: pd.DatetimeIndex,
    meters: list[str],
    evaluations: list[ForecastEvaluation],
    provenance: Provenance,
    notes: tuple[str, ...] = (),
) -> Report:
    """The evaluation report: per evaluation, the neighbourhood over time, errors per method, per-meter NRMSE.

    ``days`` and ``meters`` are the evaluated cube's; the summary gives each method's neighbourhood NRMSE.
    """
    figures = tuple(
        fig for ev in evaluations for fig in (_over_time(ev, days), _errors(ev), _spread(ev, meters))
    )
    return Report(
        "Forecasting: evaluation",
        _summary(evaluations, len(days)),
        figures,
        provenance,
        notes,
    )
