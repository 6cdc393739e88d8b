"""Per meter-day features for energy-theft detection at the concentrator (fog level).

Input is a cube ``x[meter, day, slot]`` of energy per slot (Wh, NaN for a missing day) of one neighbourhood.
Each meter-day gets three groups of features, all scale-free so that one model serves every household
and — through per-meter normalization — households of models it was never trained on:

* the day itself, normalized per meter: robust z-scores (median and MAD over the meter's days) of the day's
  variation, peak and trough over the mean, lag-1 autocorrelation, roughness, and the hourly shape's
  correlation and L1 distance to the meter's typical shape; the longest zero run (h2's mark) is kept as it is,
  and the share of zero slots as its excess over the meter's median share (:data:`ZEROS`). The raw levels of
  these statistics differ between households and between household models (a minute-resolved appliance model
  is far spikier than a standard profile) and do not transfer;
* the meter's own history: log ratio of the day's energy to the typical day (the median, and the upper
  quartile and 90th percentile, which tampered days pull down less), its robust z-score, the same ratios of the
  day's base load (:data:`BASE`), correlation and L1 distance of the hourly shape to the typical shape;
* the neighbours on the same day (the concentrator sees all its meters): every z-score above net of the
  neighbourhood's median that day, the energy ratio net of the neighbourhood's median ratio (removes weather
  and weekday effects), and correlation with the neighbourhood's median shape.

References: the attack models of Jokar et al. (2016) (see :mod:`.attacks`) and the fog-level analytics of
Olivares-Rojas et al. (2023), section 3.2.
"""

from __future__ import annotations

import warnings

import numpy as np

DAY_STATS = ("cv", "peak", "trough", "zero_share", "zero_run", "acf1", "roughness")
HISTORY = (
    "log_energy_ratio",
    "log_energy_ratio_q75",
    "log_energy_ratio_q90",
    "energy_z",
    "shape_corr",
    "shape_l1",
)
NEIGHBOURS = ("nb_energy_ratio", "nb_shape_corr")
HOURLY = ("hour_z_max", "hour_z_min", "hour_z_mean_abs", "z_night_share", "reversal", "z_reversal")
"""The hourly shape against the meter's own days: the largest, smallest and mean absolute robust z-score of the
day's hourly shares (each hour against the same hour of the meter's days), the robust z-score of the share of
the first six hours, and ``reversal`` = correlation with the meter's typical shape minus that of the day
reversed (h6's mark), as it is and as a robust z-score. Added in model v3: they raised the left-out AUC."""
NORMALIZED = ("cv", "peak", "trough", "zero_share", "acf1", "roughness", "shape_l1", "shape_corr")
"""Day statistics the detector sees only as robust z-scores against the meter's own days (``z_*``) and those
net of the neighbourhood's median z the same day (``nb_z_*``): their levels differ between households and
between household models, their deviations from a meter's normal much less (``z_zero_share`` and
``nb_z_zero_share`` are read by models up to v4 only: see :data:`ZEROS`)."""
ZEROS = ("zero_excess", "nb_zero_excess")
"""The day's share of zero slots over the meter's median share, and that net of the neighbourhood's median the
same day: plain shares, not z-scores. They replaced ``z_zero_share`` and ``nb_z_zero_share`` in model v5: a
meter that hardly ever reads zero has a median absolute deviation of 0, so one zero slot in a day gave a z-score
of about 10, and a v4 detector trained without RAMP's homes flagged up to 62 % of the honest days of its
middle-income homes, which now and then read zero for one slot. h2's mark (zero for 4 hours or more) is a share
of at least 1/6."""
BASE = ("log_base_ratio", "log_base_ratio_q75", "nb_base_ratio", "base_z")
"""The day's base load (the :data:`BASE_QUANTILE` of its slots) against the meter's typical base, as log ratios to
the median and to the upper quartile of its days (which tampered days pull down less), the first net of the
neighbourhood's median that day, and the first over the meter's own spread of it (``base_z``: robust, with a
floor of 0.01). A home's always-on load (fridge, standby) moves little from day to day while its energy swings
with what the occupants do: in richardsonpy's CREST homes the log base ratio varies by 0.03 (standard deviation
over a meter's days) against 0.38 for the energy ratio; in the project's profiles, synPRO and RAMP homes by
0.10-0.18 against 0.08-0.25. h1 scales the base with the rest of the day, a quiet honest day keeps it. How far a
drop is unusual depends on the meter, hence ``base_z``. Slots in which the meter exported (PV covering the whole
load) are not its base and are left out when the export register is given. The ratios came in model v5
(richardson left out, 50 % theft: 0.945 instead of 0.919), ``base_z`` in v6 (0.961)."""
BASE_QUANTILE = 0.1
THEFT_FEATURES = (
    *(f"z_{n}" for n in NORMALIZED if n != "zero_share"),
    "energy_z",
    *(f"nb_z_{n}" for n in NORMALIZED if n != "zero_share"),
    "nb_z_energy",
    "zero_run",
    *ZEROS,
    *BASE,
    "log_energy_ratio",
    "log_energy_ratio_q75",
    "log_energy_ratio_q90",
    "shape_corr",
    "shape_l1",
    *NEIGHBOURS,
    *HOURLY,
)
ZERO_WH = 1e-9


def feature_names(slots: int) -> list[str]:
    """Names of the detector's feature columns (the same at every resolution; ``slots`` is checked only)."""
    if slots < 1:
        raise ValueError(f"a day needs at least one slot, got {slots}")
    return list(THEFT_FEATURES)


def _bins(slots: int) -> int:
    return 24 if slots % 24 == 0 else slots


def _safe_div(a: np.ndarray, b: np.ndarray, default: float = 0.0) -> np.ndarray:
    a, b = np.broadcast_arrays(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    out = np.full(a.shape, default)
    np.divide(a, b, out=out, where=b > 0)
    return out


def _rowcorr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation along the last axis; 0 where either side is constant."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    return _safe_div((a * b).sum(axis=-1), np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1)))


def _longest_run(mask: np.ndarray) -> np.ndarray:
    """Length of the longest run of True along the last axis."""
    count = np.cumsum(mask, axis=-1)
    last_reset = np.maximum.accumulate(np.where(mask, 0, count), axis=-1)
    return (count - last_reset).max(axis=-1)


def _day_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Day statistics ``(..., 7)``, hourly shape ``(..., B)`` and the day's energy ``(...)``."""
    slots = x.shape[-1]
    total = x.sum(axis=-1)
    mean = total / slots
    mu = mean[..., None]
    zero = x <= ZERO_WH
    if slots >= 3:
        centred = x - mu
        acf1 = _safe_div((centred[..., 1:] * centred[..., :-1]).sum(axis=-1), (centred**2).sum(axis=-1))
        rough = _safe_div(np.abs(np.diff(x, axis=-1)).mean(axis=-1), mean)
    else:
        acf1 = np.zeros_like(total)
        rough = np.zeros_like(total)
    stats = np.stack(
        [
            _safe_div(x.std(axis=-1), mean),
            _safe_div(x.max(axis=-1), mean),
            _safe_div(x.min(axis=-1), mean),
            zero.mean(axis=-1),
            _longest_run(zero) / slots,
            acf1,
            rough,
        ],
        axis=-1,
    )
    bins = _bins(slots)
    hourly = x.reshape(*x.shape[:-1], bins, slots // bins).sum(axis=-1)
    shape = np.where(total[..., None] > 0, _safe_div(hourly, total[..., None]), 1.0 / bins)
    return stats, shape, total


def _nanmedian(a: np.ndarray, axis: int) -> np.ndarray:
    return _quietly(np.nanmedian, a, axis=axis)


def _nanquantile(a: np.ndarray, q: float | list[float], axis: int) -> np.ndarray:
    return _quietly(np.nanquantile, a, q, axis=axis)


def _quietly(reduce, *args, **kwargs) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices (meters without days) stay NaN
        return reduce(*args, **kwargs)


def _robust_z(a: np.ndarray) -> np.ndarray:
    """``(a - median) / scale`` per meter (axis 1: days); scale = 1.4826 MAD + 5 % of |median| + 0.001."""
    median = _nanmedian(a, axis=1)[:, None]
    mad = _nanmedian(np.abs(a - median), axis=1)[:, None] * 1.4826
    return (a - median) / (mad + 1e-3 + 0.05 * np.abs(median))


def day_features(x: np.ndarray, export: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every per meter-day quantity by name, each ``(n_meters, n_days)``, for a cube ``x`` in Wh (the import
    register of net-metered homes; ``export``, the export register in Wh of the same shape, if known).

    The day statistics (:data:`DAY_STATS`), the history features
    (:data:`HISTORY`), the neighbour features (:data:`NEIGHBOURS`), and the per-meter normalized ``z_*`` and
    ``nb_z_*`` of :data:`NORMALIZED` (and ``nb_z_energy``). Missing days (any NaN in the day) are NaN and are
    left out of every reference median.
    """
    if x.ndim != 3:
        raise ValueError(f"expected a (meters, days, slots) cube, got shape {x.shape}")
    if export is not None and export.shape != x.shape:
        raise ValueError(f"the export register has shape {export.shape}, the import register {x.shape}")
    valid = np.isfinite(x).all(axis=-1)
    filled = np.where(valid[..., None], x, 0.0)
    stats, shape, total = _day_stats(filled)
    stats[~valid] = np.nan
    shape[~valid] = np.nan
    total = np.where(valid, total, np.nan)

    # Own history: medians over the meter's days.
    # An offset of 0.1 % of the meter's median day keeps empty days finite and the features unit-free.
    log_e = np.log(total + 1e-3 * _nanmedian(total, axis=1)[:, None] + 1e-9)
    ref_log_e = _nanmedian(log_e, axis=1)[:, None]
    upper = _nanquantile(log_e, [0.75, 0.9], axis=1)[:, :, None]  # less pulled down by tampered days
    spread = _nanmedian(np.abs(log_e - ref_log_e), axis=1)[:, None] * 1.4826 + 0.05
    ref_shape = _nanmedian(shape, axis=1)[:, None, :]
    ref_shape = ref_shape / np.where(
        ref_shape.sum(axis=-1, keepdims=True) > 0, ref_shape.sum(-1, keepdims=True), 1
    )
    out = {name: stats[..., i] for i, name in enumerate(DAY_STATS)}
    log_ratio = log_e - ref_log_e
    out.update(
        log_energy_ratio=log_ratio,
        log_energy_ratio_q75=log_e - upper[0],
        log_energy_ratio_q90=log_e - upper[1],
        energy_z=log_ratio / spread,
        shape_corr=_rowcorr(shape, ref_shape),
        shape_l1=np.abs(shape - ref_shape).sum(axis=-1),
    )

    out["zero_excess"] = out["zero_share"] - _nanmedian(out["zero_share"], axis=1)[:, None]
    out["nb_zero_excess"] = out["zero_excess"] - _nanmedian(out["zero_excess"], axis=0)[None, :]

    # The base load (never below 0) of the slots without export: an offset of 1 % of the meter's median slot keeps
    # it finite and unit-free.
    own = filled if export is None else np.where(np.nan_to_num(export) > ZERO_WH, np.nan, filled)
    base = np.where(valid, np.nan_to_num(np.maximum(_nanquantile(own, BASE_QUANTILE, axis=-1), 0.0)), np.nan)
    log_b = np.log(base + 0.01 * _nanmedian(total, axis=1)[:, None] / x.shape[-1] + 1e-9)
    out["log_base_ratio"] = log_b - _nanmedian(log_b, axis=1)[:, None]
    out["log_base_ratio_q75"] = log_b - _nanquantile(log_b, 0.75, axis=1)[:, None]
    out["nb_base_ratio"] = out["log_base_ratio"] - _nanmedian(out["log_base_ratio"], axis=0)[None, :]
    base_spread = _nanmedian(np.abs(out["log_base_ratio"]), axis=1)[:, None] * 1.4826 + 0.01
    out["base_z"] = out["log_base_ratio"] / base_spread

    # The hourly shape against the meter's own days, hour by hour.
    z_hour = (shape - ref_shape) / (
        _nanmedian(np.abs(shape - ref_shape), axis=1)[:, None, :] * 1.4826 + 0.05 * ref_shape + 1e-3
    )
    out.update(hour_z_max=z_hour.max(axis=-1), hour_z_min=z_hour.min(axis=-1), hour_z_mean_abs=np.abs(z_hour).mean(-1))
    out["z_night_share"] = _robust_z(shape[..., : shape.shape[-1] // 4].sum(axis=-1))
    out["reversal"] = out["shape_corr"] - _rowcorr(shape[..., ::-1], ref_shape)
    out["z_reversal"] = _robust_z(out["reversal"])

    # Neighbours on the same day.
    out["nb_energy_ratio"] = log_ratio - _nanmedian(log_ratio, axis=0)[None, :]
    out["nb_shape_corr"] = _rowcorr(shape, _nanmedian(shape, axis=0)[None, :, :])

    # Per-meter normalization, and the same net of the neighbourhood.
    for name in NORMALIZED:
        out[f"z_{name}"] = _robust_z(out[name])
    for name in (*NORMALIZED, "energy"):
        z = out[f"z_{name}" if name != "energy" else "energy_z"]
        out[f"nb_z_{name}"] = z - _nanmedian(z, axis=0)[None, :]
    for v in out.values():
        v[~valid] = np.nan
    return out


def theft_features(
    x: np.ndarray, names: tuple[str, ...] | list[str] = THEFT_FEATURES, export: np.ndarray | None = None
) -> np.ndarray:
    """The detector's features ``(n_meters, n_days, len(names))`` for a cube ``x`` in Wh (``names``: columns of
    :func:`day_features`, by default this version's :data:`THEFT_FEATURES`; a stored model names its own;
    ``export``: the export register, if known)."""
    table = day_features(x, export)
    return np.stack([table[name] for name in names], axis=-1)
