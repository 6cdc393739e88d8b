"""Benchmark: market clearing of 1,000, 10,000 and 100,000 orders over 96 slots and 10 feeders.

Seeded random instances (about half offers, half bids): each order covers 1-16 consecutive 15-min slots
at 100-5,000 W; offers ask 5-35, bids pay 15-45 minor units per kWh. Every feeder's internal capacity
is 30-80 % and its external capacity 10-50 % of the mean power its offers bring to one slot, so the
limits bind in many slots. Prints, per size and mechanism, the median wall time of ``RUNS`` calls of
``clear`` (building the book, clearing and pricing) with the 1-minute load average before and after, the
welfare, and the figures measured before the vectorized auction and LP (``BEFORE``).
Run from the repository root: ``.venv/bin/python benchmarks/clearing.py``.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np

from gridledger.market import Feeder, Order, Side, clear, verify_matches
from gridledger.market.clearing import ClearingResult

SLOTS, FEEDERS, MAX_LENGTH = 96, 10, 16


def instance(n: int, seed: int = 1) -> tuple[list[Order], dict[str, Feeder]]:
    """``n`` seeded random orders and the feeders' limits."""
    rng = np.random.default_rng(seed)
    length = rng.integers(1, MAX_LENGTH + 1, n)
    start = rng.integers(0, SLOTS - length + 1)
    offer = rng.random(n) < 0.5
    price = np.where(offer, rng.integers(5, 36, n), rng.integers(15, 46, n))
    power = rng.integers(100, 5001, n)
    feeder = rng.integers(0, FEEDERS, n)
    orders = [
        Order(
            f"o{i}",
            Side.OFFER if offer[i] else Side.BID,
            f"F{feeder[i]}",
            int(start[i]),
            int(start[i] + length[i]),
            int(power[i]),
            int(price[i]),
        )
        for i in range(n)
    ]
    mean_offer_power = n / 2 / FEEDERS * (MAX_LENGTH + 1) / 2 / SLOTS * 2550
    feeders = {
        f"F{f}": Feeder(
            int(mean_offer_power * rng.uniform(0.3, 0.8)), int(mean_offer_power * rng.uniform(0.1, 0.5))
        )
        for f in range(FEEDERS)
    }
    return orders, feeders


#: Seconds per ``clear`` call at commit dd1cfd4 (row-by-row auction loop), this benchmark's instances,
#: same machine, load average 0.8-1.3: LP median of 5 runs, auction 1 run (100,000: 1 run each).
BEFORE = {
    (1_000, "lp"): 0.121,
    (1_000, "auction"): 0.143,
    (10_000, "lp"): 0.167,
    (10_000, "auction"): 1.219,
    (100_000, "lp"): 0.929,
    (100_000, "auction"): 14.163,
}
RUNS = 5


def timed(orders, feeders, mechanism: str) -> tuple[float, float, tuple[float, float], ClearingResult]:
    """Median wall and CPU time (s) of ``RUNS`` clearings, the 1-min load average before and after, the result.

    The CPU time of this process is less sensitive than wall time to other jobs on a shared machine.
    """
    wall, cpu, result = [], [], None
    load_before = os.getloadavg()[0]
    for _ in range(RUNS):
        w0, c0 = time.perf_counter(), time.process_time()
        result = clear(orders, feeders, mechanism)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu), (load_before, os.getloadavg()[0]), result


def main() -> None:
    headline = {}
    for n in (1_000, 10_000, 100_000):
        orders, feeders = instance(n)
        welfare = {}
        for mechanism in ("lp", "auction"):
            seconds, cpu, (load0, load1), result = timed(orders, feeders, mechanism)
            if n <= 10_000:
                assert verify_matches(orders, feeders, result.matches) == result.surplus
            welfare[mechanism] = result.welfare
            headline[n, mechanism] = seconds
            print(
                f"{n:>7} orders  {mechanism:<7}  median {seconds:6.3f} s (cpu {cpu:6.3f} s) of {RUNS} runs"
                f"  load {load0:4.1f}-{load1:4.1f}  (before: {BEFORE[n, mechanism]:6.3f} s)"
                f"  welfare {float(result.welfare):11.2f} minor units"
                f"  {len(result.power_w):6} matches  {float(result.energy_wh) / 1000:8.1f} kWh"
            )
        gain = float(welfare["lp"] / welfare["auction"] - 1) * 100 if welfare["auction"] else 0.0
        print(f"{n:>7} orders  LP welfare {gain:+.3f} % over the greedy auction")
    for n in (1_000, 10_000):
        print(f"clearing_{n}_s = {headline[n, 'lp']:.3f} s")
        print(f"clearing_auction_{n}_s = {headline[n, 'auction']:.3f} s")
    print(f"clearing_100000_s = {headline[100_000, 'lp']:.3f} s")
    print(f"clearing_auction_100000_s = {headline[100_000, 'auction']:.3f} s")


if __name__ == "__main__":
    main()
