"""Seeded random processes shared by the load and PV profiles."""

from __future__ import annotations

import numbers

import numpy as np
from scipy.signal import lfilter


def check_seed(seed: object) -> int:
    """A seed must be a non-negative integer (``numpy.random.default_rng`` accepts it as it is)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def derived_seed(seed: int, *keys: int) -> int:
    """An independent 32-bit seed for a sub-stream (e.g. one meter of a community) of ``seed``."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


def ar1(rng: np.random.Generator, shape: tuple[int, ...], phi: float) -> np.ndarray:
    """Stationary Gaussian AR(1) along the last axis, unit variance: ``x[t] = phi x[t-1] + sqrt(1-phi^2) e[t]``.

    The first value is drawn from the stationary distribution, so every step has variance 1.
    """
    e = rng.standard_normal(shape)
    if phi == 0.0 or shape[-1] < 2:
        return e
    zi = phi * e[..., :1]
    out = np.empty(shape)
    out[..., :1] = e[..., :1]
    out[..., 1:], _ = lfilter([np.sqrt(1.0 - phi * phi)], [1.0, -phi], e[..., 1:], axis=-1, zi=zi)
    return out


def mean_one_lognormal(z: np.ndarray, sigma: float) -> np.ndarray:
    """``exp(sigma z - sigma^2/2)``: a positive factor with mean 1 for standard normal ``z``."""
    return np.exp(sigma * z - 0.5 * sigma * sigma)
