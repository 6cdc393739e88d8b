"""The household layer of the community run: each home's 1-minute load, PV, battery and net power.

This is the one place the run reads its households from, so that the device models can be swapped in: it returns
per-home arrays ``(homes, minutes)`` of ``load_w``, ``pv_w``, ``battery_w`` (positive while charging), ``soc``
(fraction of capacity) and ``net_w`` (what the meter registers: consumption positive, production negative).

Load (BDEW, individual) and PV (pvlib) are the community file's (:func:`gridledger.profiles.readings.meter_powers`);
every battery runs in self-consumption mode with the parameters of :class:`gridledger.devices.battery.Battery`
(90 % round trip, SoC 10-95 %, starting half-way), stepped minute by minute for all homes at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridledger.devices.battery import Battery
from gridledger.profiles.community import Community
from gridledger.profiles.readings import meter_powers


@dataclass(frozen=True)
class Households:
    """Per-home 1-minute series of a community, rows in the order of ``ids`` (W, or fraction for ``soc``)."""

    ids: tuple[str, ...]
    load_w: np.ndarray
    pv_w: np.ndarray
    battery_w: np.ndarray
    soc: np.ndarray
    net_w: np.ndarray


def simulate_households(community: Community) -> Households:
    """Every home of ``community`` over its days at 1-minute resolution."""
    index = community.index("1min")
    specs = community.meters()
    load, pv = meter_powers(index, specs, community.location, community.seed, community.variability)
    homes = {h.id: h for h in community.homes}
    ordered = [homes[s.meter_id] for s in specs]
    capacity = np.array([h.battery_wh for h in ordered], dtype=float)
    limit = np.array([h.battery_w for h in ordered], dtype=float)
    battery_w, soc = _self_consumption(load - pv, capacity, limit)
    return Households(tuple(h.id for h in ordered), load, pv, battery_w, soc, load - pv + battery_w)


def _self_consumption(net_w: np.ndarray, capacity_wh: np.ndarray, limit_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Battery power (W, + charging) and SoC per minute of batteries cancelling ``net_w`` (homes without one: 0)."""
    ref = Battery()
    one_way = np.sqrt(ref.efficiency)
    hours = 1 / 60
    has = capacity_wh > 0
    low, high = ref.soc_min * capacity_wh, ref.soc_max * capacity_wh
    stored = (low + high) / 2
    power = np.zeros_like(net_w)
    soc = np.zeros_like(net_w)
    for t in range(net_w.shape[1]):
        request = -net_w[:, t]
        charge = np.minimum(np.minimum(request, limit_w), (high - stored) / (one_way * hours))
        discharge = np.minimum(np.minimum(-request, limit_w), (stored - low) * one_way / hours)
        p = np.where(request >= 0, np.maximum(charge, 0.0), -np.maximum(discharge, 0.0))
        p = np.where(has, p, 0.0)
        stored = np.clip(stored + np.where(p >= 0, p * one_way, p / one_way) * hours, low, high)
        power[:, t] = p
        soc[:, t] = np.divide(stored, capacity_wh, out=np.zeros_like(stored), where=has)
    return power, soc
