"""The API's edges, in process: throttling by peer address before authentication, the body cap before reading,
and the health endpoint (``NodeService`` on an in-process orderer, requests through Starlette's test client)."""

from __future__ import annotations

import asyncio
import time
import warnings
from contextlib import AsyncExitStack

import httpx
import pytest

with warnings.catch_warnings():  # starlette's notice about a future httpx package, at import
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from gridledger.chain import Chain
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.node.auth import NodeRegistry, RateLimiter, sign_headers
from gridledger.node.ordering import InProcessOrderer
from gridledger.node.sequencer import Sequencer
from gridledger.node.service import MAX_BODY_BYTES, MAX_STREAMS_PER_CALLER, NodeService
from gridledger.node.testnet import serve
from gridledger.petra.dso import DSO
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


def test_open_streams_neither_starve_other_callers_nor_outlive_their_clients(tmp_path):
    """Eight meters each try 20 event streams: 16 per node are served, the rest refused (429); while they are open,
    another node's requests answer, the streams carry new blocks, and once the clients leave the streams end."""
    svc = make_service(tmp_path, RateLimiter(100_000, 100_000))
    svc.start()
    path = "/v1/stream?start=0"

    async def scenario(url: str) -> None:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as http, AsyncExitStack() as streams:
            opened, refused = [], 0
            for caller in list(METERS)[:8]:
                for _ in range(20):
                    r = await streams.enter_async_context(
                        http.stream("GET", path, headers=signed("GET", path, caller=caller))
                    )
                    if r.status_code == 200:
                        opened.append(r.aiter_lines())
                    else:
                        assert r.status_code == 429
                        refused += 1
            assert (len(opened), refused) == (8 * MAX_STREAMS_PER_CALLER, 8 * (20 - MAX_STREAMS_PER_CALLER))
            assert [await lines.__anext__() for lines in opened[:3]] == ["event: block"] * 3  # the genesis block
            other = "MI9"
            for _ in range(20):  # generous bound: this asserts the API answers at all, not how fast
                r = await http.get("/v1/status", headers=signed("GET", "/v1/status", caller=other), timeout=5)
                assert r.status_code == 200 and r.json()["streams_open"] == len(opened)
            tx = DSO(DSO_KEY, svc.chain.chain_id).policy((int(time.time()) - START) // 900 + 10, prices=(7, 5))
            r = await http.post(
                "/v1/transactions", content=tx.encode(), headers=signed("POST", "/v1/transactions", tx.encode(), other)
            )
            assert r.status_code == 202
            lines = opened[0]
            seen = [await lines.__anext__() for _ in range(4)]  # the genesis event's data and end, then block 1
            assert seen[2] == "event: block" and seen[3].startswith('data: {"height": 1,')
        deadline = time.monotonic() + 10  # the clients are gone: their streams end, the slots are free
        while svc.health()["streams_open"]:
            assert time.monotonic() < deadline, svc.health()["streams_open"]
            await asyncio.sleep(0.05)

    try:
        with serve(svc.app) as url:
            asyncio.run(scenario(url))
    finally:
        svc.stop()
