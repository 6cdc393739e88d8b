"""Benchmark of the household layer of ``gridledger simulate``: every home's minute-by-minute load, PV, battery
and meter net, for a generated community (``generate_community``) through ``simulate_households``.

Cases, each in a fresh process so that its peak RSS is its own:

* 100 homes x 7 days at 1 minute (1.0 M home-minutes): the simulator's target community;
* 1,000 homes x 1 day at 1 minute (1.4 M home-minutes).

Per case: a cold run (the first of a process also builds demandlib's BDEW tables), then the median of 3 warm
runs, where one profiled run spends its time (load and PV; appliance uses; battery dispatch), and the process's
peak RSS. The
comparison steps the same device models one object at a time (``Household.step`` per minute, the twin's path) for
a few homes and a day and scales that rate to the 100 x 7 case.

Run from the repository root: ``.venv/bin/python benchmarks/households.py``.
"""

from __future__ import annotations

import cProfile
import multiprocessing
import pstats
import resource
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

REPEAT = 3
CASES = {"100x7": (100, 7), "1000x1": (1000, 1)}
PARTS = {
    "meter_powers": "load + PV",
    "appliance_power": "appliance uses",
    "dispatch_batteries": "battery dispatch",
}


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_case(homes: int, days: int) -> dict[str, float]:
    """Time ``simulate_households`` on a generated community, in this (fresh) process."""
    from gridledger.devices.household import simulate_households
    from gridledger.profiles import generate_community

    imported_rss = _rss_mib()
    community = generate_community(homes, days, seed=0)
    start = time.perf_counter()
    simulate_households(community)
    cold = time.perf_counter() - start
    warm = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        data = simulate_households(community)
        warm.append(time.perf_counter() - start)

    profile = cProfile.Profile()
    profile.runcall(simulate_households, community)
    spent = {part: 0.0 for part in PARTS}
    for (_, _, function), (_, _, _, cumulative, _) in pstats.Stats(profile).stats.items():
        if function in spent:
            spent[function] += cumulative
    return {
        "cold": cold,
        "median": statistics.median(warm),
        "profiled": pstats.Stats(profile).total_tt,
        **spent,
        "home_minutes": data.net_w.size,
        "with_battery": sum(home.battery_wh > 0 for home in community.homes),
        "rss": _rss_mib(),
        "imported_rss": imported_rss,
    }


def per_object_rate(homes: int = 4, days: int = 1) -> float:
    """Home-minutes per second when each home's device objects are stepped minute by minute."""
    from gridledger.devices import households
    from gridledger.profiles import generate_community

    community = generate_community(homes, days, seed=1)
    models = households(community)
    index = community.index("1min")
    start = time.perf_counter()
    for model in models:
        for now in index:
            model.step(now, 60.0)
    return homes * len(index) / (time.perf_counter() - start)


def main() -> None:
    spawn = multiprocessing.get_context("spawn")
    results = {}
    for name, (homes, days) in CASES.items():
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
            results[name] = pool.submit(run_case, homes, days).result()
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        rate = pool.submit(per_object_rate).result()

    for name, r in results.items():
        homes, days = CASES[name]
        span = f"{homes} homes x {days} day{'s' if days > 1 else ''}"
        print(f"simulate_households: {span} at 1 min ({r['home_minutes']:,} home-minutes)")
        print(f"  cold (builds the BDEW tables): {r['cold']:.2f} s   warm, median of {REPEAT}: {r['median']:.2f} s")
        shares = ", ".join(f"{label} {100 * r[part] / r['profiled']:.0f} %" for part, label in PARTS.items())
        print(f"  where one run's time goes (cProfile, {r['with_battery']} batteries): {shares}")
        print(f"  peak RSS {r['rss']:.0f} MiB (after the imports: {r['imported_rss']:.0f} MiB)")
    per_object_100x7 = 100 * 7 * 1440 / rate
    print(f"per-object path (Household.step): {rate:,.0f} home-minutes/s, {per_object_100x7:.0f} s at 100x7")
    print()
    print(f"households_100x7_s = {results['100x7']['median']:.2f} s")
    print(f"households_1000x1_s = {results['1000x1']['median']:.2f} s")
    print(f"households_rss_mib = {max(r['rss'] for r in results.values()):.0f} MiB")
    print(f"households_per_object_100x7_estimate_s = {per_object_100x7:.0f} s")


if __name__ == "__main__":
    main()
