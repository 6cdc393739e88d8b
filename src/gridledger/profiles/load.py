"""Household load: BDEW standard load profiles made individual, down to 1-minute resolution.

The standard profile comes from ``demandlib`` (BDEW, *Repräsentative VDEW-Lastprofile*, 1999, and the 2025
revision): 15-minute energy shares of a year by season and day type (weekday, Saturday, Sunday/holiday), scaled so
that each calendar year holds ``annual_kwh``. Mexican statutory holidays count as Sundays.

A household is made individual by seeded noise in two layers (all parameters in :class:`LoadNoise`):

1. **15-minute individualisation.** The routine is shifted by a whole number of 15-minute blocks (up to
   ``max_shift_minutes``), each day gets a mean-one lognormal factor and each block a mean-one lognormal AR(1)
   factor. The result is rescaled so that its energy over the 15-minute blocks covering the requested index equals
   the standard profile's energy over them (a full calendar year therefore holds exactly ``annual_kwh``).
2. **1-minute disaggregation.** Each block's energy is split over its 15 minutes: a share ``1 - a`` follows a
   lognormal AR(1) "background" (fridge, standby, lights), renormalised to the block, and with probability
   ``event_probability`` a share ``a ~ U(event_share)`` is drawn by one appliance event, a run of 1-15 minutes at a
   random place inside the block, lengthened where needed so that the event adds at most ``event_max_w``. The
   energy of every 15-minute block is preserved exactly.

Events never straddle blocks and a block's power never goes negative. The step of the result is any whole number of
minutes: the 1-minute series is averaged over each step.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from demandlib import bdew

from gridledger.profiles.holidays import mexican_holidays
from gridledger.profiles.noise import ar1, check_seed, mean_one_lognormal
from gridledger.profiles.timegrid import BLOCK, average_to_index, minute_grid, wall_clock

_ELEC_SLP = ("H0", "H0_DYN", "G0", "G1", "G2", "G3", "G4", "G5", "G6", "L0", "L1", "L2")
_BDEW25 = {"H25": bdew.H25, "G25": bdew.G25, "L25": bdew.L25, "P25": bdew.P25, "S25": bdew.S25}
PROFILES: tuple[str, ...] = _ELEC_SLP + tuple(_BDEW25)
"""BDEW profiles shipped by demandlib 0.2.2: H0 (household; H0_DYN with the dynamisation function), G0-G6
(commerce), L0-L2 (farms) from ``ElecSlp``, and the 2025 revision H25, G25, L25, P25 (household with PV, net of
own generation) and S25 (household with PV and battery)."""

BLOCK_MINUTES = 15
_WH_PER_KWH = 1000.0
_BLOCKS_PER_HOUR = 4


def profile_name(profile: str) -> str:
    """Canonical (upper-case) name of a BDEW profile, or a ``ValueError`` listing the valid ones."""
    name = str(profile).upper()
    if name not in PROFILES:
        raise ValueError(f"unknown BDEW profile {profile!r}; valid: {', '.join(PROFILES)}")
    return name


@functools.lru_cache(maxsize=8)
def _elec_slp_frame(year: int) -> pd.DataFrame:
    # demandlib 0.2.2's ElecSlp calls warnings.simplefilter("error") while it builds the profiles, and pandas 3
    # warns there (deprecated ``inplace``), so the call raises. Neutralise that one call inside a
    # catch_warnings block, which restores the caller's warning filters afterwards.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        simplefilter = warnings.simplefilter
        warnings.simplefilter = lambda *args, **kwargs: None
        try:
            return bdew.ElecSlp(year, holidays=mexican_holidays(year)).get_profiles()
        finally:
            warnings.simplefilter = simplefilter


@functools.lru_cache(maxsize=64)
def bdew_shares(profile: str, year: int) -> np.ndarray:
    """The 15-minute energy shares of a BDEW profile over one calendar year (sum 1, read-only).

    Parameters
    ----------
    profile : str
        One of :data:`PROFILES` (case-insensitive).
    year : int
        Calendar year; position ``k`` is the block starting ``k * 15`` minutes after 1 January 00:00 local time.
    """
    name = profile_name(profile)
    if name in _BDEW25:
        blocks = pd.date_range(f"{year}-01-01", f"{year + 1}-01-01", freq=BLOCK, inclusive="left")
        with warnings.catch_warnings():  # demandlib 0.2.2 uses pandas' deprecated ``inplace=True``
            warnings.simplefilter("ignore", pd.errors.Pandas4Warning)
            values = _BDEW25[name](blocks, holidays=mexican_holidays(year)).to_numpy(dtype=float)
    else:
        values = _elec_slp_frame(year)[name.lower()].to_numpy(dtype=float)
    shares = values / values.sum()
    shares.flags.writeable = False
    return shares


def standard_block_power(blocks: pd.DatetimeIndex, annual_kwh: float, profile: str) -> np.ndarray:
    """Mean power (W) of the BDEW profile in the 15-minute blocks starting at the naive wall-clock ``blocks``."""
    years = blocks.year.to_numpy()
    out = np.empty(len(blocks))
    for year in np.unique(years):
        mask = years == year
        position = (blocks[mask] - pd.Timestamp(int(year), 1, 1)) // BLOCK
        out[mask] = bdew_shares(profile, int(year))[np.asarray(position)]
    return out * (annual_kwh * _WH_PER_KWH * _BLOCKS_PER_HOUR)


@dataclass(frozen=True)
class LoadNoise:
    """Parameters of the individualisation and 1-minute disaggregation (see the module docstring).

    Attributes
    ----------
    day_sigma : float
        Log-standard deviation of the daily factor.
    block_sigma, block_corr : float
        Log-standard deviation and lag-1 correlation (per 15 min) of the block factor.
    minute_sigma, minute_corr : float
        Log-standard deviation and lag-1 correlation (per minute) of the background within a block.
    event_probability : float
        Probability that a block holds an appliance event.
    event_share : tuple of float
        Range ``(low, high)`` of the block energy share an event draws.
    event_max_w : float
        Largest power an event adds on top of the background, W (a household appliance: kettle, iron, pump).
    max_shift_minutes : int
        Largest shift of the household's routine, a multiple of 15 minutes.
    """

    day_sigma: float = 0.15
    block_sigma: float = 0.25
    block_corr: float = 0.7
    minute_sigma: float = 0.3
    minute_corr: float = 0.6
    event_probability: float = 0.25
    event_share: tuple[float, float] = (0.3, 0.8)
    event_max_w: float = 2000.0
    max_shift_minutes: int = 30

    def __post_init__(self) -> None:
        for key in ("day_sigma", "block_sigma", "minute_sigma"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"LoadNoise.{key} must be a finite number >= 0, got {value!r}")
        for key in ("block_corr", "minute_corr"):
            value = getattr(self, key)
            if not 0 <= value < 1:
                raise ValueError(f"LoadNoise.{key} must be in [0, 1), got {value!r}")
        if not 0 <= self.event_probability <= 1:
            raise ValueError(f"LoadNoise.event_probability must be in [0, 1], got {self.event_probability!r}")
        low, high = self.event_share
        if not 0 <= low <= high <= 1:
            raise ValueError(f"LoadNoise.event_share must satisfy 0 <= low <= high <= 1, got {self.event_share!r}")
        if not self.event_max_w > 0:
            raise ValueError(f"LoadNoise.event_max_w must be > 0, got {self.event_max_w!r}")
        if self.max_shift_minutes < 0 or self.max_shift_minutes % BLOCK_MINUTES:
            raise ValueError(
                f"LoadNoise.max_shift_minutes must be a multiple of 15 >= 0, got {self.max_shift_minutes!r}"
            )

    @classmethod
    def none(cls) -> LoadNoise:
        """No noise: the plain standard profile, constant within each 15-minute block."""
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, (0.0, 0.0), max_shift_minutes=0)

    @property
    def max_shift_blocks(self) -> int:
        return self.max_shift_minutes // BLOCK_MINUTES


@dataclass(frozen=True)
class LoadGrid:
    """The time bookkeeping of one index, shared by every household built on it.

    ``blocks`` are the naive wall-clock starts of the 15-minute blocks covering the index, ``day`` the day number
    of each block, and ``offset``/``step``/``n`` place the index on the 1-minute grid.
    """

    blocks: pd.DatetimeIndex
    day: np.ndarray
    n_days: int
    offset: int
    step: int
    n: int

    @classmethod
    def of(cls, index: pd.DatetimeIndex) -> LoadGrid:
        grid, offset, step = minute_grid(index)
        blocks = wall_clock(grid[::BLOCK_MINUTES])
        day, days = pd.factorize(blocks.normalize())
        return cls(blocks, np.asarray(day), len(days), offset, step, len(index))

    def standard_power(self, annual_kwh: float, profile: str, pad: int = 0) -> np.ndarray:
        """Standard block power (W) over the blocks, extended by ``pad`` blocks on each side."""
        head = pd.date_range(end=self.blocks[0] - BLOCK, periods=pad, freq=BLOCK)
        tail = pd.date_range(self.blocks[-1] + BLOCK, periods=pad, freq=BLOCK)
        return standard_block_power(head.append(self.blocks).append(tail), annual_kwh, profile)


def individual_minutes(grid: LoadGrid, standard: np.ndarray, noise: LoadNoise, seed: int) -> np.ndarray:
    """One household's 1-minute power (W) on ``grid``, from its padded standard block power.

    Parameters
    ----------
    grid : LoadGrid
    standard : numpy.ndarray
        :meth:`LoadGrid.standard_power` padded by ``noise.max_shift_blocks``.
    noise : LoadNoise
    seed : int

    Returns
    -------
    numpy.ndarray
        Power in W at each minute of the grid (length ``15 * len(grid.blocks)``).
    """
    rng = np.random.default_rng(seed)
    pad, nb = noise.max_shift_blocks, len(grid.blocks)
    shift = int(rng.integers(-pad, pad + 1))
    routine = standard[pad - shift : pad - shift + nb]
    day = mean_one_lognormal(rng.standard_normal(grid.n_days), noise.day_sigma)[grid.day]
    block = mean_one_lognormal(ar1(rng, (nb,), noise.block_corr), noise.block_sigma)
    power = routine * day * block
    total = power.sum()
    if total > 0:
        power *= standard[pad : pad + nb].sum() / total

    background = mean_one_lognormal(ar1(rng, (nb * BLOCK_MINUTES,), noise.minute_corr), noise.minute_sigma)
    background = background.reshape(nb, BLOCK_MINUTES)
    background /= background.mean(axis=1, keepdims=True)
    has_event = rng.random(nb) < noise.event_probability
    drawn = rng.integers(1, BLOCK_MINUTES + 1, nb)
    share = rng.uniform(*noise.event_share, nb) * has_event
    # an event of share a over L minutes adds a * E * 15 / L (E: block mean power); lengthen it to stay <= cap
    shortest = np.ceil(share * power * BLOCK_MINUTES / noise.event_max_w).astype(np.int64)
    length = np.clip(np.maximum(drawn, shortest), 1, BLOCK_MINUTES)
    start = rng.integers(0, BLOCK_MINUTES + 1 - length)
    minute = np.arange(BLOCK_MINUTES)
    event = (minute >= start[:, None]) & (minute < (start + length)[:, None])
    weight = (1 - share)[:, None] * background + (share * BLOCK_MINUTES / length)[:, None] * event
    return (power[:, None] * weight).ravel()


def _check_annual(annual_kwh: float) -> float:
    value = float(annual_kwh)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"annual_kwh must be a finite number >= 0, got {annual_kwh!r}")
    return value


def household_load(
    index: pd.DatetimeIndex,
    annual_kwh: float,
    profile: str = "H0",
    seed: int = 0,
    noise: LoadNoise | None = None,
) -> pd.Series:
    """Individual household load, in W, at each step of ``index``.

    Parameters
    ----------
    index : pandas.DatetimeIndex
        Regular timestamps (start of each step) at a whole-minute step; naive or tz-aware. The BDEW profile is
        looked up by local wall-clock time.
    annual_kwh : float
        Energy of the standard profile over one calendar year, kWh.
    profile : str, default "H0"
        A BDEW profile from :data:`PROFILES`.
    seed : int, default 0
        Seed of the household's noise; the same ``(index, annual_kwh, profile, seed, noise)`` gives the same series.
    noise : LoadNoise, optional
        Noise parameters; default ``LoadNoise()``, ``LoadNoise.none()`` for the plain standard profile.

    Returns
    -------
    pandas.Series
        Mean power over each step, W (float, >= 0), named ``"load_w"``.
    """
    annual_kwh = _check_annual(annual_kwh)
    name, seed = profile_name(profile), check_seed(seed)
    noise = LoadNoise() if noise is None else noise
    grid = LoadGrid.of(index)
    standard = grid.standard_power(annual_kwh, name, noise.max_shift_blocks)
    minutes = individual_minutes(grid, standard, noise, seed)
    values = average_to_index(minutes, grid.offset, grid.step, grid.n)
    return pd.Series(values, index=index, name="load_w")
