"""Source ``richardson``: the CREST / Richardson stochastic household model, through ``richardsonpy``.

I. Richardson, M. Thomson, D. Infield, C. Clifford, *Domestic electricity use: a high-resolution energy demand
model*, Energy and Buildings 42(10), 2010 (Python port by RWTH Aachen E.ON ERC, ``richardsonpy`` 0.2.3, GPL-3.0).
Each home draws its number of occupants (1–5), its appliance set and their rated powers; a Markov chain of
active occupants (10-minute steps, weekday and weekend statistics) switches appliances and lights on minute by
minute, lighting against the irradiance of richardsonpy's German test reference year (TRY 2010, region 5).
Native resolution 1 minute. The annual demand of a home is richardsonpy's standard consumption of a
single-family house with that many occupants.

``richardsonpy`` draws from Python's global :mod:`random`; its state is saved and restored around every call,
so a seed gives the same homes and the caller's random state is untouched.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd

from . import SourceUnavailable, check_request, to_frame

OCCUPANTS_P = (0.41, 0.34, 0.12, 0.09, 0.04)  # German households of 1..5 persons (Destatis 2019, rounded)
START = pd.Timestamp("2019-01-07")  # a Monday: richardsonpy's day 1


def _modules():
    try:
        from richardsonpy.classes import appliance, electric_load, lighting, occupancy
        from richardsonpy.classes import stochastic_el_load_wrapper as wrapper
        from richardsonpy.functions import load_radiation
    except ImportError as exc:
        raise SourceUnavailable(
            "source 'richardson' needs the richardsonpy package (pip install --no-deps richardsonpy==0.2.3)"
        ) from exc
    return appliance, electric_load, lighting, occupancy, wrapper, load_radiation


def home_power(occupants: int, days: int, irradiance: np.ndarray, seed: int) -> np.ndarray:
    """One home's electric power (W) per minute over ``days`` days from a Monday: ``(days * 1440,)``.

    ``irradiance`` is the hourly global irradiance (W/m², at least ``days * 24`` values) that drives lighting.
    """
    appliance, electric_load, lighting, occupancy, wrapper, _ = _modules()
    inputs = Path(appliance.__file__).resolve().parent.parent / "inputs"
    saved = random.getstate()
    try:
        random.seed(seed)
        occ = occupancy.Occupancy(number_occupants=occupants, initial_day=1, nb_days=days).occupancy
        annual_kwh = electric_load.ElectricLoad.standard_consumption["SFH"][occupants]
        apps = appliance.Appliances(
            str(inputs / "Appliances.csv"), annual_consumption=0.91 * annual_kwh, randomize_appliances=True
        )
        lights = lighting.load_lighting_profile(filename=str(inputs / "LightBulbs.csv"), index=0)
        model = wrapper.ElectricityProfile(apps, lights)
        minute = np.arange(1440)
        out = []
        for day in range(days):
            irr = np.interp(minute, 60 * np.arange(25), irradiance[24 * day : 24 * day + 25])
            power, _, _ = model.power_sim(
                irradiation=irr, weekend=(day + 1) % 7 in (0, 6), day=day, occupancy=occ[144 * day : 144 * (day + 1)]
            )
            out.append(np.asarray(power, dtype=float))
    finally:
        random.setstate(saved)
    return np.concatenate(out)


def read(meters: int = 30, days: int = 45, step: str = "1min", seed: int = 0) -> pd.DataFrame:
    """``meters`` homes over ``days`` days (from a Monday in January) in the common frame."""
    step_s = check_request(meters, days, step)
    *_, load_radiation = _modules()
    direct, diffuse = load_radiation.get_rad_from_try_path()
    irradiance = np.append(np.asarray(direct) + np.asarray(diffuse), 0.0)
    if days * 24 > irradiance.size - 1:
        raise ValueError(f"richardsonpy's weather covers one year; asked for {days} days")
    rng = np.random.default_rng(seed)
    occupants = rng.choice(np.arange(1, 6), size=meters, p=OCCUPANTS_P)
    seeds = rng.integers(0, 2**31, size=meters)
    power = np.stack([home_power(int(n), days, irradiance, int(s)) for n, s in zip(occupants, seeds, strict=True)])
    names = [f"richardson-{i + 1:03d}" for i in range(meters)]
    return to_frame(names, START, power, 60, step_s)
