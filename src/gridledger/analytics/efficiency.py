"""The Proof-of-Efficiency score of one prosumer: an integer in [0, 1000] from its readings.

PoEf rewards users who use energy efficiently "considering the power quality, the forecast of the demand"
and peak reduction (Olivares-Rojas et al. 2023, §3.2–3.3: filling valleys and shaving peaks). The score
combines three components, each an integer in [0, 1000]:

* **forecast adherence**: how closely the prosumer's hourly net energy follows a reference forecast anyone can
  recompute — the mean of the same hour over the previous (up to) 7 days: ``1 − RMSE / mean hourly gross
  energy`` (consumption + production), clipped to [0, 1];
* **power quality**: the share of consumed energy drawn at a power factor of at least ``min_pf``, times the
  share of readings with the voltage inside the sag/swell band (see :mod:`.power_quality`);
* **peak reduction**: the load factor of hourly grid import, ``mean / max`` (1 when nothing is imported).

Each component is rounded half up to per-mille, and the score is the integer weighted mean
``(Σ w_i c_i) // Σ w_i`` with integer weights, so every validator derives the same integer from the same
readings with integer arithmetic at the end. (The components come from floating-point sums: two machines
could round differently only if a component falls within ~1e-12 of a half per-mille.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .data import DAY_S, DataError, to_cube, validate_readings
from .power_quality import Limits

COMPONENTS = ("forecast_adherence", "power_quality", "peak_reduction")
REFERENCE_DAYS = 7


@dataclass(frozen=True)
class EfficiencyScore:
    """A prosumer's PoEf efficiency score and its components, all integers in [0, 1000]."""

    score: int
    forecast_adherence: int
    power_quality: int
    peak_reduction: int

    def as_dict(self) -> dict[str, int]:
        return {"score": self.score, **{c: getattr(self, c) for c in COMPONENTS}}


def per_mille(x: float) -> int:
    """A fraction in [0, 1] as an integer 0..1000, rounded half up."""
    return int(np.floor(1000.0 * min(max(float(x), 0.0), 1.0) + 0.5))


def forecast_adherence(net_wh: np.ndarray, gross_wh: np.ndarray) -> float:
    """``1 − RMSE / mean gross`` of hourly net energy ``(days, 24)`` against the mean of 7 earlier days."""
    days = net_wh.shape[0]
    if days < 2:
        raise DataError("forecast adherence needs at least 2 complete days of readings")
    forecast = np.stack([net_wh[max(0, d - REFERENCE_DAYS) : d].mean(axis=0) for d in range(1, days)])
    rmse = float(np.sqrt(np.mean((net_wh[1:] - forecast) ** 2)))
    gross = float(gross_wh[1:].mean())
    return 1.0 if gross == 0 else 1.0 - rmse / gross


def power_quality_share(
    consumption_wh: np.ndarray, voltage_v: np.ndarray, power_factor: np.ndarray, limits: Limits = Limits()
) -> float:
    """Share of consumed energy at ``pf >= min_pf`` times the share of readings inside the voltage band."""
    energy = float(consumption_wh.sum())
    good_pf = 1.0 if energy == 0 else float(consumption_wh[power_factor >= limits.min_pf].sum()) / energy
    lo, hi = limits.sag_pu * limits.nominal_v, limits.swell_pu * limits.nominal_v
    in_band = float(np.mean((voltage_v >= lo) & (voltage_v <= hi)))
    return good_pf * in_band


def load_factor(import_wh: np.ndarray) -> float:
    """Mean over max of hourly import energy (1.0 when nothing is imported)."""
    peak = float(import_wh.max())
    return 1.0 if peak == 0 else float(import_wh.mean()) / peak


def efficiency_score(
    readings: pd.DataFrame, weights: tuple[int, int, int] = (1, 1, 1), limits: Limits = Limits()
) -> EfficiencyScore:
    """The PoEf efficiency score of one prosumer from its readings (the long format of the analytics).

    Parameters
    ----------
    readings : one meter's rows with ``consumption_wh``, ``production_wh``, ``voltage_v`` and
        ``power_factor``, at least two complete days at any supported resolution up to 1 hour.
    weights : non-negative integer weights of forecast adherence, power quality and peak reduction.
    limits : power-quality limits.

    Raises
    ------
    DataError
        If the readings are invalid, hold more than one meter, miss a column, or have fewer than two complete
        days.
    """
    if (
        len(weights) != 3
        or any(not isinstance(w, int | np.integer) or w < 0 for w in weights)
        or sum(weights) == 0
    ):
        raise ValueError(f"weights must be three non-negative integers, not all zero; got {weights!r}")
    valid = validate_readings(readings)
    if len(valid.meters) != 1:
        raise DataError(f"an efficiency score is per prosumer: expected one meter, got {len(valid.meters)}")
    if valid.step_s > 3600:
        raise DataError("an efficiency score needs readings at least hourly")
    cube = to_cube(valid, ("consumption_wh", "production_wh", "voltage_v", "power_factor"))
    complete = cube.valid[0] & np.all([np.isfinite(v[0]).all(axis=1) for v in cube.values.values()], axis=0)
    if complete.sum() < 2:
        raise DataError("an efficiency score needs at least 2 complete days of readings")
    values = {name: v[0][complete] for name, v in cube.values.items()}
    per_hour = DAY_S // 24 // cube.step_s
    cons = values["consumption_wh"].reshape(-1, 24, per_hour).sum(axis=2)
    prod = values["production_wh"].reshape(-1, 24, per_hour).sum(axis=2)
    parts = (
        per_mille(forecast_adherence(cons - prod, cons + prod)),
        per_mille(
            power_quality_share(
                values["consumption_wh"].ravel(),
                values["voltage_v"].ravel(),
                values["power_factor"].ravel(),
                limits,
            )
        ),
        per_mille(load_factor(np.maximum(cons - prod, 0.0))),
    )
    score = sum(int(w) * c for w, c in zip(weights, parts, strict=True)) // sum(int(w) for w in weights)
    return EfficiencyScore(score, *parts)
