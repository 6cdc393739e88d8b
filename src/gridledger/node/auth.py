"""Signed node-to-node requests and rate limits (the paper's MitM and DoS scenarios).

Every request carries ``X-Node-Id``, ``X-Timestamp`` (Unix seconds), ``X-Nonce`` (16 random bytes, hex) and
``X-Signature``: an Ed25519 signature by the node's registered key over
``METHOD \\n PATH?QUERY \\n TIMESTAMP \\n NONCE \\n SHA-256(body)``. A server accepts it only
from a registered node, within ``MAX_SKEW_S`` of its clock, and never twice (signatures seen inside the window
are remembered). So an unregistered node can neither read nor write, and a captured request cannot be replayed.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from gridledger.ledger import crypto
from gridledger.ledger.crypto import KeyPair

MAX_SKEW_S = 30
#: Keys a rate limiter tracks before it forgets those idle long enough to have a full bucket again.
MAX_BUCKETS = 10_000


class AuthError(Exception):
    """A request is not from a registered node, is stale, replayed, or badly signed."""


def signing_message(method: str, path: str, timestamp: int, nonce: str, body: bytes) -> bytes:
    fields = [method.upper().encode(), path.encode(), str(timestamp).encode(), nonce.encode(), crypto.sha256(body)]
    return b"\n".join(fields)


def sign_headers(
    key: KeyPair, node_id: str, method: str, path: str, body: bytes = b"", now: float | None = None
) -> dict[str, str]:
    """Headers that authenticate a request of ``node_id`` (``path`` includes the query string)."""
    ts = int(time.time() if now is None else now)
    nonce = os.urandom(16).hex()
    sig = key.sign(signing_message(method, path, ts, nonce, body))
    return {"X-Node-Id": node_id, "X-Timestamp": str(ts), "X-Nonce": nonce, "X-Signature": sig.hex()}


@dataclass
class NodeRegistry:
    """Registered nodes: id → (role, public key).

    ``replace`` swaps the whole mapping in one assignment (a configuration reload); a request reads the mapping
    once, so it sees the registry either before or after a swap, never half of it. The replay memory is kept."""

    nodes: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    _seen: OrderedDict = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, node_id: str, role: str, pubkey: bytes) -> None:
        self.nodes[node_id] = (role, pubkey)

    def replace(self, entries: list[tuple[str, str, bytes]]) -> None:
        """Make ``entries`` (id, role, public key) the registered nodes, at once; nodes not in them are refused."""
        self.nodes = {node_id: (role, pubkey) for node_id, role, pubkey in entries}

    def authenticate(
        self, headers, method: str, path: str, body: bytes, now: float | None = None
    ) -> tuple[str, str, bytes]:
        """(node id, role, public key) of a valid signed request; raises ``AuthError`` naming what is wrong."""
        nodes = self.nodes  # one registry for the whole check, even if a reload swaps it meanwhile
        node_id = headers.get("x-node-id")
        if not node_id or node_id not in nodes:
            raise AuthError(f"unregistered node {node_id!r}")
        try:
            ts = int(headers.get("x-timestamp", ""))
            sig = bytes.fromhex(headers.get("x-signature", ""))
        except ValueError:
            raise AuthError("malformed X-Timestamp or X-Signature") from None
        now = time.time() if now is None else now
        if abs(now - ts) > MAX_SKEW_S:
            raise AuthError(f"timestamp {ts} is more than {MAX_SKEW_S} s from the server's clock")
        role, pubkey = nodes[node_id]
        nonce = headers.get("x-nonce", "")
        if len(nonce) != 32:
            raise AuthError("missing or malformed X-Nonce")
        if not crypto.verify(pubkey, signing_message(method, path, ts, nonce, body), sig):
            raise AuthError(f"bad signature for node {node_id}")
        with self._lock:
            if sig in self._seen:
                raise AuthError("replayed request")
            self._seen[sig] = ts
            while self._seen and next(iter(self._seen.values())) < now - 2 * MAX_SKEW_S:
                self._seen.popitem(last=False)
        return node_id, role, pubkey


@dataclass
class RateLimiter:
    """A token bucket per key (a node id, or a peer address): ``rate`` requests per second with bursts of ``burst``."""

    rate: float = 50.0
    burst: float = 100.0
    #: Requests refused so far.
    refused: int = 0
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def allow(self, node_id: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(node_id, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1:
                self._buckets[node_id] = (tokens, now)
                self.refused += 1
                return False
            self._buckets[node_id] = (tokens - 1, now)
            if len(self._buckets) > MAX_BUCKETS:  # forget keys whose bucket has refilled: they are as if new
                full = now - self.burst / self.rate
                self._buckets = {k: v for k, v in self._buckets.items() if v[1] > full}
            return True
