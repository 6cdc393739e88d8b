"""Coordinator fail-over on a PoEf chain versus the coordinator-only rule, across processes.

Two local networks in turn, each a 3-member etcd cluster, a primary and a backup concentrator and three meters (one
process each, ``cluster.up``): first with untagged chains (the coordinator alone commits), then with PoEf chains
(every block needs the votes of two of the three meters; ``gridledger.node.poef_net``). Both carry the same stream
of DSO policies through a meter's API; on the PoEf network each meter also reports a signed, encrypted reading
every 4 s, which the committee opens from its disclosure and checks for plausibility.

Per network: the median submit-to-commit latency of single policies on the idle chain (one round), then KILLS
times: find the leader, SIGKILL it, time until the backup reports it leads and until the first block published
after the kill is final (a ``blocks/<h>`` key whose etcd create revision is above the revision read just before the
kill — so a block the dead leader published a moment earlier, which a meter may not have synced yet, does not
count), restart the killed coordinator and let it catch up. At the end every submitted transaction is looked up
(zero lost, checked) and every node must hold the same tip.
Run: ``.venv/bin/python benchmarks/poef_failover.py`` (about 3 minutes).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import tempfile
import threading
import time
from pathlib import Path

import etcd3gw
from rich.progress import track

from gridledger.ledger.block import Block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.reading import ReadingValues
from gridledger.node import cluster
from gridledger.node.client import NodeClient
from gridledger.node.config import NodeConfig
from gridledger.petra.dso import DSO

KILLS = 10
LATENCY_SAMPLES = 15
READING_EVERY_S = 4.0
#: Last minute a reading may report in slot 0 (slot 0 of a PoEf cluster starts a minute before ``up``).
LAST_MINUTE = 14
COORDINATORS = ("DC1", "DC1-backup")


class Network:
    """A running cluster seen by the benchmark: the operator's clients of every node, and its stream."""

    def __init__(self, folder: Path, poef: bool) -> None:
        self.folder, self.poef = folder, poef
        self.operator = KeyPair(bytes.fromhex((folder / "keys" / "operator.seed").read_text()))
        self.urls = {n["id"]: n["url"] for n in self.state["nodes"]}
        self.clients = {i: NodeClient(u, "operator", self.operator, timeout=2) for i, u in self.urls.items()}
        self.chain_id = bytes.fromhex(self.clients["MI1"].status()["chain_id"])
        self.dso = DSO(self.operator, self.chain_id, nonce=1 if poef else 0)  # a PoEf cluster's nonce 1 enrolled
        host, port = self.state["etcd"][0]["url"].rsplit("//", 1)[1].rsplit(":", 1)
        self.etcd = etcd3gw.client(host=host, port=int(port), timeout=2)  # the benchmark never kills etcd
        self.blocks_key = f"/gridledger/{self.chain_id.hex()}/blocks"
        self.submitted: list[bytes] = []
        self.lock = threading.Lock()

    @property
    def state(self) -> dict:
        return json.loads((self.folder / cluster.STATE_FILE).read_text())

    def height(self, node: str) -> int:
        try:
            return self.clients[node].status()["height"]
        except Exception:  # noqa: BLE001 - a node being killed or restarted
            return -1

    def leads(self, node: str) -> bool:
        try:
            return self.clients[node].status()["leading"]
        except Exception:  # noqa: BLE001 - a node being killed or restarted
            return False

    def leader(self) -> str:
        while True:
            for node in COORDINATORS:
                if self.leads(node):
                    return node
            time.sleep(0.01)

    def revision(self) -> int:
        return int(self.etcd.status()["header"]["revision"])

    def key_of(self, node: str) -> bytes:
        return NodeConfig.load(self.folder / f"{node}.toml").key.public

    def final_after(self, revision: int, height: int, not_by: bytes) -> int | None:
        """The lowest height from ``height`` on whose block was made final after etcd revision ``revision`` by a
        coordinator other than ``not_by`` (a request the killed leader sent just before its death may land after)."""
        first, end = f"{self.blocks_key}/{height:020d}", self.blocks_key + "0"
        rows = self.etcd.get(first, metadata=True, range_end=end)
        return min(
            (
                int(m["key"].decode().rsplit("/", 1)[1])
                for raw, m in rows
                if int(m["create_revision"]) > revision and Block.decode(raw).header.proposer != not_by
            ),
            default=None,
        )

    def leader_changes(self) -> int:
        """How often the proposer changed from one block to the next (every fail-over, real or spurious)."""
        rows = self.etcd.get(f"{self.blocks_key}/", range_end=self.blocks_key + "0", sort_target="key")
        proposers = [Block.decode(raw).header.proposer for raw in rows]
        return sum(a != b for a, b in zip(proposers, proposers[1:], strict=False))

    def policy(self):
        with self.lock:
            return self.dso.policy(100_000 + self.dso.nonce, prices=(100, 80))

    def submit(self, client: NodeClient, tx, stop: threading.Event) -> None:
        """Submit until accepted (nodes may be restarting); remember it for the zero-lost check."""
        while not stop.is_set():
            try:
                if client.submit(tx).status_code == 202:
                    with self.lock:
                        self.submitted.append(tx.txid)
                    return
            except Exception:  # noqa: BLE001 - retry through transient errors
                pass
            time.sleep(0.02)

    def commit_latency(self) -> float:
        """Seconds from submitting one policy to a meter seeing it committed (polled every 5 ms)."""
        tx = self.policy()
        t0 = time.monotonic()
        self.submit(self.clients["MI1"], tx, threading.Event())
        while self.clients["MI1"].tx_status(tx.txid)["status"] != "committed":
            time.sleep(0.005)
        return time.monotonic() - t0


def policy_stream(net: Network, stop: threading.Event) -> None:
    client = NodeClient(net.urls["MI2"], "operator", net.operator, timeout=2)
    while not stop.is_set():
        net.submit(client, net.policy(), stop)
        time.sleep(0.02)


def reading_stream(net: Network, meter: str, stop: threading.Event) -> None:
    """The meter reports its next minute every READING_EVERY_S through its own API, signed with its own key."""
    device = cluster.meter_device(net.folder, meter)
    client = NodeClient(net.urls[meter], meter, NodeConfig.load(net.folder / f"{meter}.toml").key, timeout=2)
    while not stop.wait(READING_EVERY_S) and device.last_minute < LAST_MINUTE:
        net.submit(client, device.reading(device.last_minute + 1, ReadingValues(10 + device.last_minute % 3)), stop)


def measure(poef: bool) -> dict:
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        cluster.up(folder, meters=3, concentrators=1, rate_limit=(100_000, 100_000), poef=poef, insecure=True)
        try:
            return run(Network(folder, poef))
        finally:
            cluster.down(folder)


def run(net: Network) -> dict:
    while net.height("MI1") < (1 if net.poef else 0):  # the network is up (with PoEf: the meters enrolled)
        time.sleep(0.05)
    latencies = sorted(net.commit_latency() for _ in range(LATENCY_SAMPLES))
    stop = threading.Event()
    feeders = [threading.Thread(target=policy_stream, args=(net, stop))]
    if net.poef:
        feeders += [threading.Thread(target=reading_stream, args=(net, m, stop)) for m in ("MI1", "MI2", "MI3")]
    for t in feeders:
        t.start()
    to_commit, to_lead = [], []
    label = "PoEf" if net.poef else "coordinator-only"
    try:
        for _ in track(range(KILLS), description=f"{label}: killing the leading coordinator"):
            lead = net.leader()
            other = COORDINATORS[1 - COORDINATORS.index(lead)]
            h0 = net.height(other)
            pid = next(n["pid"] for n in net.state["nodes"] if n["id"] == lead)
            rev0 = net.revision()
            t0 = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            led = None
            while net.final_after(rev0, h0 + 1, net.key_of(lead)) is None:
                if led is None and net.leads(other):
                    led = time.monotonic() - t0
                time.sleep(0.005)
            to_commit.append(time.monotonic() - t0)
            to_lead.append(led if led is not None else to_commit[-1])
            cluster.restart(net.folder, lead)
            target = net.height(other)
            while net.height(lead) < target:
                time.sleep(0.05)
    finally:
        stop.set()
        for t in feeders:
            t.join()
    deadline = time.monotonic() + 60
    pending = list(net.submitted)
    while pending and time.monotonic() < deadline:
        pending = [t for t in pending if net.clients["MI1"].tx_status(t)["status"] != "committed"]
        time.sleep(0.1)
    while time.monotonic() < deadline and len({net.clients[i].status()["tip"] for i in net.urls}) > 1:
        time.sleep(0.1)
    to_commit.sort()
    return {
        "label": label,
        "latency": statistics.median(latencies),
        "median": statistics.median(to_commit),
        "p99": to_commit[min(len(to_commit) - 1, round(0.99 * (len(to_commit) - 1)))],
        "max": to_commit[-1],
        "lead": statistics.median(to_lead),
        "submitted": len(net.submitted),
        "lost": len(pending),
        "agree": len({net.clients[i].status()["tip"] for i in net.urls}) == 1,
        "height": net.height("MI1"),
    }


def main() -> None:
    plain, poef = measure(poef=False), measure(poef=True)
    for r in (plain, poef):
        print(
            f"{r['label']}: kills {KILLS}, transactions {r['submitted']}, final height {r['height']}; "
            f"commit latency (idle, one round) median {r['latency'] * 1000:.0f} ms; "
            f"SIGKILL → backup leads median {r['lead']:.2f} s; SIGKILL → next committed block median "
            f"{r['median']:.2f} s, p99 {r['p99']:.2f} s, max {r['max']:.2f} s; lost {r['lost']}; "
            f"nodes agree: {r['agree']}"
        )
    extra = poef["median"] - plain["median"]
    print(
        f"PoEf fail-over is {extra:+.2f} s ({extra / plain['median']:+.0%}) against coordinator-only at the median; "
        f"its idle round takes {(poef['latency'] - plain['latency']) * 1000:+.0f} ms more"
    )
    print(f"poef_failover_median_s = {poef['median']:.2f} s")
    print(f"poef_failover_p99_s = {poef['p99']:.2f} s")
    print(f"coordinator_failover_median_s = {plain['median']:.2f} s")
    print(f"coordinator_failover_p99_s = {plain['p99']:.2f} s")
    print(f"poef_commit_latency_median_ms = {poef['latency'] * 1000:.0f} ms")
    print(f"coordinator_commit_latency_median_ms = {plain['latency'] * 1000:.0f} ms")
    print(f"poef_failover_lost_tx = {poef['lost']} tx")


if __name__ == "__main__":
    main()
