"""A community described as data: the TOML community file (in the spirit of gsy-e's setup files).

::

    [community]
    name = "Morelia testbed"
    location = "morelia"          # or an inline table {latitude, longitude, tz, altitude = 0, name = ""}
    slot_seconds = 900            # market slot, whole minutes dividing a day
    start = 2024-04-11            # first local day (TOML date or ISO string)
    days = 7
    variability = 0.3             # optional, mean daily cloud cover (default 0.3)
    seed = 0                      # optional, seed of every random draw (default 0)

    [prices]                      # the DSO's tariff (DsoPolicy prices), integer minor units per kWh
    consumption_per_kwh = 120     # priceConsumption: paid for energy imported
    production_per_kwh = 60       # priceProduction: paid out for energy exported, <= consumption_per_kwh

    [dso]                         # every meter's DSO limits (DsoPolicy MeterLimits)
    max_epa_w = 5000              # MAXEPA, integer W per slot
    max_eca_w = 5000              # MAXECA, integer W per slot
    credit_fa = 100000            # FA credit, integer minor units

    [[feeders]]
    id = "F1"
    internal_capacity_w = 40000   # integer W: power the feeder may carry between its homes (the market LP's limit)
    external_capacity_w = 25000   # integer W: power it may exchange with the grid upstream

    [[homes]]
    id = "MI001"
    feeder = "F1"
    annual_kwh = 2200.0           # BDEW annual consumption of the home's load
    profile = "H0"                # a BDEW profile (optional, default "H0")
    pv_kw = 3.0                   # optional, kWp, default 0
    pv_tilt_deg = 20.0            # optional, module tilt, default 20
    pv_azimuth_deg = 180.0        # optional, module azimuth (180 = south), default 180
    battery_wh = 5000             # optional integer Wh, default 0
    battery_w = 2500              # optional integer W, default battery_wh / 2 (only with a battery)
    appliances = ["iron", "blender"]   # optional, default []

Every error names where it is and the key, e.g. ``homes[2] (id "MI003"): key "pv_kw": must be a number >= 0,
got -1``; :func:`load_community` prefixes the file. Unknown keys are errors too at every level (a misspelt key
would otherwise be silently ignored). :func:`generate_community` draws a realistic community of any size and
:func:`community_toml` writes one back as a file that :func:`parse_community` reads to the same value.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pvlib.location import Location

from gridledger.profiles.load import PROFILES, LoadNoise
from gridledger.profiles.meter_readings import (
    ANNUAL_KWH_SIGMA,
    MEDIAN_ANNUAL_KWH,
    MeterSpec,
    day_index,
    electrical_constants,
    meter_ids,
    pv_size_kw,
    readings_frame,
)
from gridledger.profiles.noise import derived_seed
from gridledger.profiles.pv import MORELIA, PVArray

APPLIANCES = ("iron", "blender")
LOCATIONS = {"morelia": MORELIA}
_COMMUNITY_SEED = 4  # derived_seed key of the community file's draws
DEFAULT_ARRAY = PVArray()
SECTIONS = ("community", "prices", "dso", "feeders", "homes")


class CommunityError(ValueError):
    """An invalid community file; the message names the section, the home or feeder, and the key."""


@dataclass(frozen=True)
class Feeder:
    """A feeder (one neighbourhood network) and its capacity limits, integer W."""

    id: str
    internal_capacity_w: int
    external_capacity_w: int


@dataclass(frozen=True)
class Prices:
    """The DSO's tariff, integer minor units per kWh: ``(priceConsumption, priceProduction)`` of a DsoPolicy."""

    consumption_per_kwh: int
    production_per_kwh: int


@dataclass(frozen=True)
class DsoLimits:
    """The DSO limits of every meter (a DsoPolicy's MeterLimits): MAXEPA, MAXECA (W per slot), FA credit."""

    max_epa_w: int
    max_eca_w: int
    credit_fa: int


@dataclass(frozen=True)
class Home:
    """A prosumer home: its meter id, feeder, load, PV (kWp and orientation, degrees), battery and the paper's
    appliances."""

    id: str
    feeder: str
    annual_kwh: float
    profile: str = "H0"
    pv_kw: float = 0.0
    pv_tilt_deg: float = DEFAULT_ARRAY.surface_tilt
    pv_azimuth_deg: float = DEFAULT_ARRAY.surface_azimuth
    battery_wh: int = 0
    battery_w: int = 0
    appliances: tuple[str, ...] = ()

    @property
    def pv_array(self) -> PVArray:
        """The PV system's orientation (PVWatts defaults otherwise)."""
        return PVArray(surface_tilt=self.pv_tilt_deg, surface_azimuth=self.pv_azimuth_deg)


@dataclass(frozen=True)
class Community:
    """A validated community file."""

    name: str
    location: Location
    slot_seconds: int
    start: pd.Timestamp
    days: int
    prices: Prices
    dso: DsoLimits
    feeders: tuple[Feeder, ...]
    homes: tuple[Home, ...]
    variability: float = 0.3
    seed: int = 0

    def index(self, freq: str = "1min") -> pd.DatetimeIndex:
        """The community's time steps at ``freq`` (tz-aware local time, start of each step)."""
        return day_index(self.start, self.days, freq, self.location)

    def slots(self) -> pd.DatetimeIndex:
        """The start of every market slot."""
        return self.index(f"{self.slot_seconds // 60}min")

    def homes_on(self, feeder: str) -> tuple[Home, ...]:
        """The homes connected to ``feeder``."""
        return tuple(home for home in self.homes if home.feeder == feeder)

    def meters(self) -> list[MeterSpec]:
        """One :class:`~gridledger.profiles.meter_readings.MeterSpec` per home (its PV orientation, seeded electrical
        constants), sorted by meter id."""
        rng = np.random.default_rng(derived_seed(self.seed, _COMMUNITY_SEED))
        offsets, pfs = electrical_constants(rng, len(self.homes))
        feeder_number = {feeder.id: k for k, feeder in enumerate(self.feeders)}
        specs = [
            MeterSpec(
                meter_id=home.id,
                annual_kwh=home.annual_kwh,
                profile=home.profile,
                pv_kw=home.pv_kw,
                array=home.pv_array,
                feeder=feeder_number[home.feeder],
                voltage_offset_v=float(offsets[k]),
                base_pf=float(pfs[k]),
                load_seed=derived_seed(self.seed, _COMMUNITY_SEED, k),
            )
            for k, home in enumerate(self.homes)
        ]
        return sorted(specs, key=lambda spec: spec.meter_id)

    def readings(
        self, freq: str = "1min", noise: LoadNoise | None = None, progress: Callable[[], None] | None = None
    ) -> pd.DataFrame:
        """Meter readings of every home over the community's days, in the columns of
        :func:`~gridledger.profiles.meter_readings.community_readings`. Batteries are not dispatched here (that is
        the device model's job, :class:`gridledger.devices.household.Household`)."""
        index, meters = self.index(freq), self.meters()
        return readings_frame(index, meters, self.location, self.seed, self.variability, noise, progress)


# ---------------------------------------------------------------------------------------------------- validation


def _fail(where: str, key: str, problem: str, value: Any = None, *, show: bool = True) -> CommunityError:
    got = f", got {value!r}" if show else ""
    return CommunityError(f"{where}: key {key!r}: {problem}{got}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Table:
    """A TOML table read key by key; remembers the keys it used so that the rest can be reported as unknown."""

    def __init__(self, where: str, data: Any, key: str):
        if not isinstance(data, dict):
            raise CommunityError(f"{where}: {key!r} must be a table, got {type(data).__name__}")
        self.where, self.data, self.used = where, data, set()

    def get(self, key: str, check: Callable[[Any], bool], problem: str, default: Any = ..., show: bool = True):
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                raise _fail(self.where, key, "is required", show=False)
            return default
        value = self.data[key]
        if not check(value):
            raise _fail(self.where, key, problem, value, show=show)
        return value

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise _fail(self.where, unknown[0], f"unknown key (valid: {', '.join(sorted(self.used))})", show=False)


def _location(value: Any) -> Location:
    where = "[community]"
    if isinstance(value, str):
        if value.lower() not in LOCATIONS:
            raise _fail(where, "location", f"unknown place (known: {', '.join(LOCATIONS)}) or give a table", value)
        return LOCATIONS[value.lower()]
    table = _Table("[community.location]", value, "location")
    lat = table.get("latitude", lambda v: _is_number(v) and -90 <= v <= 90, "must be a number in [-90, 90]")
    lon = table.get("longitude", lambda v: _is_number(v) and -180 <= v <= 180, "must be a number in [-180, 180]")
    tz = table.get("tz", _is_timezone, "must be an IANA time zone such as 'America/Mexico_City'")
    altitude = table.get("altitude", lambda v: _is_number(v) and -500 <= v <= 9000, "must be metres", 0)
    name = table.get("name", lambda v: isinstance(v, str), "must be a string", "")
    table.done()
    return Location(lat, lon, tz=tz, altitude=altitude, name=name or None)


def _is_timezone(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        pd.Timestamp("2024-01-01").tz_localize(value)
    except (ValueError, TypeError, KeyError, LookupError):
        return False
    return True


def _is_start(value: Any) -> bool:
    if isinstance(value, dt.date | dt.datetime):
        return True
    if not isinstance(value, str):
        return False
    try:
        pd.Timestamp(value)
    except (ValueError, TypeError):
        return False
    return True


def _header(data: Any) -> tuple[str, Location, int, pd.Timestamp, int, float, int]:
    table = _Table("[community]", data, "community")
    name = table.get("name", lambda v: isinstance(v, str) and v.strip() != "", "must be a non-empty string")
    location = _location(table.get("location", lambda v: isinstance(v, str | dict), "must be a name or a table"))
    slot = table.get(
        "slot_seconds",
        lambda v: _is_int(v) and v >= 60 and v % 60 == 0 and 86400 % v == 0,
        "must be an integer number of seconds, whole minutes, that divides a day (e.g. 900)",
    )
    start = table.get("start", _is_start, "must be a date such as 2024-04-11")
    days = table.get("days", lambda v: _is_int(v) and 1 <= v <= 3660, "must be an integer in [1, 3660]")
    variability = table.get("variability", lambda v: _is_number(v) and 0 <= v <= 1, "must be in [0, 1]", 0.3)
    seed = table.get("seed", lambda v: _is_int(v) and v >= 0, "must be an integer >= 0", 0)
    table.done()
    stamp = pd.Timestamp(start)
    stamp = stamp.tz_convert(location.tz) if stamp.tz is not None else stamp.tz_localize(location.tz)
    return name, location, slot, stamp, days, float(variability), seed


def _non_negative_ints(table: _Table, keys: tuple[str, ...], unit: str) -> dict[str, int]:
    problem = f"must be an integer number of {unit} >= 0"
    return {key: table.get(key, lambda v: _is_int(v) and v >= 0, problem) for key in keys}


def _prices(data: Any) -> Prices:
    if data is None:
        raise CommunityError("top level: the [prices] table is required")
    table = _Table("[prices]", data, "prices")
    prices = Prices(**_non_negative_ints(table, ("consumption_per_kwh", "production_per_kwh"), "minor units"))
    table.done()
    if prices.production_per_kwh > prices.consumption_per_kwh:
        raise _fail("[prices]", "production_per_kwh", "must be <= consumption_per_kwh", prices.production_per_kwh)
    return prices


def _dso(data: Any) -> DsoLimits:
    if data is None:
        raise CommunityError("top level: the [dso] table is required")
    table = _Table("[dso]", data, "dso")
    limits = _non_negative_ints(table, ("max_epa_w", "max_eca_w"), "W")
    limits |= _non_negative_ints(table, ("credit_fa",), "minor units")
    table.done()
    return DsoLimits(**limits)


def _feeders(data: Any) -> tuple[Feeder, ...]:
    if not isinstance(data, list) or not data:
        raise CommunityError("[[feeders]]: at least one feeder is required")
    feeders, seen = [], set()
    for k, raw in enumerate(data):
        where = f"feeders[{k}]"
        table = _Table(where, raw, "feeders")
        feeder_id = table.get("id", lambda v: isinstance(v, str) and v.strip() != "", "must be a non-empty string")
        where = f'feeders[{k}] (id "{feeder_id}")'
        table.where = where
        if feeder_id in seen:
            raise _fail(where, "id", "duplicate feeder id", feeder_id)
        seen.add(feeder_id)
        capacity = _non_negative_ints(table, ("internal_capacity_w", "external_capacity_w"), "W")
        table.done()
        feeders.append(Feeder(feeder_id, **capacity))
    return tuple(feeders)


def _homes(data: Any, feeders: tuple[Feeder, ...]) -> tuple[Home, ...]:
    if not isinstance(data, list) or not data:
        raise CommunityError("[[homes]]: at least one home is required")
    feeder_ids = [feeder.id for feeder in feeders]
    homes, seen = [], set()
    for k, raw in enumerate(data):
        table = _Table(f"homes[{k}]", raw, "homes")
        home_id = table.get("id", lambda v: isinstance(v, str) and v.strip() != "", "must be a non-empty string")
        table.where = f'homes[{k}] (id "{home_id}")'
        if home_id in seen:
            raise _fail(table.where, "id", "duplicate home id", home_id)
        seen.add(home_id)
        feeder = table.get("feeder", lambda v: v in feeder_ids, f"must be one of the feeders {feeder_ids}")
        annual = table.get("annual_kwh", lambda v: _is_number(v) and v >= 0, "must be a number of kWh >= 0")
        profile = table.get(
            "profile",
            lambda v: isinstance(v, str) and v.upper() in PROFILES,
            f"must be a BDEW profile ({', '.join(PROFILES)})",
            "H0",
        )
        pv_kw = table.get("pv_kw", lambda v: _is_number(v) and 0 <= v <= 1000, "must be a number of kWp >= 0", 0.0)
        tilt = table.get(
            "pv_tilt_deg",
            lambda v: _is_number(v) and 0 <= v <= 90,
            "must be a number of degrees in [0, 90]",
            DEFAULT_ARRAY.surface_tilt,
        )
        azimuth = table.get(
            "pv_azimuth_deg",
            lambda v: _is_number(v) and 0 <= v < 360,
            "must be a number of degrees in [0, 360)",
            DEFAULT_ARRAY.surface_azimuth,
        )
        battery_wh = table.get("battery_wh", lambda v: _is_int(v) and v >= 0, "must be an integer number of Wh >= 0", 0)
        battery_w = table.get(
            "battery_w",
            lambda v: _is_int(v) and v >= 0,
            "must be an integer number of W >= 0",
            battery_wh // 2,
        )
        if battery_wh > 0 and battery_w == 0:
            raise _fail(table.where, "battery_w", "must be > 0 when battery_wh > 0", battery_w)
        if battery_wh == 0 and battery_w > 0:
            raise _fail(table.where, "battery_w", "needs a battery (battery_wh > 0)", battery_w)
        appliances = table.get(
            "appliances",
            lambda v: isinstance(v, list) and all(a in APPLIANCES for a in v) and len(set(v)) == len(v),
            f"must be a list of distinct appliances from {list(APPLIANCES)}",
            [],
        )
        table.done()
        homes.append(
            Home(
                home_id,
                feeder,
                float(annual),
                profile.upper(),
                float(pv_kw),
                float(tilt),
                float(azimuth),
                battery_wh,
                battery_w,
                tuple(appliances),
            )
        )
    return tuple(homes)


def parse_community(data: dict[str, Any]) -> Community:
    """Validate a parsed community file (a dict as ``tomllib`` returns it).

    Raises
    ------
    CommunityError
        Naming the section, the home or feeder, and the key at fault.
    """
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise CommunityError(f"top level: unknown key {unknown[0]!r} (valid: {', '.join(SECTIONS)})")
    if "community" not in data:
        raise CommunityError("top level: the [community] table is required")
    name, location, slot, start, days, variability, seed = _header(data["community"])
    prices, dso = _prices(data.get("prices")), _dso(data.get("dso"))
    feeders = _feeders(data.get("feeders"))
    homes = _homes(data.get("homes"), feeders)
    return Community(name, location, slot, start, days, prices, dso, feeders, homes, variability, seed)


def load_community(path: str | Path) -> Community:
    """Read and validate a community TOML file.

    Raises
    ------
    CommunityError
        If the file cannot be read, is not TOML, or is not a valid community (the message names the key).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommunityError(f"{path}: cannot read the file: {exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CommunityError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return parse_community(data)
    except CommunityError as exc:
        raise CommunityError(f"{path}: {exc}") from None


# ---------------------------------------------------------------------------------------------------- generation

HOMES_PER_FEEDER = 40
"""Homes per generated feeder (a distribution transformer of roughly 75 kVA); at least two feeders."""
FEEDER_INTERNAL_W_PER_HOME = 2000
FEEDER_EXTERNAL_W_PER_HOME = 1500
GENERATED_PRICES = Prices(consumption_per_kwh=120, production_per_kwh=60)
GENERATED_DSO = DsoLimits(max_epa_w=10_000, max_eca_w=10_000, credit_fa=100_000)
_TILTS = (10.0, 15.0, 20.0, 25.0, 30.0)
_AZIMUTHS = (135.0, 150.0, 165.0, 180.0, 195.0, 210.0, 225.0)
_AZIMUTH_WEIGHTS = (0.05, 0.15, 0.2, 0.2, 0.2, 0.15, 0.05)
_BATTERIES_WH = (5000, 7500, 10000, 13500)
BATTERY_SHARE = 0.4
"""Share of the homes with at least 1 kWp of PV that get a battery (the smallest of 5, 7.5, 10, 13.5 kWh holding
four hours of peak output, at half its capacity in W, at most 5 kW)."""
_GENERATE_SEED = 5  # derived_seed key of the generator's draws


def generate_community(
    homes: int,
    days: int = 7,
    seed: int = 0,
    *,
    feeders: int | None = None,
    start: str = "2024-04-11",
    slot_seconds: int = 900,
    location: str = "morelia",
    name: str | None = None,
) -> Community:
    """A seeded community of ``homes`` homes on ``feeders`` feeders (default ``max(2, ceil(homes / 40))``, one for
    a single home), in contiguous runs of meter ids.

    The mix: yearly consumption lognormal around :data:`~gridledger.profiles.meter_readings.MEDIAN_ANNUAL_KWH` (10 kWh
    steps); 92 % BDEW H0 homes and 8 % small shops at home (G0); a PV share drawn in [0.5, 0.7] of the homes with
    PV sized to 50-110 % of their consumption, tilt 10-30 deg and azimuth 135-225 deg in 5 and 15 deg steps
    (so PV profiles repeat across homes); :data:`BATTERY_SHARE` of the homes with >= 1 kWp with a battery sized to
    their PV; the iron in half the homes and the blender in 60 %. Feeder capacities scale with their homes
    (2 kW inside, 1.5 kW upstream per home); the tariff and DSO limits are :data:`GENERATED_PRICES` and
    :data:`GENERATED_DSO`. The same arguments give the same community; :func:`community_toml` writes it.
    """
    if feeders is None:
        feeders = 1 if homes == 1 else max(2, -(-homes // HOMES_PER_FEEDER))
    for key, value, low in (("homes", homes, 1), ("days", days, 1), ("seed", seed, 0), ("feeders", feeders, 1)):
        if not _is_int(value) or value < low:
            raise CommunityError(f"generate_community: {key} must be an integer >= {low}, got {value!r}")
    if feeders > homes:
        raise CommunityError(f"generate_community: {feeders} feeders for {homes} homes leave a feeder empty")
    rng = np.random.default_rng(derived_seed(seed, _GENERATE_SEED))
    annual = np.round(MEDIAN_ANNUAL_KWH * np.exp(ANNUAL_KWH_SIGMA * rng.standard_normal(homes)), -1)
    profiles = rng.choice(["H0", "G0"], homes, p=[0.92, 0.08])
    with_pv = rng.permutation(homes) < round(rng.uniform(0.5, 0.7) * homes)
    sizing = rng.uniform(0.5, 1.1, homes)
    tilts, azimuths = rng.choice(_TILTS, homes), rng.choice(_AZIMUTHS, homes, p=_AZIMUTH_WEIGHTS)
    pv_kw = np.array([pv_size_kw(a, x) for a, x in zip(annual, sizing, strict=True)]) * with_pv
    with_battery = (pv_kw >= 1.0) & (rng.random(homes) < BATTERY_SHARE)
    battery_wh = np.array(_BATTERIES_WH)[np.searchsorted(_BATTERIES_WH, np.minimum(pv_kw * 4000, _BATTERIES_WH[-1]))]
    iron, blender = rng.random(homes) < 0.5, rng.random(homes) < 0.6
    on_feeder = np.repeat(np.arange(feeders), [len(c) for c in np.array_split(np.arange(homes), feeders)])
    lines = tuple(
        Feeder(
            f"F{k + 1}",
            FEEDER_INTERNAL_W_PER_HOME * int((on_feeder == k).sum()),
            FEEDER_EXTERNAL_W_PER_HOME * int((on_feeder == k).sum()),
        )
        for k in range(feeders)
    )
    generated = []
    for k, home_id in enumerate(meter_ids(homes)):
        pv, battery = bool(with_pv[k]), bool(with_battery[k])
        generated.append(
            Home(
                home_id,
                lines[on_feeder[k]].id,
                float(annual[k]),
                str(profiles[k]),
                float(pv_kw[k]),
                float(tilts[k]) if pv else DEFAULT_ARRAY.surface_tilt,
                float(azimuths[k]) if pv else DEFAULT_ARRAY.surface_azimuth,
                int(battery_wh[k]) if battery else 0,
                min(int(battery_wh[k]) // 2, 5000) if battery else 0,
                tuple(a for a, has in zip(APPLIANCES, (iron[k], blender[k]), strict=True) if has),
            )
        )
    header = {"name": name or f"Generated community of {homes} homes (seed {seed})", "location": location}
    header |= {"slot_seconds": slot_seconds, "start": start, "days": days, "seed": seed}
    return parse_community(_as_data(header, GENERATED_PRICES, GENERATED_DSO, lines, generated))


def _as_data(header: dict, prices: Prices, dso: DsoLimits, feeders, homes) -> dict[str, Any]:
    """A community as the dict ``tomllib`` would read (optional home keys left out at their defaults)."""
    rows = []
    for home in homes:
        row = {"id": home.id, "feeder": home.feeder, "annual_kwh": home.annual_kwh, "profile": home.profile}
        pv = {"pv_kw": 0.0, "pv_tilt_deg": DEFAULT_ARRAY.surface_tilt, "pv_azimuth_deg": DEFAULT_ARRAY.surface_azimuth}
        row |= {key: getattr(home, key) for key, default in pv.items() if getattr(home, key) != default}
        if home.battery_wh:
            row |= {"battery_wh": home.battery_wh, "battery_w": home.battery_w}
        if home.appliances:
            row["appliances"] = list(home.appliances)
        rows.append(row)
    return {
        "community": header,
        "prices": dataclasses.asdict(prices),
        "dso": dataclasses.asdict(dso),
        "feeders": [dataclasses.asdict(feeder) for feeder in feeders],
        "homes": rows,
    }


def community_toml(community: Community, comment: str = "") -> str:
    """The community file of ``community``: ``parse_community(tomllib.loads(community_toml(c)))`` equals ``c``
    (a location table is written for a place not in :data:`LOCATIONS`). ``comment`` lines head the file."""
    place = next((key for key, value in LOCATIONS.items() if value is community.location), None)
    if place is None:
        loc = community.location
        place = {"latitude": loc.latitude, "longitude": loc.longitude, "tz": str(loc.tz), "altitude": loc.altitude}
        place |= {"name": loc.name} if loc.name else {}
    start = community.start
    header = {"name": community.name, "location": place, "slot_seconds": community.slot_seconds}
    header |= {"start": start.date() if start == start.normalize() else start.isoformat(), "days": community.days}
    header |= {"variability": community.variability, "seed": community.seed}
    data = _as_data(header, community.prices, community.dso, community.feeders, community.homes)
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    for section in ("community", "prices", "dso"):
        lines += ["", f"[{section}]", *(f"{key} = {_toml_value(v)}" for key, v in data[section].items())]
    for section in ("feeders", "homes"):
        for table in data[section]:
            lines += ["", f"[[{section}]]", *(f"{key} = {_toml_value(v)}" for key, v in table.items())]
    return "\n".join(lines).lstrip("\n") + "\n"


def _toml_value(value: Any) -> str:
    """One TOML value: strings, integers, floats (shortest repr, exact), dates, lists and inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")  # TOML escapes DEL too
    if isinstance(value, int | float | dt.date):
        return value.isoformat() if isinstance(value, dt.date) else repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {type(value).__name__}")
