"""Ordering backends: where pending transactions wait, who leads, and which block is final at each height.

Two implementations behind one interface:

* ``InProcessOrderer`` — the embedded default: one process, no server.
* ``EtcdOrderer`` — etcd's Raft log across machines (client ``etcd3gw``). The leader key holds the leading
  coordinator's **term** (its node id and a random token); the leader renews it every ``LEADER_BEAT_S`` (a
  compare-and-put on its own term, which changes the key's revision). A backup that sees the key's revision unchanged
  for ``LEADER_TIMEOUT_S`` on its own clock takes over with a compare-and-put on that revision, so only one backup
  wins. The leader publishes each block at its height with one transaction that requires both the height to be
  empty and the leader key to still hold its term (**fencing**): two coordinators can never both commit a height,
  and a deposed leader (paused, partitioned, or slow) cannot commit at all, whatever the clocks say. A leader stops
  claiming leadership ``LEADER_TIMEOUT_S`` after its last renewal was sent (``holds_lease``), before any backup can
  take over. Followers and peers read blocks in height order.
  Pending transactions live in etcd under their txid and the hash of their bytes, so resubmitting is idempotent, a
  fail-over loses none, and a copy with a garbage signature submitted first does not shadow the validly signed one
  (both wait; the block takes the valid copy, and dropping a txid drops every copy of it).

Key layout under ``/gridledger/<chain id hex>/``: ``leader``, ``blocks/<height, 20 digits>``,
``mempool/<txid hex>/<SHA-256 of the transaction's bytes, hex>``,
``quarantine/<height, 20 digits>/<SHA-256 of the entry, hex>`` (void entries the leader moved out of ``blocks/``,
see :mod:`gridledger.node.sequencer`).
The ledger state never sees the orderer: it only validates the blocks a node reads from it.

**Watches.** A node's loop does not poll etcd at a fast pace: ``wake_on`` opens an etcd watch stream (the JSON
gateway's ``/v3/watch``) per kind of record the node acts on (``blocks``, ``mempool``, ``proposals``, ``votes``) and
calls back on every write, so the loop reads the orderer as soon as there is something to read, and otherwise every
``POLL_S`` (a backup coordinator looks at the leader key every ``BACKUP_POLL_S``). A watch is only a doorbell: the
loop still reads the records themselves with range reads, in order, so a lost stream (a member that died, restarted
or was cut off) can delay a node by at most ``POLL_S``, never lose or reorder an entry. A stream that fails or stays
silent for ``WATCH_IDLE_S`` is opened again on the next member, and every (re)opening rings, for what was written
while no stream was open.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable

import requests
from etcd3gw.exceptions import Etcd3Exception

from gridledger.ledger import crypto
from gridledger.node.etcd import authenticate, etcd_client
from gridledger.node.pki import TlsFiles

#: Seconds between a leader's renewals of its term.
LEADER_BEAT_S = 0.1
#: Seconds without a renewal after which a backup takes over (and the leader stops claiming to lead). It covers
#: four beats, so a leader briefly starved of CPU keeps its term; safety never depends on it (fencing).
LEADER_TIMEOUT_S = 0.4
#: Seconds a leader's loop may go without campaigning (e.g. one long step) before its renewals stop: a hung or
#: dead sequencer hands over instead of holding the chain.
LEADER_STALL_S = 3.0
#: Between the node id and the random token of a term in the leader key.
TERM_SEPARATOR = "#"
#: Seconds between a node's reads of a watched orderer when no write woke it: what a lost watch costs at most.
POLL_S = 0.5
#: Seconds between a backup coordinator's looks at the leader key (it takes over once the key stood still for
#: ``LEADER_TIMEOUT_S``; each look costs two small etcd reads).
BACKUP_POLL_S = 0.05
#: Seconds a watch stream may stay silent before it is opened again, on the next member (a dead or cut-off member
#: leaves its streams silent; a quiet key range costs one reopening per period).
WATCH_IDLE_S = 5.0
#: Seconds before a watch stream that failed is opened again.
WATCH_RETRY_S = 0.1


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

    def holds_lease(self) -> bool:
        """False once this node's leadership may have passed to another (backends without leases: always True)."""
        return True

    def resign(self) -> None:  # noqa: B027 - optional for backends without leases
        """Give up leadership (a clean stop)."""

    def close(self) -> None:  # noqa: B027 - optional for backends without connections
        """Release connections."""

    def wake_on(self, kinds: Iterable[str], ring: Callable[[str], None]) -> bool:
        """Call ``ring(kind)`` after every write of a record of one of ``kinds`` (the first part of its key:
        ``blocks``, ``mempool``, ``proposals``, ``votes``), until ``close``; False if this backend cannot tell (its
        users poll). A hint only: readers still read the records, so a lost call delays them, never loses one."""
        return False


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


def _put(key: str, value: bytes | str) -> dict:
    return {"request_put": {"key": _b64(key), "value": _b64(value)}}


def _compare_value(key: str, value: bytes | str) -> dict:
    return {"key": _b64(key), "result": "EQUAL", "target": "VALUE", "value": _b64(value)}


class EtcdOrderer(Orderer):
    """Ordering on an etcd cluster; ``endpoints`` are client URLs tried in turn when one member is down (``https``
    ones need ``tls``: the CA that signed the members' certificates and this node's client certificate). ``auth``:
    the etcd (user, password) it logs in as when etcd's access control is on (logged in again if etcd forgets it)."""

    def __init__(
        self,
        endpoints: list[str],
        chain_id: bytes,
        timeout: float = 2.0,
        tls: TlsFiles | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.prefix = f"/gridledger/{chain_id.hex()}/"
        self.timeout = timeout
        self.auth = auth
        self._clients = [etcd_client(u, tls, timeout) for u in endpoints]  # logged in on first use (_call)
        #: The watch streams' own clients (one per member): the node's requests never wait behind a stream.
        self._watchers = [etcd_client(u, tls, timeout) for u in endpoints]
        self._closed = threading.Event()
        self._streams: set[requests.Response] = set()  # open watch streams (``close`` cuts them)
        self._current = 0
        #: This node's term while it leads, and until when (monotonic s) it may claim to lead; a renewal thread
        #: (``_renew``) keeps both, so a long step (a large block) does not starve the renewals.
        self._term: str | None = None
        self._deadline = 0.0
        self._term_lock = threading.Lock()
        self._polled = 0.0  # when the node's loop last campaigned (monotonic s)
        #: The last term this node held: its blocks are published only while the leader key still holds it.
        self._fence: str | None = None
        #: Another leader's key revision and when this node first saw it (monotonic s).
        self._seen: tuple[int, float] | None = None

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
        """Create-if-absent at ``height``; once this node has campaigned, only while the leader key holds its term
        (a deposed leader's block is refused). An orderer that never campaigned (tools, tests) is not fenced."""
        key = self._key(f"blocks/{height:020d}")
        compare = [{"key": _b64(key), "result": "EQUAL", "target": "CREATE", "create_revision": 0}]
        if self._fence is not None:
            compare.append(_compare_value(self._key("leader"), self._fence))
        return self._txn(compare, [_put(key, raw_block)])

    def void(self, height: int, raw: bytes) -> bool:
        key = self._key(f"blocks/{height:020d}")
        moved = self._key(f"quarantine/{height:020d}/{crypto.sha256(raw).hex()}")
        return self._txn([_compare_value(key, raw)], [_put(moved, raw), {"request_delete_range": {"key": _b64(key)}}])

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
        now = self._polled = time.monotonic()
        if self._term is not None:  # leading while the renewal thread keeps the lease (it clears a lost term)
            return self.holds_lease()
        rows = self._call(lambda c: c.get(key, metadata=True))
        if rows:
            revision = int(rows[0][1]["mod_revision"])
            if self._seen is None or self._seen[0] != revision:
                self._seen = (revision, now)  # the leader renewed (or changed): wait a whole timeout again
                return False
            if now - self._seen[1] < LEADER_TIMEOUT_S:
                return False
            held = {"key": _b64(key), "result": "EQUAL", "target": "MOD", "mod_revision": revision}
        else:
            held = {"key": _b64(key), "result": "EQUAL", "target": "CREATE", "create_revision": 0}
        term = f"{node_id}{TERM_SEPARATOR}{os.urandom(8).hex()}"
        if not self._txn([held], [_put(key, term)]):
            return False
        with self._term_lock:
            self._term = self._fence = term
            self._deadline, self._seen = now + LEADER_TIMEOUT_S, None
        threading.Thread(target=self._renew, args=(term,), name=f"lease {node_id}", daemon=True).start()
        return True

    def _renew(self, term: str) -> None:
        """Renew ``term`` every ``LEADER_BEAT_S`` until it is lost (another coordinator took over), given up, or the
        node's loop has not campaigned for ``LEADER_STALL_S``."""
        key = self._key("leader")
        while True:
            sent = time.monotonic()
            if sent - self._polled > LEADER_STALL_S:
                with self._term_lock:
                    if self._term == term:
                        self._term = None
                return
            try:
                held: bool | None = self._txn([_compare_value(key, term)], [_put(key, term)])
            except ConnectionError:  # unreachable: the deadline runs out unless a later renewal gets through
                held = None
            with self._term_lock:
                if self._term != term:
                    return
                if held is False:  # another coordinator took over
                    self._term = None
                    return
                if held:  # the write happened after ``sent``: no backup can take over before sent + timeout
                    self._deadline = max(self._deadline, sent + LEADER_TIMEOUT_S)
            time.sleep(max(0.0, sent + LEADER_BEAT_S - time.monotonic()))

    def holds_lease(self) -> bool:
        """True while no other coordinator can have taken over: within ``LEADER_TIMEOUT_S`` of the last renewal
        sent (a backup waits that long, on its own clock, after it last saw the leader key change)."""
        return self._term is not None and time.monotonic() < self._deadline

    def leader(self) -> str | None:
        values = self._call(lambda c: c.get(self._key("leader")))
        return values[0].decode().rpartition(TERM_SEPARATOR)[0] if values else None

    def resign(self) -> None:
        with self._term_lock:
            term, self._term = self._term, None  # stops the renewal thread
        if term is not None:
            key = self._key("leader")
            with contextlib.suppress(ConnectionError):
                self._txn([_compare_value(key, term)], [{"request_delete_range": {"key": _b64(key)}}])

    def _txn(self, compare: list[dict], success: list[dict]) -> bool:
        """One etcd transaction; True if its comparisons held (and ``success`` was applied)."""
        txn = {"compare": compare, "success": success, "failure": []}
        return bool(self._call(lambda c: c.transaction(txn)).get("succeeded", False))

    def wake_on(self, kinds: Iterable[str], ring: Callable[[str], None]) -> bool:
        for kind in kinds:
            threading.Thread(target=self._watch, args=(kind, ring), name=f"watch {kind}", daemon=True).start()
        return True

    def _watch(self, kind: str, ring: Callable[[str], None]) -> None:
        """Call ``ring(kind)`` on every put under ``<prefix><kind>/`` and on every (re)opening of the stream (for what
        was written while none was open); a stream that fails or is silent for ``WATCH_IDLE_S`` is opened again on the
        next member."""
        create = {"key": _b64(self._key(f"{kind}/")), "range_end": _b64(self._key(f"{kind}0")), "filters": ["NODELETE"]}
        k = self._current
        while not self._closed.is_set():
            client = self._watchers[k % len(self._watchers)]
            try:
                if self.auth is not None and "Authorization" not in client.session.headers:
                    authenticate(client, self.auth)
                self._stream(client, {"create_request": create}, kind, ring)
            except (requests.RequestException, Etcd3Exception, OSError, ValueError, KeyError) as e:
                if self.auth is not None and "auth" in str(e).lower():  # e.g. the token expired: log in again next time
                    client.session.headers.pop("Authorization", None)
            k += 1  # failed, silent or cancelled: the next member (its stream rings once open)
            self._closed.wait(WATCH_RETRY_S)

    def _stream(self, client, request: dict, kind: str, ring: Callable[[str], None]) -> None:
        """Read one watch stream until it ends, fails, is cancelled by etcd, or stays silent ``WATCH_IDLE_S``."""
        url = client.get_url("/watch")
        with client.session.post(url, json=request, stream=True, timeout=(self.timeout, WATCH_IDLE_S)) as answer:
            answer.raise_for_status()
            self._streams.add(answer)
            try:
                if self._closed.is_set():
                    return
                for line in answer.iter_lines():
                    if not line:
                        continue
                    body = json.loads(line)
                    if "result" not in body:  # etcd's error object (e.g. an invalid auth token) ends the stream
                        raise ValueError(f"etcd watch: {body.get('error', body)}")
                    result = body["result"]
                    if result.get("canceled"):
                        return
                    ring(kind)  # created (anything before it is read by the next step), or events
            finally:
                self._streams.discard(answer)

    def close(self) -> None:
        self._closed.set()
        for answer in list(self._streams):  # wake the watch threads blocked on their streams
            with contextlib.suppress(OSError, AttributeError, ValueError):
                sock = socket.socket(fileno=os.dup(answer.raw.fileno()))
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        with self._term_lock:
            self._term = None  # stops the renewal thread; the term lapses after LEADER_TIMEOUT_S
        for c in self._clients + self._watchers:
            c.close()
