"""Benchmark of the profile builders: how long the analytics' standard data set takes to make.

Figures (medians of repeated runs, wall clock):

* ``community_readings(50, 30, "1min")``: 2.16 M meter rows, the data set the analytics train on; the first call
  of a process also builds demandlib's BDEW tables (reported apart as the cold run);
* one household's load and one PV system's output over a year at 1 minute;
* the comparison: the same kind of readings made by stepping the device models (``Household.step``, a Python
  loop per step), in rows per second, against the vectorised builder.

Run from the repository root: ``.venv/bin/python benchmarks/profiles.py``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import pandas as pd

from gridledger.devices import Household, Profile, PVSystem
from gridledger.profiles import community_readings, household_load, pv_power

TZ = "America/Mexico_City"


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def per_step_rows_per_second(homes: int = 5, days: int = 1) -> float:
    """Meter rows per second when each home is stepped through the device models minute by minute."""
    index = pd.date_range("2024-01-01", periods=days * 1440, freq="1min", tz=TZ)
    models = [
        Household(
            f"MI{k:03d}",
            Profile(household_load(index, 1800, seed=k)),
            pv=PVSystem.from_series(pv_power(index, 2.0, seed=k), 2000) if k % 2 else None,
        )
        for k in range(homes)
    ]
    start = time.perf_counter()
    for model in models:
        for now in index:
            model.step(now, 60.0)
    return homes * len(index) / (time.perf_counter() - start)


def main() -> None:
    cold = timed(lambda: community_readings(50, 30, "1min"), 1)[0]
    warm = timed(lambda: community_readings(50, 30, "1min"), 3)
    rows = 50 * 30 * 1440
    year = pd.date_range("2023-01-01", "2024-01-01", freq="1min", inclusive="left", tz=TZ)
    load_year = timed(lambda: household_load(year, 1800), 5)
    pv_year = timed(lambda: pv_power(year, 3.0), 3)
    loop_rate = per_step_rows_per_second()
    vector_rate = rows / statistics.median(warm)

    print("community_readings(50 meters, 30 days, 1 min) -> 2,160,000 rows")
    print(f"  cold (builds the BDEW tables): {cold:.2f} s")
    print(
        f"  warm, median of {len(warm)}: {statistics.median(warm):.2f} s  (runs: {', '.join(f'{t:.2f}' for t in warm)})"
    )
    print(
        f"household_load, one year at 1 min (525,600 steps), median of {len(load_year)}: "
        f"{statistics.median(load_year):.3f} s"
    )
    print(f"pv_power, one year at 1 min, median of {len(pv_year)}: {statistics.median(pv_year):.2f} s")
    print("comparison: vectorised builder vs stepping the device models (Household.step per minute)")
    print(f"  vectorised: {vector_rate:,.0f} rows/s   per-step loop: {loop_rate:,.0f} rows/s")
    print()
    print(f"community_readings_50x30d_1min = {statistics.median(warm):.2f} s")
    print(f"community_readings_cold = {cold:.2f} s")
    print(f"household_load_year_1min = {statistics.median(load_year) * 1000:.0f} ms")
    print(f"pv_power_year_1min = {statistics.median(pv_year):.2f} s")
    print(f"vectorised_rows_per_s = {vector_rate:,.0f} rows/s")
    print(f"per_step_loop_rows_per_s = {loop_rate:,.0f} rows/s")
    print(f"speedup_vs_per_step_loop = {vector_rate / loop_rate:.0f} x")


if __name__ == "__main__":
    main()
