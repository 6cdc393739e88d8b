"""The Proof-of-Efficiency score of one prosumer: an integer in [0, 1000], computed exactly from integer readings.

PoEf rewards users who use energy efficiently "considering the power quality, the forecast of the demand"
and peak reduction (Olivares-Rojas et al. 2023, §3.2–3.3: filling valleys and shaving peaks). The score
combines three components, each an integer in [0, 1000], over the *scored* days (every day after the first: the
first only serves as the forecast's reference):

* **forecast adherence**: how closely the prosumer's hourly net energy follows a reference forecast anyone can
  recompute — the mean of the same hour over the previous (up to) 7 days: ``1 − RMSE / mean hourly gross
  energy`` (consumption + production), clipped to [0, 1];
* **power quality**: the share of consumed energy drawn at a power factor of at least ``min_pf``, times the
  share of readings with the voltage inside the sag/swell band (see :mod:`.power_quality`); readings that do
  not report a power factor or a voltage count for neither share;
* **peak reduction**: the load factor of hourly grid import, ``mean / max`` (1 when nothing is imported).

The inputs are integers — Wh per reading, voltage in 0.1 V, power factor in per mille, as a reading on the
ledger holds them (:class:`gridledger.ledger.kinds.reading.ReadingValues`) — and every step is exact rational
arithmetic on Python integers (``fractions.Fraction``, ``math.isqrt`` for the square root of the RMSE). Each
component is rounded half up to per mille and the score is the reward rule's integer weighted mean
(:func:`gridledger.ledger.kinds.reward.score_of`), so every machine derives the same integers from the same
readings. :func:`efficiency_score` rounds a DataFrame's readings to those units first; the ledger's readings go
through :func:`gridledger.analytics.scorecards.period_score` and the same :func:`score_days`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from math import isqrt

import numpy as np
import pandas as pd

from gridledger.ledger.kinds.reward import WEIGHTS, score_of

from .data import DAY_S, DataError, to_cube, validate_readings
from .power_quality import Limits

COMPONENTS = ("forecast_adherence", "power_quality", "peak_reduction")
REFERENCE_DAYS = 7
HOURS = 24


@dataclass(frozen=True)
class EfficiencyScore:
    """A prosumer's PoEf efficiency score and its components, all integers in [0, 1000]."""

    score: int
    forecast_adherence: int
    power_quality: int
    peak_reduction: int

    @property
    def components(self) -> tuple[int, int, int]:
        return (self.forecast_adherence, self.power_quality, self.peak_reduction)

    def as_dict(self) -> dict[str, int]:
        return {"score": self.score, **{c: getattr(self, c) for c in COMPONENTS}}


@dataclass(frozen=True)
class QualityTally:
    """Integer tallies of the scored readings for the power-quality component.

    ``metered_wh``: energy consumed in readings that report a power factor; ``good_pf_wh``: of which at a power
    factor (leading or lagging) of at least ``min_pf``; ``voltage_readings``: readings that report a voltage;
    ``in_band``: of which inside the sag/swell band.
    """

    metered_wh: int = 0
    good_pf_wh: int = 0
    voltage_readings: int = 0
    in_band: int = 0


def integer_limits(limits: Limits) -> tuple[int, int, int]:
    """The voltage band (0.1 V) and the lowest good power factor (per mille) of ``limits``, as integers."""
    return (
        round(limits.sag_pu * limits.nominal_v * 10),
        round(limits.swell_pu * limits.nominal_v * 10),
        round(limits.min_pf * 1000),
    )


def per_mille(share: Fraction) -> int:
    """A fraction in [0, 1] as an integer 0..1000, rounded half up, exactly."""
    return (2000 * share.numerator + share.denominator) // (2 * share.denominator)


def _sqrt_half_down(q: Fraction) -> int:
    """``sqrt(q)`` rounded to the nearest integer, halves down (``ceil(sqrt(q) − 1/2)``), exactly, for q ≥ 0."""
    c = max(0, (isqrt(4 * q.numerator // q.denominator) - 1) // 2)
    while (2 * c + 1) ** 2 * q.denominator < 4 * q.numerator:
        c += 1
    return c


def forecast_adherence(net_wh: Sequence[Sequence[int]], gross_wh: Sequence[Sequence[int]], scored_from: int) -> int:
    """Per-mille ``1 − RMSE / mean gross`` of the hourly net energy of days ``scored_from`` on (Wh, ``(days,
    24)``) against the mean of the same hour over up to 7 earlier days."""
    sse = Fraction(0)
    for d in range(scored_from, len(net_wh)):
        reference = net_wh[max(0, d - REFERENCE_DAYS) : d]
        k = len(reference)
        sse += Fraction(sum((k * x - sum(r[h] for r in reference)) ** 2 for h, x in enumerate(net_wh[d])), k * k)
    n = HOURS * (len(net_wh) - scored_from)
    gross = sum(sum(day) for day in gross_wh[scored_from:])
    if gross == 0:
        return 1000
    # 1000 · RMSE / mean gross = sqrt(10^6 · SSE · n) / gross; adherence = 1000 − that, rounded half up
    return max(0, 1000 - _sqrt_half_down(sse * 1_000_000 * n / (gross * gross)))


def power_quality(tally: QualityTally) -> int:
    """Per-mille share of energy at a good power factor times the share of readings inside the voltage band."""
    good_pf = Fraction(tally.good_pf_wh, tally.metered_wh) if tally.metered_wh else Fraction(1)
    in_band = Fraction(tally.in_band, tally.voltage_readings) if tally.voltage_readings else Fraction(1)
    return per_mille(good_pf * in_band)


def peak_reduction(net_wh: Sequence[Sequence[int]], scored_from: int) -> int:
    """Per-mille load factor (mean / max) of the hourly grid import ``max(net, 0)`` of the scored days."""
    imports = [max(x, 0) for day in net_wh[scored_from:] for x in day]
    peak = max(imports)
    return 1000 if peak == 0 else per_mille(Fraction(sum(imports), len(imports) * peak))


def score_days(
    net_wh: Sequence[Sequence[int]],
    gross_wh: Sequence[Sequence[int]],
    quality: QualityTally,
    scored_from: int = 1,
    weights: Sequence[int] = WEIGHTS,
) -> EfficiencyScore:
    """The efficiency score of the days ``scored_from`` on.

    Parameters
    ----------
    net_wh, gross_wh : per day, the 24 hourly consumption − production and consumption + production, integer Wh.
    quality : tallies of the scored days' readings.
    scored_from : first scored day, ≥ 1 (earlier days are the forecast's reference only).
    weights : non-negative integer weights of the three components, not all zero.
    """
    if not 1 <= scored_from < len(net_wh) or len(gross_wh) != len(net_wh):
        raise DataError(f"scoring days {scored_from}.. of {len(net_wh)} needs at least one earlier reference day")
    parts = (
        forecast_adherence(net_wh, gross_wh, scored_from),
        power_quality(quality),
        peak_reduction(net_wh, scored_from),
    )
    return EfficiencyScore(score_of(parts, weights), *parts)


def efficiency_score(
    readings: pd.DataFrame, weights: tuple[int, int, int] = WEIGHTS, limits: Limits = Limits()
) -> EfficiencyScore:
    """The PoEf efficiency score of one prosumer from its readings (the long format of the analytics).

    Each reading is first rounded to the ledger's integer units (Wh, 0.1 V, per-mille power factor); every
    complete day after the first is scored (:func:`score_days`).

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
    if len(weights) != 3 or any(not isinstance(w, int | np.integer) or w < 0 for w in weights) or sum(weights) == 0:
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
    v = {name: values[0][complete] for name, values in cube.values.items()}
    cons, prod = (np.rint(v[c]).astype(np.int64) for c in ("consumption_wh", "production_wh"))
    voltage_dv = np.rint(10 * v["voltage_v"]).astype(np.int64)[1:]
    pf_pm = np.abs(np.rint(1000 * v["power_factor"]).astype(np.int64))[1:]
    low, high, min_pf = integer_limits(limits)
    quality = QualityTally(
        int(cons[1:].sum()),
        int(cons[1:][pf_pm >= min_pf].sum()),
        int(voltage_dv.size),
        int(np.count_nonzero((voltage_dv >= low) & (voltage_dv <= high))),
    )
    per_hour = DAY_S // HOURS // cube.step_s
    cons_h, prod_h = (x.reshape(-1, HOURS, per_hour).sum(axis=2) for x in (cons, prod))
    return score_days((cons_h - prod_h).tolist(), (cons_h + prod_h).tolist(), quality, 1, weights)
