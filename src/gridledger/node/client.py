"""A signed HTTP client for the node API (httpx), and catch-up from peers.

The public face of this module is :mod:`gridledger.client`. ``NodeClient`` signs every request as one registered
node (see :mod:`gridledger.node.auth`); its typed calls return the decoded JSON and raise ``ApiError`` (the node
refused: HTTP status, the reject code, the message) or ``NodeUnreachable`` (no answer), so callers never see a raw
HTTP error. ``request`` is the raw signed call underneath.
"""

from __future__ import annotations

import json
import ssl
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx

from gridledger.chain import Chain
from gridledger.ledger.block import Block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.ledger.transactions import Transaction
from gridledger.node.auth import sign_headers


class ApiError(httpx.HTTPError):
    """The node answered with an error: ``status`` (HTTP), ``code`` (the reject code, or ``http-STATUS``) and the
    node's ``message``. (An ``httpx.HTTPError``, like ``NodeUnreachable``: callers that catch those keep working.)"""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code} ({status}): {message}")
        self.status, self.code, self.message = status, code, message

    @classmethod
    def of(cls, r: httpx.Response) -> ApiError:
        try:
            body = r.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        if "code" in body:
            return cls(r.status_code, str(body["code"]), str(body.get("message", "")))
        return cls(r.status_code, f"http-{r.status_code}", str(body.get("detail", r.text.strip())))


class NodeUnreachable(httpx.HTTPError):
    """No answer from the node (refused connection, time-out, broken transfer); ``tls`` if its certificate was not
    signed by the CA the client trusts (or it speaks plain HTTP to a TLS client)."""

    def __init__(self, message: str, tls: bool = False) -> None:
        super().__init__(message)
        self.tls = tls

    @classmethod
    def of(cls, url: str, e: httpx.TransportError) -> NodeUnreachable:
        text = str(e) or type(e).__name__
        if "CERTIFICATE_VERIFY_FAILED" in text or "WRONG_VERSION_NUMBER" in text:
            return cls(f"node {url}: TLS refused ({text}); give the cluster's CA (--ca DIR/pki/ca.crt)", tls=True)
        return cls(f"node {url} did not answer: {text}")


class KeyFileError(ValueError):
    """A key file is missing, readable by others than its owner, or not a 32-byte hex seed (the message says)."""


def load_key(path: str | Path) -> KeyPair:
    """The Ed25519 key whose seed (64 hex characters) is in ``path``; the file must be private (mode 0600 or
    stricter: no access for group or others), else ``KeyFileError``."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except OSError as e:
        raise KeyFileError(f"cannot read key file {path}: {e.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"key file {path} has mode {stat.S_IMODE(mode):04o}: it must be readable by its owner only "
            f"(chmod 600 {path})"
        )
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise KeyFileError(f"key file {path} must hold a 32-byte seed as 64 hex characters")
    return KeyPair(seed)


def tls_verify(ca: str | Path | None) -> ssl.SSLContext | bool:
    """What httpx verifies an ``https`` node against: only the CA certificate in ``ca`` (a cluster's own CA, see
    :mod:`gridledger.node.pki`), or the system's trusted CAs when ``ca`` is None. ``ValueError`` (naming the file)
    if ``ca`` is not a readable PEM certificate."""
    if ca is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(ca))
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"CA file {ca}: not a readable PEM certificate ({e.strerror or e})") from None


class NodeClient:
    """Talks to one node's API as a registered node (``node_id`` with ``key``); ``timeout`` per request (s). An
    ``https`` node's certificate is verified against ``ca`` (the PEM file of the cluster's CA), or the system's CAs."""

    def __init__(
        self, base_url: str, node_id: str, key: KeyPair, timeout: float = 5.0, ca: str | Path | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.node_id, self.key = node_id, key
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout, verify=tls_verify(ca))

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        params: dict | None = None,
        body: bytes = b"",
        kind: str = "application/octet-stream",
    ) -> httpx.Response:
        """One signed request (``kind``: the body's content type); the raw response (httpx errors pass through)."""
        full = path + (f"?{urlencode(params)}" if params else "")
        headers = sign_headers(self.key, self.node_id, method, full, body)
        if body:
            headers["Content-Type"] = kind
        return self.http.request(method, full, content=body or None, headers=headers)

    def call(
        self,
        method: str,
        path: str,
        params: dict | None = None,
        body: bytes = b"",
        signed: bool = True,
        kind: str = "application/octet-stream",
    ):
        """A request whose answer must be a success: its JSON (or text); ``ApiError``/``NodeUnreachable`` else."""
        try:
            r = self.request(method, path, params, body, kind) if signed else self.http.request(method, path)
        except httpx.TransportError as e:
            raise NodeUnreachable.of(self.base_url, e) from None
        if r.status_code >= 400:
            raise ApiError.of(r)
        return r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text

    # ------------------------------------------------------------------ endpoints
    def status(self) -> dict:
        """``/v1/status``: id, role, chain, height, tip, leader and health of the node."""
        return self.call("GET", "/v1/status")

    def health(self) -> dict:
        """``/v1/health`` (unsigned): ``healthy``, the workers and whether the store verified; never raises for 503."""
        try:
            return self.http.get("/v1/health").json()
        except httpx.TransportError as e:
            raise NodeUnreachable.of(self.base_url, e) from None

    def metrics(self) -> str:
        """``/v1/metrics`` (unsigned): the Prometheus text."""
        return self.call("GET", "/v1/metrics", signed=False)

    def submit(self, tx: Transaction) -> httpx.Response:
        """Post a transaction; the raw response (``202`` queued, ``400`` with ``{code, message}``)."""
        return self.request("POST", "/v1/transactions", body=tx.encode())

    def send(self, tx: Transaction) -> bytes:
        """Post a transaction; its txid once queued, ``ApiError`` (code: the reject) if the node refuses it."""
        return bytes.fromhex(self.call("POST", "/v1/transactions", body=tx.encode())["txid"])

    def tx_status(self, txid: bytes) -> dict:
        """``pending``, ``committed`` (with ``height``), ``rejected`` (with ``code`` and ``message``) or ``unknown``
        (the node never saw it queued; a coordinator that does not lead may not know of another's rejection)."""
        return self.call("GET", f"/v1/transactions/{txid.hex()}")

    def wait(self, txid: bytes, timeout: float = 30.0, interval: float = 0.1) -> dict:
        """Poll until the transaction is committed or rejected (its status), ``TimeoutError`` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while (st := self.tx_status(txid))["status"] == "pending":
            if time.monotonic() >= deadline:
                raise TimeoutError(f"transaction {txid.hex()} still pending after {timeout:g} s")
            time.sleep(interval)
        return st

    def blocks(self, start: int, limit: int = 500) -> list[tuple[int, bytes]]:
        """Raw blocks from height ``start`` (at most ``limit``), as (height, bytes)."""
        rows = self.call("GET", "/v1/blocks", {"start": start, "limit": limit})["blocks"]
        return [(row["height"], bytes.fromhex(row["raw"])) for row in rows]

    def block(self, height: int) -> dict:
        """One block as JSON."""
        return self.call("GET", f"/v1/blocks/{height}")

    def readings(self, meter: str, limit: int = 100) -> dict:
        """A meter's latest readings with their values (only for the meter, its coordinators and the DSO)."""
        return self.call("GET", "/v1/readings", {"meter": meter, "limit": limit})

    def reading(self, txid: bytes) -> dict:
        """One committed reading's values (same entitlement as ``readings``)."""
        return self.call("GET", f"/v1/readings/{txid.hex()}")

    def policy(self) -> dict:
        """``/v1/policy``: the chain's clock (start, slot length, current slot), the DSO policies committed in
        order, and what is in force now (prices, and each meter's status and limits)."""
        return self.call("GET", "/v1/policy")

    def report_bill(self, slot: int, energy_ws: int, amount: int, eca_audit_ok: bool) -> dict:
        """Report this meter's bill of an ended ``slot`` (energy to settle in W·s, amount in minor units): ``{meter,
        slot, new}``, ``new`` false if the node kept this very bill already; ``ApiError`` ``bill-conflict`` (409) if it
        kept another for the slot, ``bill-future-slot``, ``bill-out-of-range``, ``bill-not-a-meter`` …"""
        bill = {"slot": slot, "energy_ws": energy_ws, "amount": amount, "eca_audit_ok": eca_audit_ok}
        return self.call("POST", "/v1/bills", body=json.dumps(bill).encode(), kind="application/json")

    def bills(self, last: int = 100) -> dict:
        """``/v1/bills``: the bills' aggregate per slot (the latest ``last``), the totals, the refused reports."""
        return self.call("GET", "/v1/bills", {"last": last})

    def events(self, start: int = 1) -> Iterator[dict]:
        """``/v1/stream``: one dict (height, hash, txs) per committed block from ``start`` on, as they come; runs
        until the caller stops iterating (no read time-out)."""
        path = f"/v1/stream?start={start}"
        headers = sign_headers(self.key, self.node_id, "GET", path)
        try:
            with self.http.stream("GET", path, headers=headers, timeout=httpx.Timeout(5.0, read=None)) as r:
                if r.status_code >= 400:
                    r.read()
                    raise ApiError.of(r)
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        yield json.loads(line[6:])
        except httpx.TransportError as e:
            raise NodeUnreachable.of(self.base_url, e) from None

    def close(self) -> None:
        self.http.close()


def catch_up(chain: Chain, peers: list[NodeClient]) -> int:
    """Append blocks above our tip from any peer that has them, re-validating each; returns how many.

    A peer that is down, refuses or serves an invalid block is skipped (the invalid block is not appended).
    """
    n = 0
    for peer in peers:
        try:
            while rows := peer.blocks(chain.height + 1):
                for _, raw in rows:
                    chain.append(Block.decode(raw))
                    n += 1
        except (httpx.HTTPError, Reject):
            continue
    return n
