"""Operating the network: how fast a node's dashboard paints on a long chain.

* ``dashboard_load_s`` — a node (its API served by uvicorn in this process, sequencer running) whose chain holds
  ``BLOCKS`` blocks, each with one DSO policy; headless Chromium (driven over the DevTools pipe with the tests'
  helper, ``tests/browser/cdp.py``) loads ``/dashboard`` with its cache bypassed, as a first visit would. The figure is
  the time from navigation start to the first paint of the chain's figures (the page's ``dashboard-first-data``
  mark, after its HTML, plotly.js and the first ``/v1/dashboard`` answer): median of ``LOADS`` loads (the first, in a
  browser just started, is printed too). The browser's first contentful paint and the time of one ``/v1/dashboard``
  answer (persistent connection) are printed too.
* ``mqtt_to_commit_p99_s`` is not measured here: the meter daemon it needs does not exist yet.

Run: ``.venv/bin/python benchmarks/operations_e2e.py`` from the repository root.
"""

from __future__ import annotations

import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from gridledger.chain import Chain
from gridledger.ledger.block import make_block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.node.auth import NodeRegistry, RateLimiter
from gridledger.node.ordering import InProcessOrderer
from gridledger.node.sequencer import Sequencer
from gridledger.node.service import NodeService
from gridledger.node.testnet import serve
from gridledger.petra.dso import DSO
from gridledger.store.sqlite import SqliteStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from browser.cdp import Page  # noqa: E402 - the tests' DevTools helper

BLOCKS, LOADS, DATA_PROBES = 10_000, 7, 50
START, SLOT, STEP = 1_767_225_600, 900, 10  # the chain's start, its slot length and the time between blocks (s)
DSO_KEY, C1 = KeyPair.from_secret("ops-bench-dso"), KeyPair.from_secret("ops-bench-coordinator")


def long_chain(folder: Path) -> Chain:
    """A coordinator chain of ``BLOCKS`` blocks, one DSO price policy in each (effective from the next slot)."""
    genesis = Genesis("nan-ops-bench", SLOT, START, DSO_KEY.public, (C1.public,))
    chain = Chain.create(SqliteStore(folder / "chain.sqlite", durable=False), genesis, C1, START)
    dso = DSO(DSO_KEY, chain.chain_id)
    for h in range(1, BLOCKS + 1):
        t = START + h * STEP
        tx = dso.policy((t - START) // SLOT + 1, prices=(100 + h % 50, 80))
        chain.append(make_block(chain.chain_id, h, chain.state.tip_hash, t, (tx,), C1))
    return chain


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        chain = long_chain(folder)
        built = time.perf_counter() - t0
        orderer = InProcessOrderer()
        t0 = time.perf_counter()
        svc = NodeService(
            "DC1",
            "concentrator",
            chain,
            orderer,
            Sequencer(chain, orderer, "DC1", C1),
            NodeRegistry(),
            RateLimiter(1e4, 1e4),
        )
        indexed = time.perf_counter() - t0
        svc.start()
        try:
            with serve(svc.app) as url, httpx.Client(base_url=url) as http:
                data = []
                for _ in range(DATA_PROBES):
                    t0 = time.perf_counter()
                    body = http.get("/v1/dashboard").json()
                    data.append(time.perf_counter() - t0)
                assert body["chains"][0]["height"] == BLOCKS
                page = Page(url + "/dashboard", folder / "chromium")
                try:
                    loads, paints = [], []
                    for _ in range(LOADS):
                        page.reload()
                        mark = "performance.getEntriesByName('dashboard-first-data')[0]?.startTime"
                        loads.append(page.wait(mark, what="the first paint of the figures") / 1000)
                        fcp = "performance.getEntriesByName('first-contentful-paint')[0]?.startTime"
                        paints.append(page.wait(fcp, what="the first contentful paint") / 1000)
                        assert page.eval("document.getElementById('height').textContent") == str(BLOCKS)
                finally:
                    page.close()
        finally:
            svc.stop()
    print(f"chain of {BLOCKS} blocks built in {built:.1f} s; node index at start {indexed:.2f} s")
    print(f"/v1/dashboard answer: median {statistics.median(data) * 1000:.1f} ms, max {max(data) * 1000:.1f} ms")
    print(f"first contentful paint: median {statistics.median(paints):.3f} s")
    print(f"first paint of the figures, {LOADS} loads (s): {', '.join(f'{x:.3f}' for x in loads)}")
    print(f"dashboard_load_s = {statistics.median(loads):.3f} s")


if __name__ == "__main__":
    main()
