"""A local multi-process network on loopback: a 3-member etcd cluster and one process per node.

``up`` makes keys, one NAN chain per concentrator (its genesis names the concentrator as primary coordinator and
a backup concentrator process as second coordinator), the node configurations, and starts every process
detached; ``down`` stops them. Everything lives in one folder (``cluster.json`` records the processes); the
operator (DSO) key in ``keys/operator.seed`` is registered with every node, so ``status`` can query them.

With ``poef`` each NAN chain is a PoEf chain (genesis ``nan:DCk``, :mod:`gridledger.node.poef_net`): the DSO's
first policy (nonce 1, queued before the nodes start) enrols the NAN's meters as its members with PETra limits;
the DSO's content root (``keys/content.root``) gives each coordinator its chain's master content key and each
meter its member key (``content_key`` in their configurations), so readings are encrypted for exactly the meter,
its coordinators and the DSO. Slot 0 of a PoEf chain starts a minute before ``up``.

Secure by default: ``up`` makes a local CA in ``pki/`` (:mod:`gridledger.node.pki`) and a certificate for every etcd
member, every node and etcd's administrative client; etcd speaks TLS on client and peer URLs and demands client
certificates, every node serves its API over HTTPS and reaches etcd and its peers with its certificate, verifying
them against the CA (``ca`` in ``cluster.json``). etcd's access control is on: user ``root`` (its password in
``pki/etcd-root.password``) and one user per node, whose role may read and write only its chain's keys
(``etcd_password`` in the node's configuration). ``insecure=True`` keeps plain HTTP without authentication.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from etcd3gw.client import Etcd3Client

from gridledger.ledger.block import ZERO_HASH, Block, make_block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.dso_policy import DsoPolicy, MeterLimits
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.ledger.kinds.reading import ContentKeys, ReadingDevice
from gridledger.ledger.ruleset import Tier, tier_ruleset
from gridledger.ledger.units import DEFAULT_SLOT_SECONDS
from gridledger.node.config import NodeConfig
from gridledger.node.etcd import ADMIN_CERT, EtcdCluster, enable_auth, grant_prefix
from gridledger.node.netutil import free_port, wait_port
from gridledger.node.pki import LocalCA, write_private
from gridledger.node.poef_board import EtcdPoefOrderer
from gridledger.petra.dso import DSO
from gridledger.store.pgserver import PgServer
from gridledger.tiers.hierarchy import METER_LIMITS, chain_name

STATE_FILE = "cluster.json"
#: The cluster's CA folder (inside the cluster folder).
PKI_DIR = "pki"
#: The MQTT broker's certificate in ``pki/`` (for mosquitto's ``certfile``/``keyfile``, see docs/security.md).
MQTT_CERT = "mqtt-broker"
#: Requests per second (and burst) each node allows one peer address; on loopback that address is every caller's.
LOOPBACK_PEER_LIMIT = (100_000, 200_000)


@dataclass
class NodeSpec:
    node_id: str
    role: str
    chain: str
    key: KeyPair
    port: int


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def plan(
    meters: int, concentrators: int, meter_ids: list[str] | None = None
) -> tuple[dict[str, list[NodeSpec]], KeyPair]:
    """Nodes per NAN chain: a primary and a backup concentrator, and the meters (``MI1…`` or ``meter_ids``) spread
    over the NANs."""
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
        name = meter_ids[m - 1] if meter_ids else f"MI{m}"
        chains[nan].append(NodeSpec(name, "meter", nan, KeyPair.generate(), free_port()))
    return chains, operator


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
    ca = None if insecure else _make_ca(folder)
    scheme = "http" if ca is None else "https"
    etcd = EtcdCluster(3, base_dir=folder / "etcd", ca=ca).start(timeout)
    admin, root = _etcd_root(etcd, folder) if ca is not None else (None, None)
    pg = PgServer.start() if postgres else None  # its own temp folder: the server's system user must reach it
    chains, operator = plan(meters, concentrators, meter_ids)
    (folder / "keys").mkdir(exist_ok=True)
    write_private(folder / "keys" / "operator.seed", operator.seed.hex())
    content = ContentKeys(os.urandom(32)) if poef else None
    if content is not None:
        write_private(folder / "keys" / "content.root", content.root.hex())
    now = int(time.time())
    state = {
        "etcd": [{"pid": m.process.pid, "url": m.url} for m in etcd.members],
        "operator": operator.public.hex(),
        "consensus": "poef" if poef else "coordinator",
        "postgres": str(pg.base) if pg else None,
        "ca": None if ca is None else str(ca.ca_path),
        "nodes": [],
    }
    for nan, nodes in chains.items():
        primary, backup = nodes[0], nodes[1]
        proposers = (primary.key.public, backup.key.public)
        if content is None:
            genesis = Genesis(nan, DEFAULT_SLOT_SECONDS, now - now % DEFAULT_SLOT_SECONDS, operator.public, proposers)
        else:
            name, ruleset = chain_name(Tier.NAN, primary.node_id), tier_ruleset(Tier.NAN).name
            genesis = Genesis(name, slot_seconds, now - 60, operator.public, proposers, ruleset=ruleset)
        block = make_block(genesis.chain_id, 0, ZERO_HASH, now, (genesis,), primary.key)
        (folder / f"{nan}.genesis").write_text(block.encode().hex())
        secrets: dict[str, bytes] = {}
        members: dict[str, int] = {}
        if content is not None:
            meters_here = [n for n in nodes if n.role == "meter"]
            enrolment = _enrol(operator, genesis.chain_id, meters_here, limits, (60 + enrol_after_s) // slot_seconds)
            admin_tls = None if ca is None else ca.files(ADMIN_CERT)
            enrolling = EtcdPoefOrderer(etcd.endpoints, genesis.chain_id, tls=admin_tls, auth=root)
            with contextlib.closing(enrolling) as orderer:
                orderer.submit(enrolment.txid, enrolment.encode())
            keys = content.chain(genesis.chain_id)
            members = {meter: index for index, (meter, _) in enumerate(enrolment.authorize)}
            secrets = {n.node_id: keys.master for n in (primary, backup)}
            secrets |= {meter: keys.member_key(index) for meter, index in members.items()}
        registry = [("operator", "dso", operator), *extra_registry] + [(n.node_id, n.role, n.key) for n in nodes]
        for node in nodes:
            peers = [f"{scheme}://127.0.0.1:{n.port}" for n in nodes if n is not node]
            others = [f"{scheme}://127.0.0.1:{other[0].port}" for other in chains.values() if other is not nodes]
            lines = [
                f'node_id = "{node.node_id}"',
                f'role = "{node.role}"',
                f'key_seed = "{node.key.seed.hex()}"',
                f'store = "{_store_for(pg, node.node_id)}"',
                f'genesis = "{nan}.genesis"',
                f'api = "127.0.0.1:{node.port}"',
                f"orderer = {_toml_list(etcd.endpoints)}",
                f"peers = {_toml_list(peers)}",
                f"dashboard_peers = {_toml_list(others)}",  # the primary concentrator of every other NAN
                f"rate_limit = {{ rate = {rate_limit[0]}, burst = {rate_limit[1]} }}",
                # on loopback every caller has the same address: a limit per address would throttle them all together
                f"peer_limit = {{ rate = {LOOPBACK_PEER_LIMIT[0]}, burst = {LOOPBACK_PEER_LIMIT[1]} }}",
            ]
            if node.node_id in secrets:
                lines.append(f'content_key = "{secrets[node.node_id].hex()}"')
            lines += _etcd_user(admin, node.node_id, genesis.chain_id)
            lines += _tls_lines(folder, ca, node.node_id)
            for rid, role, key in registry:
                lines += ["", "[[registry]]", f'id = "{rid}"', f'role = "{role}"', f'pubkey = "{key.public.hex()}"']
            cfg = folder / f"{node.node_id}.toml"
            cfg.write_text("\n".join(lines) + "\n")
            proc = _start_node(folder, node.node_id, node.role, cfg)
            entry = {
                "id": node.node_id,
                "role": node.role,
                "chain": nan,
                "pid": proc.pid,
                "url": f"{scheme}://127.0.0.1:{node.port}",
                "config": str(cfg),
            }
            if node.node_id in members:
                entry["member"] = members[node.node_id]
            state["nodes"].append(entry)
    if admin is not None:
        admin.session.close()
    (folder / STATE_FILE).write_text(json.dumps(state, indent=2))
    for n in state["nodes"]:
        wait_port(int(n["url"].rsplit(":", 1)[1]), timeout)
    return state


def _make_ca(folder: Path) -> LocalCA:
    """The cluster's CA in ``folder/pki``, with the MQTT broker's certificate (``MQTT_CERT``) issued."""
    ca = LocalCA.create(folder / PKI_DIR)
    ca.issue(MQTT_CERT)
    return ca


def _etcd_root(etcd: EtcdCluster, folder: Path) -> tuple[Etcd3Client, tuple[str, str]]:
    """Turn on etcd's access control: user ``root`` with a new password (``pki/etcd-root.password``, 0600); a
    client logged in as root, and root's (user, password)."""
    password = os.urandom(16).hex()
    write_private(folder / PKI_DIR / "etcd-root.password", password)
    admin = etcd.client()
    enable_auth(admin, password)
    return admin, ("root", password)


def _etcd_user(admin: Etcd3Client | None, node_id: str, chain_id: bytes) -> list[str]:
    """A node's etcd user (its role: its chain's keys only) and its ``etcd_password`` line; none without ``admin``."""
    if admin is None:
        return []
    password = os.urandom(16).hex()
    grant_prefix(admin, node_id, password, f"/gridledger/{chain_id.hex()}/")
    return [f'etcd_password = "{password}"']


def _tls_lines(folder: Path, ca: LocalCA | None, node_id: str) -> list[str]:
    """A node's ``[tls]`` configuration table (paths relative to the folder), its certificate issued; none if plain."""
    if ca is None:
        return []
    files = ca.issue(node_id, common=False)  # also etcd's client: no common name (pki.LocalCA.issue)
    rel = {k: getattr(files, k).relative_to(folder) for k in ("ca", "cert", "key")}
    return ["", "[tls]", *(f'{k} = "{v}"' for k, v in rel.items())]


def _enrol(
    dso_key: KeyPair, chain_id: bytes, meters: list[NodeSpec], limits: tuple[int, int, int], slot: int
) -> DsoPolicy:
    """The DSO's first policy on a PoEf NAN chain: its meters authorized from ``slot``, with PETra ``limits``."""
    authorize = {m.node_id: m.key.public for m in meters}
    enrolled = [MeterLimits(m, *limits) for m in sorted(authorize)]
    return DSO(dso_key, chain_id).policy(slot, authorize=authorize, limits=enrolled)


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
