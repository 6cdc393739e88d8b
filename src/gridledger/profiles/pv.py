"""Rooftop PV output: pvlib clear sky, a seeded cloud process and the PVWatts system model.

The chain, all offline:

1. **Clear sky.** ``pvlib.location.Location.get_clearsky`` (Ineichen-Perez with pvlib's bundled Linke turbidity
   climatology) at the middle of each step.
2. **Clouds** (:func:`synthetic_weather`). Each local day draws a cloud cover ``C ~ Beta(3v, 3(1-v))`` with mean
   ``v = variability`` (0 = always clear, 1 = overcast). Within the day the sun is hidden whenever ``Phi(z(t)) < C``,
   ``z`` a unit Gaussian AR(1) with a 20-minute correlation time, so the sun is hidden for a fraction ``C`` of the
   day in runs of minutes. In sunshine the clear-sky components are kept; behind a cloud the beam is 0 and the
   global irradiance is ``k = 0.25 + 0.35 (1 - C)`` times the clear-sky value, all diffuse (0.25: overcast,
   Kasten & Czeplak 1980). This is a stochastic stand-in for measured weather, not a climatology of the site.
3. **Air temperature**, only for the cell temperature: Morelia-like climatology, daily mean
   ``17.5 + 3.5 cos(2 pi (doy - 135) / 365.25)`` degC and a diurnal swing of +/-7 degC peaking at 15:00; wind 1.5 m/s.
4. **System** (:class:`PVArray`): Hay-Davies transposition to the module plane, the physical IAM on the beam,
   SAPM cell temperature (close-mount glass/glass), PVWatts DC (``pvlib.pvsystem.pvwatts_dc``) with the PVWatts
   default losses (14.08 %), and the PVWatts inverter (``pvlib.inverter.pvwatts``), whose AC rating
   ``peak / dc_ac_ratio`` never exceeds the DC peak, so the output is bounded by ``peak_kw``.

References: Dobos, *PVWatts Version 5 Manual*, NREL/TP-6A20-62641 (2014); Ineichen & Perez, Solar Energy 73 (2002);
Kasten & Czeplak, Solar Energy 24 (1980); King et al., SAND2004-3535 (SAPM).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pvlib
from pvlib.location import Location
from scipy.special import ndtr

from gridledger.profiles.noise import ar1, check_seed
from gridledger.profiles.timegrid import MINUTE, step_minutes

MORELIA = Location(19.70, -101.19, tz="America/Mexico_City", altitude=1920, name="Morelia")
"""Morelia, Michoacán, Mexico: the paper's testbed (Instituto Tecnológico de Morelia)."""

CLOUD_TIME_MINUTES = 20.0
OVERCAST_INDEX = 0.25
BROKEN_CLOUD_GAIN = 0.35
CLOUD_CONCENTRATION = 3.0
WIND_SPEED = 1.5
_TEMPERATURE = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"]["close_mount_glass_glass"]


def local_times(index: pd.DatetimeIndex, location: Location) -> pd.DatetimeIndex:
    """``index`` as tz-aware times: a naive index is local time of ``location`` (a repeated daylight-saving hour
    is taken as standard time, a skipped one is shifted forward)."""
    if index.tz is not None:
        return index
    return index.tz_localize(location.tz, ambiguous=np.zeros(len(index), dtype=bool), nonexistent="shift_forward")


def _check_variability(variability: float) -> float:
    value = float(variability)
    if not 0 <= value <= 1:
        raise ValueError(f"variability must be in [0, 1], got {variability!r}")
    return value


def daily_cloud_cover(rng: np.random.Generator, n_days: int, variability: float) -> np.ndarray:
    """Cloud cover of each day, in [0, 1], Beta-distributed with mean ``variability``."""
    if variability in (0.0, 1.0):
        return np.full(n_days, variability)
    a, b = CLOUD_CONCENTRATION * variability, CLOUD_CONCENTRATION * (1 - variability)
    return rng.beta(a, b, n_days)


def synthetic_weather(
    index: pd.DatetimeIndex, location: Location = MORELIA, seed: int = 0, variability: float = 0.3
) -> pd.DataFrame:
    """Irradiance, cloud cover and air temperature at the middle of each step of ``index``.

    Parameters
    ----------
    index : pandas.DatetimeIndex
        Regular timestamps (start of each step), whole-minute step; naive means local time of ``location``.
    location : pvlib.location.Location, default :data:`MORELIA`
    seed : int
        Seed of the cloud process.
    variability : float in [0, 1]
        Mean daily cloud cover; 0 gives clear sky.

    Returns
    -------
    pandas.DataFrame
        Indexed like ``index``; columns ``ghi``, ``dni``, ``dhi``, ``dni_extra`` (W/m2), ``apparent_zenith``,
        ``azimuth`` (deg), ``cloud_cover`` (0-1, per day), ``sun_hidden`` (bool), ``temp_air`` (degC),
        ``wind_speed`` (m/s).
    """
    step = step_minutes(index)
    variability = _check_variability(variability)
    rng = np.random.default_rng(check_seed(seed))
    mid = local_times(index, location) + step * MINUTE / 2
    with warnings.catch_warnings():  # pvlib 0.16 uses DatetimeIndex.dayofyear, deprecated in pandas 3.1
        warnings.simplefilter("ignore", pd.errors.Pandas4Warning)
        solar = location.get_solarposition(mid)
        clear = location.get_clearsky(mid, solar_position=solar)
        dni_extra = pvlib.irradiance.get_extra_radiation(mid).to_numpy()

    day, days = pd.factorize(mid.normalize())
    cover = daily_cloud_cover(rng, len(days), variability)[day]
    z = ar1(rng, (len(index),), math.exp(-step / CLOUD_TIME_MINUTES))
    hidden = ndtr(z) < cover
    hidden_index = OVERCAST_INDEX + BROKEN_CLOUD_GAIN * (1 - cover)
    ghi = np.where(hidden, hidden_index * clear["ghi"].to_numpy(), clear["ghi"].to_numpy())
    dni = np.where(hidden, 0.0, clear["dni"].to_numpy())
    dhi = np.where(hidden, ghi, clear["dhi"].to_numpy())

    doy = mid.day_of_year.to_numpy()
    hour = (mid.hour + mid.minute / 60).to_numpy()
    temp_air = 17.5 + 3.5 * np.cos(2 * np.pi * (doy - 135) / 365.25) + 7.0 * np.cos(2 * np.pi * (hour - 15) / 24)
    return pd.DataFrame(
        {
            "ghi": ghi,
            "dni": dni,
            "dhi": dhi,
            "dni_extra": dni_extra,
            "apparent_zenith": solar["apparent_zenith"].to_numpy(),
            "azimuth": solar["azimuth"].to_numpy(),
            "cloud_cover": cover,
            "sun_hidden": hidden,
            "temp_air": temp_air,
            "wind_speed": np.full(len(index), WIND_SPEED),
        },
        index=index,
    )


@dataclass(frozen=True)
class PVArray:
    """A rooftop PV system (PVWatts parameters).

    Attributes
    ----------
    surface_tilt, surface_azimuth : float
        Module plane, degrees (azimuth 180 = south).
    gamma_pdc : float
        Power temperature coefficient, 1/K.
    losses_percent : float
        System losses (soiling, wiring, mismatch, ...), %; the PVWatts default.
    eta_inv_nom : float
        Nominal inverter efficiency.
    dc_ac_ratio : float
        DC peak over inverter AC rating, >= 1.
    """

    surface_tilt: float = 20.0
    surface_azimuth: float = 180.0
    gamma_pdc: float = -0.004
    losses_percent: float = float(pvlib.pvsystem.pvwatts_losses())
    eta_inv_nom: float = 0.96
    dc_ac_ratio: float = 1.0

    def __post_init__(self) -> None:
        checks = {
            "surface_tilt": 0 <= self.surface_tilt <= 90,
            "surface_azimuth": 0 <= self.surface_azimuth < 360,
            "gamma_pdc": -0.02 <= self.gamma_pdc <= 0,
            "losses_percent": 0 <= self.losses_percent < 100,
            "eta_inv_nom": 0 < self.eta_inv_nom <= 1,
            "dc_ac_ratio": 1 <= self.dc_ac_ratio <= 3,
        }
        for key, ok in checks.items():
            if not ok:
                raise ValueError(f"PVArray.{key} is out of range: {getattr(self, key)!r}")


def pv_system_power(weather: pd.DataFrame, peak_kw: float, array: PVArray | None = None) -> np.ndarray:
    """AC output (W, >= 0, <= ``peak_kw`` kW) of a PVWatts system under :func:`synthetic_weather` ``weather``."""
    array = PVArray() if array is None else array
    peak_w = _check_peak(peak_kw) * 1000.0
    if peak_w == 0:
        return np.zeros(len(weather))
    poa = pvlib.irradiance.get_total_irradiance(
        array.surface_tilt,
        array.surface_azimuth,
        weather["apparent_zenith"],
        weather["azimuth"],
        weather["dni"],
        weather["ghi"],
        weather["dhi"],
        dni_extra=weather["dni_extra"],
        model="haydavies",
    )
    aoi = pvlib.irradiance.aoi(
        array.surface_tilt, array.surface_azimuth, weather["apparent_zenith"], weather["azimuth"]
    )
    effective = poa["poa_direct"].to_numpy() * pvlib.iam.physical(aoi.to_numpy()) + poa["poa_diffuse"].to_numpy()
    temp_cell = pvlib.temperature.sapm_cell(
        poa["poa_global"].to_numpy(),
        weather["temp_air"].to_numpy(),
        weather["wind_speed"].to_numpy(),
        **_TEMPERATURE,
    )
    pdc = pvlib.pvsystem.pvwatts_dc(np.nan_to_num(effective), temp_cell, peak_w, array.gamma_pdc)
    pdc = pdc * (1 - array.losses_percent / 100)
    pac = pvlib.inverter.pvwatts(pdc, peak_w / array.dc_ac_ratio / array.eta_inv_nom, array.eta_inv_nom)
    return np.clip(np.asarray(pac, dtype=float), 0.0, peak_w)


def _check_peak(peak_kw: float) -> float:
    value = float(peak_kw)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"peak_kw must be a finite number >= 0, got {peak_kw!r}")
    return value


def pv_power(
    index: pd.DatetimeIndex,
    peak_kw: float,
    location: Location = MORELIA,
    seed: int = 0,
    variability: float = 0.3,
    array: PVArray | None = None,
) -> pd.Series:
    """AC output of a rooftop PV system, in W, at each step of ``index``.

    Parameters
    ----------
    index : pandas.DatetimeIndex
        Regular timestamps (start of each step), whole-minute step; naive means local time of ``location``.
        Irradiance is evaluated at the middle of each step.
    peak_kw : float
        DC nameplate, kWp; also the inverter's largest AC output.
    location : pvlib.location.Location, default :data:`MORELIA`
    seed : int, default 0
        Seed of the cloud process.
    variability : float in [0, 1], default 0.3
        Mean daily cloud cover (0: clear sky).
    array : PVArray, optional
        Orientation, losses and inverter; default ``PVArray()``.

    Returns
    -------
    pandas.Series
        AC power, W (float, ``0 <= p <= 1000 * peak_kw``, 0 at night), named ``"pv_w"``.
    """
    _check_peak(peak_kw)
    weather = synthetic_weather(index, location, seed, variability)
    return pd.Series(pv_system_power(weather, peak_kw, array), index=index, name="pv_w")
