"""Benchmark: market clearing of 1,000, 10,000 and 100,000 orders over 96 slots and 10 feeders.

Seeded random instances (about half offers, half bids): each order covers 1-16 consecutive 15-min slots
at 100-5,000 W; offers ask 5-35, bids pay 15-45 minor units per kWh. Every feeder's internal capacity
is 30-80 % and its external capacity 10-50 % of the mean power its offers bring to one slot, so the
limits bind in many slots. Prints, per size, the median wall time of both mechanisms and their welfare,
and the number of slots the LP had to solve with the exact pairwise fallback.
Run from the repository root: ``.venv/bin/python benchmarks/clearing.py``.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from gridledger.market import Feeder, Order, Side, clear, verify_matches

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


def timed(orders, feeders, mechanism: str, runs: int):
    times, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = clear(orders, feeders, mechanism)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    headline = {}
    for n, runs in ((1_000, 5), (10_000, 5), (100_000, 1)):
        orders, feeders = instance(n)
        welfare = {}
        for mechanism in ("lp", "auction"):
            count = runs if mechanism == "lp" else 1
            seconds, result = timed(orders, feeders, mechanism, count)
            if n <= 10_000:
                assert verify_matches(orders, feeders, result.matches) == result.surplus
            welfare[mechanism] = result.welfare
            headline[n, mechanism] = seconds
            print(
                f"{n:>7} orders  {mechanism:<7}  median {seconds:7.3f} s of {count} run(s)  "
                f"welfare {float(result.welfare):13.2f} minor units  {len(result.power_w):7} matches  "
                f"{float(result.energy_wh) / 1000:9.1f} kWh"
            )
        gain = float(welfare["lp"] / welfare["auction"] - 1) * 100 if welfare["auction"] else 0.0
        print(f"{n:>7} orders  LP welfare {gain:+.3f} % over the greedy auction")
    for n in (1_000, 10_000, 100_000):
        print(f"clearing_auction_{n}_s = {headline[n, 'auction']:.3f} s")
    for n in (1_000, 100_000):
        print(f"clearing_{n}_s = {headline[n, 'lp']:.3f} s")
    print(f"clearing_10000_s = {headline[10_000, 'lp']:.3f} s")


if __name__ == "__main__":
    main()
