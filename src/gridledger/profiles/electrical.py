"""Electrical quantities a Mexican residential meter reports: voltage, power factor and current.

Residential service in Mexico is single phase at a nominal 127 V, held within +/-10 % (CFE specification
L0000-02; NOM-001-SEDE). The model, per meter and step, for net power ``P`` (W, import positive):

- voltage ``V = 127 + offset - feeder_drop * P_feeder / max|P_feeder| - R_service * P / 127 + noise``: a fixed
  offset for the meter's place on the feeder, a drop shared by the feeder as its load rises (a rise when it
  exports), the drop over the service cable, and a small AR(1) noise; clipped to the +/-10 % band;
- power factor ``pf = base_pf - 0.15 exp(-|P| / 250 W) + noise``: lower at light load, where electronics and
  standby supplies dominate; clipped to [0.5, 1];
- current ``I = |P| / (V pf)``, the RMS current at the connection.
"""

from __future__ import annotations

import numpy as np

from gridledger.profiles.noise import ar1

NOMINAL_VOLTAGE = 127.0
VOLTAGE_BAND = (0.9 * NOMINAL_VOLTAGE, 1.1 * NOMINAL_VOLTAGE)
SERVICE_RESISTANCE_OHM = 0.05
FEEDER_DROP_V = 3.0
VOLTAGE_NOISE_V = 0.3
VOLTAGE_NOISE_CORR = 0.9
LIGHT_LOAD_PF_DIP = 0.15
LIGHT_LOAD_W = 250.0
PF_NOISE = 0.005
PF_FLOOR = 0.5


def line_current(power_w: np.ndarray, voltage_v: np.ndarray, power_factor: np.ndarray) -> np.ndarray:
    """RMS current, A, for real power ``power_w`` (sign ignored) at ``voltage_v`` and ``power_factor``."""
    return np.abs(power_w) / (voltage_v * power_factor)


def power_factor(net_w: np.ndarray, base_pf: np.ndarray, noise: np.ndarray | float = 0.0) -> np.ndarray:
    """Power factor at net power ``net_w`` for a household whose full-load factor is ``base_pf``."""
    pf = base_pf - LIGHT_LOAD_PF_DIP * np.exp(-np.abs(net_w) / LIGHT_LOAD_W) + noise
    return np.clip(pf, PF_FLOOR, 1.0)


def service_voltage(
    net_w: np.ndarray,
    offset_v: np.ndarray,
    feeder_share: np.ndarray | float = 0.0,
    noise_v: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Voltage at the meter, V.

    Parameters
    ----------
    net_w : numpy.ndarray
        Net power of the meter, W (import positive).
    offset_v : numpy.ndarray
        The meter's fixed offset from nominal, V.
    feeder_share : numpy.ndarray or float
        Feeder net load relative to its largest magnitude, in [-1, 1].
    noise_v : numpy.ndarray or float
        Measurement and grid noise, V.
    """
    drop = FEEDER_DROP_V * feeder_share + SERVICE_RESISTANCE_OHM * net_w / NOMINAL_VOLTAGE
    return np.clip(NOMINAL_VOLTAGE + offset_v - drop + noise_v, *VOLTAGE_BAND)


def meter_electrical(
    net_w: np.ndarray, feeder: np.ndarray, offset_v: np.ndarray, base_pf: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voltage (V), power factor and current (A) of meters over time.

    Parameters
    ----------
    net_w : numpy.ndarray, shape (meters, steps)
        Net power, W (import positive).
    feeder : numpy.ndarray of int, shape (meters,)
        Feeder number of each meter.
    offset_v, base_pf : numpy.ndarray, shape (meters,)
        Per-meter voltage offset (V) and full-load power factor.
    rng : numpy.random.Generator
    """
    codes, feeder = np.unique(feeder, return_inverse=True)
    feeder_net = np.zeros((len(codes), net_w.shape[1]))
    np.add.at(feeder_net, feeder, net_w)
    peak = np.abs(feeder_net).max(axis=1, keepdims=True)
    share = np.divide(feeder_net, peak, out=np.zeros_like(feeder_net), where=peak > 0)[feeder]
    noise_v = VOLTAGE_NOISE_V * ar1(rng, net_w.shape, VOLTAGE_NOISE_CORR)
    voltage = service_voltage(net_w, offset_v[:, None], share, noise_v)
    pf = power_factor(net_w, base_pf[:, None], PF_NOISE * rng.standard_normal(net_w.shape))
    return voltage, pf, line_current(net_w, voltage, pf)
