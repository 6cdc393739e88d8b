"""Peak RSS of a node that validates a chain holding 1,000,000 unspent outputs.

Builds a SQLite chain whose state holds 1,000,000 unspent outputs (meter issues of FA coins to many owners,
then transfers that split some of them), then starts a separate process that runs ``gridledger verify``:
it replays and re-validates every block into an in-memory ledger state and compares it with the stored state
tables. Peak RSS of that process (ru_maxrss of the child). Run: ``.venv/bin/python benchmarks/ledger_memory.py``.
"""

from __future__ import annotations

import resource
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

TARGET_UTXOS = 1_000_000
OUTPUTS_PER_ISSUE = 1_000
ISSUES_PER_BLOCK = 50
START = 1_767_225_600


def build(path: Path) -> int:
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
    n_issues = TARGET_UTXOS // OUTPUTS_PER_ISSUE
    k = 0
    for i in track(range(n_issues), description="building a chain with 1,000,000 unspent outputs"):
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


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "mem.sqlite"
        n = build(path)
        size_mib = path.stat().st_size / 2**20
        print(f"chain built: {n:,} unspent outputs, store {size_mib:.0f} MiB", file=sys.stderr)
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "gridledger", "verify", str(path)], capture_output=True, text=True)
        elapsed = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
        if proc.returncode != 0:
            sys.exit(f"verify failed: {proc.stdout}{proc.stderr}")
    rss_mib = max(peak, before) / 1024
    print(proc.stdout.strip())
    print(f"unspent outputs: {n:,}; verify (replay + compare with the stored state) took {elapsed:.1f} s")
    print(
        f"peak RSS of the verifying node: {rss_mib:.0f} MiB (target <= 1024 MiB); "
        f"{rss_mib * 2**20 / n:.0f} B per output"
    )
    print(f"ledger_memory_rss_mib = {rss_mib:.0f} MiB")


if __name__ == "__main__":
    main()
