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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from gridledger.devices.appliances import Blender, Iron
from gridledger.devices.base import CommandError, Device, Profile, TwinObject, check_step
from gridledger.devices.battery import Battery
from gridledger.devices.meter_device import MeterDevice
from gridledger.devices.pv_system import PVSystem
from gridledger.profiles.community import Community
from gridledger.profiles.electrical import NOMINAL_VOLTAGE, power_factor, service_voltage
from gridledger.profiles.meter_readings import meter_powers
from gridledger.profiles.timegrid import MINUTE, step_minutes

APPLIANCE_MODELS = {"iron": Iron, "blender": Blender}


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
                battery=Battery(
                    capacity_wh=home.battery_wh, max_charge_w=home.battery_w, max_discharge_w=home.battery_w
                )
                if home.battery_wh > 0
                else None,
                voltage_offset_v=spec.voltage_offset_v,
                base_pf=spec.base_pf,
            )
        )
    return result
