"""A signed HTTP client for the node API (httpx), and catch-up from peers."""

from __future__ import annotations

from urllib.parse import urlencode

import httpx

from gridledger.chain import Chain
from gridledger.ledger.block import Block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.ledger.transactions import Transaction
from gridledger.node.auth import sign_headers


class NodeClient:
    """Talks to one node's API as a registered node (``node_id`` with ``key``)."""

    def __init__(self, base_url: str, node_id: str, key: KeyPair, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.node_id, self.key = node_id, key
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def request(self, method: str, path: str, params: dict | None = None, body: bytes = b"") -> httpx.Response:
        full = path + (f"?{urlencode(params)}" if params else "")
        headers = sign_headers(self.key, self.node_id, method, full, body)
        if body:
            headers["Content-Type"] = "application/octet-stream"
        return self.http.request(method, full, content=body or None, headers=headers)

    def status(self) -> dict:
        r = self.request("GET", "/v1/status")
        r.raise_for_status()
        return r.json()

    def submit(self, tx: Transaction) -> httpx.Response:
        return self.request("POST", "/v1/transactions", body=tx.encode())

    def tx_status(self, txid: bytes) -> dict:
        r = self.request("GET", f"/v1/transactions/{txid.hex()}")
        r.raise_for_status()
        return r.json()

    def blocks(self, start: int, limit: int = 500) -> list[tuple[int, bytes]]:
        r = self.request("GET", "/v1/blocks", {"start": start, "limit": limit})
        r.raise_for_status()
        return [(row["height"], bytes.fromhex(row["raw"])) for row in r.json()["blocks"]]

    def close(self) -> None:
        self.http.close()


def catch_up(chain: Chain, peers: list[NodeClient]) -> int:
    """Append blocks above our tip from any peer that has them, re-validating each; returns how many.

    A peer that is down or serves an invalid block is skipped (the invalid block is not appended).
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
