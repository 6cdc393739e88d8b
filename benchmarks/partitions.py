"""Jepsen-style faults on a local network: acknowledged transactions lost and heights where nodes disagree.

Each scenario of ``tests/node/faults.py`` starts a local network (3-member etcd, primary and backup concentrators,
two meters, one process each; every node reaches etcd through its own fault proxies), submits DSO policies through
every node during the fault, heals, and checks: every acknowledged transaction committed exactly once, every node
the same block at every height, every node's store valid (``verify_store``). Faults (``FAULT_S`` seconds each,
``ROUNDS`` rounds): the leader partitioned from etcd; a validator (meter) partitioned; the leader's clock 5 min ahead
and the backup's 5 min behind, with a fail-over between them; the leader's store on a full tmpfs (root only).
Run: ``.venv/bin/python benchmarks/partitions.py`` (about 3-4 minutes).
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "node"))
from faults import Disk, run_scenario  # noqa: E402 - the tests' fault injector

FAULT_S = 10.0
ROUNDS = 2
SCENARIOS = ("leader_partition", "validator_partition", "clock_skew", "disk_full")


def main() -> None:
    logging.getLogger("gridledger").setLevel(logging.ERROR)
    lost = divergent = duplicated = invalid = acked = 0
    scenarios = [s for s in SCENARIOS if s != "disk_full" or Disk.available()]
    if len(scenarios) < len(SCENARIOS):
        print("disk_full skipped: needs root and tmpfs mounts")
    for rnd in range(ROUNDS):
        for name in scenarios:
            with tempfile.TemporaryDirectory() as d:
                t0 = time.monotonic()
                out = run_scenario(name, Path(d), FAULT_S)
            v = out.verdict
            lost += len(v.lost)
            divergent += len(v.divergent)
            duplicated += len(v.duplicated)
            invalid += len(v.invalid)
            acked += v.acked
            notes = ", ".join(f"{k} {x:.2f}" if isinstance(x, float) else f"{k} {x}" for k, x in out.notes.items())
            print(f"round {rnd + 1} {name:20s} {time.monotonic() - t0:5.1f} s: {v}; {notes}")
    print(f"acknowledged {acked}, duplicated {duplicated}, invalid stores {invalid}")
    print(f"partition_lost_tx = {lost} tx")
    print(f"partition_divergent_heights = {divergent} heights")


if __name__ == "__main__":
    main()
