"""Unregistered node (ledger level): outsiders try to read and write every node's API.

Three intruders try each of the API's reads and writes on two nodes (the leading coordinator and a seeded meter),
once for each registered meter, while the registered meters do the same:

* a node with a key nobody registered (``rogue-<seed>``);
* an impostor: a registered meter's id with another key;
* a replay: a request genuinely signed by a registered meter, captured and sent again.

Every intruder request must be answered 401 (``node.auth``: signed requests from registered nodes only, each
signature accepted once). Detection = rejected attempts / attempts; time to detect = mean time to the 401;
false alarm = an honest request that is not answered 2xx; data lost = honest submissions not committed.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

import httpx

from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.transactions import Transaction
from gridledger.node.auth import sign_headers
from gridledger.node.client import NodeClient
from gridledger.twin.scenarios.base import RunContext, RunResult, register
from gridledger.twin.scenarios.ledger_lab import LedgerLab, LedgerScenario


@dataclass
class Tally:
    """Answers to one party's requests: how many, how many were refused with 401, and how long each took."""

    sent: int = 0
    refused: int = 0
    ok: int = 0
    seconds: list[float] = field(default_factory=list)

    def record(self, response: httpx.Response, started: float) -> None:
        self.sent += 1
        self.refused += response.status_code == 401
        self.ok += 200 <= response.status_code < 300
        self.seconds.append(time.monotonic() - started)


Request = tuple[str, str, bytes]  # method, path with query, body


def api_requests(tx: Transaction) -> list[Request]:
    """The API's reads and its write: status, blocks, a transaction's status, and submitting ``tx``."""
    return [
        ("GET", "/v1/status", b""),
        ("GET", f"/v1/blocks?{urlencode({'start': 0, 'limit': 2})}", b""),
        ("GET", f"/v1/transactions/{tx.txid.hex()}", b""),
        ("POST", "/v1/transactions", tx.encode()),
    ]


def send(client: NodeClient, request: Request, headers: dict[str, str]) -> httpx.Response:
    """Send ``request`` with ``headers`` as they are (already signed: by the sender, or captured)."""
    method, path, body = request
    if body:
        headers = {**headers, "Content-Type": "application/octet-stream"}
    return client.http.request(method, path, content=body or None, headers=headers)


def signed(client: NodeClient, request: Request) -> dict[str, str]:
    method, path, body = request
    return sign_headers(client.key, client.node_id, method, path, body)


def attempt(client: NodeClient, request: Request, tally: Tally, headers: dict[str, str] | None = None) -> int:
    """Send one request (signed by ``client`` unless ``headers`` are given), record the answer, return its code."""
    started = time.monotonic()
    response = send(client, request, headers or signed(client, request))
    tally.record(response, started)
    return response.status_code


class UnregisteredNode(LedgerScenario):
    name = "unregistered-node"
    threat = "unregistered node: an outsider, an impostor key or a replayed request on a node's API"
    detector = "signed requests from registered nodes only, each signature once (HTTP 401)"

    def attack(self, lab: LedgerLab, ctx: RunContext) -> RunResult:
        net = lab.network
        rng = random.Random(ctx.seed)
        impersonated = rng.choice(lab.meters)
        rogue, impostor, honest = Tally(), Tally(), Tally()
        replays = Tally()
        submitted: list[bytes] = []
        outsider = KeyPair.generate()
        targets = [net.leader(), rng.choice(lab.meters)]
        for node in targets:
            stranger = NodeClient(net.node(node)["url"], f"rogue-{ctx.seed}", outsider, ca=net.ca)
            fake = NodeClient(net.node(node)["url"], impersonated, KeyPair.generate(), ca=net.ca)
            try:
                for meter in lab.meters:
                    tx = lab.issue(meter)  # a valid transaction: only the API stands between it and the chain
                    real = net.client(node, meter)
                    for request in api_requests(tx):
                        attempt(stranger, request, rogue)
                        attempt(fake, request, impostor)
                        headers = signed(real, request)
                        if attempt(real, request, honest, headers) == 202:
                            submitted.append(tx.txid)
                        attempt(real, request, replays, headers)  # the same request, captured and sent again
            finally:
                stranger.close()
                fake.close()
        statuses = lab.wait_final(submitted)
        intruders = (rogue, impostor, replays)
        attempts = sum(t.sent for t in intruders)
        refused = sum(t.refused for t in intruders)
        seconds = [s for t in intruders for s in t.seconds]
        return RunResult(
            injected=f"{attempts} requests by an unregistered node, an impostor of {impersonated} and replays, "
            f"on {' and '.join(targets)}",
            detected=refused == attempts,
            time_to_detect_s=sum(seconds) / len(seconds),
            false_alarms=honest.sent - honest.ok,
            honest_observations=honest.sent,
            data_lost=sum(s["status"] != "committed" for s in statuses.values()),
            details={
                "unregistered_refused": f"{rogue.refused}/{rogue.sent}",
                "impostor_refused": f"{impostor.refused}/{impostor.sent}",
                "replays_refused": f"{replays.refused}/{replays.sent}",
                "intruder_answers_2xx": sum(t.ok for t in intruders),
                "honest_ok": f"{honest.ok}/{honest.sent}",
                "honest_committed": sum(s["status"] == "committed" for s in statuses.values()),
            },
            attempts=attempts,
            attempts_detected=refused,
        )


register(UnregisteredNode())
