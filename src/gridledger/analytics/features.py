"""Per meter-day features for energy-theft detection at the concentrator (fog level).

Input is a cube ``x[meter, day, slot]`` of energy per slot (Wh, NaN for a missing day) of one neighbourhood.
Each meter-day gets three groups of features, all scale-free so that one model serves every household:

* the day itself: variation, peak and trough over the mean, zero steps and the longest zero run, lag-1
  autocorrelation, roughness, and the hourly shape (share of the day's energy in each hour);
* the meter's own history (robust statistics over its days): log ratio of the day's energy to the typical
  day (the median, and the upper quartile and 90th percentile, which tampered days pull down less), its
  robust z-score, correlation and L1 distance of the hourly shape to the typical shape, and the change of
  the day statistics against their medians;
* the neighbours on the same day (the concentrator sees all its meters): the energy ratio above net of the
  neighbourhood's median ratio (removes weather and weekday effects), and correlation with the neighbourhood's
  median shape.

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
    "d_cv",
    "d_peak",
    "d_zero_share",
    "d_acf1",
    "d_roughness",
)
NEIGHBOURS = ("nb_energy_ratio", "nb_shape_corr")
ZERO_WH = 1e-9


def feature_names(slots: int) -> list[str]:
    """Names of the feature columns for days of ``slots`` steps."""
    return [*DAY_STATS, *(f"shape_{h:02d}" for h in range(_bins(slots))), *HISTORY, *NEIGHBOURS]


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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices (meters without days) stay NaN
        return np.nanmedian(a, axis=axis)


def theft_features(x: np.ndarray) -> np.ndarray:
    """Features ``(n_meters, n_days, n_features)`` for a cube ``x`` ``(n_meters, n_days, slots)`` in Wh.

    Missing days (any NaN in the day) get NaN features and are left out of every reference median.
    """
    if x.ndim != 3:
        raise ValueError(f"expected a (meters, days, slots) cube, got shape {x.shape}")
    valid = np.isfinite(x).all(axis=-1)
    stats, shape, total = _day_stats(np.where(valid[..., None], x, 0.0))
    stats[~valid] = np.nan
    shape[~valid] = np.nan
    total = np.where(valid, total, np.nan)

    # Own history: medians over the meter's days.
    # An offset of 0.1 % of the meter's median day keeps empty days finite and the features unit-free.
    log_e = np.log(total + 1e-3 * _nanmedian(total, axis=1)[:, None] + 1e-9)
    ref_log_e = _nanmedian(log_e, axis=1)[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        upper = np.nanquantile(log_e, [0.75, 0.9], axis=1)[:, :, None]  # less pulled down by tampered days
    spread = _nanmedian(np.abs(log_e - ref_log_e), axis=1)[:, None] * 1.4826 + 0.05
    ref_shape = _nanmedian(shape, axis=1)[:, None, :]
    ref_shape = ref_shape / np.where(
        ref_shape.sum(axis=-1, keepdims=True) > 0, ref_shape.sum(-1, keepdims=True), 1
    )
    ref_stats = _nanmedian(stats, axis=1)[:, None, :]
    log_ratio = log_e - ref_log_e
    cv, peak, _, zero_share, _, acf1, rough = (stats[..., i] for i in range(len(DAY_STATS)))
    r_cv, r_peak, _, r_zero, _, r_acf1, r_rough = (ref_stats[..., i] for i in range(len(DAY_STATS)))
    history = np.stack(
        [
            log_ratio,
            log_e - upper[0],
            log_e - upper[1],
            log_ratio / spread,
            _rowcorr(shape, ref_shape),
            np.abs(shape - ref_shape).sum(axis=-1),
            cv - r_cv,
            np.log((peak + 1e-6) / (r_peak + 1e-6)),
            zero_share - r_zero,
            acf1 - r_acf1,
            np.log((rough + 1e-6) / (r_rough + 1e-6)),
        ],
        axis=-1,
    )

    # Neighbours on the same day.
    nb_ratio = log_ratio - _nanmedian(log_ratio, axis=0)[None, :]
    nb_shape = _nanmedian(shape, axis=0)[None, :, :]
    neighbours = np.stack([nb_ratio, _rowcorr(shape, nb_shape)], axis=-1)

    features = np.concatenate([stats, shape, history, neighbours], axis=-1)
    features[~valid] = np.nan
    return features
