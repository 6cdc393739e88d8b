"""A deployment across machines: the deployment file, the per-host plan, etcd's bootstrap, starting units.

A deployment file (TOML, ``Deployment.load``; docs/deploy.md) names the hosts and their addresses, the 3 or 5 etcd
members, per NAN a primary and a backup concentrator (each with its store, e.g. a PostgreSQL DSN) and the meters, the
DSO's host (it keeps the operator key and the CA key) and the MQTT broker's host. ``write_plan`` makes one folder per
host holding exactly what that host needs: its node configurations and private keys, its certificates from one CA
made for the deployment (the host's addresses and DNS names in their SANs), the CA certificate, the genesis blocks of
its chains, its etcd member's configuration, mosquitto's if it is the broker, one systemd unit per process, an
``install.sh`` and a ``README``. The DSO's folder also holds the operator key, the CA, ``deployment.json`` (where
every node is) and ``bootstrap.json`` (etcd's root and node passwords, mode 0600): once etcd runs, ``bootstrap``
turns on etcd's access control (a user and role per node, limited to its chain's keys) and, on PoEf chains, queues
the DSO's enrolment of every NAN's meters.

``gridledger cluster up`` is this same plan with one host at 127.0.0.1 (``flat``: one folder), whose units it starts
itself (``start_unit`` runs a unit's ``ExecStart``). Nothing here is consensus code: keys, certificates and files.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
import time
import tomllib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gridledger.devices.meter_device import METER_TOPICS, measurement_topic
from gridledger.ledger.block import ZERO_HASH, make_block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds.dso_policy import DsoPolicy, MeterLimits
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.ledger.kinds.reading import ContentKeys
from gridledger.ledger.ruleset import Tier, tier_ruleset
from gridledger.ledger.units import DEFAULT_SLOT_SECONDS
from gridledger.node.etcd import ADMIN_CERT, auth_names, enable_auth, etcd_client, grant_prefix, wait_healthy
from gridledger.node.meter_files import MeterFiles, write_meter_folder
from gridledger.node.pki import LocalCA, TlsFiles, write_private
from gridledger.petra.dso import DSO
from gridledger.tiers.hierarchy import METER_LIMITS, chain_name

#: Default ports: a node's API, etcd's client and peer URLs, the MQTT broker's TLS listener.
API_PORT, ETCD_CLIENT_PORT, ETCD_PEER_PORT, MQTT_PORT = 8443, 2379, 2380, 8883
#: The DSO folder's list of every node and etcd member (the shape of ``cluster.json``, without process ids).
MANIFEST = "deployment.json"
#: The DSO folder's secrets for ``bootstrap`` (mode 0600).
SECRETS = "bootstrap.json"
PKI_DIR = "pki"
UNIT_DIR = "systemd"
#: Meter daemons' folders (``meters/<id>/``): in the plan itself, or in the folder of the host that runs the daemon.
METER_DIR = "meters"
#: The MQTT broker's certificate name (mosquitto's ``certfile``/``keyfile``).
MQTT_CERT = "mqtt-broker"
#: Host names, node ids and member names: they become file names and etcd user names.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
#: Hardening of every unit (systemd.exec(5)); the process may write only its install folder.
_HARDENING = (
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectControlGroups=yes",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    "LockPersonality=yes",
    "UMask=0077",
)


class DeploymentError(ValueError):
    """The deployment file (or plan folder) is wrong; the message names the entry."""


@dataclass(frozen=True)
class Host:
    name: str
    address: str  # an IP address the host's processes listen on
    dns: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """What its certificates' SANs hold (besides 127.0.0.1 and localhost)."""
        return (self.address, *self.dns)


@dataclass(frozen=True)
class Member:
    """An etcd member."""

    name: str
    host: str
    client_port: int = ETCD_CLIENT_PORT
    peer_port: int = ETCD_PEER_PORT


@dataclass(frozen=True)
class Placement:
    """A node: where it runs, which NAN it is on, its store (SQLite file in its folder, or a PostgreSQL URL)."""

    id: str
    role: str  # concentrator | meter
    nan: str
    host: str
    port: int = API_PORT
    store: str = ""
    daemon: str | None = None  # a meter's: the host that runs its meter daemon (None: no unit, a folder in meters/)
    batch_minutes: int = 1  # a meter's daemon: minutes per transaction (1: a READING a minute; more: READING_BATCHes)

    @property
    def store_url(self) -> str:
        return self.store or f"{self.id}.sqlite"


@dataclass(frozen=True)
class Install:
    """Where things are on the hosts: the install folder (None: the folder the plan is written to), the system user,
    the Python that has gridledger installed, etcd's and mosquitto's binaries."""

    root: str | None = "/var/lib/gridledger"
    user: str = "gridledger"
    python: str = "/opt/gridledger/bin/python"
    etcd: str = "/usr/bin/etcd"
    mosquitto: str = "/usr/sbin/mosquitto"


@dataclass
class Deployment:
    """A validated deployment (``load`` or built in code; ``check`` validates)."""

    name: str
    hosts: dict[str, Host]
    etcd: list[Member]
    nodes: list[Placement]  # per NAN: primary, backup, then its meters
    dso: str
    mqtt: str | None = None
    poef: bool = True
    slot_seconds: int = DEFAULT_SLOT_SECONDS
    limits: tuple[int, int, int] = METER_LIMITS  # MAXEPA W, MAXECA W, FA credit of every enrolled meter
    install: Install = field(default_factory=Install)
    tls: bool = True
    rate_limit: tuple[float, float] = (50, 100)  # per calling node (requests/s, burst)
    peer_limit: tuple[float, float] = (1000, 2000)  # per peer address
    raft_ms: tuple[int, int] = (100, 1000)  # etcd heartbeat and election timeout
    mqtt_port: int = MQTT_PORT
    #: Further callers registered with every node: (id, role, public key).
    extra_registry: tuple[tuple[str, str, bytes], ...] = ()

    def nans(self) -> dict[str, list[Placement]]:
        chains: dict[str, list[Placement]] = {}
        for n in self.nodes:
            chains.setdefault(n.nan, []).append(n)
        return chains

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def url(self, node: Placement) -> str:
        return f"{self.scheme}://{self.hosts[node.host].address}:{node.port}"

    def endpoints(self) -> list[str]:
        return [f"{self.scheme}://{self.hosts[m.host].address}:{m.client_port}" for m in self.etcd]

    def check(self) -> Deployment:
        """Raise ``DeploymentError`` for the first inconsistency; return self."""
        addresses: dict[str, str] = {}
        for h in self.hosts.values():
            try:
                ipaddress.ip_address(h.address)
            except ValueError:
                raise DeploymentError(f"host {h.name!r}: address {h.address!r} is not an IP address") from None
            if h.address in addresses:
                raise DeploymentError(f"hosts {addresses[h.address]!r} and {h.name!r} have the same address")
            addresses[h.address] = h.name
        for what, host in (("dso", self.dso), ("mqtt", self.mqtt)):
            if host is not None and host not in self.hosts:
                raise DeploymentError(f"{what}: unknown host {host!r}")
        if METER_DIR in self.hosts:
            raise DeploymentError(f"host name {METER_DIR!r} is reserved (the plan's folder of meter daemons)")
        cap = tier_ruleset(Tier.NAN).max_reading_batch
        for n in self.nodes:
            if not 1 <= n.batch_minutes <= cap:
                raise DeploymentError(
                    f"node {n.id!r}: batch_minutes {n.batch_minutes} is not in 1..{cap} (minutes per READING_BATCH "
                    "the NAN's rule set allows; 1: a READING a minute)"
                )
            if n.daemon is None:
                continue
            if n.daemon not in self.hosts:
                raise DeploymentError(f"node {n.id!r}: daemon: unknown host {n.daemon!r}")
            if self.mqtt is None or not self.poef:
                raise DeploymentError(f"node {n.id!r}: a meter daemon needs an MQTT broker (mqtt) and PoEf consensus")
        if len(self.etcd) not in (3, 5):
            raise DeploymentError(f"etcd: {len(self.etcd)} members; a deployment needs 3 or 5 (an odd quorum)")
        ports: dict[tuple[str, int], str] = {}
        for what, host, port in self._listeners():
            if host not in self.hosts:
                raise DeploymentError(f"{what}: unknown host {host!r}")
            if not 0 < port < 65536:
                raise DeploymentError(f"{what}: port {port} is not in 1..65535")
            if (host, port) in ports:
                raise DeploymentError(f"{what}: port {port} on host {host!r} is already used by {ports[host, port]}")
            ports[host, port] = what
        names = [m.name for m in self.etcd] + [n.id for n in self.nodes] + [h.name for h in self.hosts.values()]
        for name in names:
            if not _NAME.match(name):
                raise DeploymentError(f"name {name!r}: letters, digits, '_', '.' and '-' only (at most 63)")
        seen = set()
        for n in [*(m.name for m in self.etcd), *(n.id for n in self.nodes)]:
            if n in seen or n in ("operator", ADMIN_CERT, MQTT_CERT):
                raise DeploymentError(f"node or member name {n!r} is used twice (or is reserved)")
            seen.add(n)
        for nan, nodes in self.nans().items():
            roles = [n.role for n in nodes]
            if roles[:2] != ["concentrator", "concentrator"] or "concentrator" in roles[2:]:
                raise DeploymentError(f"NAN {nan!r} needs a primary and a backup concentrator (and only those)")
            if len(nodes) < 3 and self.poef:
                raise DeploymentError(f"NAN {nan!r} has no meters (a PoEf NAN's meters are its committee)")
            for n in nodes:
                if "://" not in n.store_url and "/" in n.store_url:
                    raise DeploymentError(f"node {n.id!r}: store must be a file name or a postgresql:// URL")
        if self.poef and not 5 <= self.slot_seconds <= 3600:
            raise DeploymentError(f"slot_seconds {self.slot_seconds} is not in 5..3600")
        return self

    def _listeners(self) -> list[tuple[str, str, int]]:
        out = []
        for m in self.etcd:
            out += [
                (f"etcd member {m.name!r}", m.host, m.client_port),
                (f"etcd member {m.name!r}", m.host, m.peer_port),
            ]
        out += [(f"node {n.id!r}", n.host, n.port) for n in self.nodes]
        return out + ([("mqtt", self.mqtt, self.mqtt_port)] if self.mqtt else [])

    def to_json(self) -> dict:
        """The deployment as JSON data (``from_json`` reads it back)."""
        data = asdict(self)
        data["extra_registry"] = [[rid, role, pub.hex()] for rid, role, pub in self.extra_registry]
        return data

    @classmethod
    def from_json(cls, data: dict) -> Deployment:
        d = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        hosts = {k: Host(h["name"], h["address"], tuple(h["dns"])) for k, h in d.pop("hosts").items()}
        etcd = [Member(**m) for m in d.pop("etcd")]
        nodes = [Placement(**n) for n in d.pop("nodes")]
        extra = tuple((rid, role, bytes.fromhex(pub)) for rid, role, pub in d.pop("extra_registry"))
        pairs = {k: tuple(d.pop(k)) for k in ("limits", "rate_limit", "peer_limit", "raft_ms")}
        install = Install(**d.pop("install"))
        return cls(hosts=hosts, etcd=etcd, nodes=nodes, install=install, extra_registry=extra, **pairs, **d)

    @classmethod
    def load(cls, path: Path) -> Deployment:
        """Read and validate a deployment file (see docs/deploy.md)."""
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise DeploymentError(f"{path}: {e}") from None
        try:
            return cls._parse(data).check()
        except DeploymentError as e:
            raise DeploymentError(f"{path}: {e}") from None

    @classmethod
    def _parse(cls, data: dict) -> Deployment:
        hosts: dict[str, Host] = {}
        for i, h in enumerate(_list(data, "host")):
            name = _get(h, "name", str, f"host {i}")
            if name in hosts:
                raise DeploymentError(f"host {name!r} is defined twice")
            dns = _get(h, "dns", list, f"host {name!r}", [])
            hosts[name] = Host(name, _get(h, "address", str, f"host {name!r}"), tuple(map(str, dns)))
        etcd = []
        for i, m in enumerate(_list(data, "etcd")):
            host = _get(m, "host", str, f"etcd {i}")
            etcd.append(
                Member(
                    _get(m, "name", str, f"etcd {i}", f"etcd-{host}"),
                    host,
                    _get(m, "client_port", int, f"etcd {i}", ETCD_CLIENT_PORT),
                    _get(m, "peer_port", int, f"etcd {i}", ETCD_PEER_PORT),
                )
            )
        nodes, nans = [], set()
        for i, nan in enumerate(_list(data, "nan")):
            name = _get(nan, "name", str, f"nan {i}")
            if name in nans:
                raise DeploymentError(f"NAN {name!r} is defined twice")
            nans.add(name)
            for which in ("primary", "backup"):
                if which not in nan:
                    raise DeploymentError(f"NAN {name!r} has no {which} concentrator")
                nodes.append(_placement(_get(nan, which, dict, f"NAN {name!r}"), "concentrator", name))
            nodes += [_placement(m, "meter", name) for m in _get(nan, "meters", list, f"NAN {name!r}", [])]
        consensus = _get(data, "consensus", str, "deployment", "poef")
        if consensus not in ("poef", "coordinator"):
            raise DeploymentError(f"consensus must be 'poef' or 'coordinator', not {consensus!r}")
        lim = _get(data, "limits", dict, "deployment", {})
        limits = tuple(_get(lim, k, int, "limits", d) for k, d in zip(_LIMIT_KEYS, METER_LIMITS, strict=True))
        inst = _get(data, "install", dict, "deployment", {})
        unknown = set(inst) - set(Install.__dataclass_fields__)
        if unknown:
            raise DeploymentError(f"install: unknown key {sorted(unknown)[0]!r}")
        install = Install(**{k: _get(inst, k, str, "install") for k in inst})
        return cls(
            _get(data, "name", str, "deployment"),
            hosts,
            etcd,
            nodes,
            _get(data, "dso", str, "deployment"),
            _get(data, "mqtt", str, "deployment", None),
            poef=consensus == "poef",
            slot_seconds=_get(data, "slot_seconds", int, "deployment", DEFAULT_SLOT_SECONDS),
            limits=limits,
            install=install,
        )


_LIMIT_KEYS = ("max_epa_w", "max_eca_w", "credit_fa")


def _list(data: dict, key: str) -> list[dict]:
    items = data.get(key, [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise DeploymentError(f"{key}: expected [[{key}]] tables")
    return items


_MISSING = object()


def _get(table: dict, key: str, kind: type, where: str, default=_MISSING):
    if key not in table:
        if default is _MISSING:
            raise DeploymentError(f"{where}: missing key {key!r}")
        return default
    value = table[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise DeploymentError(f"{where}: {key!r} must be a {kind.__name__}")
    return value


def _placement(table: dict, role: str, nan: str) -> Placement:
    where = f"NAN {nan!r} {role}"
    node_id = _get(table, "id", str, where)
    where = f"node {node_id!r}"
    port, store = _get(table, "port", int, where, API_PORT), _get(table, "store", str, where, "")
    for key in ("daemon", "batch_minutes"):
        if role != "meter" and key in table:
            raise DeploymentError(f"{where}: only a meter has a meter daemon ({key!r})")
    daemon, batch = _get(table, "daemon", str, where, None), _get(table, "batch_minutes", int, where, 1)
    return Placement(node_id, role, nan, _get(table, "host", str, where), port, store, daemon, batch)


# --------------------------------------------------------------------------------------------------------- the plan


@dataclass
class ChainPlan:
    """One NAN chain being planned: its genesis, chain id and, on PoEf, its content keys."""

    nan: str
    file: str
    chain_id: bytes
    start: int
    members: dict[str, int]  # meter -> member index (PoEf)
    secrets: dict[str, bytes]  # node -> content key (PoEf)


class Planner:
    """Writes a plan's files into ``out`` (``flat``: every host's files in ``out`` itself): the hosts' folders, their
    certificates from ``ca``, nodes and meter daemons. ``write_plan`` makes one; ``open_plan`` reopens a written one
    (``add_meter``)."""

    def __init__(
        self,
        dep: Deployment,
        out: Path,
        flat: bool,
        operator: KeyPair,
        ca: LocalCA | None,
        content: ContentKeys | None,
    ) -> None:
        self.dep, self.out, self.flat = dep, out, flat
        self.operator, self.ca, self.content = operator, ca, content

    def folder(self, host: str) -> Path:
        return self.out if self.flat else self.out / host

    def root(self, host: str) -> str:
        """Where the host's folder is installed (absolute)."""
        return self.dep.install.root or str(self.folder(host).absolute())

    @property
    def dso(self) -> Path:
        return self.folder(self.dep.dso)

    def issue(self, host: str, name: str, common: bool = True) -> None:
        """A certificate for ``name`` with ``host``'s addresses, and the CA certificate, in the host's ``pki/``."""
        if self.ca is not None:
            self.ca.issue(name, self.dep.hosts[host].names, out=self.folder(host) / PKI_DIR, common=common)
            if not (self.folder(host) / PKI_DIR / "ca.crt").exists():
                shutil.copy(self.ca.ca_path, self.folder(host) / PKI_DIR / "ca.crt")

    def registry(self, nan: str, keys: dict[str, bytes]) -> list[tuple[str, str, bytes]]:
        """Who a node of ``nan`` accepts requests from: the DSO, the extra callers and the NAN's nodes (``keys``:
        node id -> public key)."""
        nodes = self.dep.nans()[nan]
        return [("operator", "dso", self.operator.public), *self.dep.extra_registry] + [
            (n.id, n.role, keys[n.id]) for n in nodes
        ]

    def write_node(
        self, node: Placement, key: KeyPair, chain: ChainPlan, registry: list[tuple[str, str, bytes]]
    ) -> tuple[dict, dict | None]:
        """The node's configuration (mode 0600), certificate, genesis and unit in its host's folder; returns its
        manifest entry and its etcd user (None without TLS)."""
        dep, folder = self.dep, self.folder(node.host)
        nodes = dep.nans()[node.nan]
        others = [dep.url(other[0]) for name, other in dep.nans().items() if name != node.nan]
        user = None
        if self.ca is not None:
            prefix = f"/gridledger/{chain.chain_id.hex()}/"
            user = {"user": node.id, "password": os.urandom(16).hex(), "prefix": prefix}
        self.issue(node.host, node.id, common=False)  # also etcd's client: no common name (pki.LocalCA.issue)
        text = _node_config(dep, node, key, chain, [dep.url(n) for n in nodes if n.id != node.id])
        text += f"dashboard_peers = {_toml_list(others)}\n"  # the primary concentrator of every other NAN
        text += "" if user is None else f'etcd_password = "{user["password"]}"\n'
        if node.id in chain.secrets:
            text += f'content_key = "{chain.secrets[node.id].hex()}"\n'
        if self.ca is not None:
            text += "\n[tls]\n" + "".join(f'{k} = "{PKI_DIR}/{f}"\n' for k, f in _tls_names(node.id).items())
        text += "".join(registry_entry(rid, role, pub) for rid, role, pub in registry)
        write_private(folder / f"{node.id}.toml", text)  # it holds the node's key
        if not (folder / chain.file).exists():
            shutil.copy(self.dso / chain.file, folder / chain.file)
        root = self.root(node.host)
        command = node_command(dep.install.python, node.role, f"{root}/{node.id}.toml")
        _write_unit(dep, folder, root, f"gridledger-{node.id}", f"node {node.id}", command, reload=True)
        entry = {"id": node.id, "role": node.role, "chain": node.nan, "host": node.host, "url": dep.url(node)}
        entry |= {"config": f"{root}/{node.id}.toml", "pubkey": key.public.hex()}
        if node.id in chain.members:
            entry["member"] = chain.members[node.id]
        daemon = self.write_daemon(node, key, chain)
        if daemon is not None:
            entry |= {"daemon": daemon.relative_to(self.out).as_posix(), "batch_minutes": node.batch_minutes}
        return entry, user

    def daemon_folder(self, node: Placement) -> Path:
        """A meter daemon's folder: in its host's ``meters/`` if it runs on one, else in the plan's ``meters/``."""
        base = self.out if node.daemon is None else self.folder(node.daemon)
        return base / METER_DIR / node.id

    def write_daemon(self, node: Placement, key: KeyPair, chain: ChainPlan) -> Path | None:
        """Meter ``node``'s daemon folder (:mod:`gridledger.node.meter_files`; on PoEf with a broker only): it reads
        the broker with its device certificate and submits to the meter's own node; with a ``daemon`` host, also
        its unit there. Returns the folder."""
        dep = self.dep
        if dep.mqtt is None or node.id not in chain.members:
            return None
        genesis = bytes.fromhex((self.dso / chain.file).read_text().strip())
        files = MeterFiles(
            node.id,
            chain.members[node.id],
            key.seed,
            chain.secrets[node.id],
            genesis,
            dep.url(node),
            node.id,
            dep.hosts[dep.mqtt].address,
            dep.mqtt_port,
            measurement_topic(node.id),
            node.batch_minutes,
        )
        out = self.daemon_folder(node)
        config = write_meter_folder(files, out, self.ca)
        if node.daemon is not None:
            installed = f"{self.root(node.daemon)}/{METER_DIR}/{node.id}/{config.name}"
            command = [dep.install.python, "-m", "gridledger", "meter", "run", "--config", installed]
            unit = f"gridledger-meter-{node.id}"
            _write_unit(dep, self.folder(node.daemon), self.root(node.daemon), unit, f"meter daemon {node.id}", command)
        return out


def registry_entry(rid: str, role: str, pubkey: bytes) -> str:
    """One ``[[registry]]`` table of a node's configuration."""
    return f'\n[[registry]]\nid = "{rid}"\nrole = "{role}"\npubkey = "{pubkey.hex()}"\n'


def write_plan(dep: Deployment, out: Path, flat: bool = False) -> dict:
    """Write the per-host folders ``out/<host>/`` (``flat``: every host's files in ``out`` itself, for one machine);
    returns the manifest (also in the DSO's folder as ``deployment.json``)."""
    dep.check()
    operator = KeyPair.generate()
    content = ContentKeys(os.urandom(32)) if dep.poef else None
    dso = out if flat else out / dep.dso
    ca = LocalCA.create(dso / PKI_DIR) if dep.tls else None
    plan = Planner(dep, out, flat, operator, ca, content)
    for h in dep.hosts:
        plan.folder(h).mkdir(parents=True, exist_ok=True)
    write_private(_mkdir(dso / "keys") / "operator.seed", operator.seed.hex())
    if content is not None:
        write_private(dso / "keys" / "content.root", content.root.hex())
    if ca is not None:
        ca.issue(ADMIN_CERT, common=False)  # the DSO's client of etcd's JSON gateway: no common name (pki.issue)
        write_private(dso / PKI_DIR / "etcd-root.password", os.urandom(16).hex())
    if dep.mqtt is not None:
        plan.issue(dep.mqtt, MQTT_CERT)
        _write_mosquitto(dep, plan.folder(dep.mqtt), plan.root(dep.mqtt), ca)
    keys = {n.id: KeyPair.generate() for n in dep.nodes}
    chains = {nan: _genesis(dep, nan, nodes, keys, operator, content, dso) for nan, nodes in dep.nans().items()}
    users = []
    manifest = {
        "name": dep.name,
        "etcd": [{"name": m.name, "host": m.host, "url": u} for m, u in zip(dep.etcd, dep.endpoints(), strict=True)],
        "operator": operator.public.hex(),
        "consensus": "poef" if dep.poef else "coordinator",
        "postgres": None,
        "ca": None if ca is None else f"{plan.root(dep.dso)}/{PKI_DIR}/ca.crt",
        "slot_seconds": dep.slot_seconds,
        "limits": list(dep.limits),
        "chains": {c.nan: {"genesis": c.file, "chain_id": c.chain_id.hex(), "start": c.start} for c in chains.values()},
        "nodes": [],
    }
    for nan, nodes in dep.nans().items():
        registry = plan.registry(nan, {n.id: keys[n.id].public for n in nodes})
        for node in nodes:
            entry, user = plan.write_node(node, keys[node.id], chains[nan], registry)
            manifest["nodes"].append(entry)
            users += [user] if user is not None else []
    for m in dep.etcd:
        plan.issue(m.host, m.name)
        _write_etcd(dep, m, plan.folder(m.host), plan.root(m.host), ca is not None)
    manifest["deployment"] = dep.to_json() | {"flat": flat}  # what add_meter plans further from
    (dso / MANIFEST).write_text(json.dumps(manifest, indent=2))
    write_private(dso / SECRETS, json.dumps({"users": users}, indent=2))
    for h in dep.hosts:
        write_readme(dep, h, plan.folder(h), plan.root(h))
    if not flat and (out / METER_DIR).is_dir():
        (out / METER_DIR / "README").write_text(_METERS_README)
    return manifest


_METERS_README = """Meter daemons that run on no host of the deployment: copy <meter>/ to the device that reads
its meter board (e.g. the gateway) and run `gridledger meter run --config <meter>.meter.toml` there (as a
service). Its files: the daemon's configuration, its signing and content keys (mode 0600), its chain's genesis
and, on a secure deployment, its MQTT device certificate (common name: the meter id) and the CA. See
docs/deploy.md.
"""


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _toml_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def _tls_names(name: str) -> dict[str, str]:
    return {"ca": "ca.crt", "cert": f"{name}.crt", "key": f"{name}.key"}


def _genesis(
    dep: Deployment,
    nan: str,
    nodes: list[Placement],
    keys: dict[str, KeyPair],
    operator: KeyPair,
    content: ContentKeys | None,
    dso: Path,
) -> ChainPlan:
    """The NAN's genesis block (primary and backup concentrators its coordinators), written in the DSO's folder."""
    primary, backup = nodes[0], nodes[1]
    proposers = (keys[primary.id].public, keys[backup.id].public)
    now = int(time.time())
    if content is None:
        start = now - now % DEFAULT_SLOT_SECONDS
        genesis = Genesis(nan, DEFAULT_SLOT_SECONDS, start, operator.public, proposers)
    else:  # slot 0 starts a minute ago
        start, ruleset = now - 60, tier_ruleset(Tier.NAN).name
        genesis = Genesis(
            chain_name(Tier.NAN, primary.id), dep.slot_seconds, start, operator.public, proposers, ruleset=ruleset
        )
    block = make_block(genesis.chain_id, 0, ZERO_HASH, now, (genesis,), keys[primary.id])
    file = f"{nan}.genesis"
    (dso / file).write_text(block.encode().hex())
    members, secrets = {}, {}
    if content is not None:
        chain_keys = content.chain(genesis.chain_id)
        meters = sorted(n.id for n in nodes if n.role == "meter")  # the order of the enrolment (DsoPolicy sorts)
        members = {m: i for i, m in enumerate(meters)}
        secrets = {n.id: chain_keys.master for n in (primary, backup)}
        secrets |= {m: chain_keys.member_key(i) for m, i in members.items()}
    return ChainPlan(nan, file, genesis.chain_id, start, members, secrets)


def _node_config(dep: Deployment, node: Placement, key: KeyPair, chain: ChainPlan, peers: list[str]) -> str:
    lines = [
        f'node_id = "{node.id}"',
        f'role = "{node.role}"',
        f'key_seed = "{key.seed.hex()}"',
        f'store = "{node.store_url}"',
        f'genesis = "{chain.file}"',
        f'api = "{dep.hosts[node.host].address}:{node.port}"',
        f"orderer = {_toml_list(dep.endpoints())}",
        f"peers = {_toml_list(peers)}",
        f"rate_limit = {{ rate = {dep.rate_limit[0]}, burst = {dep.rate_limit[1]} }}",
        f"peer_limit = {{ rate = {dep.peer_limit[0]}, burst = {dep.peer_limit[1]} }}",
    ]
    return "\n".join(lines) + "\n"


def node_command(python: str, role: str, config: str) -> list[str]:
    """The command that runs one node."""
    return [python, "-m", "gridledger", "node", "--role", role, "--config", config]


def _write_etcd(dep: Deployment, m: Member, folder: Path, root: str, tls: bool) -> None:
    """The member's etcd configuration file (YAML; etcd's ``--config-file``) and its unit."""
    address = dep.hosts[m.host].address
    peers = ",".join(f"{o.name}={dep.scheme}://{dep.hosts[o.host].address}:{o.peer_port}" for o in dep.etcd)
    settings = {
        "name": m.name,
        "data-dir": f"{root}/etcd/{m.name}",
        "listen-client-urls": f"{dep.scheme}://{address}:{m.client_port}",
        "advertise-client-urls": f"{dep.scheme}://{address}:{m.client_port}",
        "listen-peer-urls": f"{dep.scheme}://{address}:{m.peer_port}",
        "initial-advertise-peer-urls": f"{dep.scheme}://{address}:{m.peer_port}",
        "initial-cluster": peers,
        "initial-cluster-state": "new",
        "initial-cluster-token": f"gridledger-{dep.name}",
        "heartbeat-interval": dep.raft_ms[0],
        "election-timeout": dep.raft_ms[1],
        "enable-grpc-gateway": True,  # the JSON gateway the nodes' etcd3gw clients use (off by default in a file)
        "logger": "zap",
        "log-level": "error",
    }
    lines = [f"{k}: {json.dumps(v)}" for k, v in settings.items()]
    if tls:  # certificates on both URLs, client certificates of the CA demanded on both
        files = {k: f"{root}/{PKI_DIR}/{v}" for k, v in _tls_names(m.name).items()}
        for block in ("client-transport-security", "peer-transport-security"):
            lines += [
                f"{block}:",
                f"  cert-file: {json.dumps(files['cert'])}",
                f"  key-file: {json.dumps(files['key'])}",
            ]
            lines += [f"  trusted-ca-file: {json.dumps(files['ca'])}", "  client-cert-auth: true"]
    (_mkdir(folder / "etcd") / f"{m.name}.yaml").write_text("\n".join(lines) + "\n")
    command = [dep.install.etcd, "--config-file", f"{root}/etcd/{m.name}.yaml"]
    _write_unit(dep, folder, root, f"gridledger-etcd-{m.name}", f"etcd member {m.name}", command)


def _write_mosquitto(dep: Deployment, folder: Path, root: str, ca: LocalCA | None) -> None:
    """The broker's mosquitto.conf (TLS, a device certificate required, its common name the MQTT user, the ACL
    giving each device its own topics, revoked certificates refused) and its unit."""
    address = dep.hosts[dep.mqtt].address
    lines = [f"listener {dep.mqtt_port} {address}", "persistence false", "log_dest stdout", "connection_messages true"]
    lines.append(f"user {dep.install.user}")  # if started as root: run as the user that owns its files
    if ca is not None:
        files = {k: f"{root}/{PKI_DIR}/{v}" for k, v in _tls_names(MQTT_CERT).items()}
        lines += [f"cafile {files['ca']}", f"certfile {files['cert']}", f"keyfile {files['key']}"]
        lines += ["require_certificate true", "use_identity_as_username true", f"crlfile {root}/{PKI_DIR}/crl.pem"]
        lines += ["allow_anonymous false", f"acl_file {root}/mosquitto/acl"]
        (_mkdir(folder / "mosquitto") / "acl").write_text(f"pattern readwrite {METER_TOPICS}/%u/#\n")
        if ca.crl_path != folder / PKI_DIR / "crl.pem":
            shutil.copy(ca.crl_path, folder / PKI_DIR / "crl.pem")
    (_mkdir(folder / "mosquitto") / "mosquitto.conf").write_text("\n".join(lines) + "\n")
    command = [dep.install.mosquitto, "-c", f"{root}/mosquitto/mosquitto.conf"]
    _write_unit(dep, folder, root, "gridledger-mosquitto", "MQTT broker", command)


def _write_unit(
    dep: Deployment, folder: Path, root: str, unit: str, what: str, command: list[str], reload: bool = False
) -> None:
    """A systemd unit running ``command``; ``reload``: ``systemctl reload`` sends it SIGHUP (a node re-reads its
    registry, ``run``)."""
    lines = [
        "[Unit]",
        f"Description=gridledger {dep.name}: {what}",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"User={dep.install.user}",
        f"Group={dep.install.user}",
        f"WorkingDirectory={root}",
        f"ExecStart={shlex.join(command)}",
        *(["ExecReload=/bin/kill -HUP $MAINPID"] if reload else []),
        "Restart=on-failure",
        "RestartSec=2",
        "LimitNOFILE=65536",
        *_HARDENING,
        f"ReadWritePaths={root}",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    (_mkdir(folder / UNIT_DIR) / f"{unit}.service").write_text("\n".join(lines) + "\n")


def write_readme(dep: Deployment, host: str, folder: Path, root: str) -> None:
    """The host's README (what runs there, which ports to open) and install.sh."""
    units = sorted(p.name for p in (folder / UNIT_DIR).glob("*.service")) if (folder / UNIT_DIR).exists() else []
    ports = [f"{port}/tcp ({what})" for what, h, port in dep._listeners() if h == host]
    readme = [
        f"gridledger deployment {dep.name!r}, host {host} ({dep.hosts[host].address})",
        "",
        f"Copy this folder to the host and run `sudo sh install.sh` in it: it installs the folder as {root}",
        f"(owner {dep.install.user}, mode 0700), the systemd units below, and starts them. See docs/deploy.md.",
        "",
        "units: " + (", ".join(units) or "none"),
        "open ports (inbound): " + (", ".join(ports) or "none"),
    ]
    if host == dep.dso:
        readme += [
            "",
            "DSO: keys/operator.seed and pki/ca.key are the deployment's master secrets; keep them here only.",
            "Once every etcd member runs: `gridledger cluster bootstrap --dir .` (safe to run again).",
        ]
    (folder / "README").write_text("\n".join(readme) + "\n")
    user, q = dep.install.user, shlex.quote(root)
    script = [
        "#!/bin/sh",
        f"# Install host {host} of gridledger deployment {dep.name}: run as root in this folder.",
        "set -eu",
        f"id -u {user} >/dev/null 2>&1 || useradd --system --home-dir {q} --shell /usr/sbin/nologin {user}",
        f"mkdir -p {q}",
        f'[ "$(pwd -P)" = "$(cd {q} && pwd -P)" ] || cp -a . {q}/',
        f"chown -R {user}:{user} {q}",
        f"chmod 0700 {q}",
    ]
    if units:
        script += [
            f"install -m 0644 {' '.join(f'{UNIT_DIR}/{u}' for u in units)} /etc/systemd/system/",
            "systemctl daemon-reload",
            f"systemctl enable --now {' '.join(units)}",
        ]
    (folder / "install.sh").write_text("\n".join(script) + "\n")
    (folder / "install.sh").chmod(0o755)


# ---------------------------------------------------------------------------------------- running what was planned


def exec_start(unit: Path) -> list[str]:
    """The command of a systemd unit's ``ExecStart=`` line (as systemd would split it)."""
    for line in unit.read_text().splitlines():
        if line.startswith("ExecStart="):
            return shlex.split(line.removeprefix("ExecStart="))
    raise DeploymentError(f"{unit}: no ExecStart line")


def start_unit(unit: Path, log: Path, prefix: Sequence[str] = ()) -> subprocess.Popen:
    """Run a unit's ``ExecStart`` as a detached process (its own session), output to ``log``; ``prefix`` goes before
    the command (e.g. ``ip netns exec NS``). For machines without systemd: tests and ``cluster up``."""
    return spawn([*prefix, *exec_start(unit)], log)


def spawn(command: list[str], log: Path) -> subprocess.Popen:
    """``command`` as a detached process (its own session) writing to ``log``."""
    out = open(log, "ab")  # noqa: SIM115 - owned by the process
    return subprocess.Popen(command, stdout=out, stderr=out, start_new_session=True)


def admin_tls(dso: Path) -> TlsFiles:
    """The DSO's etcd client certificate in its plan folder."""
    return TlsFiles(*(dso / PKI_DIR / f for f in _tls_names(ADMIN_CERT).values()))


def bootstrap(dso: Path, enrol_after_s: int = 0, timeout: float = 30.0) -> tuple[list[str], list[str]]:
    """Run once etcd is up, in the DSO's plan folder: turn on etcd's access control (user ``root``, one user per node
    whose role may use its chain's keys only) and, on PoEf chains, queue the DSO's enrolment of every NAN's planned
    meters from the slot ``enrol_after_s`` seconds from now. Safe to run again: what is done already (access control
    on, a user there, an enrolment queued or committed) is left alone, what is missing is done (e.g. the etcd user of
    a meter ``add_meter`` added). Returns (what it did, what it found done), one line each."""
    try:
        manifest = json.loads((dso / MANIFEST).read_text())
        users = json.loads((dso / SECRETS).read_text())["users"]
    except (OSError, ValueError, KeyError) as e:
        raise DeploymentError(f"{dso} is not a DSO plan folder (deployment.json, bootstrap.json): {e}") from None
    endpoints = [m["url"] for m in manifest["etcd"]]
    tls = admin_tls(dso) if manifest["ca"] else None
    root = None if tls is None else ("root", (dso / PKI_DIR / "etcd-root.password").read_text())
    did: list[str] = []
    found: list[str] = []
    admin = None if root is None else _root_client(endpoints, tls, root)
    if admin is not None:
        found.append("etcd's access control is on")
    else:
        wait_healthy(endpoints, tls, timeout)
        if root is not None:
            admin = etcd_client(endpoints[0], tls, timeout=5)
            try:
                enable_auth(admin, root[1])
            except Exception as e:  # noqa: BLE001 - etcd's answer is the reason
                raise DeploymentError(f"etcd refused to turn on access control: {e}") from None
            did.append("turned on etcd's access control (user root)")
    if admin is not None:
        have = (auth_names(admin, "user"), auth_names(admin, "role"))
        missing = [u for u in users if not (u["user"] in have[0] and u["user"] in have[1])]
        for u in missing:
            grant_prefix(admin, u["user"], u["password"], u["prefix"], have)
        admin.session.close()
        if missing:
            did.append(f"etcd users made: {', '.join(u['user'] for u in missing)} (each its chain's keys only)")
        if len(missing) < len(users):
            found.append(f"{len(users) - len(missing)} of {len(users)} node users in etcd")
    if manifest["consensus"] == "poef":
        for nan, chain in manifest["chains"].items():
            (did if _enrol(dso, manifest, nan, chain, tls, root, enrol_after_s) else found).append(
                f"{nan}: the meters' enrolment is queued (or on the chain)"
            )
    return did, found


def _enrol(
    dso: Path,
    manifest: dict,
    nan: str,
    chain: dict,
    tls: TlsFiles | None,
    root: tuple[str, str] | None,
    enrol_after_s: int,
) -> bool:
    """Queue the DSO's enrolment of the NAN's planned meters unless a DSO policy is queued or the chain has grown
    past its genesis (then it was queued before); True if it queued it."""
    from gridledger.ledger.kinds import decode_transaction
    from gridledger.node.poef_board import EtcdPoefOrderer

    chain_id = bytes.fromhex(chain["chain_id"])
    orderer = EtcdPoefOrderer([m["url"] for m in manifest["etcd"]], chain_id, tls=tls, auth=root)
    try:
        if orderer.blocks(1, 1):
            return False
        for _, raw in orderer.pending(10_000):
            try:
                if isinstance(decode_transaction(raw), DsoPolicy):
                    return False
            except (Reject, ValueError):
                continue
        meters = {
            n["id"]: bytes.fromhex(n["pubkey"])
            for n in manifest["nodes"]
            if n["chain"] == nan and "member" in n and not n.get("added")  # added ones: the DSO console's
        }
        slot = (int(time.time()) - chain["start"] + enrol_after_s) // manifest["slot_seconds"]
        operator = KeyPair(bytes.fromhex((dso / "keys" / "operator.seed").read_text()))
        policy = enrolment(operator, chain_id, meters, tuple(manifest["limits"]), slot)
        orderer.submit(policy.txid, policy.encode())
        return True
    finally:
        orderer.close()


def _root_client(endpoints: list[str], tls: TlsFiles, root: tuple[str, str]):
    """An etcd client logged in as ``root`` if etcd lets it log in (its access control is on), else None."""
    for url in endpoints:
        try:
            return etcd_client(url, tls, timeout=5, user=root)
        except Exception:  # noqa: BLE001, S112 - down, or access control still off: ask the next member
            continue
    return None


def enrolment(
    dso_key: KeyPair, chain_id: bytes, meters: dict[str, bytes], limits: tuple[int, int, int], slot: int
) -> DsoPolicy:
    """The DSO's first policy on a PoEf NAN chain: ``meters`` (id -> public key) authorized from ``slot``, each with
    PETra ``limits`` (MAXEPA W, MAXECA W, FA credit)."""
    enrolled = [MeterLimits(m, *limits) for m in sorted(meters)]
    return DSO(dso_key, chain_id).policy(slot, authorize=meters, limits=enrolled)
