"""The API's edges, in process: throttling by peer address before authentication, the body cap before reading,
and the health endpoint (``NodeService`` on an in-process orderer, requests through Starlette's test client)."""

from __future__ import annotations

import time
import warnings

import pytest

with warnings.catch_warnings():  # starlette's notice about a future httpx package, at import
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from gridledger.chain import Chain
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.transactions import Genesis
from gridledger.node.auth import NodeRegistry, RateLimiter, sign_headers
from gridledger.node.ordering import InProcessOrderer
from gridledger.node.sequencer import Sequencer
from gridledger.node.service import MAX_BODY_BYTES, NodeService
from gridledger.store.sqlite import SqliteStore

START = 1_767_225_600
DSO_KEY, C1 = KeyPair.from_secret("dso"), KeyPair.from_secret("coordinator-1")
GENESIS = Genesis("nan-api", 900, START, DSO_KEY.public, (C1.public,))


METERS = {f"MI{i}": KeyPair.from_secret(f"meter-{i}") for i in range(1, 10)}


def make_service(tmp_path, peer_limiter: RateLimiter) -> NodeService:
    chain = Chain.create(SqliteStore(tmp_path / "n.sqlite"), GENESIS, C1, START)
    orderer = InProcessOrderer()
    registry = NodeRegistry()
    for name, key in METERS.items():
        registry.register(name, "meter", key.public)
    return NodeService(
        "DC1",
        "concentrator",
        chain,
        orderer,
        Sequencer(chain, orderer, "DC1", C1),
        registry,
        RateLimiter(1000, 1000),
        peer_limiter=peer_limiter,
    )


@pytest.fixture
def service(tmp_path):
    svc = make_service(tmp_path, RateLimiter(rate=0.001, burst=20))
    yield svc
    svc.stop()


def signed(method: str, path: str, body: bytes = b"", caller: str = "MI1") -> dict[str, str]:
    return sign_headers(METERS[caller], caller, method, path, body)


def test_bad_signatures_from_one_address_are_throttled_before_they_are_checked(service):
    http = TestClient(service.app)
    headers = {**signed("GET", "/v1/status"), "X-Signature": "00" * 64}
    codes = [http.get("/v1/status", headers=headers).status_code for _ in range(30)]
    assert codes[:20] == [401] * 20 and codes[20:] == [429] * 10
    assert http.get("/v1/status", headers=signed("GET", "/v1/status")).status_code == 429  # the address is out
    assert service.health()["requests_refused"]["peer_rate"] == 11


def test_an_oversized_body_is_refused_before_it_is_read_or_authenticated(service):
    http = TestClient(service.app)
    big = b"\x00" * (MAX_BODY_BYTES + 1)
    r = http.post("/v1/transactions", content=big, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 413  # unsigned, yet refused for its size: nothing was verified
    chunks = (b"\x00" * 65536 for _ in range(MAX_BODY_BYTES // 65536 + 2))  # no Content-Length: capped as it arrives
    r = http.post("/v1/transactions", content=chunks, headers=signed("POST", "/v1/transactions", b""))
    assert r.status_code == 413


def test_health_says_unhealthy_while_the_sequencer_thread_is_not_running(service):
    http = TestClient(service.app)
    r = http.get("/v1/health")
    assert r.status_code == 503 and r.json()["workers"] == {"sequencer": False}
    r = http.post("/v1/transactions", content=b"\x01", headers=signed("POST", "/v1/transactions", b"\x01"))
    assert r.status_code == 503 and r.json()["code"] == "node-unhealthy"  # never a 202 that cannot commit
    service.start()
    assert http.get("/v1/health").status_code == 200
    status = http.get("/v1/status", headers=signed("GET", "/v1/status")).json()
    assert status["sequencer_alive"] and status["last_applied_height"] == 0 and status["entries_rejected"] == 0
    deadline = time.monotonic() + 10
    while not status["leading"]:
        assert time.monotonic() < deadline
        status = http.get("/v1/status", headers=signed("GET", "/v1/status")).json()
    service.stop()
    r = http.get("/v1/health")
    assert r.status_code == 503
    assert not http.get("/v1/status", headers=signed("GET", "/v1/status")).json()["leading"]
    assert "gridledger_sequencer_alive 0" in http.get("/v1/metrics").text

