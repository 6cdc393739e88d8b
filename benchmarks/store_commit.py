"""Block commit latency and whole-chain verification on the SQLite and the PostgreSQL store.

The store workload (``workload``: per block one meter issue, 8 transfers spending earlier
outputs into 32 new ones, an EPA split, a DSO policy every 16 blocks; about 170 rows written per block)
builds a chain once; its exact ``commit_block`` calls (height, hash, time, raw block, state changes) are
recorded, then replayed into a fresh store of each kind, each call timed: the cost of the store alone, one
durable transaction per block (SQLite: WAL, synchronous=FULL; PostgreSQL 15 on loopback, default fsync).
Then ``verify_store`` re-validates the whole stored chain from each store. Medians over repeated runs.
The PostgreSQL server is a throwaway one started here (Debian's ``postgresql`` package must be installed).
Run: ``.venv/bin/python benchmarks/store_commit.py``.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path

from rich.progress import track

from gridledger.chain import verify_store
from gridledger.store import open_store
from gridledger.store.pgserver import PgServer
from gridledger.store.sqlite import SqliteStore
from workload import Workload

BLOCKS = 200
REPEATS = 3
SIZES = {"txs_per_block": 8, "outputs_per_tx": 32}


def record_chain(folder: Path) -> list[tuple]:
    """The commit_block calls of a workload chain: genesis, the first policy, then ``BLOCKS`` blocks."""
    store = SqliteStore(folder / "build.sqlite")
    calls = []
    commit = store.commit_block

    def recording(*args) -> None:
        calls.append(args)
        commit(*args)

    store.commit_block = recording
    work = Workload.start(store, random.Random(1), **SIZES)
    for _ in track(range(BLOCKS), description="building the workload chain", transient=True):
        work.step()
    store.close()
    return calls


def rows(ch) -> int:
    return 1 + len(ch.utxo_spent) + len(ch.utxo_added) + len(ch.issued) + len(ch.fa_issued) + len(ch.nonces)


def replay(url: str, calls: list[tuple]) -> tuple[list[float], float]:
    """Commit the recorded blocks into the empty store at ``url``; seconds per block, and to verify."""
    store = open_store(url)
    times = []
    for args in calls:
        t0 = time.perf_counter()
        store.commit_block(*args)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    assert verify_store(store).height == len(calls) - 1
    verify = time.perf_counter() - t0
    store.close()
    return times, verify


def main() -> None:
    with tempfile.TemporaryDirectory() as d, PgServer.start() as pg:
        calls = record_chain(Path(d))
        per_block_rows = statistics.mean(rows(c[4]) for c in calls[2:])
        print(f"{len(calls)} blocks, {per_block_rows:.0f} rows written per workload block on average")
        results: dict[str, tuple[list[float], list[float]]] = {"sqlite": ([], []), "postgres": ([], [])}
        for r in range(REPEATS):
            for kind in results:
                url = str(Path(d) / f"run{r}.sqlite") if kind == "sqlite" else pg.create_database(f"run{r}")
                times, verify = replay(url, calls)
                results[kind][0].append(statistics.median(times[2:]))
                results[kind][1].append(len(calls) / verify)
                print(
                    f"run {r + 1} {kind:8}: median commit {results[kind][0][-1] * 1e3:.2f} ms/block, "
                    f"verify {results[kind][1][-1]:.0f} blocks/s"
                )
    commit = {k: statistics.median(v[0]) for k, v in results.items()}
    verify = {k: statistics.median(v[1]) for k, v in results.items()}
    print()
    for kind in results:
        rate = per_block_rows / commit[kind]
        print(
            f"{kind:8}: median commit {commit[kind] * 1e3:.2f} ms/block ({rate:,.0f} rows/s), "
            f"median whole-chain verify {verify[kind]:.0f} blocks/s"
        )
    print(f"PostgreSQL / SQLite commit latency: {commit['postgres'] / commit['sqlite']:.2f}")
    print(f"sqlite_commit_ms = {commit['sqlite'] * 1e3:.2f} ms")
    print(f"postgres_commit_ms = {commit['postgres'] * 1e3:.2f} ms")
    print(f"sqlite_verify = {verify['sqlite']:.0f} blocks/s")
    print(f"postgres_verify = {verify['postgres']:.0f} blocks/s")
    print(f"postgres_to_sqlite_commit_latency = {commit['postgres'] / commit['sqlite']:.2f} ratio")


if __name__ == "__main__":
    main()
