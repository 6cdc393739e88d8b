"""A node's configuration file (TOML), validated with errors that name the bad key.

```toml
node_id = "MI1"              # this node's registered id
role = "meter"               # meter | concentrator | dso | headend
key_seed = "…64 hex…"        # Ed25519 seed of the node key (keep the file private)
store = "MI1.sqlite"         # SQLite path (relative to the file) or postgresql:// URL
genesis = "nan1.genesis"     # the chain's genesis block, hex
api = "127.0.0.1:8101"       # where the API listens
orderer = ["http://127.0.0.1:2379", …]   # etcd client URLs, or "inprocess"
etcd_password = "…"          # with etcd's access control on: the password of etcd user <node_id> (its chain's keys)
peers = ["http://127.0.0.1:8102"]        # other nodes' APIs, for catch-up
dashboard_peers = ["http://127.0.0.1:8201"]  # other chains' nodes whose chains /dashboard also shows
rate_limit = { rate = 50, burst = 100 }  # requests per second per calling node (after authentication)
peer_limit = { rate = 1000, burst = 2000 }  # requests per second per peer address (before authentication)
content_key = "…64 hex…"     # PoEf chains: a coordinator's chain master content key, a meter's own member key
round_timeout = 3.0          # PoEf chains: seconds a leader waits for a quorum before it re-proposes
children = ["nan1.genesis"]  # PoEf FAN/WAN: child chains this node replicates (followed on the same orderer)
[tls]                        # HTTPS API, https etcd and peers (paths relative to the file); absent: plain HTTP
ca = "pki/ca.crt"            # the CA that signed etcd's, the peers' and this node's certificates
cert = "pki/MI1.crt"         # this node's certificate (server for its API, client for etcd)
key = "pki/MI1.key"          # its private key (mode 0600)
[[registry]]                 # every node allowed to talk to this one (this node included); re-read on SIGHUP
id = "MI1"
role = "meter"
pubkey = "…64 hex…"
```
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from gridledger.ledger.crypto import KeyPair
from gridledger.node.pki import TlsFiles

ROLES = ("meter", "concentrator", "dso", "headend")


class ConfigError(ValueError):
    """The configuration file is missing a key or has a bad value (the message names it)."""


#: The TOML key each field of ``NodeConfig`` comes from (``registry``, the one a running node reloads, aside).
TOML_KEYS = {
    "node_id": "node_id",
    "role": "role",
    "key": "key_seed",
    "store": "store",
    "genesis": "genesis",
    "host": "api",
    "port": "api",
    "orderer": "orderer",
    "peers": "peers",
    "rate": "rate_limit",
    "burst": "rate_limit",
    "peer_rate": "peer_limit",
    "peer_burst": "peer_limit",
    "content_key": "content_key",
    "round_timeout": "round_timeout",
    "dashboard_peers": "dashboard_peers",
    "tls": "tls",
    "etcd_password": "etcd_password",
    "children": "children",
}


@dataclass
class NodeConfig:
    node_id: str
    role: str
    key: KeyPair
    store: str
    genesis: bytes
    host: str
    port: int
    orderer: list[str] | str
    peers: list[str] = field(default_factory=list)
    registry: list[tuple[str, str, bytes]] = field(default_factory=list)
    rate: float = 50.0
    burst: float = 100.0
    peer_rate: float = 1000.0
    peer_burst: float = 2000.0
    content_key: bytes | None = None
    round_timeout: float = 3.0
    dashboard_peers: list[str] = field(default_factory=list)
    tls: TlsFiles | None = None
    etcd_password: str | None = None
    #: Genesis blocks of the child chains this node replicates (PoEf FAN/WAN nodes).
    children: list[bytes] = field(default_factory=list)
    #: The file it was loaded from (None: built in code); a running node reloads its ``[[registry]]`` from it.
    path: Path | None = None

    def restart_keys(self, other: NodeConfig) -> list[str]:
        """The TOML keys, ``[[registry]]`` aside, whose values differ in ``other``: a running node takes them only
        when it restarts."""
        return sorted({key for name, key in TOML_KEYS.items() if getattr(self, name) != getattr(other, name)})

    @classmethod
    def load(cls, path: str | Path) -> NodeConfig:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"{path}: {e}") from None

        def need(key: str, kind: type):
            if key not in data:
                raise ConfigError(f"{path}: missing key {key!r}")
            if not isinstance(data[key], kind):
                raise ConfigError(f"{path}: {key!r} must be a {kind.__name__}")
            return data[key]

        role = need("role", str)
        if role not in ROLES:
            raise ConfigError(f"{path}: role must be one of {', '.join(ROLES)}, not {role!r}")
        try:
            key = KeyPair(bytes.fromhex(need("key_seed", str)))
        except ValueError:
            raise ConfigError(f"{path}: key_seed must be 64 hex characters") from None
        host, _, port = need("api", str).rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"{path}: api must be HOST:PORT")
        store = need("store", str)
        if "://" not in store:
            store = str(path.parent / store)
        try:
            genesis = bytes.fromhex((path.parent / need("genesis", str)).read_text().strip())
        except (OSError, ValueError) as e:
            raise ConfigError(f"{path}: cannot read the genesis block: {e}") from None
        orderer = data.get("orderer", "inprocess")
        if orderer != "inprocess" and not (isinstance(orderer, list) and all(isinstance(u, str) for u in orderer)):
            raise ConfigError(f"{path}: orderer must be 'inprocess' or a list of etcd URLs")
        registry = _registry(path, data.get("registry", []))
        rate, burst = _limit(path, data, "rate_limit", 50, 100)
        peer_rate, peer_burst = _limit(path, data, "peer_limit", 1000, 2000)
        peers = data.get("peers", [])
        if not (isinstance(peers, list) and all(isinstance(u, str) for u in peers)):
            raise ConfigError(f"{path}: peers must be a list of node API URLs")
        content_key = data.get("content_key")
        if content_key is not None:
            try:
                content_key = bytes.fromhex(content_key)
            except (TypeError, ValueError):
                content_key = b""
            if len(content_key) != 32:
                raise ConfigError(f"{path}: content_key must be 64 hex characters (a 32-byte key)")
        round_timeout = data.get("round_timeout", 3.0)
        if type(round_timeout) not in (int, float) or not 0 < round_timeout <= 600:
            raise ConfigError(f"{path}: round_timeout must be a number of seconds in (0, 600]")
        dashboard_peers = data.get("dashboard_peers", [])
        if not (isinstance(dashboard_peers, list) and all(isinstance(u, str) for u in dashboard_peers)):
            raise ConfigError(f"{path}: dashboard_peers must be a list of node API URLs")
        tls = _tls(path, data.get("tls"))
        etcd_password = data.get("etcd_password")
        if etcd_password is not None and not isinstance(etcd_password, str):
            raise ConfigError(f"{path}: etcd_password must be a string")
        urls = [*(orderer if isinstance(orderer, list) else []), *peers, *dashboard_peers]
        if tls is None and any(str(u).startswith("https://") for u in urls):
            raise ConfigError(f"{path}: https URLs need a [tls] table (ca, cert, key)")
        children = []
        names = data.get("children", [])
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise ConfigError(f"{path}: children must be a list of genesis file names")
        for name in names:
            try:
                children.append(bytes.fromhex((path.parent / name).read_text().strip()))
            except (OSError, ValueError) as e:
                raise ConfigError(f"{path}: children: cannot read the genesis block {name!r}: {e}") from None
        return cls(
            need("node_id", str),
            role,
            key,
            store,
            genesis,
            host,
            int(port),
            orderer,
            peers,
            registry,
            rate,
            burst,
            peer_rate,
            peer_burst,
            content_key,
            float(round_timeout),
            dashboard_peers,
            tls,
            etcd_password,
            children,
            path,
        )


def _limit(path: Path, data: dict, key: str, rate: float, burst: float) -> tuple[float, float]:
    """(rate, burst) of the ``key`` table (``{ rate = …, burst = … }``: positive numbers; absent: the defaults)."""
    table = data.get(key, {})
    values = (table.get("rate", rate), table.get("burst", burst)) if isinstance(table, dict) else ()
    if len(values) != 2 or not all(type(v) in (int, float) and v > 0 for v in values):
        raise ConfigError(f"{path}: {key} must be {{ rate = N, burst = N }} with positive numbers")
    return float(values[0]), float(values[1])


def _registry(path: Path, entries: object) -> list[tuple[str, str, bytes]]:
    """The ``[[registry]]`` tables as (id, role, public key): each with a string id and role and a 64-hex-character
    Ed25519 public key, no id twice."""
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: registry must be an array of tables ([[registry]])")
    registry, seen = [], set()
    for i, entry in enumerate(entries):
        try:
            node_id, role, pubkey = entry["id"], entry["role"], bytes.fromhex(entry["pubkey"])
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{path}: registry entry {i} needs id, role and a hex pubkey") from None
        if not (isinstance(node_id, str) and node_id and isinstance(role, str) and role):
            raise ConfigError(f"{path}: registry entry {i}: id and role must be non-empty strings")
        if len(pubkey) != 32:
            raise ConfigError(f"{path}: registry entry {i} ({node_id}): pubkey must be 64 hex characters")
        if node_id in seen:
            raise ConfigError(f"{path}: registry entry {i}: node {node_id!r} is registered twice")
        seen.add(node_id)
        registry.append((node_id, role, pubkey))
    return registry


def _tls(path: Path, table: object) -> TlsFiles | None:
    """The ``[tls]`` table's files (relative to the configuration's folder), each one readable; None if absent."""
    if table is None:
        return None
    if not isinstance(table, dict) or not all(isinstance(table.get(k), str) for k in ("ca", "cert", "key")):
        raise ConfigError(f"{path}: [tls] needs ca, cert and key (paths of PEM files)")
    files = TlsFiles(*(path.parent / table[k] for k in ("ca", "cert", "key")))
    for name, file in zip(("ca", "cert", "key"), (files.ca, files.cert, files.key), strict=True):
        if not file.is_file():
            raise ConfigError(f"{path}: tls.{name}: no file {file}")
    return files
