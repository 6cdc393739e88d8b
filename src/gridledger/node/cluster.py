"""A local multi-process network on loopback: a 3-member etcd cluster and one process per node.

``up`` is the deployment plan of :mod:`gridledger.node.deploy` for one host, 127.0.0.1, written into one folder
(``flat``), whose systemd units' commands it starts itself: it makes keys, one NAN chain per concentrator (its genesis
names the concentrator as primary coordinator and a backup concentrator process as second coordinator), the node
configurations, starts etcd, bootstraps it (``deploy.bootstrap``) and starts every node detached; ``down`` stops them.
Everything lives in one folder (``cluster.json`` records the processes); the operator (DSO) key in
``keys/operator.seed`` is registered with every node, so ``status`` can query them.

With ``poef`` each NAN chain is a PoEf chain (genesis ``nan:DCk``, :mod:`gridledger.node.poef_net`): the DSO's
first policy (queued by the bootstrap before the nodes start) enrols the NAN's meters as its members with PETra
limits; the DSO's content root (``keys/content.root``) gives each coordinator its chain's master content key and each
meter its member key (``content_key`` in their configurations), so readings are encrypted for exactly the meter,
its coordinators and the DSO. Slot 0 of a PoEf chain starts a minute before ``up``.

Secure by default: the plan makes a local CA in ``pki/`` (:mod:`gridledger.node.pki`) and a certificate for every
etcd member, every node, the MQTT broker and etcd's administrative client; etcd speaks TLS on client and peer URLs and
demands client certificates, every node serves its API over HTTPS and reaches etcd and its peers with its
certificate, verifying them against the CA (``ca`` in ``cluster.json``). etcd's access control is on: user ``root``
(its password in ``pki/etcd-root.password``) and one user per node, whose role may read and write only its chain's
keys (``etcd_password`` in the node's configuration). ``insecure=True`` keeps plain HTTP without authentication.
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gridledger.ledger.block import Block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.dso_policy import DsoPolicy
from gridledger.ledger.kinds.reading import ReadingDevice
from gridledger.ledger.units import DEFAULT_SLOT_SECONDS
from gridledger.node.config import NodeConfig
from gridledger.node.deploy import (
    MQTT_CERT,
    PKI_DIR,
    UNIT_DIR,
    Deployment,
    Host,
    Install,
    Member,
    Placement,
    bootstrap,
    enrolment,
    node_command,
    spawn,
    start_unit,
    write_plan,
)
from gridledger.node.etcd import ELECTION_MS, HEARTBEAT_MS, etcd_binary
from gridledger.node.netutil import free_ports, wait_port
from gridledger.store.pgserver import PgServer
from gridledger.tiers.hierarchy import METER_LIMITS

__all__ = ["MQTT_CERT", "PKI_DIR", "STATE_FILE", "down", "local_deployment", "meter_device", "restart", "up"]

STATE_FILE = "cluster.json"
#: Requests per second (and burst) each node allows one peer address; on loopback that address is every caller's.
LOOPBACK_PEER_LIMIT = (100_000, 200_000)


@dataclass
class NodeSpec:
    node_id: str
    role: str
    chain: str
    key: KeyPair
    port: int


def local_deployment(
    meters: int,
    concentrators: int,
    store: Callable[[str], str],
    *,
    poef: bool,
    insecure: bool,
    rate_limit: tuple[float, float],
    slot_seconds: int,
    meter_ids: list[str] | None,
    limits: tuple[int, int, int],
    extra_registry: tuple[tuple[str, str, KeyPair], ...],
) -> Deployment:
    """The deployment of ``up``: one host (127.0.0.1, free ports), a primary and a backup concentrator per NAN, the
    meters (``MI1…`` or ``meter_ids``) spread over the NANs, each node's store ``store(node_id)``."""
    ports = iter(free_ports(2 * concentrators + meters + 6))  # distinct: two picked alike would collide
    nodes = []
    for c in range(1, concentrators + 1):
        for node_id in (f"DC{c}", f"DC{c}-backup"):
            nodes.append(Placement(node_id, "concentrator", f"nan{c}", "local", next(ports), store(node_id)))
    for m in range(1, meters + 1):
        name = meter_ids[m - 1] if meter_ids else f"MI{m}"
        nodes.append(Placement(name, "meter", f"nan{(m - 1) % concentrators + 1}", "local", next(ports), store(name)))
    return Deployment(
        "local",
        {"local": Host("local", "127.0.0.1")},
        [Member(f"etcd{i}", "local", next(ports), next(ports)) for i in range(3)],
        nodes,
        dso="local",
        mqtt="local",
        poef=poef,
        slot_seconds=slot_seconds,
        limits=limits,
        install=Install(root=None, user=getpass.getuser(), python=sys.executable, etcd=etcd_binary()),
        tls=not insecure,
        rate_limit=rate_limit,
        # on loopback every caller has the same address: a limit per address would throttle them all together
        peer_limit=LOOPBACK_PEER_LIMIT,
        raft_ms=(HEARTBEAT_MS, ELECTION_MS),
        extra_registry=tuple((rid, role, key.public) for rid, role, key in extra_registry),
    )


def up(
    folder: Path,
    meters: int,
    concentrators: int,
    timeout: float = 60.0,
    rate_limit: tuple[float, float] = (50, 100),
    poef: bool = False,
    postgres: bool = False,
    insecure: bool = False,
    *,
    slot_seconds: int = DEFAULT_SLOT_SECONDS,
    meter_ids: list[str] | None = None,
    limits: tuple[int, int, int] = METER_LIMITS,
    extra_registry: tuple[tuple[str, str, KeyPair], ...] = (),
    enrol_after_s: int = 0,
) -> dict:
    """Start the network in ``folder`` (created; must not hold a running cluster). Returns the state.

    ``rate_limit``: (requests per second, burst) each node allows every calling node (the limit per peer address is
    ``LOOPBACK_PEER_LIMIT``: on loopback every caller has the same address). ``poef``: PoEf
    NAN chains (see the module docstring); otherwise untagged chains with the coordinator-only rule. ``postgres``:
    every node stores its chain in its own database of a throwaway PostgreSQL server (else SQLite files beside its
    config). ``insecure``: plain HTTP everywhere, no CA (else TLS, see the module docstring). The keyword
    arguments serve ``up_community``: the PoEf chains' slot length (s), the meters' ids and DSO limits (MAXEPA W,
    MAXECA W, FA credit), further registered callers (id, role, key) of every node, and
    how long after ``up`` starts the meters' enrolment takes effect (s; with short slots the enrolment must not
    name a slot that is over before the nodes have started and commit it).
    """
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / STATE_FILE).exists():
        raise FileExistsError(f"{folder} already holds a cluster; run `gridledger cluster down --dir {folder}` first")
    pg = PgServer.start() if postgres else None  # its own temp folder: the server's system user must reach it
    dep = local_deployment(
        meters,
        concentrators,
        lambda node_id: _store_for(pg, node_id),
        poef=poef,
        insecure=insecure,
        rate_limit=rate_limit,
        slot_seconds=slot_seconds,
        meter_ids=meter_ids,
        limits=limits,
        extra_registry=extra_registry,
    )
    try:
        state = write_plan(dep, folder, flat=True)
    except BaseException:
        if pg is not None:
            pg.stop()
        raise
    state["postgres"] = str(pg.base) if pg else None
    units = folder / UNIT_DIR
    for m in state["etcd"]:
        m["pid"] = start_unit(units / f"gridledger-etcd-{m['name']}.service", folder / "etcd" / f"{m['name']}.log").pid
    state["nodes"], nodes = [], state["nodes"]
    (folder / STATE_FILE).write_text(json.dumps(state, indent=2))
    try:
        bootstrap(folder, enrol_after_s, timeout)
        for n in nodes:
            n["pid"] = start_unit(units / f"gridledger-{n['id']}.service", folder / f"{n['id']}.log").pid
            state["nodes"].append(n)
        (folder / STATE_FILE).write_text(json.dumps(state, indent=2))
        for n in state["nodes"]:
            wait_port(int(n["url"].rsplit(":", 1)[1]), timeout)
    except BaseException:
        (folder / STATE_FILE).write_text(json.dumps(state, indent=2))
        down(folder)  # stop what started (and the PostgreSQL server)
        raise
    return state


def _enrol(
    dso_key: KeyPair, chain_id: bytes, meters: list[NodeSpec], limits: tuple[int, int, int], slot: int
) -> DsoPolicy:
    """The DSO's first policy on a PoEf NAN chain: its meters authorized from ``slot``, with PETra ``limits``."""
    return enrolment(dso_key, chain_id, {m.node_id: m.key.public for m in meters}, limits, slot)


def meter_device(folder: Path, meter: str) -> ReadingDevice:
    """The reading device of ``meter`` in the PoEf cluster in ``folder``: it encrypts readings with the meter's
    member content key and signs them with the meter's key (both from its configuration)."""
    state = json.loads((folder / STATE_FILE).read_text())
    node = next((n for n in state["nodes"] if n["id"] == meter), None)
    if node is None or "member" not in node:
        raise ValueError(f"{meter!r} is not a meter of a PoEf chain in {folder}")
    cfg = NodeConfig.load(node["config"])
    return ReadingDevice(Block.decode(cfg.genesis).header.chain_id, node["member"], cfg.key, cfg.content_key)


def _start_node(folder: Path, node_id: str, role: str, cfg: Path) -> subprocess.Popen:
    return spawn(node_command(sys.executable, role, str(cfg)), folder / f"{node_id}.log")


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


def _store_for(pg: PgServer | None, node_id: str) -> str:
    """A node's store: its own PostgreSQL database, or a SQLite file beside its configuration."""
    if pg is None:
        return f"{node_id}.sqlite"
    return pg.create_database("gridledger_" + node_id.lower().replace("-", "_"))


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
    market = [m["pid"] for m in state.get("market", [])]  # the market's processes (up_community) go first
    groups = [market, [n["pid"] for n in state["nodes"]], [m["pid"] for m in state["etcd"]]]
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
    if state.get("postgres"):
        PgServer.attach(Path(state["postgres"])).stop(remove=True)
    path.rename(folder / (STATE_FILE + ".stopped"))
    return running
