"""A handle on a local network started with :func:`gridledger.node.cluster.up`, for scenarios and tests.

``Testnet`` starts (or adopts) a cluster folder and gives what a scenario driving the network needs: signed clients
as any registered node (or as an outsider), the node keys, the leading coordinator, every node's height and tip,
the transactions a node holds, and stopping, killing and restarting node processes. ``wait_until`` polls a
condition through the transient errors of nodes that are restarting; ``serve`` runs one node's API in a thread of
this process (in-process tests and benchmarks).

>>> with Testnet.start(folder, meters=2) as net:          # doctest: +SKIP
...     leader = net.leader()
...     net.kill(leader)
...     net.restart(leader)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import uvicorn

from gridledger.ledger.block import Block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.node import cluster
from gridledger.node.client import NodeClient
from gridledger.node.netutil import free_port, wait_port

T = TypeVar("T")
OPERATOR = "operator"
PAGE = 500  # blocks per request


@contextlib.contextmanager
def serve(app, host: str = "127.0.0.1", port: int | None = None) -> Iterator[str]:
    """Serve an ASGI ``app`` (a node's API) with uvicorn in a thread of this process, on ``port`` (default a free
    one); yields its base URL."""
    port = free_port() if port is None else port
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name=f"api-{port}", daemon=True)
    thread.start()
    try:
        wait_port(port, host=host)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def wait_until(predicate: Callable[[], T], timeout: float = 30.0, what: str = "condition", interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy and return that; ``TimeoutError`` naming ``what``.

    Connection and HTTP errors count as "not yet" (nodes may be restarting).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if result := predicate():
                return result
        except (httpx.HTTPError, OSError):
            pass
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Testnet:
    """A running local network in ``folder`` (``cluster.json``); the operator (DSO) key is registered everywhere."""

    __test__ = False  # not a pytest test class

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.operator = KeyPair(bytes.fromhex((self.folder / "keys" / "operator.seed").read_text()))
        self._clients: dict[tuple[str, str, bytes], NodeClient] = {}
        self._lock = threading.Lock()
        self._genesis: Genesis | None = None

    @classmethod
    def start(
        cls,
        folder: Path,
        meters: int,
        concentrators: int = 1,
        rate_limit: tuple[float, float] = (50, 100),
        insecure: bool = False,
    ) -> Testnet:
        """``cluster.up`` in ``folder`` (a primary and a backup concentrator per NAN; TLS unless ``insecure``);
        stopped by ``stop``."""
        cluster.up(Path(folder), meters, concentrators, rate_limit=rate_limit, insecure=insecure)
        return cls(folder)

    def stop(self) -> None:
        """Close every client and stop every process of the network."""
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
        cluster.down(self.folder)

    def __enter__(self) -> Testnet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ who is there
    @property
    def state(self) -> dict:
        return json.loads((self.folder / cluster.STATE_FILE).read_text())

    @property
    def ca(self) -> str | None:
        """The CA certificate the nodes' HTTPS is verified against (None: a plain cluster)."""
        return self.state.get("ca")

    def node(self, node_id: str) -> dict:
        """The node's entry of ``cluster.json`` (id, role, chain, pid, url, config)."""
        try:
            return next(n for n in self.state["nodes"] if n["id"] == node_id)
        except StopIteration:
            raise KeyError(f"no node {node_id!r} in {self.folder}") from None

    def ids(self, role: str | None = None, chain: str | None = None) -> list[str]:
        """Node ids, optionally only of one role (``meter``, ``concentrator``) or one chain."""
        return [
            n["id"]
            for n in self.state["nodes"]
            if (role is None or n["role"] == role) and (chain is None or n["chain"] == chain)
        ]

    def node_key(self, node_id: str) -> KeyPair:
        """The node's key pair, from its configuration file."""
        data = tomllib.loads(Path(self.node(node_id)["config"]).read_text())
        return KeyPair(bytes.fromhex(data["key_seed"]))

    def store_path(self, node_id: str) -> Path:
        """The node's SQLite store."""
        data = tomllib.loads(Path(self.node(node_id)["config"]).read_text())
        return Path(self.node(node_id)["config"]).parent / data["store"]

    # ------------------------------------------------------------------ talking to nodes
    def client(self, node_id: str, as_id: str = OPERATOR, key: KeyPair | None = None) -> NodeClient:
        """A signed client of ``node_id``'s API, as ``as_id`` with ``key`` (default: the operator). Cached."""
        key = key or (self.operator if as_id == OPERATOR else self.node_key(as_id))
        cache = (node_id, as_id, key.public)
        with self._lock:
            if cache not in self._clients:
                self._clients[cache] = NodeClient(self.node(node_id)["url"], as_id, key, ca=self.ca)
            return self._clients[cache]

    def status(self, node_id: str) -> dict:
        return self.client(node_id).status()

    @property
    def genesis(self) -> Genesis:
        """The genesis transaction of the (first) chain."""
        if self._genesis is None:
            raw = self.client(self.ids()[0]).blocks(0, 1)[0][1]
            self._genesis = Block.decode(raw).transactions[0]
        return self._genesis

    @property
    def chain_id(self) -> bytes:
        return self.genesis.chain_id

    def slot(self, now: float | None = None) -> int:
        """The chain's slot at Unix time ``now`` (default: the clock)."""
        g = self.genesis
        return (int(time.time() if now is None else now) - g.start_time) // g.slot_seconds

    def leader(self, chain: str | None = None, timeout: float = 30.0, interval: float = 0.1) -> str:
        """The coordinator that leads now (waits until one does; coordinators that are down are skipped)."""
        coordinators = self.ids("concentrator", chain)

        def leading() -> str | None:
            for node_id in coordinators:
                try:
                    if self.status(node_id)["leading"]:
                        return node_id
                except (httpx.HTTPError, OSError):
                    continue
            return None

        return wait_until(leading, timeout, "a leader", interval)

    def tips(self, ids: Iterable[str]) -> dict[str, tuple[int, str]]:
        """(height, tip hash) of each node."""
        return {i: (s["height"], s["tip"]) for i, s in ((i, self.status(i)) for i in ids)}

    def agree(self, ids: Iterable[str], at_least: int = 0) -> bool:
        """True if every node of ``ids`` has the same tip, at height ``at_least`` or more."""
        tips = set(self.tips(ids).values())
        return len(tips) == 1 and next(iter(tips))[0] >= at_least

    def wait_agree(self, ids: Iterable[str], at_least: int = 0, timeout: float = 60.0, interval: float = 0.2) -> None:
        ids = list(ids)
        what = f"{', '.join(ids)} to agree at height >= {at_least}"
        wait_until(lambda: self.agree(ids, at_least), timeout, what, interval)

    def blocks(self, node_id: str, start: int = 0, stop: int | None = None) -> Iterator[Block]:
        """The node's blocks from height ``start`` to ``stop`` (inclusive; default: its tip), fetched in pages."""
        client = self.client(node_id)
        while stop is None or start <= stop:
            rows = client.blocks(start, PAGE if stop is None else min(PAGE, stop - start + 1))
            if not rows:
                return
            for _, raw in rows:
                yield Block.decode(raw)
            start = rows[-1][0] + 1

    def txids(self, node_id: str, start: int = 1) -> set[bytes]:
        """The ids of the transactions in the node's blocks from ``start`` on."""
        return {tx.txid for block in self.blocks(node_id, start) for tx in block.transactions}

    # ------------------------------------------------------------------ processes
    def alive(self, node_id: str) -> bool:
        return cluster._alive(self.node(node_id)["pid"])  # the cluster's own test (reaps a zombie child)

    def kill(self, node_id: str, sig: signal.Signals = signal.SIGKILL, timeout: float = 15.0) -> None:
        """Send ``sig`` to the node's process (SIGTERM: a clean stop) and wait until it is gone."""
        os.kill(self.node(node_id)["pid"], sig)
        wait_until(lambda: not self.alive(node_id), timeout, f"{node_id} to stop")

    def restart(self, node_id: str) -> float:
        """Start a stopped node again (same configuration and store); returns the Unix time of the start."""
        started = time.time()
        cluster.restart(self.folder, node_id)
        return started
