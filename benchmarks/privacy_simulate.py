"""Privacy on the main job's own output: can an adversary link the bid store's orders to meters?

Runs ``gridledger simulate`` for real on generated communities of N = 20 homes on one feeder (one private market of
20 prosumers; BDEW load, pvlib PV, batteries; 2 days of 15-minute slots), then attacks what the adversary holds:
the bid store's records (``orders.parquet``: feeder, side, slot, power, limit price, slot posted), the trades the
store built (``trades.parquet``) and the DSO's view (``dso_feeder_slots``: per feeder per slot;
``dso_meter_periods``: per meter per billing period): the issue's adversary. A stronger one also holds a registry of
each home's PV size and yearly consumption (a DSO may know them from connection agreements); it is reported beside,
not in the headline. The order -> meter truth comes from a file only the benchmark asks for
(``RunParams(ground_truth=True)``).

Each adversary gives, for every order, a probability over the feeder's meters; its *accuracy* is the mean
probability it puts on the true meter (the hit rate of a guess drawn from it); *argmax* is the hit rate of always
guessing its most likely meter. Adversaries:

* *uniform*: 1/N, the baseline;
* *registry* (stronger adversary): an offer comes from a home with PV, with probability proportional to its kWp; a
  bid from any home, proportional to its yearly consumption;
* *period bills*: the DSO's per-meter period energy (net, W.s): offers weighted by how far below the feeder
  median a meter's net energy is, bids by how far above;
* *registry + bills* (stronger adversary): the period-bill weights of offers times the home's kWp.

Target (issue): the best adversary's accuracy at most 1/N + 0.05 for N >= 20. Ends with ``linking_excess_n20``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from gridledger.profiles.community import generate_community
from gridledger.sim.run import RunParams, run_community

N, DAYS, SEEDS = 20, 2, (0, 1, 2)


def _normalized(w: np.ndarray) -> np.ndarray:
    w = np.clip(w, 0, None) + 1e-12
    return w / w.sum()


def attack(out: Path, community) -> dict[str, tuple[float, float]]:
    """Each adversary's (accuracy, argmax hit rate) over every order of the run in ``out``."""
    orders = pd.read_parquet(out / "orders.parquet")
    truth = pd.read_parquet(out / "ground_truth_orders.parquet").set_index("order_id")["meter"]
    periods = pd.read_parquet(out / "dso_meter_periods.parquet").groupby("meter")["energy_ws"].sum()
    homes = sorted(community.homes, key=lambda h: h.id)
    ids = [h.id for h in homes]
    pv = np.array([h.pv_kw for h in homes], dtype=float)
    annual = np.array([h.annual_kwh for h in homes], dtype=float)
    net = np.array([periods.get(i, 0) for i in ids], dtype=float)
    spread = net - np.median(net)
    priors = {
        "uniform": (np.full(len(ids), 1 / len(ids)), np.full(len(ids), 1 / len(ids))),
        "period bills": (_normalized(-spread), _normalized(spread)),
        "registry": (_normalized(pv), _normalized(annual)),
        "registry+bills": (_normalized(pv * np.clip(-spread, 0, None) + pv * 1e-3), _normalized(spread)),
    }
    where = {m: k for k, m in enumerate(ids)}
    rows = [(where[truth[o]], side == "offer") for o, side in zip(orders.order_id, orders.side, strict=True)]
    result = {}
    for name, (offer_p, bid_p) in priors.items():
        probs = [(offer_p if is_offer else bid_p) for _, is_offer in rows]
        accuracy = float(np.mean([p[k] for p, (k, _) in zip(probs, rows, strict=True)]))
        hits = float(np.mean([int(np.argmax(p)) == k for p, (k, _) in zip(probs, rows, strict=True)]))
        result[name] = (accuracy, hits)
    return result


def main() -> None:
    print(f"load average at start: {os.getloadavg()[0]:.2f}; N = {N} homes on one feeder, {DAYS} days, seeds {SEEDS}")
    scores: dict[str, list[tuple[float, float]]] = {}
    for seed in SEEDS:
        community = generate_community(N, DAYS, seed, feeders=1)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run"
            summary = run_community(community, out, params=RunParams(seed=seed, ground_truth=True))
            result = attack(out, community)
        print(f"seed {seed}: {summary['trades']} trades; " + ", ".join(f"{k} {a:.3f}" for k, (a, _) in result.items()))
        for name, r in result.items():
            scores.setdefault(name, []).append(r)
    print(f"{'adversary':<14} {'accuracy':>9} {'argmax':>7}   (1/N = {1 / N:.3f}, target <= {1 / N + 0.05:.3f})")
    best, stronger = 0.0, 0.0
    for name, rs in scores.items():
        accuracy, hits = float(np.median([a for a, _ in rs])), float(np.median([h for _, h in rs]))
        if name.startswith("registry"):
            stronger = max(stronger, accuracy, hits)
        else:
            best = max(best, accuracy, hits)
        print(f"{name:<14} {accuracy:>9.3f} {hits:>7.3f}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    print(f"linking_excess_n20_with_registry = {stronger - 1 / N:.3f}")
    print(f"linking_best_n20 = {best:.3f}")
    print(f"linking_excess_n20 = {best - 1 / N:.3f}")


if __name__ == "__main__":
    main()
