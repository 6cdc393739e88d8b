"""Net-metered homes: a consumption cube put behind rooftop PV (and a battery), as the meter registers it.

A smart meter at a home with PV registers two counters per step: energy imported from the grid
(``consumption_wh``) and energy exported to it (``production_wh``); the home's own consumption is never
measured (what the PV covers behind the meter is invisible). A theft detector that runs on the import register of
such homes must have seen honest import of PV homes: zero import at sunny midday, and with a battery zero import
well into the evening. :func:`net_metered` turns consumption-only homes into such meters with the project's own
device models — PV from :func:`gridledger.profiles.pv.pv_power` (pvlib, PVWatts, the neighbourhood's one
synthetic sky at :data:`~gridledger.profiles.pv.MORELIA`) and the battery of :func:`gridledger.devices.battery.dispatch`
in self-consumption mode (charge from surplus, discharge into the load) — so that the detector trains on them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from gridledger.devices.battery import dispatch
from gridledger.profiles.meter_readings import pv_orientation
from gridledger.profiles.pv import pv_power

from .data import DayCube

PV_KWH_PER_KWP_DAY = 5.0
"""Yield used to size an array (Morelia, roughly): ``peak_kw = mean daily kWh * sizing / 5``."""


@dataclass(frozen=True)
class NetMetering:
    """Which homes get PV and a battery, and how big.

    Parameters
    ----------
    pv_share : share of homes with PV.
    battery_share : share of the PV homes that also have a battery.
    sizing : PV yield over consumption, drawn uniformly per home from this range.
    battery_hours : battery capacity in hours of the home's mean load, drawn uniformly from this range; its power
        limit is half the capacity per hour (a 5 kWh battery: 2.5 kW, as in the project's default battery).
    efficiency, soc : round-trip efficiency and state-of-charge bounds of the battery.
    """

    pv_share: float = 2 / 3
    battery_share: float = 0.5
    sizing: tuple[float, float] = (0.5, 1.2)
    battery_hours: tuple[float, float] = (12.0, 36.0)
    efficiency: float = 0.9
    soc: tuple[float, float] = (0.1, 0.9)


def _stamps(cube: DayCube) -> pd.DatetimeIndex:
    offsets = pd.to_timedelta(np.arange(cube.slots) * cube.step_s, unit="s")
    days = pd.DatetimeIndex(cube.days).tz_localize(None)
    return pd.DatetimeIndex((days.to_numpy()[:, None] + offsets.to_numpy()[None, :]).ravel())


def net_metered(
    cube: DayCube, rng: np.random.Generator, setup: NetMetering = NetMetering()
) -> tuple[DayCube, np.ndarray]:
    """The cube's homes behind their meters: ``consumption_wh`` becomes the import and ``production_wh`` the export.

    Returns ``(cube, kind)``, ``kind[m]`` 0 for a home left without PV, 1 PV, 2 PV and battery. Missing days stay
    missing (and break the battery's day-to-day state only for that home: its store carries over unchanged).
    """
    load = cube.values["consumption_wh"]
    n_m, n_d, slots = load.shape
    hours = cube.step_s / 3600.0
    pv = rng.uniform(size=n_m) < setup.pv_share
    kind = np.where(pv, np.where(rng.uniform(size=n_m) < setup.battery_share, 2, 1), 0)
    daily_kwh = np.nanmean(load.sum(axis=2), axis=1) / 1000.0
    stamps = _stamps(cube)
    sky = int(rng.integers(2**31))
    gen = np.zeros_like(load)
    for m in np.flatnonzero(pv):
        peak = float(daily_kwh[m] * rng.uniform(*setup.sizing) / PV_KWH_PER_KWP_DAY)
        power = pv_power(stamps, round(peak, 3), seed=sky, array=pv_orientation(rng)).to_numpy()
        gen[m] = (power * hours).reshape(n_d, slots)
    net = load - gen  # Wh per slot, import positive
    store = kind == 2
    if store.any():
        capacity = daily_kwh * 1000.0 / 24.0 * rng.uniform(*setup.battery_hours, size=n_m)
        limit = capacity / 2.0
        lo, hi = setup.soc[0] * capacity, setup.soc[1] * capacity
        stored = (lo + hi) / 2
        flat = net.reshape(n_m, -1).copy()
        for t in range(flat.shape[1]):
            step = np.nan_to_num(flat[:, t])
            power, new = dispatch(stored, -step / hours, limit, limit, lo, hi, setup.efficiency, cube.step_s)
            flat[store, t] += power[store] * hours
            stored = np.where(store, new, stored)
        net = flat.reshape(n_m, n_d, slots)
    values = dict(cube.values)
    values["consumption_wh"] = np.maximum(net, 0.0)
    values["production_wh"] = np.maximum(-net, 0.0)
    return replace(cube, values=values), kind
