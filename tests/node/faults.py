"""Jepsen-style fault injection for a local network (``Testnet``) on loopback, and the checks after a run.

* ``FaultNet``: TCP proxies (asyncio, one background thread) put between each node and every etcd member. A
  ``Link`` passes bytes, delays them, or **drops** them (a blackhole: connections stay open, nothing gets through,
  new connections are accepted and never answered — what a partition looks like to a TCP client); ``heal`` lets
  bytes through again and resets the connections of the partition (as a router's connection table would).
* ``rewire``: stops the network's nodes, points each node's orderer at its own proxies, optionally puts one node's
  store on a small tmpfs (``Disk``: a real ENOSPC when filled) and one node's clock ahead or behind
  (``GRIDLEDGER_CLOCK_SKEW_S``), then starts them again with the primary coordinator leading.
* ``Workload``: a thread that submits DSO policies (increasing nonces) through the nodes in turn and records which
  were acknowledged (HTTP 202).
* ``check``: every acknowledged transaction committed exactly once, every node the same block hash at every height,
  every node's store valid (``verify_store`` after the network stopped).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from gridledger.chain import verify_store
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds.dso_policy import DsoPolicy
from gridledger.node.client import NodeClient
from gridledger.node.netutil import free_port
from gridledger.node.run import CLOCK_SKEW_ENV
from gridledger.node.testnet import Testnet, wait_until
from gridledger.store import open_store

CHUNK = 65_536


class Link:
    """One proxied TCP link (127.0.0.1:``port`` → 127.0.0.1:``target``): ``partition``, ``heal``, ``delay``."""

    def __init__(self, faults: FaultNet, name: str, target: int) -> None:
        self.faults, self.name, self.target = faults, name, target
        self.port = free_port()
        self.dropping = False
        self.delay = 0.0  # seconds added to every chunk forwarded
        self._writers: set[asyncio.StreamWriter] = set()

    def partition(self) -> None:
        self.dropping = True

    def heal(self) -> None:
        self.dropping = False
        self.faults.call(self._reset)

    def _reset(self) -> None:
        for w in list(self._writers):
            w.close()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            if self.dropping:  # a new connection during a partition: accepted, never answered
                while await reader.read(CHUNK):
                    pass
                return
            up_reader, upstream = await asyncio.open_connection("127.0.0.1", self.target)
            self._writers.add(upstream)
            await asyncio.gather(self._pump(reader, upstream), self._pump(up_reader, writer))
        except OSError:
            pass
        finally:
            for w in (writer, upstream):
                if w is not None:
                    self._writers.discard(w)
                    w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(CHUNK):
                if self.delay:
                    await asyncio.sleep(self.delay)
                if self.dropping:
                    continue
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()


class FaultNet:
    """The proxies of one run, served by one asyncio loop in a daemon thread; ``close`` stops them all."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="faultnet", daemon=True)
        self.thread.start()
        self.links: dict[str, list[Link]] = {}
        self._servers: list[asyncio.Server] = []

    def call(self, fn) -> None:
        self.loop.call_soon_threadsafe(fn)

    def link(self, owner: str, name: str, target: int) -> Link:
        link = Link(self, name, target)

        async def serve() -> None:
            self._servers.append(await asyncio.start_server(link.handle, "127.0.0.1", link.port))

        asyncio.run_coroutine_threadsafe(serve(), self.loop).result(10)
        self.links.setdefault(owner, []).append(link)
        return link

    def partition(self, owner: str) -> None:
        for link in self.links[owner]:
            link.partition()

    def heal(self, owner: str) -> None:
        for link in self.links[owner]:
            link.heal()

    def close(self) -> None:
        async def stop() -> None:
            for s in self._servers:
                s.close()
            for links in self.links.values():
                for link in links:
                    link._reset()
            # Every link's tasks end before the loop stops: a task left pending is destroyed with a coroutine that
            # never ran ("coroutine 'Link._pump' was never awaited").
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():  # a loop still running cannot be closed
            self.loop.close()


@dataclass
class Disk:
    """A tmpfs of ``size`` bytes at ``path`` (root only); ``fill`` leaves it with no free block, ``free`` empties it."""

    path: Path
    size: int = 8 << 20

    @staticmethod
    def available() -> bool:
        if os.geteuid() != 0:
            return False
        probe = Path(f"/tmp/gridledger-tmpfs-probe-{os.getpid()}")
        probe.mkdir(exist_ok=True)
        try:
            ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)], capture_output=True)
            if ok.returncode != 0:
                return False
            subprocess.run(["umount", str(probe)], check=True)
            return True
        finally:
            probe.rmdir()

    def mount(self) -> Disk:
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(self.path)], check=True)
        return self

    def fill(self) -> int:
        """Write a filler file until ENOSPC; returns its size (bytes)."""
        n = 0
        with open(self.path / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"\0" * CHUNK)
                    f.flush()
                    n += CHUNK
            except OSError:
                pass
        with contextlib.suppress(OSError), open(self.path / "filler", "ab") as f:  # the last partial blocks
            for _ in range(CHUNK):
                f.write(b"\0")
                f.flush()
        return n

    def free(self) -> None:
        (self.path / "filler").unlink(missing_ok=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)


def _set(text: str, key: str, value: str) -> str:
    return re.sub(rf"^{key} = .*$", f"{key} = {value}", text, count=1, flags=re.M)


def rewire(
    net: Testnet,
    faults: FaultNet,
    *,
    disk_node: str | None = None,
    disk: Disk | None = None,
    skew: dict[str, float] | None = None,
) -> None:
    """Route every node's etcd traffic through its own proxies; ``disk_node``'s store onto ``disk``; ``skew``
    (node → seconds) on those nodes' clocks. Restarts the nodes, the primary coordinator first (it leads)."""
    etcd_ports = [int(e["url"].rsplit(":", 1)[1]) for e in net.state["etcd"]]
    ids = net.ids()
    # The proxies take their ports while the nodes still hold theirs: a proxy opened after a node stopped could take
    # that node's API port, and the restarted "node" would then answer with etcd's 404s.
    proxies = {
        node_id: [faults.link(node_id, f"{node_id}->etcd{i}", port).port for i, port in enumerate(etcd_ports)]
        for node_id in ids
    }
    for node_id in ids:
        net.kill(node_id, signal.SIGTERM)
    for node_id in ids:
        cfg = Path(net.node(node_id)["config"])
        urls = [f"http://127.0.0.1:{port}" for port in proxies[node_id]]
        text = _set(cfg.read_text(), "orderer", "[" + ", ".join(f'"{u}"' for u in urls) + "]")
        if node_id == disk_node and disk is not None:
            store = net.store_path(node_id)
            disk.mount()
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(store) + suffix)
                if src.exists():
                    (disk.path / src.name).write_bytes(src.read_bytes())
                    src.unlink()
            text = _set(text, "store", f'"{disk.path / store.name}"')
        cfg.write_text(text)
    coordinators = net.ids("concentrator")
    for node_id in coordinators + [i for i in ids if i not in coordinators]:
        old = os.environ.get(CLOCK_SKEW_ENV)
        os.environ[CLOCK_SKEW_ENV] = str((skew or {}).get(node_id, 0.0))
        try:
            net.restart(node_id)
        finally:
            if old is None:
                os.environ.pop(CLOCK_SKEW_ENV, None)
            else:
                os.environ[CLOCK_SKEW_ENV] = old
        if node_id == coordinators[0]:
            wait_until(lambda: net.status(coordinators[0])["leading"], 30, f"{coordinators[0]} to lead")


@dataclass
class Workload:
    """Submits DSO policies through ``targets`` in turn until stopped; ``acked`` maps txid → the node that said 202."""

    net: Testnet
    targets: list[str]
    interval: float = 0.02
    acked: dict[bytes, str] = field(default_factory=dict)
    refused: int = 0  # errors and non-202 answers (the client does not count these as submitted)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name="workload", daemon=True)
        self._clients = {
            t: NodeClient(self.net.node(t)["url"], "operator", self.net.operator, timeout=2) for t in self.targets
        }

    def __enter__(self) -> Workload:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        for c in self._clients.values():
            c.close()

    def _run(self) -> None:
        chain_id, nonce, i = self.net.chain_id, 0, 0
        while not self._stop.is_set():
            nonce += 1
            target = self.targets[i % len(self.targets)]
            i += 1
            tx = DsoPolicy(nonce, 1_000_000 + nonce, prices=(100, 80)).signed(chain_id, self.net.operator)
            try:
                if self._clients[target].submit(tx).status_code == 202:
                    self.acked[tx.txid] = target
                else:
                    self.refused += 1
            except Exception:  # noqa: BLE001 - a timeout or reset is an unknown outcome: not acknowledged
                self.refused += 1
            self._stop.wait(self.interval)


@dataclass
class Verdict:
    acked: int
    lost: list[bytes]  # acknowledged, never committed
    duplicated: list[bytes]  # committed more than once
    divergent: list[int]  # heights where nodes hold different blocks
    invalid: dict[str, str]  # node → the verifier's complaint about its store
    height: int

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.divergent or self.invalid)

    def __str__(self) -> str:
        return (
            f"acked {self.acked}, lost {len(self.lost)}, duplicated {len(self.duplicated)}, "
            f"divergent heights {self.divergent[:10]}, invalid stores {self.invalid}, height {self.height}"
        )


def settle(net: Testnet, acked: dict[bytes, str], timeout: float = 60.0) -> None:
    """Wait until every node holds every acknowledged transaction (or ``timeout``) and all agree."""
    ids = net.ids()
    reader = ids[-1]

    def done() -> bool:
        return set(acked) <= net.txids(reader) and net.agree(ids)

    with contextlib.suppress(TimeoutError):
        wait_until(done, timeout, "the acknowledged transactions to commit everywhere", 0.5)


def observe(net: Testnet, acked: dict[bytes, str]) -> tuple[list[bytes], list[bytes], list[int], int]:
    """While the network runs: (lost, duplicated, divergent heights, agreed height) from every node's blocks.

    Lost: acknowledged and missing on some node; duplicated: twice or more in some node's chain; divergent: a height
    where two nodes hold different blocks, or that some node lacks."""
    chains = {i: list(net.blocks(i)) for i in net.ids()}
    height = min(len(c) for c in chains.values()) - 1
    top = max(len(c) for c in chains.values())
    divergent = [h for h in range(top) if h > height or len({c[h].hash for c in chains.values()}) > 1]
    lost: set[bytes] = set()
    duplicated: set[bytes] = set()
    for blocks in chains.values():
        counts = Counter(tx.txid for b in blocks for tx in b.transactions)
        lost |= {t for t in acked if counts[t] == 0}
        duplicated |= {t for t in acked if counts[t] > 1}
    return sorted(lost), sorted(duplicated), divergent, height


def verify_stores(paths: dict[str, Path]) -> dict[str, str]:
    """Run the project's verifier on each (stopped) node's store; node → complaint for those that fail."""
    bad = {}
    for node_id, path in paths.items():
        store = open_store(str(path))
        try:
            verify_store(store)
        except Reject as e:
            bad[node_id] = str(e)
        finally:
            store.close()
    return bad


def check(net: Testnet, acked: dict[bytes, str], settle_s: float = 60.0) -> Verdict:
    """Settle, compare every node's chain, stop the network and verify every store."""
    settle(net, acked, settle_s)
    lost, duplicated, divergent, height = observe(net, acked)
    paths = {i: net.store_path(i) for i in net.ids()}
    net.stop()
    return Verdict(len(acked), lost, duplicated, divergent, verify_stores(paths), height)


# ---------------------------------------------------------------------- the scenarios (tests and benchmark)
SKEW_S = 300.0  # five minutes


@dataclass
class Outcome:
    """A scenario's verdict and what it observed on the way."""

    verdict: Verdict
    notes: dict[str, object]


def _takeover(net: Testnet, node_id: str, timeout: float) -> float:
    """Seconds until ``node_id`` says it leads."""
    t0 = time.monotonic()
    wait_until(lambda: net.status(node_id)["leading"], timeout, f"{node_id} to lead")
    return time.monotonic() - t0


def _watch_handover(net: Testnet, old: str, new: str, timeout: float) -> dict[str, float]:
    """Seconds until ``old`` stopped saying it leads and until ``new`` said it leads (both polled in turn)."""
    t0, seen = time.monotonic(), {}

    def done() -> bool:
        for node_id, leads in ((old, False), (new, True)):
            if node_id not in seen and net.status(node_id)["leading"] is leads:
                seen[node_id] = time.monotonic() - t0
        return len(seen) == 2

    wait_until(done, timeout, f"{new} to take over from {old}", interval=0.01)
    return seen


def run_scenario(name: str, folder: Path, fault_s: float = 4.0) -> Outcome:
    """Start a network in ``folder`` (two coordinators, two meters), rewire it, run a workload through every node,
    inject fault ``name`` for ``fault_s`` seconds, heal, and check it (the network is stopped on return)."""
    net = Testnet.start(folder, meters=2, rate_limit=(100_000, 100_000), insecure=True)  # rewires etcd over http
    faults = FaultNet()
    disk = Disk(folder / "disk") if name == "disk_full" else None
    notes: dict[str, object] = {}
    try:
        skew = {"DC1": SKEW_S, "DC1-backup": -SKEW_S} if name == "clock_skew" else None
        rewire(net, faults, disk_node="DC1" if disk else None, disk=disk, skew=skew)
        primary, backup = net.ids("concentrator")
        with Workload(net, net.ids()) as work:
            wait_until(lambda: len(work.acked) >= 20, 30, "the workload to start")
            if name == "leader_partition":
                faults.partition(primary)
                t0 = time.monotonic()
                seen = _watch_handover(net, primary, backup, fault_s + 10)  # while the primary is cut off
                notes["failover_s"] = seen[backup]  # until the backup said it leads
                notes["stale_leading_s"] = seen[primary]  # until the cut-off primary stopped saying it leads
                time.sleep(max(0.0, fault_s - (time.monotonic() - t0)))
                faults.heal(primary)
            elif name == "validator_partition":
                faults.partition("MI1")
                time.sleep(fault_s)
                notes["MI1_height_during"] = net.status("MI1")["height"]
                notes["others_height_during"] = net.status("MI2")["height"]
                faults.heal("MI1")
            elif name == "clock_skew":
                time.sleep(fault_s / 2)
                faults.partition(primary)  # fail over from the clock ahead to the clock behind
                notes["failover_s"] = _takeover(net, backup, fault_s + 10)
                time.sleep(fault_s / 2)
                faults.heal(primary)
            elif name == "disk_full":
                assert disk is not None
                notes["filled_bytes"] = disk.fill()
                time.sleep(fault_s)
                notes["DC1_during"] = {k: net.status(primary).get(k) for k in ("height", "leading")}
                disk.free()
            else:
                raise ValueError(f"unknown scenario {name!r}")
            time.sleep(2)  # the workload goes on after the heal
        notes["refused"] = work.refused
        if name == "clock_skew":
            times = [b.header.time for b in net.blocks(backup)]
            notes["block_times_monotonic"] = all(a <= b for a, b in zip(times, times[1:], strict=False))
            notes["max_block_time_ahead_s"] = max(times) - int(time.time())
        verdict = check(net, work.acked)
        return Outcome(verdict, notes)
    finally:
        with contextlib.suppress(FileNotFoundError):
            net.stop()
        faults.close()
        if disk is not None:
            disk.unmount()
