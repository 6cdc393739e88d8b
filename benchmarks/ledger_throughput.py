"""Sustained validate-and-commit of signed transfers (1 input, 2 outputs) into SQLite, and the Ed25519 limit.

A builder makes a chain (DSO policy, meter issues of FA coins, then blocks of 1-in-2-out transfers, each signed
by the coin's owner) in memory; then a fresh node receives the blocks as bytes and, for each, decodes it,
validates every rule (signatures, ownership, unspent inputs, conservation) and commits it to its own SQLite
store, timed. In the same run, the raw Ed25519 verification rate of libsodium (PyNaCl) on all cores, and the
ratio of the two. Medians over repeated runs. On a machine shared with other work the load moves within a run,
so each block's rate is also divided by the all-core rate measured right after it (untimed), and the median of
those per-block ratios is printed beside the ratio of the medians.
Run: ``.venv/bin/python benchmarks/ledger_throughput.py``.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rich.progress import track

from gridledger.chain import Chain
from gridledger.ledger import crypto
from gridledger.ledger.assets import FA, Output, outpoint
from gridledger.ledger.block import Block, make_block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.dso_policy import MeterLimits
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.ledger.kinds.meter_issue import MeterIssue
from gridledger.ledger.kinds.transfer import Transfer
from gridledger.ledger.state import LedgerState
from gridledger.petra.dso import DSO
from gridledger.store.sqlite import SqliteStore

BLOCK_TXS = 1_000  # a realistic block: ~1 min of a 2,000-meter NAN's market and deposit traffic
BLOCKS = 40
REPEATS = 3
START = 1_767_225_600


def build_chain(n_blocks: int, block_txs: int) -> tuple[Genesis, KeyPair, list[bytes]]:
    """Genesis, proposer key, and the raw blocks 0..n (block 1: policy; 2: issues; then transfer blocks)."""
    dso_key, proposer = KeyPair.from_secret("bench-dso"), KeyPair.from_secret("bench-dc")
    genesis = Genesis("bench", 900, START, dso_key.public, (proposer.public,))
    g_block = make_block(genesis.chain_id, 0, bytes(32), START, (genesis,), proposer)
    state = LedgerState(g_block)
    raws = [g_block.encode()]
    t = START

    def seal(txs) -> None:
        nonlocal t
        t += 1
        b = make_block(genesis.chain_id, state.height + 1, state.tip_hash, t, tuple(txs), proposer)
        state.apply_block(b)
        raws.append(b.encode())

    meters = [KeyPair.from_secret(f"bench-meter-{i}") for i in range(4)]
    dso = DSO(dso_key, genesis.chain_id)
    seal(
        [
            dso.policy(
                0,
                prices=(100, 80),
                authorize={f"M{i}": k.public for i, k in enumerate(meters)},
                limits=[MeterLimits(f"M{i}", 10**6, 10**6, 10**15) for i in range(4)],
            )
        ]
    )
    owners = [KeyPair.from_secret(f"bench-owner-{i}") for i in range(256)]
    coins: list[tuple[bytes, int, KeyPair]] = []  # (outpoint, amount, owner)
    issues = []
    per_meter = block_txs // 4
    for i, m in enumerate(meters):
        outs = tuple(Output(FA(10**9), owners[(i * per_meter + j) % len(owners)].address) for j in range(per_meter))
        tx = MeterIssue(f"M{i}", 1, outs).signed(genesis.chain_id, m)
        issues.append(tx)
        coins += [(outpoint(tx.txid, j), 10**9, owners[(i * per_meter + j) % len(owners)]) for j in range(per_meter)]
    seal(issues)
    k = 0
    for _ in track(range(n_blocks), description="building signed transfer blocks", transient=True):
        txs, new = [], []
        for op, amount, owner in coins[:block_txs]:
            a, b = owners[k % len(owners)], owners[(k + 7) % len(owners)]
            k += 1
            pay = amount // 3
            tx = Transfer((op,), (Output(FA(pay), a.address), Output(FA(amount - pay), b.address)))
            tx = tx.signed(genesis.chain_id, {op: owner})
            txs.append(tx)
            new += [(outpoint(tx.txid, 0), pay, a), (outpoint(tx.txid, 1), amount - pay, b)]
        coins = coins[block_txs:] + new
        seal(txs)
    return genesis, proposer, raws


def run_node(
    genesis_raw: bytes, raws: list[bytes], path: Path, n_setup: int, paired: list[float] | None = None
) -> float:
    """Append blocks as a fresh node would; returns transfer tx/s over the transfer blocks.

    With ``paired``, each block's rate is divided by the all-core Ed25519 rate measured right after it (outside
    the timed part) and appended to it: on a shared machine the load changes within a run, and a pair of
    measurements 50 ms apart sees the same load more nearly than two runs seconds apart.
    """
    store = SqliteStore(path)
    g_block = Block.decode(genesis_raw)
    state = LedgerState(g_block)
    store.commit_block(
        0, g_block.hash, g_block.header.time, genesis_raw, state.finish_block(0, 0, g_block.hash, g_block.header.time)
    )
    chain = Chain(store, state, g_block)
    for raw in raws[1:n_setup]:
        chain.append(Block.decode(raw))
    n, elapsed = 0, 0.0
    for raw in raws[n_setup:]:
        t0 = time.perf_counter()
        block = Block.decode(raw)
        chain.append(block)
        took = time.perf_counter() - t0
        elapsed += took
        n += len(block.transactions)
        if paired is not None:
            paired.append(len(block.transactions) / took / ed25519_limit(len(block.transactions), one_core=False)[1])
    store.close()
    return n / elapsed


_VERIFY_ITEMS: list[tuple[bytes, bytes, bytes]] = []


def ed25519_limit(n: int = 40_000, *, one_core: bool = True) -> tuple[float, float]:
    """Raw verifications per second: one core (nan unless ``one_core``), and all cores (threads; libsodium releases
    the GIL)."""
    key = KeyPair.from_secret("bench-verify")
    while len(_VERIFY_ITEMS) < n:
        m = len(_VERIFY_ITEMS).to_bytes(32, "big")
        _VERIFY_ITEMS.append((key.public, m, key.sign(m)))
    items = _VERIFY_ITEMS[:n]
    one = float("nan")
    if one_core:
        t0 = time.perf_counter()
        assert crypto.verify_batch(items) == -1
        one = n / (time.perf_counter() - t0)
    workers = os.cpu_count() or 2
    size = -(-n // workers)
    with ThreadPoolExecutor(workers) as pool:
        t0 = time.perf_counter()
        assert all(r == -1 for r in pool.map(crypto.verify_batch, [items[i : i + size] for i in range(0, n, size)]))
        every = n / (time.perf_counter() - t0)
    return one, every


def main() -> None:
    print(f"building {BLOCKS} blocks of {BLOCK_TXS} transfers (1 input, 2 outputs) …", file=sys.stderr)
    _, _, raws = build_chain(BLOCKS, BLOCK_TXS)
    size = sum(len(r) for r in raws[3:]) / (BLOCKS * BLOCK_TXS)
    rates, limits_one, limits_all, paired = [], [], [], []
    for r in range(REPEATS):
        with tempfile.TemporaryDirectory() as d:
            rates.append(run_node(raws[0], raws, Path(d) / "node.sqlite", n_setup=3, paired=paired))
        one, every = ed25519_limit()
        limits_one.append(one)
        limits_all.append(every)
        print(
            f"run {r + 1}: {rates[-1]:,.0f} tx/s validated and committed; "
            f"Ed25519 {one:,.0f}/s (1 core), {every:,.0f}/s (all cores)"
        )
    tput, lim1, lim = statistics.median(rates), statistics.median(limits_one), statistics.median(limits_all)
    print()
    print(f"cores: {os.cpu_count()}, block size: {BLOCK_TXS} tx, mean transfer size: {size:.0f} B")
    print(f"median validate-and-commit throughput: {tput:,.0f} tx/s (target >= 10,000; Fabric reports ~3,500 tx/s)")
    print(f"median raw Ed25519 verification: {lim1:,.0f}/s on 1 core, {lim:,.0f}/s on all cores")
    print(f"throughput / all-core verification limit: {tput / lim:.2f}")
    print(
        f"per-block ratio, each block against the limit measured right after it: median {statistics.median(paired):.2f}"
        f" (quartiles {' / '.join(f'{q:.2f}' for q in statistics.quantiles(paired, n=4))}, {len(paired)} blocks)"
    )
    print(f"ledger_throughput = {tput:.0f} tx/s")
    print(f"ed25519_verify_all_cores = {lim:.0f} verifications/s")
    print(f"throughput_to_verify_limit = {tput / lim:.2f} ratio")
    print(f"ledger_throughput_ratio_paired = {statistics.median(paired):.2f} ratio (median per block)")
    print(f"load average during the run: {os.getloadavg()[0]:.2f} (1 min)")
    print(f"ledger_throughput_ratio = {tput / lim:.2f} ratio (target >= 0.7)")


if __name__ == "__main__":
    main()
