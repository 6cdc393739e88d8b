"""Ordering backends: where pending transactions wait, who leads, and which block is final at each height.

Two implementations behind one interface:

* ``InProcessOrderer`` — the embedded default: one process, no server.
* ``EtcdOrderer`` — etcd's Raft log across machines (client ``etcd3gw``). Coordinators campaign for leadership
  with a lease (create-if-absent on the leader key, bound to the lease); the leader publishes each block at its
  height with a create-if-absent transaction, so two coordinators can never both commit a height; followers and
  peers read blocks in height order. When the leader dies its lease expires and a backup wins the next campaign.
  Pending transactions live in etcd under their txid and the hash of their bytes, so resubmitting is idempotent, a
  fail-over loses none, and a copy with a garbage signature submitted first does not shadow the validly signed one
  (both wait; the block takes the valid copy, and dropping a txid drops every copy of it).

Key layout under ``/gridledger/<chain id hex>/``: ``leader``, ``blocks/<height, 20 digits>``,
``mempool/<txid hex>/<SHA-256 of the transaction's bytes, hex>``,
``quarantine/<height, 20 digits>/<SHA-256 of the entry, hex>`` (void entries the leader moved out of ``blocks/``,
see :mod:`gridledger.node.sequencer`).
The ledger state never sees the orderer: it only validates the blocks a node reads from it.
"""

from __future__ import annotations

import base64
import contextlib
import threading
import time
from abc import ABC, abstractmethod

from etcd3gw.exceptions import Etcd3Exception
from etcd3gw.lease import Lease

from gridledger.ledger import crypto
from gridledger.node.etcd import authenticate, etcd_client
from gridledger.node.pki import TlsFiles


class Orderer(ABC):
    """The ordering service of one chain, as seen by one node."""

    @abstractmethod
    def submit(self, txid: bytes, raw: bytes) -> None:
        """Queue a transaction; the same bytes again change nothing, a copy with another witness waits beside it."""

    @abstractmethod
    def pending(self, limit: int) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` queued (txid, raw transaction), oldest first."""

    @abstractmethod
    def drop(self, txids: list[bytes]) -> None:
        """Forget every queued copy of these transactions (they were committed or are invalid)."""

    @abstractmethod
    def publish(self, height: int, raw_block: bytes) -> bool:
        """Make ``raw_block`` final at ``height`` unless a block is there already; True if this one won."""

    @abstractmethod
    def void(self, height: int, raw: bytes) -> bool:
        """Move the entry at ``height`` to quarantine if it still holds exactly ``raw``; True if it did."""

    @abstractmethod
    def quarantined(self, height: int) -> list[bytes]:
        """The void entries moved out of ``height``, oldest first."""

    @abstractmethod
    def blocks(self, start: int, limit: int = 256) -> list[tuple[int, bytes]]:
        """Final blocks from ``start`` on, in height order, without gaps."""

    @abstractmethod
    def campaign(self, node_id: str) -> bool:
        """Try to become (or stay) the leader; True while this node leads."""

    @abstractmethod
    def leader(self) -> str | None:
        """The current leader's node id, if any."""

    def resign(self) -> None:  # noqa: B027 - optional for backends without leases
        """Give up leadership (a clean stop)."""

    def close(self) -> None:  # noqa: B027 - optional for backends without connections
        """Release connections."""


class InProcessOrderer(Orderer):
    """Everything in one process's memory (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[tuple[bytes, bytes], bytes] = {}
        self._blocks: dict[int, bytes] = {}
        self._quarantine: dict[int, list[bytes]] = {}
        self._leader: str | None = None

    def submit(self, txid: bytes, raw: bytes) -> None:
        with self._lock:
            self._pending.setdefault((txid, crypto.sha256(raw)), raw)

    def pending(self, limit: int) -> list[tuple[bytes, bytes]]:
        with self._lock:
            return [(txid, raw) for (txid, _), raw in list(self._pending.items())[:limit]]

    def drop(self, txids: list[bytes]) -> None:
        gone = set(txids)
        with self._lock:
            for key in [k for k in self._pending if k[0] in gone]:
                del self._pending[key]

    def publish(self, height: int, raw_block: bytes) -> bool:
        with self._lock:
            if height in self._blocks:
                return False
            self._blocks[height] = raw_block
            return True

    def void(self, height: int, raw: bytes) -> bool:
        with self._lock:
            if self._blocks.get(height) != raw:
                return False
            self._quarantine.setdefault(height, []).append(self._blocks.pop(height))
            return True

    def quarantined(self, height: int) -> list[bytes]:
        with self._lock:
            return list(self._quarantine.get(height, []))

    def blocks(self, start: int, limit: int = 256) -> list[tuple[int, bytes]]:
        with self._lock:
            out = []
            h = start
            while h in self._blocks and len(out) < limit:
                out.append((h, self._blocks[h]))
                h += 1
            return out

    def campaign(self, node_id: str) -> bool:
        with self._lock:
            if self._leader is None:
                self._leader = node_id
            return self._leader == node_id

    def leader(self) -> str | None:
        return self._leader

    def resign(self) -> None:
        with self._lock:
            self._leader = None


def _etcd_error(e: BaseException | None) -> str:
    """An error's text; for etcd's own refusals the body it answered (``{"error": "etcdserver: …"}``)."""
    return f"{e} {e.detail_text}" if isinstance(e, Etcd3Exception) and e.detail_text else str(e)


def _b64(data: bytes | str) -> str:
    """etcd's JSON gateway wants keys and values in base64."""
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


class EtcdOrderer(Orderer):
    """Ordering on an etcd cluster; ``endpoints`` are client URLs tried in turn when one member is down (``https``
    ones need ``tls``: the CA that signed the members' certificates and this node's client certificate). ``auth``:
    the etcd (user, password) it logs in as when etcd's access control is on (logged in again if etcd forgets it)."""

    def __init__(
        self,
        endpoints: list[str],
        chain_id: bytes,
        lease_ttl: int = 1,
        timeout: float = 2.0,
        tls: TlsFiles | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.prefix = f"/gridledger/{chain_id.hex()}/"
        self.lease_ttl = lease_ttl
        self.timeout = timeout
        self.auth = auth
        self._clients = [etcd_client(u, tls, timeout) for u in endpoints]  # logged in on first use (_call)
        self._current = 0
        self._lease: Lease | None = None
        self._lease_refreshed = 0.0

    # -- transport: try each member until one answers
    def _call(self, fn):
        last = None
        for k in range(len(self._clients)):
            client = self._clients[(self._current + k) % len(self._clients)]
            try:
                if self.auth is not None and "Authorization" not in client.session.headers:
                    authenticate(client, self.auth)
                try:
                    result = fn(client)
                except Etcd3Exception as e:
                    if self.auth is None or "invalid auth token" not in _etcd_error(e):
                        raise
                    authenticate(client, self.auth)  # the member forgot our token (restarted): log in again
                    result = fn(client)
                self._current = (self._current + k) % len(self._clients)
                return result
            except Exception as e:  # noqa: BLE001 - etcd3gw raises requests and etcd errors; try the next member
                last = e
        raise ConnectionError(f"no etcd member answered ({', '.join(self.endpoints)}): {_etcd_error(last)}")

    def _key(self, suffix: str) -> str:
        return self.prefix + suffix

    def submit(self, txid: bytes, raw: bytes) -> None:
        key = self._key(f"mempool/{txid.hex()}/{crypto.sha256(raw).hex()}")
        self._call(lambda c: c.create(key, raw))

    def pending(self, limit: int) -> list[tuple[bytes, bytes]]:
        prefix = self._key("mempool/")
        rows = self._call(lambda c: c.get_prefix(prefix, sort_order="ascend", sort_target="create"))
        return [
            (bytes.fromhex(meta["key"].decode()[len(prefix) :].split("/")[0]), value) for value, meta in rows[:limit]
        ]

    def drop(self, txids: list[bytes]) -> None:
        if not txids:
            return
        ops = [  # every copy: the key range mempool/<txid>/ .. mempool/<txid>0 ('0' sorts right after '/')
            {
                "request_delete_range": {
                    "key": _b64(self._key(f"mempool/{t.hex()}/")),
                    "range_end": _b64(self._key(f"mempool/{t.hex()}0")),
                }
            }
            for t in sorted(set(txids))
        ]
        for i in range(0, len(ops), 100):  # etcd caps the operations of one transaction (128 by default)
            chunk = ops[i : i + 100]
            self._call(lambda c, chunk=chunk: c.transaction({"compare": [], "success": chunk, "failure": []}))

    def publish(self, height: int, raw_block: bytes) -> bool:
        key = self._key(f"blocks/{height:020d}")
        return bool(self._call(lambda c: c.create(key, raw_block)))

    def void(self, height: int, raw: bytes) -> bool:
        key = _b64(self._key(f"blocks/{height:020d}"))
        moved = _b64(self._key(f"quarantine/{height:020d}/{crypto.sha256(raw).hex()}"))
        txn = {
            "compare": [{"key": key, "result": "EQUAL", "target": "VALUE", "value": _b64(raw)}],
            "success": [
                {"request_put": {"key": moved, "value": _b64(raw)}},
                {"request_delete_range": {"key": key}},
            ],
            "failure": [],
        }
        return bool(self._call(lambda c: c.transaction(txn)).get("succeeded", False))

    def quarantined(self, height: int) -> list[bytes]:
        prefix = self._key(f"quarantine/{height:020d}/")
        return [v for v, _ in self._call(lambda c: c.get_prefix(prefix, sort_order="ascend", sort_target="create"))]

    def blocks(self, start: int, limit: int = 256) -> list[tuple[int, bytes]]:
        first, end = self._key(f"blocks/{start:020d}"), self._key("blocks0")  # '0' sorts right after '/'
        rows = self._call(
            lambda c: c.get(first, metadata=True, range_end=end, sort_order="ascend", sort_target="key", limit=limit)
        )
        out, h = [], start
        for value, meta in rows:
            height = int(meta["key"].decode().rsplit("/", 1)[1])
            if height != h or len(out) >= limit:
                break
            out.append((height, value))
            h += 1
        return out

    def campaign(self, node_id: str) -> bool:
        key = self._key("leader")
        now = time.monotonic()
        if self._lease is not None:
            # Refresh the lease at a third of its TTL; a failed refresh means leadership is lost.
            if now - self._lease_refreshed >= self.lease_ttl / 3:
                try:
                    ttl = self._call(lambda c: Lease(self._lease.id, c).refresh())
                except ConnectionError:
                    ttl = 0
                if ttl <= 0:
                    self._lease = None
                else:
                    self._lease_refreshed = now
            if self._lease is not None:
                return self.leader() == node_id
        lease = self._call(lambda c: c.lease(self.lease_ttl))
        if self._call(lambda c: c.create(key, node_id, lease=lease)):
            self._lease, self._lease_refreshed = lease, now
            return True
        self._call(lambda c: Lease(lease.id, c).revoke())
        return False

    def leader(self) -> str | None:
        values = self._call(lambda c: c.get(self._key("leader")))
        return values[0].decode() if values else None

    def resign(self) -> None:
        if self._lease is not None:
            with contextlib.suppress(ConnectionError):
                self._call(lambda c: Lease(self._lease.id, c).revoke())
            self._lease = None

    def close(self) -> None:
        for c in self._clients:
            c.session.close()
