"""Operating the network: how fast a node's dashboard paints on a long chain.

* ``dashboard_load_s`` — a node (its API served by uvicorn in this process, sequencer running) whose chain holds
  ``BLOCKS`` blocks, each with one DSO policy; headless Chromium (driven over the DevTools pipe with the tests'
  helper, ``tests/browser/cdp.py``) loads ``/dashboard`` with its cache bypassed, as a first visit would. The figure is
  the time from navigation start to the first paint of the chain's figures (the page's ``dashboard-first-data``
  mark, after its HTML, plotly.js and the first ``/v1/dashboard`` answer): median of ``LOADS`` loads (the first, in a
  browser just started, is printed too). The browser's first contentful paint and the time of one ``/v1/dashboard``
  answer (persistent connection) are printed too.
* ``mqtt_to_commit_p99_s`` (and ``_p50_s``) — a real PoEf NAN started by ``cluster.up`` (3-member etcd, a primary and
  a backup concentrator, ``E2E_METERS`` meter nodes that vote, one process each), a private mosquitto, and one meter
  daemon per meter (``gridledger.meter.daemon.MeterDaemon``, in this process: its own MQTT session, SQLite outbox and
  signed client of DC1). A SmartPi board per meter publishes a measurement every compressed minute of ``MINUTE_S`` s
  (the meters spread evenly over it); each measurement closes the previous minute, whose reading the daemon seals,
  stores, signs and submits. The figure is the time from the MQTT publish of that measurement to the moment DC1's
  block stream announces the block holding the reading (committed with its PoEf certificate). The load is
  ``E2E_METERS`` readings per ``MINUTE_S`` s, i.e. as many readings per second as ``60 · E2E_METERS / MINUTE_S``
  meters reporting once a real minute (printed).
* ``E2E_BATCH=m`` (1..the NAN rule set's cap, ``MAX_READING_BATCH``) runs only the end-to-end measurement, with
  every daemon sending READING_BATCHes of ``m`` minutes (``batch_minutes``; m = 1: a READING a minute, the default
  run's setting, printed the same way for comparison). The meters report 14 minutes (the first slot's most), so the
  batches of ``m`` ≤ 14 fit in them; minutes after the last full batch are flushed at the end as a partial batch (as
  a clean stop does) and left out of the latencies (counted). It prints the bytes per reading — the reading
  transactions' bytes and the bytes of the blocks holding them, divided by the minutes they carry — and the latency
  from the MQTT publish that closes a minute to the block holding that minute, over every minute (a minute waits
  for its batch: up to ``m − 1`` compressed minutes) and over the batch-completing publishes only; the keys are
  ``mqtt_to_commit_batch<m>_…`` (the default run's ``mqtt_to_commit_p99_s`` is not printed, as it means m = 1).

Run: ``.venv/bin/python benchmarks/operations_e2e.py`` from the repository root (``E2E_BATCH=7 .venv/bin/python …``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from gridledger.chain import Chain
from gridledger.ledger.block import Block, make_block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.ledger.kinds.reading_batch import ReadingBatch, readings_of
from gridledger.ledger.ruleset import MAX_READING_BATCH
from gridledger.meter.daemon import MeterConfig, MeterDaemon, write_config
from gridledger.node import cluster
from gridledger.node.auth import NodeRegistry, RateLimiter
from gridledger.node.ordering import InProcessOrderer
from gridledger.node.sequencer import Sequencer
from gridledger.node.service import NodeService
from gridledger.node.testnet import Testnet, serve, wait_until
from gridledger.petra.dso import DSO
from gridledger.store.sqlite import SqliteStore
from gridledger.twin import mqtt
from gridledger.twin.smartpi import PhaseReading, measurement

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from browser.cdp import Page  # noqa: E402 - the tests' DevTools helper

BLOCKS, LOADS, DATA_PROBES = 10_000, 7, 50
START, SLOT, STEP = 1_767_225_600, 900, 10  # the chain's start, its slot length and the time between blocks (s)
DSO_KEY, C1 = KeyPair.from_secret("ops-bench-dso"), KeyPair.from_secret("ops-bench-coordinator")
#: Meters (node processes that vote, and daemons), the compressed minute (s), minutes each meter reports (the chain's
#: first slot, 15 minutes from a minute before ``cluster.up``, takes readings of minutes 0..14 at once).
E2E_METERS, MINUTE_S, TICKS = 10, 0.3, 13
#: Minutes the meters report with ``E2E_BATCH`` set (minutes 1..14: the first slot takes up to minute 14).
BATCH_TICKS = 14


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


def smartpi(serial: str, when: int, power_w: float) -> bytes:
    """A SmartPi measurement at Unix time ``when``: ``power_w`` on phase 1 at 230 V."""
    phases = [PhaseReading(1, power_w / 230, 230.0, power_w, 0.97, 50.0)]
    at = datetime.fromtimestamp(when, UTC).replace(tzinfo=None)
    return json.dumps(measurement(serial, serial, phases, at)).encode()


class Commits:
    """Follows DC1's block stream; the wall-clock time each (member, minute) reading was announced committed (a
    READING, or each minute of a READING_BATCH), the last minute of every batch, and the bytes of the reading
    transactions and of the blocks holding them."""

    def __init__(self, net: Testnet, start: int) -> None:
        self.client, self.start, self.at = net.client("DC1"), start, {}
        self.batch_ends: dict[tuple[int, int], int] = {}  # (member, last minute) → minutes in the batch
        self.tx_bytes = self.block_bytes = 0
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        with contextlib.suppress(httpx.HTTPError):  # the stream ends when the cluster stops
            self._read()

    def _read(self) -> None:
        for event in self.client.events(self.start):
            now = time.perf_counter()
            for _, raw in self.client.blocks(event["height"], 1):
                holds = False
                for tx in Block.decode(raw).transactions:
                    views = readings_of(tx)
                    if views:
                        holds = True
                        self.tx_bytes += len(tx.encode())
                    for r in views:
                        self.at[(r.member, r.minute)] = now
                    if isinstance(tx, ReadingBatch):
                        self.batch_ends[(tx.member, tx.last_minute)] = tx.count
                self.block_bytes += len(raw) if holds else 0


def quantiles(lat: list[float]) -> tuple[float, float, float]:
    """p50, p99 and max of latencies (s)."""
    lat = sorted(lat)
    return lat[len(lat) // 2], lat[min(len(lat) - 1, int(0.99 * len(lat)))], lat[-1]


def mqtt_to_commit(folder: Path, batch: int | None = None) -> dict:
    """Publish ``TICKS`` compressed minutes of every meter's measurements; latency publish -> committed (s). With
    ``batch`` (m), ``BATCH_TICKS`` minutes in READING_BATCHes of m, the tail after the last full batch flushed at the
    end; also the bytes per reading and the latency of the batch-completing publishes."""
    ticks = TICKS if batch is None else BATCH_TICKS
    full = ticks if batch is None else ticks // batch * batch  # the minutes in full batches (1..full)
    where = folder / "cluster"
    cluster.up(where, E2E_METERS, 1, rate_limit=(100_000, 200_000), poef=True, insecure=True)
    daemons: list[MeterDaemon] = []
    try:
        net = Testnet(where)
        wait_until(lambda: net.agree(net.ids(), 1), 120, "the enrolment block on every node")
        with mqtt.Broker() as broker:
            try:
                for meter in net.ids("meter"):
                    path = write_config(where, meter, folder / "meters", broker.host, broker.port, None, batch or 1)
                    path.write_text("poll_s = 0.1\nmax_ahead_s = 3600\n" + path.read_text())
                    daemons.append(MeterDaemon(MeterConfig.load(path)).start())
                for d in daemons:
                    d.connected.wait(30)
                time.sleep(0.5)  # their SUBSCRIBEs follow the CONNACKs
                commits = Commits(net, net.status("DC1")["height"] + 1)
                cfg0 = daemons[0].cfg
                base = 0  # the first slot (from a minute before `up`) takes minutes 0..14 at once; later ones live
                sent: dict[tuple[int, int], float] = {}
                board = mqtt.connect(broker.port, "bench-smartpi")
                t0 = time.perf_counter()
                for k in range(ticks + 1):
                    for i, d in enumerate(daemons):
                        time.sleep(max(0.0, t0 + (k + i / len(daemons)) * MINUTE_S - time.perf_counter()))
                        when = cfg0.start_time + 60 * (base + k + 1)  # closes minute base + k (from k = 1 on)
                        d_power = 300.0 + 40 * i + 5 * k
                        board.publish(d.cfg.topic, smartpi(d.cfg.serial, when, d_power), qos=1)
                        if 0 < base + k <= full:
                            sent[(d.cfg.member, base + k)] = time.perf_counter()
                published = time.perf_counter() - t0
                tail = 0  # minutes after the last full batch: flushed once every measurement is taken (as a stop does)
                if full < ticks:
                    taken = lambda: all(d.outbox.counts().get("received", 0) > ticks for d in daemons)  # noqa: E731
                    wait_until(taken, 60, "every measurement taken", interval=0.1)
                    tail = sum(len(d.flush("tail")) for d in daemons)
                wait_until(lambda: set(sent) <= set(commits.at), 120, "every reading committed", interval=0.2)
                if batch is not None:  # the tail's partial batches too: every minute's bytes are counted
                    total = len(daemons) * ticks
                    wait_until(lambda: len(commits.at) >= total, 60, "the partial batches committed", interval=0.2)
                    time.sleep(0.5)  # the stream thread is done adding that block's bytes
                minutes = len(commits.at)
                mqtt.close(board)
                outboxes = [d.outbox.counts() for d in daemons]
            finally:  # the daemons stop before their broker does (else each logs the broker's loss)
                for d in daemons:
                    d.stop()
    finally:
        cluster.down(where)
    lat = [commits.at[key] - t for key, t in sent.items()]
    dropped = sum(v for c in outboxes for k, v in c.items() if k.startswith(("dropped", "rejected:")))
    p50, p99, most = quantiles(lat)
    out = {"readings": len(lat), "published_s": published, "p50": p50, "p99": p99, "max": most}
    out["dropped_or_rejected"] = dropped
    if batch is not None:
        ends = [commits.at[key] - t for key, t in sent.items() if commits.batch_ends.get(key) == batch]
        if batch == 1:
            ends = lat  # every publish completes its "batch" of one READING
        out |= {
            "tail": tail,
            "tx_bytes_per_reading": commits.tx_bytes / minutes,
            "block_bytes_per_reading": commits.block_bytes / minutes,
            "batch_ends": len(ends),
            "end_p50": quantiles(ends)[0] if ends else float("nan"),
            "end_p99": quantiles(ends)[1] if ends else float("nan"),
        }
    return out


def batch_from_env() -> int | None:
    """``E2E_BATCH`` (1..``MAX_READING_BATCH``), or None when unset (the default run)."""
    raw = os.environ.get("E2E_BATCH")
    if raw is None:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_READING_BATCH:
        raise SystemExit(f"E2E_BATCH={raw!r}: minutes per READING_BATCH, 1..{MAX_READING_BATCH}")
    return int(raw)


def main_batch(m: int) -> None:
    """The end-to-end measurement with READING_BATCHes of ``m`` minutes."""
    with tempfile.TemporaryDirectory() as tmp:
        e2e = mqtt_to_commit(Path(tmp), m)
    print(
        f"MQTT -> committed, batches of {m}: {E2E_METERS} meters x {BATCH_TICKS} compressed minutes of {MINUTE_S} s: "
        f"{e2e['readings']} minutes in full batches timed, {e2e['tail']} flushed at the end as partial batches, "
        f"{e2e['dropped_or_rejected']} dropped or rejected"
    )
    print(
        f"bytes per reading: transactions {e2e['tx_bytes_per_reading']:.1f} B, "
        f"blocks {e2e['block_bytes_per_reading']:.1f} B"
    )
    print(
        f"latency from a minute's publish: p50 {e2e['p50']:.3f} s, p99 {e2e['p99']:.3f} s, max {e2e['max']:.3f} s; "
        f"from the {e2e['batch_ends']} batch-completing publishes: p50 {e2e['end_p50']:.3f} s, "
        f"p99 {e2e['end_p99']:.3f} s"
    )
    print(f"mqtt_to_commit_batch{m}_tx_bytes_per_reading = {e2e['tx_bytes_per_reading']:.1f} B")
    print(f"mqtt_to_commit_batch{m}_block_bytes_per_reading = {e2e['block_bytes_per_reading']:.1f} B")
    print(f"mqtt_to_commit_batch{m}_p50_s = {e2e['p50']:.3f} s")
    print(f"mqtt_to_commit_batch{m}_p99_s = {e2e['p99']:.3f} s")
    print(f"mqtt_to_commit_batch{m}_completing_p50_s = {e2e['end_p50']:.3f} s")
    print(f"mqtt_to_commit_batch{m}_completing_p99_s = {e2e['end_p99']:.3f} s")


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    batch = batch_from_env()
    if batch is not None:
        main_batch(batch)
        return
    with tempfile.TemporaryDirectory() as tmp:
        e2e = mqtt_to_commit(Path(tmp))
    rate = 60 * E2E_METERS / MINUTE_S
    print(
        f"MQTT -> committed: {E2E_METERS} meters x {TICKS} compressed minutes of {MINUTE_S} s "
        f"(the reading rate of {rate:,.0f} meters reporting every real minute): {e2e['readings']} readings "
        f"published in {e2e['published_s']:.1f} s, {e2e['dropped_or_rejected']} dropped or rejected; "
        f"latency p50 {e2e['p50']:.3f} s, p99 {e2e['p99']:.3f} s, max {e2e['max']:.3f} s"
    )
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
    print(f"mqtt_to_commit_p50_s = {e2e['p50']:.3f} s")
    print(f"mqtt_to_commit_p99_s = {e2e['p99']:.3f} s")


if __name__ == "__main__":
    main()
