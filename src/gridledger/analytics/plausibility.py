"""Plausibility of one new reading against the meter's history: the analytics check a PoEf validator runs.

A validator re-checks every reading in a proposed block; a reading far off what the meter's history makes
expected raises an alarm instead of passing silently (Olivares-Rojas et al. 2023, §4.2: "an alarm system to
report abnormal consumption/production transactions").

The test is distribution-free and deterministic. Without a ``period``, the expected value ``c`` is the median
of the history and each history reading's deviation is ``d_i = |h_i − c|``. With a ``period`` (1440 for the
daily cycle of 1-minute data) and at least three whole periods of history, every phase has its own expected
value (the median of the readings at that phase), ``c`` is the one of the new reading's phase, and ``d_i`` is
each reading's deviation from its own phase's median. The score is the rank p-value
``(1 + #{d_i ≥ d}) / (n + 1)`` with ``d = |value − c|``: the share of history at least as unusual as the new
reading. The reading is plausible when the score is at least ``alpha``. Non-finite or negative readings are
never plausible.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np


class Plausibility(NamedTuple):
    """``ok``: no alarm; ``score`` in (0, 1], higher is more typical; ``reason``: one line for people."""

    ok: bool
    score: float
    reason: str


def plausibility(
    history: np.ndarray,
    value: float,
    *,
    period: int | None = None,
    alpha: float = 0.001,
    min_history: int = 24,
) -> Plausibility:
    """Judge ``value`` (energy of one step, Wh) against ``history`` (earlier steps, oldest first, Wh).

    Parameters
    ----------
    history : earlier readings of the same meter at the same resolution; NaN entries are ignored.
    value : the new reading.
    period : steps per season (1440 for daily seasonality of 1-minute data), or None.
    alpha : alarm level: a score below it is implausible.
    min_history : below this many finite readings the history cannot judge, and the reading passes.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if period is not None and period < 1:
        raise ValueError(f"period must be >= 1, got {period}")
    if not np.isfinite(value):
        return Plausibility(False, 0.0, "reading is not a finite number")
    if value < 0:
        return Plausibility(False, 0.0, f"negative energy {value:g} Wh")
    h = np.asarray(history, dtype=float)
    if h.ndim != 1:
        raise ValueError("history must be one-dimensional")
    finite = h[np.isfinite(h)]
    if finite.size < min_history:
        return Plausibility(
            True, 1.0, f"only {finite.size} earlier reading(s); at least {min_history} are needed to judge"
        )
    periods = h.size // period if period else 0
    if periods >= 3:
        block = h[h.size - periods * period :].reshape(periods, period)  # column 0: the new reading's phase
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN phase has no centre
            centres = np.nanmedian(block, axis=0)
        deviations = np.abs(block - centres)
        centre = float(centres[0]) if np.isfinite(centres[0]) else float(np.median(finite))
    else:
        centre = float(np.median(finite))
        deviations = np.abs(finite - centre)
    deviations = deviations[np.isfinite(deviations)]
    distance = abs(value - centre)
    score = (1 + int(np.count_nonzero(deviations >= distance))) / (deviations.size + 1)
    if score >= alpha:
        return Plausibility(
            True, score, f"{value:g} Wh is within the meter's history (expected about {centre:g} Wh)"
        )
    side = "above" if value > centre else "below"
    return Plausibility(
        False, score, f"{value:g} Wh is far {side} the expected {centre:g} Wh (score {score:.2g} < {alpha:g})"
    )
