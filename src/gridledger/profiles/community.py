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

    [[feeders]]
    id = "F1"
    internal_capacity_w = 40000   # integer W: power the feeder may carry between its homes
    external_capacity_w = 25000   # integer W: power it may exchange with the grid upstream

    [[homes]]
    id = "MI001"
    feeder = "F1"
    annual_kwh = 2200.0
    profile = "H0"                # a BDEW profile (optional, default "H0")
    pv_kw = 3.0                   # optional, default 0
    battery_wh = 5000             # optional integer Wh, default 0
    battery_w = 2500              # optional integer W, default battery_wh / 2
    appliances = ["iron", "blender"]   # optional, default []

Every error names where it is and the key, e.g. ``homes[2] (id "MI003"): key "pv_kw": must be a number >= 0,
got -1``. Unknown keys are errors too (a misspelt key would otherwise be silently ignored).
"""

from __future__ import annotations

import datetime as dt
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
    MeterSpec,
    day_index,
    electrical_constants,
    pv_orientation,
    readings_frame,
)
from gridledger.profiles.noise import derived_seed
from gridledger.profiles.pv import MORELIA

APPLIANCES = ("iron", "blender")
LOCATIONS = {"morelia": MORELIA}
_COMMUNITY_SEED = 4  # derived_seed key of the community file's draws


class CommunityError(ValueError):
    """An invalid community file; the message names the section, the home or feeder, and the key."""


@dataclass(frozen=True)
class Feeder:
    """A feeder (one neighbourhood network) and its capacity limits, integer W."""

    id: str
    internal_capacity_w: int
    external_capacity_w: int


@dataclass(frozen=True)
class Home:
    """A prosumer home: its meter id, feeder, load, PV, battery and the paper's appliances."""

    id: str
    feeder: str
    annual_kwh: float
    profile: str = "H0"
    pv_kw: float = 0.0
    battery_wh: int = 0
    battery_w: int = 0
    appliances: tuple[str, ...] = ()


@dataclass(frozen=True)
class Community:
    """A validated community file."""

    name: str
    location: Location
    slot_seconds: int
    start: pd.Timestamp
    days: int
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
        """One :class:`~gridledger.profiles.meter_readings.MeterSpec` per home (seeded orientation and electrical
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
                array=pv_orientation(rng),
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
        capacity = {
            key: table.get(key, lambda v: _is_int(v) and v >= 0, "must be an integer number of W >= 0")
            for key in ("internal_capacity_w", "external_capacity_w")
        }
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
        battery_wh = table.get("battery_wh", lambda v: _is_int(v) and v >= 0, "must be an integer number of Wh >= 0", 0)
        battery_w = table.get(
            "battery_w",
            lambda v: _is_int(v) and v >= 0,
            "must be an integer number of W >= 0",
            battery_wh // 2,
        )
        if battery_wh > 0 and battery_w == 0:
            raise _fail(table.where, "battery_w", "must be > 0 when battery_wh > 0", battery_w)
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
    unknown = sorted(set(data) - {"community", "feeders", "homes"})
    if unknown:
        raise CommunityError(f"top level: unknown key {unknown[0]!r} (valid: community, feeders, homes)")
    if "community" not in data:
        raise CommunityError("top level: the [community] table is required")
    name, location, slot, start, days, variability, seed = _header(data["community"])
    feeders = _feeders(data.get("feeders"))
    homes = _homes(data.get("homes"), feeders)
    return Community(name, location, slot, start, days, feeders, homes, variability, seed)


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
