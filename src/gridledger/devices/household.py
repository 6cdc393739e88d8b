"""A whole household: base load, the paper's appliances, PV and battery behind one smart meter.

Each step, at the supply voltage of the previous step:

1. the base load is read from its profile (the individual BDEW load of :func:`gridledger.profiles.household_load`,
   which already holds the household's ordinary appliance use);
2. the twin-controlled appliances (iron, blender) add their power on top, the PV system feeds in;
3. a battery in ``auto`` mode is asked to cancel the net (charge from surplus, discharge into the load);
4. the meter registers the net at the connection, with the voltage and power factor of
   :mod:`gridledger.profiles.electrical` (the meter's fixed offset and the service-cable drop; no feeder share).

Every device keeps its twin ID (meter 1, iron 2, blender 3, PV 4, battery 5, as the paper numbers objects from
``0x0001``); :meth:`Household.apply` routes a command to the device its ``ID`` names.

:func:`households` builds the homes of a community file as such objects (the twin's path, one object per home
stepped per minute); :func:`simulate_households` runs the same models for every home at once (the simulator's
path: :class:`HouseholdData`, vectorized over homes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gridledger.devices.appliances import APPLIANCE_MODELS, ApplianceUse, appliance_power, appliance_uses
from gridledger.devices.base import CommandError, Device, Profile, TwinObject, check_step
from gridledger.devices.battery import Battery, dispatch
from gridledger.devices.meter_device import MeterDevice
from gridledger.devices.pv_system import PVSystem
from gridledger.profiles.community import Community, Home
from gridledger.profiles.electrical import NOMINAL_VOLTAGE, power_factor, service_voltage
from gridledger.profiles.load import LoadNoise
from gridledger.profiles.meter_readings import meter_powers, repeat_ids
from gridledger.profiles.noise import derived_seed
from gridledger.profiles.timegrid import MINUTE, step_minutes


@dataclass
class Household:
    """A home behind its smart meter.

    Attributes
    ----------
    home_id : str
        The home's (and meter's) id, e.g. ``"MI001"``.
    base_load : Profile
        Base load profile, W.
    meter : MeterDevice
    appliances : list of Device
        Twin-controlled appliances (:class:`Iron`, :class:`Blender`).
    pv : PVSystem or None
    battery : Battery or None
    voltage_offset_v : float
        The meter's fixed offset from 127 V, V.
    base_pf : float
        The household's full-load power factor.
    """

    home_id: str
    base_load: Profile
    meter: MeterDevice = field(default_factory=MeterDevice)
    appliances: list[Device] = field(default_factory=list)
    pv: PVSystem | None = None
    battery: Battery | None = None
    voltage_offset_v: float = 0.0
    base_pf: float = 0.95
    voltage_v: float = NOMINAL_VOLTAGE

    def __post_init__(self) -> None:
        ids = [obj.id for obj in self.objects]
        if len(set(ids)) != len(ids):
            raise ValueError(f"household {self.home_id}: device ids must be unique, got {ids}")
        self.voltage_v = NOMINAL_VOLTAGE + self.voltage_offset_v

    @property
    def objects(self) -> list[TwinObject]:
        """The meter and every device, in twin-ID order."""
        devices = [self.meter, *self.appliances, self.pv, self.battery]
        return sorted((obj for obj in devices if obj is not None), key=lambda obj: obj.id)

    def device(self, key: int | str) -> TwinObject:
        """The object with twin ``ID`` (int) or ``Name`` (str)."""
        for obj in self.objects:
            if key in (obj.id, obj.name):
                return obj
        raise CommandError(f"household {self.home_id}: no device {key!r}")

    def apply(self, command: Mapping[str, Any]) -> dict[str, Any]:
        """Route a twin command to the device named by its ``ID`` (or ``Name``); returns what was applied."""
        if not isinstance(command, Mapping) or not ({"ID", "Name"} & set(command)):
            raise CommandError(f"household {self.home_id}: a command needs the ID or Name of its device")
        target = self.device(command["ID"] if "ID" in command else command["Name"])
        return target.apply(command)

    def to_twin(self) -> list[dict[str, Any]]:
        """Every object's twin document, in ID order."""
        return [obj.to_twin() for obj in self.objects]

    def step(self, now: pd.Timestamp, dt_s: float) -> dict[str, Any]:
        """Advance every device ``dt_s`` seconds from ``now``; returns the meter's twin document."""
        dt_s = check_step(dt_s)
        supply = self.voltage_v
        net = self.base_load.at(now)
        for device in [*self.appliances, self.pv]:
            if device is not None:
                net += device.step(now, dt_s, supply)
        if self.battery is not None:
            self.battery.request_w = -net
            net += self.battery.step(now, dt_s, supply)
        self.voltage_v = float(service_voltage(net, self.voltage_offset_v))
        return self.meter.measure(net, dt_s, self.voltage_v, float(power_factor(net, self.base_pf)))

    def run(self, index: pd.DatetimeIndex) -> pd.DataFrame:
        """Step through ``index`` (start of each step) and return the meter's document after each step."""
        dt_s = step_minutes(index) * MINUTE.total_seconds()
        return pd.DataFrame([self.step(now, dt_s) for now in index], index=index)


def home_battery(home: Home) -> Battery | None:
    """The home's battery (``auto`` mode, 90 % round trip, SoC 10-95 %, starting half full), None without one."""
    if home.battery_wh == 0:
        return None
    return Battery(capacity_wh=home.battery_wh, max_charge_w=home.battery_w, max_discharge_w=home.battery_w)


def households(community: Community, freq: str = "1min") -> list[Household]:
    """The community's homes as device models, with the same load and PV as ``community.readings(freq)``.

    Each home gets its meter, the appliances its ``appliances`` key lists, a PV system if ``pv_kw > 0`` and a
    battery (``auto`` mode, 90 % round trip, SoC 10-95 %) if ``battery_wh > 0``.
    """
    index = community.index(freq)
    specs = community.meters()
    load, pv = meter_powers(index, specs, community.location, community.seed, community.variability)
    homes = {home.id: home for home in community.homes}
    result = []
    for row, spec in enumerate(specs):
        home = homes[spec.meter_id]
        result.append(
            Household(
                home_id=home.id,
                base_load=Profile(pd.Series(load[row], index=index)),
                appliances=[APPLIANCE_MODELS[name]() for name in home.appliances],
                pv=PVSystem.from_series(pd.Series(pv[row], index=index), round(home.pv_kw * 1000))
                if home.pv_kw > 0
                else None,
                battery=home_battery(home),
                voltage_offset_v=spec.voltage_offset_v,
                base_pf=spec.base_pf,
            )
        )
    return result


# ------------------------------------------------------------------------------------- the whole community, fast

_APPLIANCE_SEED = 6  # derived_seed key of the residents' appliance use


@dataclass(frozen=True, eq=False)
class HouseholdData:
    """Every home of a community minute by minute: what its devices do and what its meter measures.

    Arrays have shape ``(homes, minutes)``: rows in ``home_ids`` order (sorted meter ids), columns the 1-minute
    ``index`` (tz-aware local time, start of each minute); powers are means over the minute.

    Attributes
    ----------
    load_w : numpy.ndarray
        The home's consumption, W (>= 0): its individual BDEW load plus the appliance uses.
    pv_w : numpy.ndarray
        PV output, W (>= 0).
    battery_w : numpy.ndarray
        Power the battery draws from the home circuit, W (positive charging, negative discharging; 0 without one).
    soc : numpy.ndarray
        Battery state of charge at the end of the minute, fraction of capacity (0 without a battery).
    net_w : numpy.ndarray
        ``load_w - pv_w + battery_w``: the net at the meter, W (import positive).
    uses : dict
        Home id -> its appliance sessions (:class:`~gridledger.devices.appliances.ApplianceUse`).
    """

    home_ids: tuple[str, ...]
    index: pd.DatetimeIndex
    load_w: np.ndarray
    pv_w: np.ndarray
    battery_w: np.ndarray
    soc: np.ndarray
    net_w: np.ndarray
    uses: dict[str, tuple[ApplianceUse, ...]]

    COLUMNS = ("load_w", "pv_w", "battery_w", "soc", "net_w")

    def frame(self) -> pd.DataFrame:
        """One row per home-minute: ``home_id``, ``timestamp`` and :attr:`COLUMNS`, sorted by home and time."""
        n, homes = len(self.index), len(self.home_ids)
        times = self.index.take(np.tile(np.arange(n), homes))
        keys = {"home_id": repeat_ids(list(self.home_ids), n), "timestamp": times}
        return pd.DataFrame(keys | {name: getattr(self, name).ravel() for name in self.COLUMNS})

    def slot_energy_wh(self, slot_seconds: int) -> tuple[np.ndarray, np.ndarray]:
        """Energy imported and exported per home and slot, Wh, arrays ``(homes, slots)``: the meter's two
        registers, which count the net minute by minute (a slot may both import and export)."""
        minutes = slot_seconds // 60
        if slot_seconds % 60 or minutes < 1 or len(self.index) % minutes:
            raise ValueError(f"slot_seconds must be whole minutes dividing the run, got {slot_seconds!r}")
        shape = (len(self.home_ids), len(self.index) // minutes, minutes)
        imported = np.maximum(self.net_w, 0.0).reshape(shape).sum(axis=-1) / 60
        exported = np.maximum(-self.net_w, 0.0).reshape(shape).sum(axis=-1) / 60
        return imported, exported


def simulate_households(community: Community, noise: LoadNoise | None = None) -> HouseholdData:
    """Every home of ``community`` over its days at 1-minute resolution, vectorized over homes.

    The same models as :func:`households` (one ``Household`` per home, stepped per object), run in bulk: the
    load and PV of :func:`~gridledger.profiles.meter_readings.meter_powers` (one BDEW shape per profile and one PV
    profile per orientation, scaled per home), the residents' seeded appliance uses
    (:func:`~gridledger.devices.appliances.appliance_uses`) played through the iron and blender models at the
    home's no-load supply voltage, and every battery's self-consumption dispatch advanced one minute at a time for
    all homes at once through :func:`~gridledger.devices.battery.dispatch`, the battery model's own step.
    """
    index = community.index("1min")
    specs = community.meters()
    load, pv = meter_powers(index, specs, community.location, community.seed, community.variability, noise)
    homes = [{home.id: home for home in community.homes}[spec.meter_id] for spec in specs]
    day = index.normalize()
    day_starts = np.flatnonzero(np.r_[True, day[1:] != day[:-1]])
    uses = {}
    for row, (home, spec) in enumerate(zip(homes, specs, strict=True)):
        if home.appliances:
            rng = np.random.default_rng(derived_seed(community.seed, _APPLIANCE_SEED, row))
            schedule = appliance_uses(home.appliances, day_starts, rng)
            devices = [APPLIANCE_MODELS[name]() for name in home.appliances]
            load[row] += appliance_power(devices, schedule, index, NOMINAL_VOLTAGE + spec.voltage_offset_v)
            uses[home.id] = tuple(schedule)
    battery_w, soc = dispatch_batteries([home_battery(home) for home in homes], load - pv, MINUTE.total_seconds())
    return HouseholdData(tuple(s.meter_id for s in specs), index, load, pv, battery_w, soc, load - pv + battery_w, uses)


def dispatch_batteries(
    batteries: list[Battery | None], net_w: np.ndarray, dt_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Self-consumption dispatch of one battery per row (None: no battery) against the net ``net_w`` (W, shape
    ``(homes, steps)``, before the battery), all batteries one step at a time as ``Household.step`` asks each:
    request ``-net``. Returns the battery power (W) and the state of charge after each step, same shape; the
    batteries' own state is left as it was."""
    power, soc = np.zeros_like(net_w), np.zeros_like(net_w)
    rows = [row for row, battery in enumerate(batteries) if battery is not None]
    if not rows:
        return power, soc
    bank = [batteries[row] for row in rows]
    limits = [np.array([getattr(b, key) for b in bank], dtype=float) for key in _BANK_KEYS]
    capacity = np.array([b.capacity_wh for b in bank], dtype=float)
    stored = np.array([b.stored_wh for b in bank], dtype=float)
    request = -np.ascontiguousarray(net_w[rows].T)
    drawn, after = np.empty_like(request), np.empty_like(request)
    for step, wanted in enumerate(request):
        drawn[step], stored = dispatch(stored, wanted, *limits, dt_s)
        after[step] = stored
    power[rows], soc[rows] = drawn.T, (after / capacity).T
    return power, soc


_BANK_KEYS = ("max_charge_w", "max_discharge_w", "min_wh", "max_wh", "efficiency")
