"""Peak RSS of a node that validates a chain holding 1,000,000 (and 10,000,000) unspent outputs.

Builds a SQLite chain whose state holds N unspent outputs (meter issues of 1,000 FA coins each to many owners),
then starts a separate process that runs ``gridledger verify``: it replays and re-validates every block into an
in-memory ledger state and compares it with the stored state tables, streaming the stored unspent outputs in
outpoint order (``Store.streaming_snapshot``) so that only the rebuilt state is held in memory. Peak RSS of that
process (ru_maxrss of the child), median of ``RUNS[N]`` verifications. Target: <= 512 MiB at 1 M.
Run: ``.venv/bin/python benchmarks/ledger_memory.py``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.progress import track

from gridledger.chain import Chain
from gridledger.ledger.assets import FA, Output
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.dso_policy import MeterLimits
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.ledger.kinds.meter_issue import MeterIssue
from gridledger.petra.dso import DSO
from gridledger.store.sqlite import SqliteStore

RUNS = {1_000_000: 3, 10_000_000: 1}  # unspent outputs: verifications (the RSS varies little between runs)
TARGET_MIB = 512
OUTPUTS_PER_ISSUE = 1_000
ISSUES_PER_BLOCK = 50
START = 1_767_225_600


def build(path: Path, target_utxos: int) -> int:
    dso_key, proposer = KeyPair.from_secret("mem-dso"), KeyPair.from_secret("mem-dc")
    genesis = Genesis("mem", 900, START, dso_key.public, (proposer.public,))
    store = SqliteStore(path)
    chain = Chain.create(store, genesis, proposer, START)
    meters = [KeyPair.from_secret(f"mem-meter-{i}") for i in range(20)]
    dso = DSO(dso_key, chain.chain_id)
    names = {f"M{i:02d}": k for i, k in enumerate(meters)}
    chain.submit(
        dso.policy(
            0,
            authorize={n: k.public for n, k in names.items()},
            limits=[MeterLimits(n, 10**6, 10**6, 10**15) for n in names],
            prices=(100, 80),
        )
    )
    t = START + 1
    chain.propose(proposer, t)
    owners = [KeyPair.from_secret(f"mem-owner-{i}").address for i in range(4096)]
    nonces = dict.fromkeys(names, 0)
    n_issues = target_utxos // OUTPUTS_PER_ISSUE
    k = 0
    for i in track(range(n_issues), description=f"building a chain with {target_utxos:,} unspent outputs"):
        name = f"M{i % len(meters):02d}"
        nonces[name] += 1
        outs = tuple(Output(FA(1 + (k + j) % 997), owners[(k + j) % len(owners)]) for j in range(OUTPUTS_PER_ISSUE))
        k += OUTPUTS_PER_ISSUE
        chain.submit(MeterIssue(name, nonces[name], outs).signed(chain.chain_id, names[name]))
        if (i + 1) % ISSUES_PER_BLOCK == 0 or i == n_issues - 1:
            t += 1
            res = chain.propose(proposer, t)
            assert not res.rejected, res.rejected
    n = len(chain.state.utxos)
    store.close()
    return n


def verify_rss(path: Path) -> tuple[float, float, str]:
    """(peak RSS MiB, seconds, output) of ``gridledger verify path`` in a fresh child process."""
    code = (
        "import resource, runpy, sys; sys.argv = ['gridledger', 'verify', sys.argv[1]]\n"
        "try:\n    runpy.run_module('gridledger', run_name='__main__')\n"
        "finally:\n    print('maxrss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)"
    )
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"verify failed: {proc.stdout}{proc.stderr}")
    kib = int(proc.stderr.split("maxrss_kib")[-1])
    return kib / 1024, elapsed, " ".join(proc.stdout.split())


def main() -> None:
    results = {}
    for target, runs in RUNS.items():
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "mem.sqlite"
            n = build(path, target)
            size_mib = path.stat().st_size / 2**20
            print(f"chain built: {n:,} unspent outputs, store {size_mib:.0f} MiB", file=sys.stderr)
            samples = [verify_rss(path) for _ in range(runs)]
        rss = statistics.median(s[0] for s in samples)
        secs = statistics.median(s[1] for s in samples)
        results[n] = rss
        print(samples[0][2])
        print(
            f"{n:>11,} unspent outputs: peak RSS of the verifying node {rss:.0f} MiB (median of {runs}; "
            f"{rss * 2**20 / n:.0f} B per output), verify {secs:.1f} s; load average {os.getloadavg()[0]:.2f}"
        )
    print(f"target: <= {TARGET_MIB} MiB at 1,000,000 unspent outputs")
    print(f"ledger_memory_rss_mib = {results[1_000_000]:.0f} MiB")
    print(f"ledger_memory_rss_10m_mib = {results[10_000_000]:.0f} MiB")


if __name__ == "__main__":
    main()
