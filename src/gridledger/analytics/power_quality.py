"""Power-quality prediction and flagging from the meter's voltage, current and power factor (edge level).

Limits (all configurable in :class:`Limits`):

* **sag** and **swell**: RMS voltage below 0.9 pu or above 1.1 pu of the nominal 127 V (IEEE Std 1159-2019
  short-duration variations; the ±10 % band of Mexican residential supply, CFE L0000-02);
* **poor power factor**: below 0.9, the minimum CFE tariffs require — but only when it is also clearly below
  what *this* meter normally shows at the same load. Household power factor falls at light load (standby
  electronics), so a fixed 0.9 threshold would flag most nights of most homes; the per-meter expectation is
  what tells a fault (a failing capacitor, a bad motor) from a normal light-load reading.

The prediction is a per-meter :class:`PowerQualityModel`: the power factor expected at a given power (medians
over log-spaced power bins) and the voltage expected at a given hour and power (least squares on hourly levels
and the meter's own load, i.e. the service-cable drop). Functions are pure; readings come as NumPy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import DayCube

EVENTS = ("sag", "swell", "poor_pf")
POWER_BINS_W = np.geomspace(10.0, 10_000.0, 16)


@dataclass(frozen=True)
class Limits:
    """Power-quality limits.

    Parameters
    ----------
    nominal_v : nominal RMS voltage, V.
    sag_pu, swell_pu : voltage limits, per unit of ``nominal_v``.
    min_pf : lowest acceptable power factor.
    pf_margin : how far (in robust standard deviations of the meter's own power factor at that load, at least
        ``pf_floor``) a reading must fall below its expected value to count as poor.
    pf_floor : minimum spread, in power-factor units.
    """

    nominal_v: float = 127.0
    sag_pu: float = 0.9
    swell_pu: float = 1.1
    min_pf: float = 0.9
    pf_margin: float = 4.0
    pf_floor: float = 0.01


@dataclass(frozen=True)
class PowerQualityModel:
    """What a meter normally shows: power factor against power, and voltage against hour and power.

    Attributes
    ----------
    bin_edges : power-bin edges, W.
    pf_median, pf_spread : per bin, the median power factor and its robust standard deviation (1.4826 MAD);
        NaN for bins without readings (filled from the nearest bins when predicting).
    v_hourly : expected voltage at zero own load for each hour of the day, V.
    v_per_w : voltage change per W of own net power, V/W (negative: the service-cable drop).
    """

    bin_edges: np.ndarray
    pf_median: np.ndarray
    pf_spread: np.ndarray
    v_hourly: np.ndarray
    v_per_w: float

    @classmethod
    def fit(
        cls, hour: np.ndarray, power_w: np.ndarray, voltage_v: np.ndarray, power_factor: np.ndarray
    ) -> PowerQualityModel:
        """Learn from readings (arrays of equal length; ``hour`` in 0..23, ``power_w`` the net power)."""
        hour = np.asarray(hour, dtype=int)
        p = np.abs(np.asarray(power_w, dtype=float))
        v = np.asarray(voltage_v, dtype=float)
        pf = np.asarray(power_factor, dtype=float)
        ok = np.isfinite(p) & np.isfinite(v) & np.isfinite(pf)
        if ok.sum() < 24:
            raise ValueError("power-quality model needs at least 24 complete readings")
        hour, p, v, pf, signed = hour[ok], p[ok], v[ok], pf[ok], np.asarray(power_w, dtype=float)[ok]
        which = np.clip(np.digitize(p, POWER_BINS_W) - 1, 0, len(POWER_BINS_W) - 2)
        med = np.full(len(POWER_BINS_W) - 1, np.nan)
        spread = np.full_like(med, np.nan)
        for b in range(len(med)):
            vals = pf[which == b]
            if vals.size >= 5:
                med[b] = np.median(vals)
                spread[b] = 1.4826 * np.median(np.abs(vals - med[b]))
        design = np.column_stack([np.eye(24)[hour], signed])
        coef, *_ = np.linalg.lstsq(design, v, rcond=None)
        seen = np.bincount(hour, minlength=24) > 0
        hourly = np.where(seen, coef[:24], np.median(v))
        return cls(POWER_BINS_W, med, spread, hourly, float(coef[24]))

    def _bin_values(self, power_w: np.ndarray, table: np.ndarray) -> np.ndarray:
        centres = np.sqrt(self.bin_edges[:-1] * self.bin_edges[1:])
        known = np.isfinite(table)
        if not known.any():
            return np.full(np.shape(power_w), np.nan)
        p = np.clip(np.abs(power_w), self.bin_edges[0], self.bin_edges[-1])
        return np.interp(np.log(p), np.log(centres[known]), table[known])

    def expected_pf(self, power_w: np.ndarray) -> np.ndarray:
        """Power factor this meter normally shows at net power ``power_w`` (W)."""
        return self._bin_values(power_w, self.pf_median)

    def pf_spread_at(self, power_w: np.ndarray) -> np.ndarray:
        """Robust standard deviation of the meter's power factor at ``power_w``."""
        return self._bin_values(power_w, self.pf_spread)

    def expected_voltage(self, hour: np.ndarray, power_w: np.ndarray) -> np.ndarray:
        """Voltage expected at ``hour`` (0..23) with own net power ``power_w`` (W), V."""
        return self.v_hourly[np.asarray(hour, dtype=int)] + self.v_per_w * np.asarray(power_w, dtype=float)


def flag_events(
    voltage_v: np.ndarray,
    power_factor: np.ndarray,
    power_w: np.ndarray,
    model: PowerQualityModel,
    limits: Limits = Limits(),
) -> dict[str, np.ndarray]:
    """Flag each reading: ``{"sag", "swell", "poor_pf"}`` -> boolean arrays."""
    v = np.asarray(voltage_v, dtype=float)
    pf = np.asarray(power_factor, dtype=float)
    spread = np.maximum(np.nan_to_num(model.pf_spread_at(power_w), nan=limits.pf_floor), limits.pf_floor)
    expected = model.expected_pf(power_w)
    return {
        "sag": v < limits.sag_pu * limits.nominal_v,
        "swell": v > limits.swell_pu * limits.nominal_v,
        "poor_pf": (pf < limits.min_pf) & (pf < expected - limits.pf_margin * spread),
    }


def runs(mask: np.ndarray) -> np.ndarray:
    """``(k, 2)`` start and end (exclusive) indexes of the runs of True in a 1-D mask."""
    padded = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return edges.reshape(-1, 2)


def event_scores(truth: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    """Event-level precision and recall of flags against true events (1-D masks over consecutive readings).

    A true event counts as found if any of its readings is flagged; a flagged run counts as correct if it
    overlaps a true event. Precision is NaN when nothing was flagged, recall when there was nothing to find.
    """
    t_runs, f_runs = runs(truth), runs(flagged)
    truth = np.asarray(truth, dtype=bool)
    flagged = np.asarray(flagged, dtype=bool)
    found = sum(bool(flagged[a:b].any()) for a, b in t_runs)
    right = sum(bool(truth[a:b].any()) for a, b in f_runs)
    return {
        "events": int(len(t_runs)),
        "flagged": int(len(f_runs)),
        "precision": right / len(f_runs) if len(f_runs) else float("nan"),
        "recall": found / len(t_runs) if len(t_runs) else float("nan"),
    }


def inject_events(
    voltage_v: np.ndarray,
    power_factor: np.ndarray,
    rng: np.random.Generator,
    per_day: float = 1.0,
    steps_per_day: int = 1440,
    noise_v: float = 0.5,
    limits: Limits = Limits(),
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Inject synthetic disturbances into one meter's readings, for evaluation.

    Per day, on average ``per_day`` disturbances of each kind, at uniform random places, none overlapping:

    * voltage dips to a true U(0.80, 0.95) pu and rises to U(1.05, 1.20) pu, 1–5 steps long, read with the
      meter's measurement noise N(0, ``noise_v``); only dips below ``sag_pu`` are true sags and rises above
      ``swell_pu`` true swells — the others are distractors a detector should leave alone;
    * power-factor faults lowering the power factor by U(0.03, 0.30) for 15–60 steps; a true poor-power-factor
      event where the result is below ``min_pf``.

    Returns the modified voltage and power factor and the true event masks ``{kind: bool array}``.
    """
    v = np.array(voltage_v, dtype=float)
    pf = np.array(power_factor, dtype=float)
    n = v.size
    truth = {k: np.zeros(n, dtype=bool) for k in EVENTS}
    used = np.zeros(n, dtype=bool)
    for kind, (lo, hi) in (("dip", (1, 5)), ("rise", (1, 5)), ("pf_fault", (15, 60))):
        for _ in range(rng.poisson(per_day * n / steps_per_day)):
            length = int(rng.integers(lo, hi + 1))
            start = int(rng.integers(0, max(1, n - length)))
            window = slice(start, start + length)
            if used[max(0, start - 1) : start + length + 1].any():
                continue  # keep disturbances apart so each has one true kind
            used[window] = True
            if kind == "pf_fault":
                pf[window] = np.clip(pf[window] - rng.uniform(0.03, 0.30), 0.3, 1.0)
                truth["poor_pf"][window] = pf[window] < limits.min_pf
                continue
            pu = rng.uniform(0.80, 0.95) if kind == "dip" else rng.uniform(1.05, 1.20)
            v[window] = limits.nominal_v * pu + rng.normal(0.0, noise_v, length)
            if kind == "dip" and pu < limits.sag_pu:
                truth["sag"][window] = True
            if kind == "rise" and pu > limits.swell_pu:
                truth["swell"][window] = True
    return v, pf, truth


def net_power_w(consumption_wh: np.ndarray, production_wh: np.ndarray, step_s: int) -> np.ndarray:
    """Mean net power in a step (W, import positive) from the step's energies (Wh)."""
    return (np.asarray(consumption_wh) - np.asarray(production_wh)) * 3600.0 / step_s


def evaluate_power_quality(
    cube: DayCube,
    seed: int = 0,
    test_fraction: float = 1 / 3,
    per_day: float = 1.0,
    limits: Limits = Limits(),
) -> dict:
    """Fit each meter's model on its early days, inject events into its later days, and score the flags.

    ``production_wh`` is optional (taken as 0: a consumer without generation).

    Returns event-level precision and recall per kind (pooled over meters), the mean absolute error of the
    model's expected voltage and power factor on the clean test readings beside the naive expectation (the
    meter's training mean), the meters evaluated and the number of test days.
    """
    needed = ("consumption_wh", "voltage_v", "power_factor")
    missing = [c for c in needed if c not in cube.values]
    if missing:
        raise ValueError(f"power-quality evaluation needs column(s) {', '.join(missing)}")
    rng = np.random.default_rng(seed)
    n_m, n_d, slots = cube.values["consumption_wh"].shape
    split = int(round(n_d * (1 - test_fraction)))
    if not 1 <= split < n_d:
        raise ValueError(f"{n_d} day(s) cannot be split into training and test days")
    hour = np.tile(np.arange(slots) * 24 // slots, n_d)
    truth_all = {k: [] for k in EVENTS}
    flags_all = {k: [] for k in EVENTS}
    err = {"voltage_model": [], "voltage_naive": [], "pf_model": [], "pf_naive": []}
    for m in range(n_m):
        production = cube.values["production_wh"][m] if "production_wh" in cube.values else 0.0
        p = net_power_w(cube.values["consumption_wh"][m], production, cube.step_s).ravel()
        v = cube.values["voltage_v"][m].ravel()
        pf = cube.values["power_factor"][m].ravel()
        train = np.arange(p.size) < split * slots
        test = ~train & np.isfinite(p) & np.isfinite(v) & np.isfinite(pf)
        if test.sum() == 0 or (train & np.isfinite(p)).sum() < 24:
            continue
        model = PowerQualityModel.fit(hour[train], p[train], v[train], pf[train])
        err["voltage_model"].append(np.abs(model.expected_voltage(hour[test], p[test]) - v[test]))
        err["voltage_naive"].append(np.abs(np.nanmean(v[train]) - v[test]))
        err["pf_model"].append(np.abs(model.expected_pf(p[test]) - pf[test]))
        err["pf_naive"].append(np.abs(np.nanmean(pf[train]) - pf[test]))
        v_bad, pf_bad, truth = inject_events(v[test], pf[test], rng, per_day, slots, limits=limits)
        flags = flag_events(v_bad, pf_bad, p[test], model, limits)
        for k in EVENTS:
            truth_all[k].append(truth[k])
            flags_all[k].append(flags[k])
    if not truth_all["sag"]:
        raise ValueError("no meter has enough complete readings for a power-quality evaluation")
    # A separator between meters keeps events of different meters apart.
    scores = {k: event_scores(_join(truth_all[k]), _join(flags_all[k])) for k in EVENTS}
    mae = {k: float(np.mean(np.concatenate(v))) for k, v in err.items()}
    return {"events": scores, "mae": mae, "meters": len(truth_all["sag"]), "test_days": n_d - split}


def _join(parts: list[np.ndarray]) -> np.ndarray:
    out = []
    for part in parts:
        out.extend([part, np.zeros(1, dtype=bool)])
    return np.concatenate(out)
