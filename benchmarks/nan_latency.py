"""Submit-to-commit latency and throughput of one NAN chain under PoEf, in real time.

A NAN of N smart meters (real Ed25519 keys, each reading AES-GCM encrypted and signed by its meter) and one data
concentrator (coordinator, SQLite store on disk with synchronous commits). Every meter reports the minute that
just ended once a minute, at its own random second (so N/60 readings arrive per second). The concentrator cuts a
block as soon as the previous round is over and a reading is pending, at most one per ``MIN_INTERVAL_S``
(:class:`~gridledger.consensus.poef.Cadence`; it used to cut one every 0.75 s, which readings spent mostly waiting
for); the block's committee (the NAN rule set's ``committee_size`` meters, drawn by the
sortition rule) validates it — each member re-runs every ledger rule, opens the readings disclosed to it and re-runs the
plausibility check itself; the meters' validators share one process and one replica of the chain, but none
skips a check because another made it — and the block commits with its quorum certificate on the concentrator's
store and on the meters' replica (each re-validates it). 0.5 % of readings are spikes, so alarms are raised.

Latency: from the moment a meter sends a reading (its scheduled second) to the moment the concentrator commits the
block holding it with its certificate (the meters' replica appends it right after, before the next round). The
paper's PoEf round took about 60 s in the NAN and 90 s in the FAN/WAN (Olivares-Rojas et al. 2023, §4.4).
The load average is printed before and after each size: the machine may be shared.
Run: ``.venv/bin/python benchmarks/nan_latency.py`` (about 5 minutes on an idle machine).
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.progress import track

from gridledger.consensus.poef import Cadence
from gridledger.ledger.committee import quorum
from gridledger.ledger.kinds.alarm import Alarm
from gridledger.ledger.kinds.reading import Reading, ReadingValues
from gridledger.ledger.ruleset import Tier, tier_ruleset
from gridledger.tiers.hierarchy import build_neighbourhood, simulated_minute

SIZES = (2_000, 10_000, 20_000)
RUN_S = {2_000: 60, 10_000: 30, 20_000: 30}
#: The least time between two cuts (s); a full block is cut at once.
MIN_INTERVAL_S = 0.2
SPIKE_SHARE = 0.005
#: Minutes of readings committed before the timed run, so that the plausibility check has a history.
WARM_UP_MINUTES = 3


class Meters:
    """The meters' behaviour: each sends at its own second of the minute and draws around its own base load."""

    def __init__(self, node, seed: int) -> None:
        self.node = node
        self.rng = random.Random(seed)
        self.profile = {m.ident: (self.rng.uniform(0, 60), self.rng.randint(3, 40)) for m in node.members.values()}

    def reading(self, member, minute: int) -> Reading:
        wh = simulated_minute(self.rng, self.profile[member.ident][1]) * (8 if self.rng.random() < SPIKE_SHARE else 1)
        return member.device.reading(minute, ReadingValues(wh, 0))

    def warm_up(self, minutes: range) -> None:
        """Commit ``minutes`` of every meter's readings quickly, so the plausibility check has a history."""
        for minute in track(minutes, description="history (not timed)", transient=True):
            for member in self.node.members.values():
                self.node.coordinator.submit(self.reading(member, minute))
            while self.node.coordinator.pending:
                if self.node.round(int(time.time())).committed is None:
                    raise RuntimeError("a warm-up round failed")

    def sent_between(self, start_time: int, begin: float, end: float) -> list[tuple[float, Reading]]:
        """Every meter's signed readings sent in [begin, end): (send time, reading), by send time."""
        out = []
        for member in track(list(self.node.members.values()), description="meters sign readings", transient=True):
            phase = self.profile[member.ident][0]
            minute = int((begin - start_time) // 60) - 1
            while (sent := start_time + 60 * (minute + 1) + phase) < end:
                if sent >= begin:
                    out.append((sent, self.reading(member, minute)))
                minute += 1
        return sorted(out, key=lambda e: e[0])


def run(n: int, seconds: float, directory: Path) -> dict:
    start_time = int(time.time()) // 60 * 60 - 3_600
    node = build_neighbourhood(n, directory=directory, start_time=start_time, time=int(time.time()))
    meters = Meters(node, seed=n)
    first = int((time.time() - start_time) // 60)
    meters.warm_up(range(first - WARM_UP_MINUTES - 2, first - 2))
    begin = time.time() + 3 + n / 2_000
    events = meters.sent_between(start_time, begin, begin + seconds)
    latencies: list[float] = []
    rounds: list[tuple[float, int]] = []
    sent_at: dict[bytes, float] = {}
    cadence = Cadence(MIN_INTERVAL_S, node.coordinator.max_txs)
    i, last_commit = 0, begin
    while time.time() < begin:
        time.sleep(0.01)
    while i < len(events) or node.coordinator.pending or node.coordinator.in_flight:
        now = time.time()
        while i < len(events) and events[i][0] <= now:
            sent, tx = events[i]
            sent_at[tx.txid] = sent
            node.coordinator.submit(tx)
            i += 1
        if cadence.due(now, len(node.coordinator.pending)) or i >= len(events):  # rounds run one at a time here
            cadence.cut(now)
            t0 = time.perf_counter()
            result = node.round(int(now))
            if result.committed is not None:
                last_commit = result.committed_at
                committed = [tx for tx in result.committed.transactions if tx.txid in sent_at]
                latencies += [last_commit - sent_at.pop(tx.txid) for tx in committed]
                rounds.append((time.perf_counter() - t0, len(committed)))
            elif result.block is not None:
                raise RuntimeError(f"round failed: {result.failure}")
            continue
        wake = cadence.next_at() if node.coordinator.pending else events[i][0]
        time.sleep(max(0.0, min(events[i][0], wake) - now))
    alarms = sum(isinstance(tx, Alarm) for b in node.coordinator.chain.blocks(2) for tx in b.transactions)
    span = last_commit - begin
    node.close()
    lat = np.array(latencies)
    return {
        "n": n,
        "readings": len(lat),
        "p50": float(np.percentile(lat, 50)),
        "p90": float(np.percentile(lat, 90)),
        "p99": float(np.percentile(lat, 99)),
        "max": float(lat.max()),
        "throughput": len(lat) / span,
        "offered": n / 60,
        "round_median_ms": 1_000 * statistics.median(r for r, _ in rounds),
        "round_p99_ms": 1_000 * float(np.percentile([r for r, _ in rounds], 99)),
        "block_median": statistics.median(k for _, k in rounds),
        "alarms": alarms,
    }


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    k = tier_ruleset(Tier.NAN).committee_size
    print(
        f"NAN under PoEf: committee {k} meters per block (quorum {quorum(k)}), a block as soon as the previous "
        f"round is over and a reading waits, at most one per {MIN_INTERVAL_S} s (target p99 <= 0.5 s at 10,000)"
    )
    results = []
    for n in SIZES:
        before = load()
        with tempfile.TemporaryDirectory(prefix="nan-latency-") as tmp:
            r = run(n, RUN_S[n], Path(tmp))
        results.append(r)
        print(
            f"{n:>6} meters: {r['readings']:>6} readings, latency p50 {r['p50']:.3f} s, p90 {r['p90']:.3f} s, "
            f"p99 {r['p99']:.3f} s, max {r['max']:.3f} s; {r['throughput']:.1f} readings/s committed of "
            f"{r['offered']:.1f}/s offered; round median {r['round_median_ms']:.0f} ms, p99 {r['round_p99_ms']:.0f} ms "
            f"for {r['block_median']:.0f} readings (median); {r['alarms']} alarms ({before}; after: {load()})"
        )
    print("paper: PoEf round ≈ 60 s in the NAN, ≈ 90 s in the FAN/WAN (Olivares-Rojas et al. 2023, §4.4)")
    by_n = {r["n"]: r for r in results}
    print(f"nan_latency_p99_s_2000 = {by_n[2_000]['p99']:.3f} s")
    print(f"nan_latency_p99_s_20000 = {by_n[20_000]['p99']:.3f} s")
    print(f"nan_latency_p50_s = {by_n[10_000]['p50']:.3f} s")
    print(f"nan_throughput = {by_n[10_000]['throughput']:.1f} readings/s")
    print(f"nan_latency_p99_s = {by_n[10_000]['p99']:.3f} s")


if __name__ == "__main__":
    main()
