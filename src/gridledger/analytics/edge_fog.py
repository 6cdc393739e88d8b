"""Edge (meter) and fog (concentrator) levels writing their forecasts to their own stores.

The multi-level analytics of Olivares-Rojas et al. (2023), §3.2: each smart meter forecasts its own
consumption and production (the edge model of :mod:`.forecast`) and keeps them in its store (Table 3); the
concentrator forecasts every meter and the neighbourhood total (the fog model) and keeps them in its store
(Table 4). This module is the I/O edge that turns :class:`~.forecast.ForecastEvaluation` arrays into rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .data import DAY_S
from .forecast import ForecastEvaluation
from .prediction_store import PredictionStore

KINDS = {"consumption_wh": "consumption", "production_wh": "production"}


def _timestamps(days: pd.DatetimeIndex, step_s: int, n_steps: int) -> pd.DatetimeIndex:
    per_day = DAY_S // step_s
    t = np.arange(n_steps)
    return days[t // per_day] + pd.to_timedelta((t % per_day) * step_s, unit="s")


def _rows(
    evaluation: ForecastEvaluation, days: pd.DatetimeIndex, forecast: np.ndarray, observed: np.ndarray
) -> pd.DataFrame:
    """One series' rows over the test period: timestamp, horizon, ``<kind>_pred_wh``, ``<kind>_delta_wh``."""
    kind = KINDS[evaluation.column]
    stamps = _timestamps(days, evaluation.step_s, observed.size)
    test = np.arange(observed.size) // (DAY_S // evaluation.step_s) >= evaluation.split_day
    test &= np.isfinite(forecast)
    return pd.DataFrame(
        {
            "timestamp": stamps[test],
            "horizon": evaluation.horizon,
            f"{kind}_pred_wh": forecast[test],
            f"{kind}_delta_wh": observed[test] - forecast[test],
        }
    )


def _merge(frames: list[pd.DataFrame], key: list[str]) -> pd.DataFrame:
    """Join consumption and production rows of the same key (outer join per horizon)."""
    by_horizon: dict[str, pd.DataFrame] = {}
    for frame in frames:
        h = frame["horizon"].iloc[0] if len(frame) else None
        if h is None:
            continue
        by_horizon[h] = frame if h not in by_horizon else by_horizon[h].merge(frame, on=key, how="outer")
    return pd.concat(by_horizon.values(), ignore_index=True) if by_horizon else pd.DataFrame(columns=key)


def record_forecasts(
    directory: str | Path,
    meters: list[str],
    days: pd.DatetimeIndex,
    evaluations: list[ForecastEvaluation],
    neighbourhood: str = "NAN",
) -> list[Path]:
    """Write each meter's edge forecasts to ``meter_<id>.sqlite`` and the fog forecasts (per meter and for the
    neighbourhood total, ``sm_id = neighbourhood``) to ``concentrator.sqlite``; return the files written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for m, meter in enumerate(meters):
        frames = [_rows(ev, days, ev.forecasts["edge"][m], ev.observed[m]) for ev in evaluations]
        path = directory / f"meter_{meter}.sqlite"
        with PredictionStore(path, "meter") as store:
            store.record(_merge(frames, ["timestamp", "horizon"]))
        written.append(path)
    frames = []
    for ev in evaluations:
        per_meter = [
            _rows(ev, days, ev.forecasts["fog"][m], ev.observed[m]).assign(sm_id=meter)
            for m, meter in enumerate(meters)
        ]
        total = _rows(ev, days, ev.forecasts["fog"].sum(axis=0), ev.observed.sum(axis=0)).assign(
            sm_id=neighbourhood
        )
        frames.append(pd.concat([*per_meter, total], ignore_index=True))
    path = directory / "concentrator.sqlite"
    with PredictionStore(path, "concentrator") as store:
        store.record(_merge(frames, ["timestamp", "sm_id", "horizon"]))
    written.append(path)
    return written
