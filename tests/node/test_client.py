"""``gridledger.client`` against a running node (its API served by uvicorn on loopback, a real sequencer and
in-process orderer), the key files it accepts, and the node's OpenAPI schema and offline documentation pages."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from gridledger.chain import Chain
from gridledger.client import ApiError, KeyFileError, NodeClient, NodeUnreachable, load_key
from gridledger.ledger.block import Block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.dso_policy import DsoPolicy
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.node.auth import NodeRegistry, RateLimiter
from gridledger.node.dashboard import SUBMIT_TTL_S, Activity
from gridledger.node.netutil import free_port
from gridledger.node.ordering import InProcessOrderer
from gridledger.node.sequencer import Sequencer
from gridledger.node.service import SIGNING_HEADERS, NodeService
from gridledger.node.testnet import serve
from gridledger.petra.dso import DSO
from gridledger.store.sqlite import SqliteStore

START, SLOT = 1_767_225_600, 900
DSO_KEY, C1 = KeyPair.from_secret("client-dso"), KeyPair.from_secret("client-coordinator")


def make_node(folder, name: str = "nan-client", node_id: str = "DC1", peers=()) -> NodeService:
    """A coordinator node of its own chain ``name``, its DSO registered as operator (not started)."""
    genesis = Genesis(name, SLOT, START, DSO_KEY.public, (C1.public,))
    chain = Chain.create(SqliteStore(folder / f"{node_id}.sqlite"), genesis, C1, START)
    orderer, registry = InProcessOrderer(), NodeRegistry()
    registry.register("operator", "dso", DSO_KEY.public)
    sequencer = Sequencer(chain, orderer, node_id, C1)
    limits = RateLimiter(1e4, 1e4)
    return NodeService(
        node_id, "concentrator", chain, orderer, sequencer, registry, limits, dashboard_peers=list(peers)
    )


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """(base URL, the DSO's client, the DSO policy builder) of a running node whose DSO is registered as operator."""
    svc = make_node(tmp_path_factory.mktemp("node"))
    chain = svc.chain
    svc.start()
    try:
        with serve(svc.app) as url, NodeClient(url, "operator", DSO_KEY) as client:
            yield url, client, DSO(DSO_KEY, chain.chain_id)
    finally:
        svc.stop()


def current_slot() -> int:
    return (int(time.time()) - START) // SLOT


def test_the_client_reads_and_writes_every_endpoint(node):
    url, client, dso = node
    assert client.health()["healthy"] and "gridledger_sequencer_alive 1" in client.metrics()
    status = client.status()
    assert status["node_id"] == "DC1" and status["height"] == 0
    tx = dso.policy(current_slot() + 5, prices=(120, 90))
    txid = client.send(tx)
    assert txid == tx.txid
    committed = client.wait(txid)
    assert committed == {"status": "committed", "height": 1} and client.tx_status(txid) == committed
    assert [t["txid"] for t in client.block(1)["transactions"]] == [txid.hex()]
    raw = dict(client.blocks(0, 10))
    assert Block.decode(raw[1]).transactions == (tx,)
    view = client.policy()
    assert view["nonce"] == 1 and view["policies"][0]["prices"] == [120, 90] and view["policies"][0]["height"] == 1
    assert view["current_slot"] == current_slot() or view["current_slot"] == current_slot() - 1
    events = client.events(start=0)
    assert [next(events)["height"], next(events)["height"]] == [0, 1]
    events.close()


def test_refusals_raise_api_errors_with_the_reject_code(node):
    url, client, dso = node
    with pytest.raises(ApiError) as e:
        client.send(DsoPolicy(99, current_slot() + 5).signed(bytes(32), DSO_KEY))  # changes nothing
    assert (e.value.status, e.value.code) == (400, "bad-policy-empty")
    stale = dso.policy(0, prices=(1, 1))  # context-free valid, refused by the chain
    assert client.wait(client.send(stale))["code"] == "bad-policy-stale"
    with pytest.raises(ApiError) as e:
        client.block(999)
    assert (e.value.status, e.value.code) == (404, "http-404") and "no block at height 999" in e.value.message
    with NodeClient(url, "stranger", KeyPair.generate()) as stranger, pytest.raises(ApiError) as e:
        stranger.status()
    assert e.value.status == 401 and "unregistered node 'stranger'" in e.value.message
    with NodeClient(f"http://127.0.0.1:{free_port()}", "operator", DSO_KEY) as gone:
        with pytest.raises(NodeUnreachable, match="did not answer"):
            gone.status()
        with pytest.raises(httpx.HTTPError):  # what callers that catch httpx errors rely on
            gone.policy()


def test_the_dashboard_data_counts_refusals_and_shows_prices_and_latency(node):
    """After the tests above: one transaction refused by the API, one rejected by the chain (both counted by code,
    neither has a commit latency), two committed."""
    url, client, dso = node
    assert client.wait(client.send(dso.policy(current_slot(), prices=(7, 5))))["status"] == "committed"
    data = httpx.get(url + "/v1/dashboard").json()
    assert data["node"]["transactions_refused"] == {"api": {"bad-policy-empty": 1}, "chain": {"bad-policy-stale": 1}}
    chain = data["chains"][0]
    assert chain["prices"] == [7, 5] and chain["height"] == client.status()["height"]
    assert chain["transactions"] == {"Genesis": 1, "DsoPolicy": chain["height"]}
    assert data["latency_s"]["count"] == 2 and 0 < data["latency_s"]["p50"] <= data["latency_s"]["p99"]
    assert [c["height"] for c in data["committees"]] == list(range(chain["height"], -1, -1))


def test_a_key_file_must_be_private_and_hold_a_seed(tmp_path):
    path = tmp_path / "dso.seed"
    path.write_text(DSO_KEY.seed.hex() + "\n")
    path.chmod(0o600)
    assert load_key(path).public == DSO_KEY.public
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="mode 0644.*chmod 600"):
        load_key(path)
    path.chmod(0o400)
    assert load_key(path).public == DSO_KEY.public  # stricter is fine
    bad = tmp_path / "bad.seed"
    bad.write_text("not hex")
    bad.chmod(0o600)
    with pytest.raises(KeyFileError, match="64 hex"):
        load_key(bad)
    with pytest.raises(KeyFileError, match="cannot read"):
        load_key(tmp_path / "missing.seed")


def test_the_schema_documents_the_signing_headers_binary_bodies_and_errors(node):
    url, _, _ = node
    schema = httpx.get(url + "/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert {n: (s["type"], s["in"], s["name"]) for n, s in schemes.items()} == {
        n: ("apiKey", "header", n) for n in ("X-Node-Id", "X-Timestamp", "X-Nonce", "X-Signature")
    }
    assert (
        "Ed25519" in schemes["X-Signature"]["description"] and "SHA-256(body)" in schemes["X-Signature"]["description"]
    )
    ops = {(m.upper(), p): op for p, item in schema["paths"].items() for m, op in item.items()}
    unsigned = {("GET", "/v1/health"), ("GET", "/v1/metrics"), ("GET", "/v1/dashboard")}
    for key, op in ops.items():
        codes = set(op["responses"])
        assert {"413", "429"} <= codes, key  # the peer gate answers any route
        if key in unsigned:
            assert "security" not in op and "401" not in codes, key
        else:
            assert op["security"] == [{n: [] for n in SIGNING_HEADERS}] and "401" in codes, key
    body = ops["POST", "/v1/transactions"]["requestBody"]
    assert body["content"] == {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    refusal = ops["POST", "/v1/transactions"]["responses"]["400"]["content"]["application/json"]["schema"]["$ref"]
    assert set(schema["components"]["schemas"][refusal.rsplit("/", 1)[1]]["properties"]) == {"code", "message"}
    assert {"400", "403", "404"} <= set(ops["GET", "/v1/readings/{txid}"]["responses"])
    assert "503" in ops["GET", "/v1/blocks/{height}"]["responses"] and "404" in ops["GET", "/v1/dashboard"]["responses"]
    assert ops["GET", "/v1/stream"]["responses"]["200"]["content"] == {"text/event-stream": {}}


@pytest.mark.parametrize("page", ["/docs", "/redoc", "/dashboard"])
def test_the_documentation_and_dashboard_pages_load_only_local_assets(node, page):
    url, _, _ = node
    html = httpx.get(url + page).text
    refs = re.findall(r'(?:src|href)=["\']([^"\']+)["\']', html)
    assert refs and not [r for r in refs if not (r.startswith("/") or r.startswith("data:"))], refs
    for ref in refs:
        if ref.startswith("/"):
            r = httpx.get(url + ref)
            assert r.status_code == 200 and len(r.content) > 100, ref
    assert "cdn" not in html.lower() and "https://" not in html


def test_the_dashboard_data_lists_every_chain_of_its_peers(tmp_path):
    """A node's /v1/dashboard adds its dashboard peers' chains (another NAN here) and names one that is down; a
    chain it does not hold is a 404."""
    other = make_node(tmp_path, "nan-other", "DC2")
    other.start()
    try:
        with serve(other.app) as other_url:
            dead = f"http://127.0.0.1:{free_port()}"
            first = make_node(tmp_path, "nan-first", "DC1", peers=[other_url, dead])
            first.start()
            try:
                with serve(first.app) as url:
                    chains = httpx.get(url + "/v1/dashboard").json()["chains"]
                    assert [(c.get("name"), c.get("node"), c["url"]) for c in chains] == [
                        ("nan-first", "DC1", ""),
                        ("nan-other", "DC2", other_url),
                        (None, None, dead),
                    ]
                    assert chains[1]["chain_id"] == other.chain.chain_id.hex() and "unreachable" in chains[2]["error"]
                    alone = httpx.get(url + "/v1/dashboard", params={"peers": "false"}).json()["chains"]
                    assert [c["name"] for c in alone] == ["nan-first"]
                    r = httpx.get(url + "/v1/dashboard", params={"chain": "nan-nowhere"})
                    assert r.status_code == 404 and "no chain 'nan-nowhere' on node DC1" in r.json()["detail"]
                    assert httpx.get(url + "/v1/dashboard", params={"chain": "nan-first"}).status_code == 200
            finally:
                first.stop()
    finally:
        other.stop()


def test_activity_forgets_transactions_never_committed():
    activity = Activity()
    activity.submitted(b"\x01" * 32, now=0.0)
    activity.submitted(b"\x02" * 32, now=SUBMIT_TTL_S + 1)  # the first is dropped: it will never be timed
    assert list(activity._submitted) == [b"\x02" * 32]
