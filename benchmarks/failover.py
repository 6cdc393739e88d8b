"""Coordinator fail-over: time from SIGKILL of the leading coordinator to the next committed block, 20 kills.

A local network (3-member etcd, primary and backup concentrators, two meters, one process each) takes a steady
stream of DSO transactions through a meter's API. Twenty times: find the leader, SIGKILL it, time until a block
proposed by the backup and made final after the kill (its etcd create revision is above the one read just before
the kill; a block of the dead leader that lands a moment later does not count) is on a meter's chain, and on the
way until the backup says it leads (the detection and takeover part); restart the killed coordinator and let it
catch up. At the end every submitted transaction is checked to be committed, and every node to hold the same chain
(zero lost, checked not assumed). The load average is printed before and after: the machine may be shared. The
network and the stream are those of ``poef_failover.py`` (coordinator-only).
Run: ``.venv/bin/python benchmarks/failover.py``.
"""

from __future__ import annotations

import os
import signal
import statistics
import tempfile
import threading
import time
from pathlib import Path

from rich.progress import track

from gridledger.node import cluster
from gridledger.node.etcd import ELECTION_MS
from gridledger.node.ordering import LEADER_BEAT_S, LEADER_TIMEOUT_S
from poef_failover import COORDINATORS, Network, policy_stream  # same directory: the PoEf variant's harness

KILLS = 20


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    print(f"before: {load()}")
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        # the benchmark polls hard; plain HTTP keeps its figures comparable with earlier runs
        cluster.up(folder, meters=2, concentrators=1, rate_limit=(100_000, 100_000), insecure=True)
        try:
            run(folder)
        finally:
            cluster.down(folder)


def run(folder: Path) -> None:
    net = Network(folder, poef=False)
    stop = threading.Event()
    feeder = threading.Thread(target=policy_stream, args=(net, stop))
    feeder.start()
    times, takeovers = [], []
    try:
        while net.height("MI1") < 3:
            time.sleep(0.05)
        for _ in track(range(KILLS), description="killing the leading coordinator"):
            lead = net.leader()
            other = COORDINATORS[1 - COORDINATORS.index(lead)]
            h0 = net.height(other)
            pid = next(n["pid"] for n in net.state["nodes"] if n["id"] == lead)
            rev0 = net.revision()
            t0 = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            took = final = None
            dead = net.key_of(lead)
            while final is None or net.height("MI1") < final:
                if took is None and net.leads(other):
                    took = time.monotonic() - t0
                if final is None:
                    final = net.final_after(rev0, h0 + 1, dead)
                time.sleep(0.005)
            times.append(time.monotonic() - t0)
            takeovers.append(took if took is not None else times[-1])
            cluster.restart(folder, lead)
            target = net.height(other)
            while net.height(lead) < target:
                time.sleep(0.05)
    finally:
        stop.set()
        feeder.join()
    # zero lost: every submitted transaction committed, and every node on the same chain
    meter = net.clients["MI1"]
    deadline = time.monotonic() + 60
    pending = list(net.submitted)
    while pending and time.monotonic() < deadline:
        pending = [t for t in pending if meter.tx_status(t)["status"] != "committed"]
        time.sleep(0.1)
    tip = lambda i: (net.height(i), net.clients[i].status()["tip"])  # noqa: E731
    while time.monotonic() < deadline and len({tip(i) for i in net.urls}) > 1:
        time.sleep(0.1)
    tips = {i: tip(i) for i in net.urls}
    times.sort()
    p99 = times[min(len(times) - 1, int(round(0.99 * (len(times) - 1))))]
    print(f"kills: {len(times)}; transactions submitted: {len(net.submitted)}; final height: {net.height('MI1')}")
    print(f"leader changes in the chain: {net.leader_changes()} ({len(times)} kills; more are spurious take-overs)")
    print(
        f"of which SIGKILL → the backup says it leads: median {statistics.median(takeovers):.2f} s, "
        f"max {max(takeovers):.2f} s (leader timeout {LEADER_TIMEOUT_S} s, renewals every {LEADER_BEAT_S} s)"
    )
    print(
        f"fail-over (SIGKILL → a block made final after the kill is on a meter's chain): median "
        f"{statistics.median(times):.2f} s, p99 {p99:.2f} s, max {times[-1]:.2f} s (target p99 <= 1 s; "
        f"etcd election {ELECTION_MS} ms); all, sorted: {' '.join(f'{t:.2f}' for t in times)}"
    )
    print(f"after: {load()}")
    print(f"committed transactions lost: {len(pending)} (checked: each submitted txid looked up on a meter)")
    print(f"nodes agreeing on the final tip: {len(set(tips.values())) == 1}")
    print(f"failover_lost_tx = {len(pending)} tx")
    print(f"failover_median_s = {statistics.median(times):.2f} s")
    print(f"failover_p99_s = {p99:.2f} s")


if __name__ == "__main__":
    main()
