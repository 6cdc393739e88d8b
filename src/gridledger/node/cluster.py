"""A local multi-process network on loopback: a 3-member etcd cluster and one process per node.

``up`` makes keys, one NAN chain per concentrator (its genesis names the concentrator as primary coordinator and
a backup concentrator process as second coordinator), the node configurations, and starts every process
detached; ``down`` stops them. Everything lives in one folder (``cluster.json`` records the processes); the
operator (DSO) key in ``keys/operator.seed`` is registered with every node, so ``status`` can query them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from gridledger.ledger.block import ZERO_HASH, make_block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.transactions import Genesis
from gridledger.node.etcd import EtcdCluster
from gridledger.node.netutil import free_port, wait_port

STATE_FILE = "cluster.json"
SLOT_SECONDS = 900


@dataclass
class NodeSpec:
    node_id: str
    role: str
    chain: str
    key: KeyPair
    port: int


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def plan(meters: int, concentrators: int) -> tuple[dict[str, list[NodeSpec]], KeyPair]:
    """Nodes per NAN chain: a primary and a backup concentrator, and the meters spread over the NANs."""
    operator = KeyPair.generate()
    chains: dict[str, list[NodeSpec]] = {}
    for c in range(1, concentrators + 1):
        nan = f"nan{c}"
        chains[nan] = [
            NodeSpec(f"DC{c}", "concentrator", nan, KeyPair.generate(), free_port()),
            NodeSpec(f"DC{c}-backup", "concentrator", nan, KeyPair.generate(), free_port()),
        ]
    for m in range(1, meters + 1):
        nan = f"nan{(m - 1) % concentrators + 1}"
        chains[nan].append(NodeSpec(f"MI{m}", "meter", nan, KeyPair.generate(), free_port()))
    return chains, operator


def up(
    folder: Path, meters: int, concentrators: int, timeout: float = 60.0, rate_limit: tuple[float, float] = (50, 100)
) -> dict:
    """Start the network in ``folder`` (created; must not hold a running cluster). Returns the state.

    ``rate_limit``: (requests per second, burst) each node allows every calling node.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / STATE_FILE).exists():
        raise FileExistsError(f"{folder} already holds a cluster; run `gridledger cluster down --dir {folder}` first")
    etcd = EtcdCluster(3, base_dir=folder / "etcd").start(timeout)
    chains, operator = plan(meters, concentrators)
    (folder / "keys").mkdir(exist_ok=True)
    (folder / "keys" / "operator.seed").write_text(operator.seed.hex())
    now = int(time.time())
    state = {
        "etcd": [{"pid": m.process.pid, "url": m.url} for m in etcd.members],
        "operator": operator.public.hex(),
        "nodes": [],
    }
    for nan, nodes in chains.items():
        primary, backup = nodes[0], nodes[1]
        genesis = Genesis(
            nan, SLOT_SECONDS, now - now % SLOT_SECONDS, operator.public, (primary.key.public, backup.key.public)
        )
        block = make_block(genesis.chain_id, 0, ZERO_HASH, now, (genesis,), primary.key)
        (folder / f"{nan}.genesis").write_text(block.encode().hex())
        registry = [("operator", "dso", operator)] + [(n.node_id, n.role, n.key) for n in nodes]
        for node in nodes:
            peers = [f"http://127.0.0.1:{n.port}" for n in nodes if n is not node]
            lines = [
                f'node_id = "{node.node_id}"',
                f'role = "{node.role}"',
                f'key_seed = "{node.key.seed.hex()}"',
                f'store = "{node.node_id}.sqlite"',
                f'genesis = "{nan}.genesis"',
                f'api = "127.0.0.1:{node.port}"',
                f"orderer = {_toml_list(etcd.endpoints)}",
                f"peers = {_toml_list(peers)}",
                f"rate_limit = {{ rate = {rate_limit[0]}, burst = {rate_limit[1]} }}",
            ]
            for rid, role, key in registry:
                lines += ["", "[[registry]]", f'id = "{rid}"', f'role = "{role}"', f'pubkey = "{key.public.hex()}"']
            cfg = folder / f"{node.node_id}.toml"
            cfg.write_text("\n".join(lines) + "\n")
            proc = _start_node(folder, node.node_id, node.role, cfg)
            state["nodes"].append(
                {
                    "id": node.node_id,
                    "role": node.role,
                    "chain": nan,
                    "pid": proc.pid,
                    "url": f"http://127.0.0.1:{node.port}",
                    "config": str(cfg),
                }
            )
    (folder / STATE_FILE).write_text(json.dumps(state, indent=2))
    for n in state["nodes"]:
        wait_port(int(n["url"].rsplit(":", 1)[1]), timeout)
    return state


def _start_node(folder: Path, node_id: str, role: str, cfg: Path) -> subprocess.Popen:
    log = open(folder / f"{node_id}.log", "ab")  # noqa: SIM115 - owned by the process
    return subprocess.Popen(
        [sys.executable, "-m", "gridledger", "node", "--role", role, "--config", str(cfg)],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )


def restart(folder: Path, node_id: str, timeout: float = 60.0) -> int:
    """Start a stopped node of the cluster again (same config and store); returns its new pid."""
    path = folder / STATE_FILE
    state = json.loads(path.read_text())
    node = next(n for n in state["nodes"] if n["id"] == node_id)
    deadline = time.monotonic() + 5  # a process just killed may take a moment to go
    while _alive(node["pid"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    if _alive(node["pid"]):
        raise RuntimeError(f"{node_id} is still running (pid {node['pid']})")
    node["pid"] = _start_node(folder, node_id, node["role"], Path(node["config"])).pid
    path.write_text(json.dumps(state, indent=2))
    wait_port(int(node["url"].rsplit(":", 1)[1]), timeout)
    return node["pid"]


def _alive(pid: int) -> bool:
    try:  # reap it if it is our own child (a zombie still answers kill 0)
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def down(folder: Path, timeout: float = 15.0) -> int:
    """Stop every process of the cluster in ``folder`` (nodes first, then etcd); returns how many were running."""
    path = folder / STATE_FILE
    if not path.exists():
        raise FileNotFoundError(f"no cluster in {folder} (no {STATE_FILE})")
    state = json.loads(path.read_text())
    groups = [[n["pid"] for n in state["nodes"]], [m["pid"] for m in state["etcd"]]]
    running = 0
    for pids in groups:
        live = [p for p in pids if _alive(p)]
        running += len(live)
        for p in live:
            os.killpg(p, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(_alive(p) for p in live) and time.monotonic() < deadline:
            time.sleep(0.05)
        for p in live:
            if _alive(p):
                os.killpg(p, signal.SIGKILL)
    path.rename(folder / (STATE_FILE + ".stopped"))
    return running
