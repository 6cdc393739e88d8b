"""Smart-meter readings of a community: one row per meter per step, as the paper's MI database records them.

Each meter sits at a home's grid connection and registers, per step, the energy imported (``consumption_wh``) and
exported (``production_wh``) -- the two registers of a bidirectional meter -- with the voltage, power factor and
current at the connection (see :mod:`gridledger.profiles.electrical`). The home's net power is its individual load
(:func:`~gridledger.profiles.load.household_load`) minus its PV output (:func:`~gridledger.profiles.pv.pv_power`);
all PV systems of a community share one sky (one cloud process), each with its own orientation.

Everything is built as ``(meters, steps)`` NumPy arrays; the only Python loop is over meters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
from pvlib.location import Location

from gridledger.profiles.electrical import meter_electrical
from gridledger.profiles.load import LoadGrid, LoadNoise, individual_minutes, profile_name
from gridledger.profiles.noise import check_seed, derived_seed
from gridledger.profiles.pv import MORELIA, PVArray, pv_system_power, synthetic_weather
from gridledger.profiles.timegrid import average_to_index, step_minutes

COLUMNS = (
    "meter_id",
    "timestamp",
    "consumption_wh",
    "production_wh",
    "voltage_v",
    "current_a",
    "power_factor",
)
MEDIAN_ANNUAL_KWH = 1800.0
"""Median yearly consumption drawn for a Mexican home (CFE residential users: roughly 150 kWh a month)."""
ANNUAL_KWH_SIGMA = 0.35
SPECIFIC_YIELD_KWH_PER_KWP = 1650.0
"""Yearly yield assumed when sizing PV to a home's consumption (central Mexico, about 1600-1800 kWh/kWp)."""

# sub-stream keys of derived_seed
_LOAD, _WEATHER, _ELECTRICAL = 1, 2, 3


@dataclass(frozen=True)
class MeterSpec:
    """One meter of a community: its home's load, PV and electrical constants.

    ``load_seed`` is the seed passed to the household's load, so its consumption can be reproduced with
    ``household_load(index, annual_kwh, profile, seed=load_seed)``.
    """

    meter_id: str
    annual_kwh: float
    profile: str = "H0"
    pv_kw: float = 0.0
    array: PVArray = PVArray()
    feeder: int = 0
    voltage_offset_v: float = 0.0
    base_pf: float = 0.95
    load_seed: int = 0


def electrical_constants(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-meter voltage offsets (V, N(0, 1.5)) and full-load power factors (U(0.90, 0.98))."""
    return rng.normal(0.0, 1.5, n), rng.uniform(0.90, 0.98, n)


def pv_orientation(rng: np.random.Generator) -> PVArray:
    """A rooftop orientation: tilt U(10, 30) deg, azimuth U(150, 210) deg."""
    return PVArray(surface_tilt=float(rng.uniform(10, 30)), surface_azimuth=float(rng.uniform(150, 210)))


def meter_powers(
    index: pd.DatetimeIndex,
    meters: list[MeterSpec],
    location: Location = MORELIA,
    seed: int = 0,
    variability: float = 0.3,
    noise: LoadNoise | None = None,
    progress: Callable[[], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Load and PV power (W) of every meter, arrays of shape ``(meters, steps)``; ``progress()`` is called after
    each meter.

    The BDEW shape is built once per profile and scaled to each home's ``annual_kwh``; the PV output is built once
    per orientation for 1 kWp and scaled to each home's peak (PVWatts is linear in the nameplate: the inverter's
    efficiency curve depends only on the load ratio), all under one sky.
    """
    noise = LoadNoise() if noise is None else noise
    grid = LoadGrid.of(index)
    standard = {name: grid.standard_power(1.0, name, noise.max_shift_blocks) for name in {m.profile for m in meters}}
    load = np.empty((len(meters), len(index)))
    pv = np.zeros((len(meters), len(index)))
    weather, per_kwp = None, {}
    for row, meter in enumerate(meters):
        minutes = individual_minutes(grid, standard[meter.profile] * meter.annual_kwh, noise, meter.load_seed)
        load[row] = average_to_index(minutes, grid.offset, grid.step, grid.n)
        if meter.pv_kw > 0:
            if weather is None:
                weather = synthetic_weather(index, location, derived_seed(seed, _WEATHER), variability)
            if meter.array not in per_kwp:
                per_kwp[meter.array] = pv_system_power(weather, 1.0, meter.array)
            pv[row] = meter.pv_kw * per_kwp[meter.array]
        if progress is not None:
            progress()
    return load, pv


def readings_frame(
    index: pd.DatetimeIndex,
    meters: list[MeterSpec],
    location: Location = MORELIA,
    seed: int = 0,
    variability: float = 0.3,
    noise: LoadNoise | None = None,
    progress: Callable[[], None] | None = None,
) -> pd.DataFrame:
    """Long-format readings of ``meters`` on ``index`` (columns :data:`COLUMNS`, sorted by meter and time).

    ``index`` must be tz-aware and is the ``timestamp`` column: the start of each step. ``progress()`` is called
    after each meter's load and PV are built.
    """
    seed = check_seed(seed)
    if not meters:
        raise ValueError("a community needs at least one meter")
    if index.tz is None:
        raise ValueError("readings need a tz-aware index")
    ids = [m.meter_id for m in meters]
    if ids != sorted(ids) or len(set(ids)) != len(ids):
        raise ValueError("meter ids must be unique and in sorted order")
    step_h = step_minutes(index) / 60
    load, pv = meter_powers(index, meters, location, seed, variability, noise, progress)
    net = load - pv
    voltage, pf, current = meter_electrical(
        net,
        np.array([m.feeder for m in meters]),
        np.array([m.voltage_offset_v for m in meters]),
        np.array([m.base_pf for m in meters]),
        np.random.default_rng(derived_seed(seed, _ELECTRICAL)),
    )
    n = len(index)
    return pd.DataFrame(
        {
            "meter_id": repeat_ids(ids, n),
            "timestamp": index.take(np.tile(np.arange(n), len(meters))),
            "consumption_wh": (np.maximum(net, 0.0) * step_h).ravel(),
            "production_wh": (np.maximum(-net, 0.0) * step_h).ravel(),
            "voltage_v": voltage.ravel(),
            "current_a": current.ravel(),
            "power_factor": pf.ravel(),
        }
    )


def repeat_ids(ids: list[str], n: int) -> pd.Series:
    """Each id ``n`` times, as pandas' ``str`` column (built through an Arrow dictionary: fast for millions of rows)."""
    codes = pa.array(np.repeat(np.arange(len(ids), dtype=np.int32), n))
    strings = pa.DictionaryArray.from_arrays(codes, pa.array(ids)).cast(pa.large_string())
    return pd.Series(pd.array(strings, dtype=pd.StringDtype("pyarrow", na_value=np.nan)))


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def meter_ids(n: int) -> list[str]:
    """``MI001``, ``MI002``, ...: zero-padded (at least 3 digits) so they sort in meter order."""
    width = max(3, len(str(n)))
    return [f"MI{k:0{width}d}" for k in range(1, n + 1)]


def pv_size_kw(annual_kwh: float, sizing: float) -> float:
    """PV peak (kWp, 0.1 kWp steps, >= 0.5) that yields ``sizing`` times a home's yearly consumption at
    :data:`SPECIFIC_YIELD_KWH_PER_KWP`."""
    return max(0.5, round(float(annual_kwh) * float(sizing) / SPECIFIC_YIELD_KWH_PER_KWP, 1))


def random_meters(n_meters: int, seed: int, pv_share: float, profile: str = "H0") -> list[MeterSpec]:
    """A seeded community of ``n_meters`` homes.

    Yearly consumption is lognormal (median :data:`MEDIAN_ANNUAL_KWH`, log-sd 0.35); ``round(pv_share * n)``
    homes, chosen at random, have PV sized to 50-110 % of their consumption (:func:`pv_size_kw`) with a random
    rooftop orientation.
    """
    rng = np.random.default_rng(derived_seed(seed, 0))
    annual = MEDIAN_ANNUAL_KWH * np.exp(ANNUAL_KWH_SIGMA * rng.standard_normal(n_meters))
    with_pv = np.zeros(n_meters, dtype=bool)
    with_pv[rng.permutation(n_meters)[: round(pv_share * n_meters)]] = True
    sizing = rng.uniform(0.5, 1.1, n_meters)
    offsets, pfs = electrical_constants(rng, n_meters)
    meters = []
    for k, meter_id in enumerate(meter_ids(n_meters)):
        pv_kw = pv_size_kw(annual[k], sizing[k]) if with_pv[k] else 0.0
        meters.append(
            MeterSpec(
                meter_id=meter_id,
                annual_kwh=float(annual[k]),
                profile=profile,
                pv_kw=pv_kw,
                array=pv_orientation(rng) if with_pv[k] else PVArray(),
                voltage_offset_v=float(offsets[k]),
                base_pf=float(pfs[k]),
                load_seed=derived_seed(seed, _LOAD, k),
            )
        )
    return meters


def community_readings(
    n_meters: int,
    days: int,
    freq: str = "1min",
    start: str = "2024-01-01",
    seed: int = 0,
    pv_share: float = 0.5,
    location: Location = MORELIA,
    variability: float = 0.3,
    profile: str = "H0",
    progress: Callable[[], None] | None = None,
) -> pd.DataFrame:
    """Synthetic smart-meter readings of a community of ``n_meters`` homes on one feeder.

    Parameters
    ----------
    n_meters : int
        Number of meters (homes), >= 1.
    days : int
        Number of days, >= 1.
    freq : str, default "1min"
        Step, a whole number of minutes that divides a day (the paper samples once a minute).
    start : str, default "2024-01-01"
        First day, local time of ``location``.
    seed : int, default 0
        Seed of everything; the same arguments give the same frame.
    pv_share : float in [0, 1], default 0.5
        Share of homes with PV (``round(pv_share * n_meters)`` of them).
    location : pvlib.location.Location, default :data:`MORELIA`
    variability : float in [0, 1], default 0.3
        Mean daily cloud cover of the shared sky.
    profile : str, default "H0"
        BDEW profile of every home.
    progress : callable, optional
        Called with no argument after each meter is built (for a progress bar).

    Returns
    -------
    pandas.DataFrame
        One row per meter per step, sorted by ``(meter_id, timestamp)``: ``meter_id`` (str, "MI001"...),
        ``timestamp`` (tz-aware local time, start of the step), ``consumption_wh`` and ``production_wh`` (energy
        imported and exported in the step, Wh, >= 0, at most one non-zero), ``voltage_v`` (V, 127 V nominal),
        ``current_a`` (A, ``|P| / (V pf)`` with ``P`` the net power), ``power_factor``.
    """
    n_meters, days = _positive_int("n_meters", n_meters), _positive_int("days", days)
    seed = check_seed(seed)
    if not (isinstance(pv_share, int | float) and math.isfinite(pv_share) and 0 <= pv_share <= 1):
        raise ValueError(f"pv_share must be in [0, 1], got {pv_share!r}")
    profile = profile_name(profile)
    index = day_index(start, days, freq, location)
    meters = random_meters(n_meters, seed, pv_share, profile)
    return readings_frame(index, meters, location, seed, variability, progress=progress)


def day_index(start: str | pd.Timestamp, days: int, freq: str, location: Location) -> pd.DatetimeIndex:
    """Steps of ``freq`` over ``days`` whole local days from ``start`` (a date, local time of ``location``)."""
    try:
        step = pd.Timedelta(pd.tseries.frequencies.to_offset(freq))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"freq {freq!r} is not a pandas frequency") from exc
    minutes = step / pd.Timedelta(minutes=1)
    if minutes < 1 or minutes != int(minutes) or 1440 % int(minutes):
        raise ValueError(f"freq must be a whole number of minutes that divides a day, got {freq!r}")
    try:
        first = pd.Timestamp(start)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"start {start!r} is not a date") from exc
    first = first.tz_convert(location.tz) if first.tz is not None else first.tz_localize(location.tz)
    return pd.date_range(first, periods=days * 1440 // int(minutes), freq=step)
