"""Regular time indexes at whole-minute steps, the resolution of the profiles.

The paper's meters sample once a minute (Olivares-Rojas et al. 2023, sec. 4.2), so every profile is built on a
1-minute grid and averaged to the caller's step. A step is a whole number of minutes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MINUTE = pd.Timedelta(minutes=1)
BLOCK = pd.Timedelta(minutes=15)
"""The BDEW standard load profiles' resolution."""


def step_minutes(index: pd.DatetimeIndex) -> int:
    """The step of a regular index, in whole minutes.

    Parameters
    ----------
    index : pandas.DatetimeIndex
        Strictly increasing, evenly spaced timestamps; a one-element index needs ``index.freq``.

    Returns
    -------
    int
        The step in minutes (>= 1).

    Raises
    ------
    ValueError
        If the index is empty, unevenly spaced, not increasing or not at a whole-minute step.
    """
    if not isinstance(index, pd.DatetimeIndex):
        raise ValueError(f"index must be a pandas.DatetimeIndex, got {type(index).__name__}")
    if len(index) == 0:
        raise ValueError("index is empty")
    if index.hasnans:
        raise ValueError("index contains NaT")
    if len(index) == 1:
        if index.freq is None:
            raise ValueError("a one-element index needs a freq to give its step")
        step = pd.Timedelta(index.freq)
    else:
        diffs = np.diff(index.asi8)
        if diffs[0] <= 0 or np.any(diffs != diffs[0]):
            raise ValueError("index must be strictly increasing and evenly spaced")
        step = index[1] - index[0]
    if step < MINUTE or step % MINUTE != pd.Timedelta(0):
        raise ValueError(f"index step must be a whole number of minutes (>= 1 min), got {step}")
    return int(step // MINUTE)


def wall_clock(index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """Local wall-clock time of an index (tz-aware indexes lose their zone, naive ones are kept as they are)."""
    return index.tz_localize(None) if index.tz is not None else index


def minute_grid(index: pd.DatetimeIndex) -> tuple[pd.DatetimeIndex, int, int]:
    """The 1-minute grid of whole 15-minute blocks that covers ``index``'s steps.

    Returns
    -------
    grid : pandas.DatetimeIndex
        1-minute timestamps from the 15-minute boundary at or before ``index[0]`` to the one at or after the end
        of the last step; its length is a multiple of 15.
    offset : int
        Position of ``index[0]`` in ``grid``.
    step : int
        The index step in minutes.
    """
    step = step_minutes(index)
    start = _utc_round(index[0], "floor")
    end = _utc_round(index[-1] + step * MINUTE, "ceil")
    grid = pd.date_range(start, end, freq=MINUTE, inclusive="left")
    return grid, int((index[0] - start) // MINUTE), step


def _utc_round(t: pd.Timestamp, how: str) -> pd.Timestamp:
    """Round to a 15-minute boundary in UTC: the same boundary as in local time (all UTC offsets are whole
    quarter hours) and never ambiguous at a daylight-saving change."""
    if t.tz is None:
        return getattr(t, how)(BLOCK)
    return getattr(t.tz_convert("UTC"), how)(BLOCK).tz_convert(t.tz)


def average_to_index(per_minute: np.ndarray, offset: int, step: int, n: int) -> np.ndarray:
    """Mean over each step of a minute series (the last axis), starting at ``offset``; shape ``(..., n)``."""
    window = per_minute[..., offset : offset + n * step]
    return window.reshape(*window.shape[:-1], n, step).mean(axis=-1)
