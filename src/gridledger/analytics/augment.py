"""The neighbourhoods the theft detector trains on: each source of household load as it is, its homes
net-metered behind PV and batteries (:mod:`.netmeter`), and its homes with more day-to-day and slot-to-slot
variation (:func:`varied`).

Households differ in how much their days vary: a standard-profile home repeats itself, a home of minute-resolved
appliances (richardsonpy's CREST homes) moves its daily energy by ±35 % and its quarter-hours far more. A detector
that has only seen steady homes takes an unsteady home's low days for theft (h1 scales a day by 0.1-0.8). The
varied copy scales every day of a home by ``exp(N(0, s_d) - s_d² / 2)`` and every slot by ``exp(N(0, s_s) -
s_s² / 2)`` (mean-preserving), with the home's own ``s_d ~ U(0, day_sd)`` and ``s_s ~ U(0, slot_sd)``, before the
attacks are drawn; it is training data, never a test. Two varied copies are made by default, one with spreads up
to (0.35, 0.6) and one up to (0.5, 0.8): the second one cut the left-out false alarms of the detector alone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .data import DayCube
from .netmeter import NetMetering, net_metered


@dataclass(frozen=True)
class Variation:
    """Upper bounds of the per-home log-normal spreads of :func:`varied`: per day and per slot."""

    day_sd: float = 0.35
    slot_sd: float = 0.6


VARIATIONS = (Variation(), Variation(0.5, 0.8))
"""The varied copies of each training source (:func:`training_neighbourhoods`)."""


def varied(cube: DayCube, rng: np.random.Generator, variation: Variation = Variation()) -> DayCube:
    """The cube's homes with more variation (consumption only; the mean energy is kept in expectation)."""
    x = cube.values["consumption_wh"]
    n_m = x.shape[0]
    s_d = rng.uniform(0, variation.day_sd, size=(n_m, 1, 1))
    s_s = rng.uniform(0, variation.slot_sd, size=(n_m, 1, 1))
    day = np.exp(rng.normal(size=(*x.shape[:2], 1)) * s_d - s_d**2 / 2)
    slot = np.exp(rng.normal(size=x.shape) * s_s - s_s**2 / 2)
    return replace(cube, values={**cube.values, "consumption_wh": x * day * slot})


def training_neighbourhoods(
    cube: DayCube,
    rng: np.random.Generator,
    net_metering: NetMetering | None = NetMetering(),
    variations: tuple[Variation, ...] = VARIATIONS,
) -> tuple[list[DayCube], dict]:
    """``cube`` as it is, net-metered (if ``net_metering`` is given) and once varied per entry of ``variations``,
    one neighbourhood each; and a card of the copies (PV and PV + battery homes of the net-metered one)."""
    out, card = [cube], {}
    if net_metering is not None:
        metered, kind = net_metered(cube, rng, net_metering)
        out.append(metered)
        card["net_metered_copy"] = {"pv": int((kind == 1).sum()), "pv_battery": int((kind == 2).sum())}
    for variation in variations:
        out.append(varied(cube, rng, variation))
    if variations:
        card["varied_copies"] = [{"day_sd": v.day_sd, "slot_sd": v.slot_sd} for v in variations]
    return out, card
