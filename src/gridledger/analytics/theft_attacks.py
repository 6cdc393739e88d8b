"""Energy-theft attack models h1–h6 of Jokar, Arianpoo and Leung (2016).

P. Jokar, N. Arianpoo, V. C. M. Leung, "Electricity Theft Detection in AMI Using Customers' Consumption
Patterns", IEEE Trans. Smart Grid 7(1), 2016. Each model turns one honest daily profile ``x`` (energy per
slot, Wh, ``T`` slots from local midnight) into the profile a thief would report:

===  ======================================================================================================
h1   ``α x_t`` with α ~ U(0.1, 0.8) for the whole day
h2   ``x_t`` set to 0 inside one random interval of at least 4 h (start and length uniform), else unchanged
h3   ``γ_t x_t`` with γ_t ~ U(0.1, 0.8) drawn independently for every slot
h4   ``γ_t · mean(x)`` with γ_t ~ U(0.1, 0.8) per slot
h5   ``mean(x)`` in every slot (same daily energy, flat profile)
h6   ``x_{T-1-t}``: the day reversed (same energy, consumption moved to cheap hours)
===  ======================================================================================================

h5 and h6 keep the day's energy: they matter under time-of-use prices and are the hardest to detect.
All functions are pure and vectorised over rows: ``x`` is ``(n, T)``; randomness comes only from ``rng``.

Jokar et al. draw the attacks day by day (:func:`inject_theft`). A thief who tampers with the meter once (a
shunted current transformer, a bypassed circuit) under-reports every day from then on: :func:`persistent_theft`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

ALPHA_RANGE = (0.1, 0.8)
MIN_OFF_FRACTION = 4 / 24  # h2 interval length: at least 4 hours
UNCHANGED_WH = 1e-9  # an attacked reading within this (or 1e-9 relative) of the honest one is unchanged


def h1(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scale the whole day by one α ~ U(0.1, 0.8)."""
    return x * rng.uniform(*ALPHA_RANGE, size=(x.shape[0], 1))


def h2(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Report zero inside one interval [start, start + length) of at least 4 h; length and start uniform."""
    n, slots = x.shape
    shortest = max(1, int(np.ceil(MIN_OFF_FRACTION * slots)))
    length = rng.integers(shortest, slots + 1, size=n)
    start = np.floor(rng.uniform(size=n) * (slots - length + 1)).astype(int)
    t = np.arange(slots)
    off = (t >= start[:, None]) & (t < (start + length)[:, None])
    return np.where(off, 0.0, x)


def h3(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scale every slot by its own γ_t ~ U(0.1, 0.8)."""
    return x * rng.uniform(*ALPHA_RANGE, size=x.shape)


def h4(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Report γ_t times the day's mean, γ_t ~ U(0.1, 0.8) per slot."""
    return x.mean(axis=1, keepdims=True) * rng.uniform(*ALPHA_RANGE, size=x.shape)


def h5(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Report the day's mean in every slot (``rng`` unused; kept for a uniform signature)."""
    return np.broadcast_to(x.mean(axis=1, keepdims=True), x.shape).copy()


def h6(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Report the day reversed in time (``rng`` unused)."""
    return x[:, ::-1].copy()


ATTACKS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "h1": h1,
    "h2": h2,
    "h3": h3,
    "h4": h4,
    "h5": h5,
    "h6": h6,
}


def inject_theft(
    days: np.ndarray, rate: float, rng: np.random.Generator, attacks: tuple[str, ...] = tuple(ATTACKS)
) -> tuple[np.ndarray, np.ndarray]:
    """Tamper a random share of honest days with attacks drawn uniformly from ``attacks``.

    Parameters
    ----------
    days : ``(..., T)`` honest energy per slot (Wh); rows that contain NaN (missing days) are never tampered.
    rate : probability that a day is tampered, in [0, 1].
    rng : the only source of randomness.
    attacks : names from :data:`ATTACKS`.

    Returns
    -------
    tampered : same shape as ``days``.
    kind : int array of ``days.shape[:-1]``: 0 honest, k for attack ``h{k}``. A drawn attack that left every reading
        of its day as it was (h2 over slots that already read zero, any attack on a day that imported nothing) stole
        nothing and reports the truth: that day stays honest (0), so no label asks a detector to tell identical
        days apart.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"theft rate must be in [0, 1], got {rate}")
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown or not attacks:
        raise ValueError(f"unknown attack(s) {unknown or attacks}; known: {', '.join(ATTACKS)}")
    shape = days.shape
    flat = days.reshape(-1, shape[-1])
    out = flat.copy()
    complete = np.isfinite(flat).all(axis=1)
    chosen = complete & (rng.uniform(size=flat.shape[0]) < rate)
    which = rng.integers(0, len(attacks), size=flat.shape[0])
    kind = np.zeros(flat.shape[0], dtype=np.int8)
    for j, name in enumerate(attacks):
        rows = chosen & (which == j)
        if rows.any():
            out[rows] = ATTACKS[name](flat[rows], rng)
            kind[rows] = int(name[1:])
    unchanged = chosen & np.isclose(out, flat, rtol=1e-9, atol=UNCHANGED_WH).all(axis=1)
    out[unchanged] = flat[unchanged]
    kind[unchanged] = 0
    return out.reshape(shape), kind.reshape(shape[:-1])


PERSISTENT_START = (0.3, 0.6)  # a persistent thief starts within this share of the period


def persistent_theft(days: np.ndarray, share: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A ``share`` of the meters report ``α x`` (h1's α ~ U(0.1, 0.8), one per meter) on every day from a start day
    on, drawn uniformly within :data:`PERSISTENT_START` of the period, to its end.

    Parameters
    ----------
    days : ``(n_meters, n_days, T)`` honest energy per slot (Wh); days that contain NaN are never tampered.
    share : probability that a meter is a thief, in [0, 1].
    rng : the only source of randomness.

    Returns
    -------
    tampered : same shape as ``days``.
    tampered_days : bool ``(n_meters, n_days)``, True on the days a thief under-reported.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"thief share must be in [0, 1], got {share}")
    if days.ndim != 3:
        raise ValueError(f"expected a (meters, days, slots) cube, got shape {days.shape}")
    n_m, n_d, _ = days.shape
    thief = rng.uniform(size=n_m) < share
    alpha = rng.uniform(*ALPHA_RANGE, size=n_m)
    first = rng.integers(int(PERSISTENT_START[0] * n_d), int(PERSISTENT_START[1] * n_d) + 1, size=n_m)
    tampered_days = thief[:, None] & (np.arange(n_d)[None, :] >= first[:, None]) & np.isfinite(days).all(axis=-1)
    return np.where(tampered_days[..., None], days * alpha[:, None, None], days), tampered_days
