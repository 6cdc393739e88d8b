"""Hardening of the node edges: recovery from a junk ordering-log entry, and an API under a flood of event streams.

* ``junk_log_recovery_s`` — a leading coordinator and a meter node (sequencer threads on a real 3-member etcd
  cluster). Each trial writes junk bytes under the next block's key, submits a transaction, and times until the meter
  has committed a block at that height (the leader voids the entry and proposes the height again). Median of
  ``JUNK_TRIALS``; the maximum is printed too.
* ``stream_flood_other_p99_s`` — one node serving its API (uvicorn, own process) while ``STREAMS`` ``/v1/stream``
  connections are open (another process, 16 per calling node, every stream drained) and blocks are committed; a
  third node's ``GET /v1/status`` latency, p99 of ``PROBES`` requests.

Run: ``.venv/bin/python benchmarks/hardening.py``.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import os
import statistics
import tempfile
import threading
import time
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import uvicorn

from gridledger.chain import Chain
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.node.auth import NodeRegistry, RateLimiter, sign_headers
from gridledger.node.etcd import EtcdCluster
from gridledger.node.netutil import free_port, wait_port
from gridledger.node.ordering import EtcdOrderer, InProcessOrderer
from gridledger.node.sequencer import Sequencer
from gridledger.node.service import MAX_STREAMS_PER_CALLER, NodeService
from gridledger.petra.dso import DSO
from gridledger.store.sqlite import SqliteStore

JUNK_TRIALS = 10
STREAMS = 500
PROBES = 300
START = 1_767_225_600
DSO_KEY, C1 = KeyPair.from_secret("bench-dso"), KeyPair.from_secret("bench-coordinator")
GENESIS = Genesis("nan-bench", 900, START, DSO_KEY.public, (C1.public,))
CALLERS = {f"N{i}": KeyPair.from_secret(f"bench-node-{i}") for i in range(STREAMS // MAX_STREAMS_PER_CALLER + 2)}
PROBE = "N0"  # the other node, measured; never opens a stream


def policy(dso: DSO, k: int):
    """A fresh valid DSO transaction (a price policy for a slot ahead of the chain's)."""
    return dso.policy((int(time.time()) - START) // 900 + 10 + k, prices=(100 + k % 50, 80))


def junk_log_recovery(folder: Path) -> list[float]:
    with EtcdCluster(3, base_dir=folder / "etcd") as etcd:
        chains = [Chain.create(SqliteStore(folder / f"{n}.sqlite"), GENESIS, C1, START) for n in ("dc", "meter")]
        chain_id = chains[0].chain_id
        orderers = [EtcdOrderer(etcd.endpoints, chain_id) for _ in chains]
        seqs = [Sequencer(chains[0], orderers[0], "DC1", C1), Sequencer(chains[1], orderers[1], "MI1")]
        stop = threading.Event()
        threads = [threading.Thread(target=s.run, args=(stop,), daemon=True) for s in seqs]
        for t in threads:
            t.start()
        dso, meter, times = DSO(DSO_KEY, chain_id), chains[1], []
        try:
            for k in range(JUNK_TRIALS):
                height = meter.height + 1
                t0 = time.perf_counter()
                if not orderers[1].publish(height, b"\x07junk " + os.urandom(16)):
                    raise RuntimeError(f"height {height} was taken before the junk entry")
                tx = policy(dso, k)
                orderers[1].submit(tx.txid, tx.encode())
                while meter.height < height:
                    if time.perf_counter() - t0 > 30:
                        raise RuntimeError(f"the chain did not resume after the junk entry at height {height}")
                    time.sleep(0.002)
                times.append(time.perf_counter() - t0)
            assert seqs[0].entries_rejected == JUNK_TRIALS and all(
                t.is_alive() for t in threads
            )  # checked, not assumed
        finally:
            stop.set()
            for t in threads:
                t.join(10)
            for o in orderers:
                o.close()
        return times


def serve_node(folder: str, port: int) -> None:
    """The measured node (own process): a coordinator on an in-process orderer, every bench caller registered."""
    chain = Chain.create(SqliteStore(Path(folder) / "api.sqlite"), GENESIS, C1, START)
    orderer = InProcessOrderer()
    registry = NodeRegistry()
    for name, key in CALLERS.items():
        registry.register(name, "meter", key.public)
    limits = RateLimiter(100_000, 100_000)  # one loopback address: the benchmark is not about rate limits
    service = NodeService(
        "DC1",
        "concentrator",
        chain,
        orderer,
        Sequencer(chain, orderer, "DC1", C1),
        registry,
        limits,
        peer_limiter=RateLimiter(100_000, 100_000),
    )
    service.start()
    uvicorn.run(service.app, host="127.0.0.1", port=port, log_level="warning")


def flood_streams(url: str, opened: mp.Event, done: mp.Event) -> None:
    """Open ``STREAMS`` event streams (another process) and drain them until ``done``."""

    async def run() -> None:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http, AsyncExitStack() as stack:
            path, tasks = "/v1/stream?start=0", []
            callers = [c for c in CALLERS if c != PROBE]
            for i in range(STREAMS):
                name = callers[i // MAX_STREAMS_PER_CALLER]
                r = await stack.enter_async_context(
                    http.stream("GET", path, headers=sign_headers(CALLERS[name], name, "GET", path))
                )
                if r.status_code != 200:
                    raise RuntimeError(f"stream {i} refused: {r.status_code}")
                tasks.append(asyncio.ensure_future(_drain(r)))
            opened.set()
            while not done.is_set():
                await asyncio.sleep(0.1)
            for t in tasks:
                t.cancel()

    asyncio.run(run())


async def _drain(response: httpx.Response) -> None:
    async for _ in response.aiter_raw():
        pass


def stream_flood(folder: Path) -> list[float]:
    ctx = mp.get_context("spawn")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = ctx.Process(target=serve_node, args=(str(folder), port), daemon=True)
    server.start()
    opened, done = ctx.Event(), ctx.Event()
    flood = None
    try:
        wait_port(port, 60)
        flood = ctx.Process(target=flood_streams, args=(url, opened, done), daemon=True)
        flood.start()
        if not opened.wait(120):
            raise RuntimeError("the streams did not open")
        http = httpx.Client(base_url=url, timeout=10)
        key = CALLERS[PROBE]
        chain_id = bytes.fromhex(
            http.get("/v1/status", headers=sign_headers(key, PROBE, "GET", "/v1/status")).json()["chain_id"]
        )
        dso, latencies = DSO(DSO_KEY, chain_id), []
        for k in range(PROBES):
            if k % 10 == 0:  # blocks keep coming: every open stream gets events
                body = policy(dso, k).encode()
                http.post(
                    "/v1/transactions", content=body, headers=sign_headers(key, PROBE, "POST", "/v1/transactions", body)
                )
            t0 = time.perf_counter()
            r = http.get("/v1/status", headers=sign_headers(key, PROBE, "GET", "/v1/status"))
            latencies.append(time.perf_counter() - t0)
            if r.status_code != 200 or r.json()["streams_open"] != STREAMS:
                raise RuntimeError(f"status answered {r.status_code}: {r.text[:200]}")
            time.sleep(0.01)
        return latencies
    finally:
        done.set()
        if flood is not None:
            flood.join(10)
        for p in (flood, server):
            if p is not None and p.is_alive():
                p.terminate()
                p.join(5)


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def main() -> None:
    logging.getLogger("gridledger.node").setLevel(logging.ERROR)  # each refused junk entry is logged as a warning
    with tempfile.TemporaryDirectory() as d:
        junk = junk_log_recovery(Path(d))
        (Path(d) / "api").mkdir()
        other = stream_flood(Path(d) / "api")
    print(f"junk entries: {len(junk)}, recovery median {statistics.median(junk):.3f} s, max {max(junk):.3f} s")
    print(
        f"{STREAMS} streams open: other node's status p50 {statistics.median(other):.4f} s over {len(other)} requests"
    )
    print(f"junk_log_recovery_s = {statistics.median(junk):.3f} s")
    print(f"stream_flood_other_p99_s = {p99(other):.4f} s")


if __name__ == "__main__":
    main()
