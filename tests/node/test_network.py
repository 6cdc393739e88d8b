"""Multi-process scenarios on a real local network (3-member etcd, one process per node, SQLite stores).

Normal operation, the leading coordinator SIGKILLed mid-stream, a node restarted and caught up, a tampered store
detected and rebuilt (the paper's scenario on meter MI2), a flooding meter, and an unregistered node.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time

import httpx
import pytest
from tests import requires

from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.dso_policy import DsoPolicy
from gridledger.node import cluster
from gridledger.node.client import NodeClient
from gridledger.node.ordering import EtcdOrderer
from gridledger.node.testnet import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    requires.etcd()
    folder = tmp_path_factory.mktemp("cluster")
    cluster.up(folder, meters=2, concentrators=1, insecure=True)  # raw http and etcd clients below
    try:
        yield Network(folder)
    finally:
        cluster.down(folder)


class Network:
    def __init__(self, folder) -> None:
        self.folder = folder
        self.operator = KeyPair(bytes.fromhex((folder / "keys" / "operator.seed").read_text()))
        self.nonce = 0

    @property
    def state(self) -> dict:
        return json.loads((self.folder / cluster.STATE_FILE).read_text())

    def node(self, node_id: str) -> dict:
        return next(n for n in self.state["nodes"] if n["id"] == node_id)

    def client(self, node_id: str, as_id: str = "operator", key: KeyPair | None = None) -> NodeClient:
        return NodeClient(self.node(node_id)["url"], as_id, key or self.operator)

    def node_key(self, node_id: str) -> KeyPair:
        text = (self.folder / f"{node_id}.toml").read_text()
        seed = next(line.split('"')[1] for line in text.splitlines() if line.startswith("key_seed"))
        return KeyPair(bytes.fromhex(seed))

    def policy(self, chain_id: bytes) -> DsoPolicy:
        self.nonce += 1
        slot = 10_000 + self.nonce  # far enough ahead of the chain's current slot
        return DsoPolicy(self.nonce, slot, prices=(100 + self.nonce, 80)).signed(chain_id, self.operator)

    def chain_id(self) -> bytes:
        return bytes.fromhex(self.client("DC1").status()["chain_id"])

    def wait(self, predicate, timeout: float = 30.0, what: str = "condition"):
        return wait_until(predicate, timeout, what, interval=0.1)

    def heights(self, ids) -> dict[str, tuple[int, str]]:
        out = {}
        for i in ids:
            s = self.client(i).status()
            out[i] = (s["height"], s["tip"])
        return out

    def agree(self, ids, at_least: int) -> bool:
        h = self.heights(ids)
        return len({v for v in h.values()}) == 1 and next(iter(h.values()))[0] >= at_least


ALL = ("DC1", "DC1-backup", "MI1", "MI2")


def test_normal_operation(net):
    chain_id = net.chain_id()
    client = net.client("MI1")
    txids = []
    for _ in range(5):
        tx = net.policy(chain_id)
        r = client.submit(tx)
        assert r.status_code == 202, r.text
        txids.append(tx.txid)
    client.submit(DsoPolicy(net.nonce, 10_000 + net.nonce, prices=(1, 1)).signed(chain_id, net.operator))  # replay
    net.wait(lambda: all(client.tx_status(t)["status"] == "committed" for t in txids), what="commits")
    height = client.tx_status(txids[-1])["height"]
    net.wait(lambda: net.agree(ALL, height), what="all nodes at the same tip")


def test_invalid_transaction_gets_a_specific_error(net):
    r = net.client("MI1").request("POST", "/v1/transactions", body=b"\x01\x01\x00")
    assert r.status_code == 400
    assert r.json()["code"] == "bad-encoding-truncated"


def test_unregistered_node_can_neither_read_nor_write(net):
    stranger = KeyPair.generate()
    for client in (net.client("MI1", "stranger", stranger), net.client("MI1", "MI2", stranger)):
        assert client.request("GET", "/v1/status").status_code == 401
        assert client.request("GET", "/v1/blocks", {"start": 0}).status_code == 401
        assert client.submit(net.policy(net.chain_id())).status_code == 401
    # and a captured request cannot be replayed
    ok = net.client("MI1")
    from gridledger.node.auth import sign_headers

    headers = sign_headers(net.operator, "operator", "GET", "/v1/status")
    assert ok.http.get("/v1/status", headers=headers).status_code == 200
    assert ok.http.get("/v1/status", headers=headers).status_code == 401


def _leader(net) -> str:
    return net.wait(
        lambda: next((i for i in ("DC1", "DC1-backup") if net.client(i).status()["leading"]), None), what="a leader"
    )


def test_coordinator_killed_mid_stream_loses_nothing(net):
    chain_id = net.chain_id()
    leader = _leader(net)
    survivor = "DC1" if leader == "DC1-backup" else "DC1-backup"
    client = net.client("MI2")
    submitted: list[bytes] = []
    for k in range(30):
        tx = net.policy(chain_id)
        net.wait(lambda tx=tx: client.submit(tx).status_code == 202, what="submit")
        submitted.append(tx.txid)
        if k == 10:
            os.kill(net.node(leader)["pid"], signal.SIGKILL)
        time.sleep(0.03)
    net.wait(
        lambda: all(client.tx_status(t)["status"] == "committed" for t in submitted),
        timeout=60,
        what="every tx committed",
    )
    assert net.client(survivor).status()["leading"]
    height = client.tx_status(submitted[-1])["height"]
    net.wait(lambda: net.agree((survivor, "MI1", "MI2"), height), what="survivors agree")
    cluster.restart(net.folder, leader)
    net.wait(lambda: net.agree(ALL, height), timeout=60, what="the restarted coordinator caught up")


def test_restarted_node_catches_up(net):
    chain_id = net.chain_id()
    os.kill(net.node("MI1")["pid"], signal.SIGKILL)
    client = net.client("MI2")
    txids = []
    for _ in range(3):
        tx = net.policy(chain_id)
        assert client.submit(tx).status_code == 202
        txids.append(tx.txid)
    net.wait(lambda: all(client.tx_status(t)["status"] == "committed" for t in txids), what="commits")
    cluster.restart(net.folder, "MI1")
    height = client.tx_status(txids[-1])["height"]
    net.wait(lambda: net.agree(ALL, height), timeout=60, what="MI1 caught up")


def test_tampered_store_is_detected_and_rebuilt(net):
    mi2 = net.node("MI2")
    os.kill(mi2["pid"], signal.SIGTERM)
    net.wait(lambda: not cluster._alive(mi2["pid"]), what="MI2 stopped")
    db = sqlite3.connect(net.folder / "MI2.sqlite")
    raw = bytearray(db.execute("SELECT data FROM blocks WHERE height = 1").fetchone()[0])
    raw[-1] ^= 0x01  # one flipped bit in the last transaction of block 1
    db.execute("UPDATE blocks SET data = ? WHERE height = 1", (bytes(raw),))
    db.commit()
    db.close()
    cluster.restart(net.folder, "MI2")
    status = net.client("MI2").status()
    assert status["tamper_report"] and "block 1" in status["tamper_report"]
    height = net.client("MI1").status()["height"]
    net.wait(lambda: net.agree(ALL, height), timeout=60, what="MI2 rebuilt its chain")
    assert list(net.folder.glob("MI2.sqlite.tampered-*"))


def test_a_flooding_meter_does_not_delay_the_others(net):
    chain_id = net.chain_id()
    flooder = net.client("MI2", "MI1", net.node_key("MI1"))
    codes: list[int] = []
    stop = threading.Event()

    def flood() -> None:
        c = net.client("MI2", "MI1", net.node_key("MI1"))
        while not stop.is_set():
            codes.append(c.request("GET", "/v1/status").status_code)

    threads = [threading.Thread(target=flood) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        net.wait(lambda: 429 in codes, timeout=20, what="the flooder to be rate-limited")
        client = net.client("MI2")
        txids = []
        for _ in range(5):
            tx = net.policy(chain_id)
            r = client.submit(tx)
            assert r.status_code == 202, r.text  # never rate-limited for the flooder's sake
            txids.append(tx.txid)
        net.wait(lambda: all(client.tx_status(t)["status"] == "committed" for t in txids), what="commits")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert 429 in codes
    assert flooder.request("GET", "/v1/status").status_code in (200, 429)


def test_a_junk_ordering_log_entry_is_voided_and_the_chain_resumes(net):
    """Bytes written under the next block's key in etcd (by anyone with etcd access) must not stop any node: each
    refuses the entry, counts it and stays alive; the leader quarantines it and the height is proposed again."""
    chain_id = net.chain_id()
    orderer = EtcdOrderer([m["url"] for m in net.state["etcd"]], chain_id)
    client = net.client("MI1")
    try:
        before = {i: net.client(i).status()["entries_rejected"] for i in ALL}
        height = client.status()["height"]
        assert orderer.publish(height + 1, b"\x07junk")  # what an attacker in the network can write
        tx = net.policy(chain_id)
        assert client.submit(tx).status_code == 202
        net.wait(lambda: client.tx_status(tx.txid)["status"] == "committed", what="the commit after the junk entry")
        assert client.tx_status(tx.txid)["height"] == height + 1
        assert orderer.quarantined(height + 1) == [b"\x07junk"]
        net.wait(lambda: net.agree(ALL, height + 1), what="every node past the junk entry")
        for i in ALL:
            status = net.client(i).status()
            assert status["sequencer_alive"] and status["last_applied_height"] >= height + 1
            assert status["entries_rejected"] <= before[i] + 1
            h = httpx.get(net.node(i)["url"] + "/v1/health")
            assert h.status_code == 200 and h.json()["healthy"]
            metrics = httpx.get(net.node(i)["url"] + "/v1/metrics").text
            assert "gridledger_sequencer_alive 1" in metrics
        # at least the nodes that read the junk before it was replaced counted it, and said why
        refused = [net.client(i).status() for i in ALL]
        assert any(s["entries_rejected"] > before[s["node_id"]] for s in refused)
        assert any(s["last_rejected"] and "bad-encoding" in s["last_rejected"] for s in refused)
    finally:
        orderer.close()


def test_a_store_changed_under_a_running_node_is_never_served(net):
    """A byte flipped in blocks.data while MI1 runs: MI1 serves the block as it validated it (not the stored bytes),
    reports the tampering, turns unhealthy, and rebuilds its store when restarted."""
    client = net.client("MI1")
    good = client.request("GET", "/v1/blocks/1").json()
    raw_good = client.blocks(1, 1)[0][1]
    db = sqlite3.connect(net.folder / "MI1.sqlite")
    raw = bytearray(db.execute("SELECT data FROM blocks WHERE height = 1").fetchone()[0])
    raw[-1] ^= 0x01
    db.execute("UPDATE blocks SET data = ? WHERE height = 1", (bytes(raw),))
    db.commit()
    db.close()
    assert client.request("GET", "/v1/blocks/1").json() == good
    assert client.blocks(1, 1)[0][1] == raw_good
    status = client.status()
    assert status["store_tampered"] == 1 and "block 1" in status["tamper_report"]
    health = httpx.get(net.node("MI1")["url"] + "/v1/health")
    assert health.status_code == 503 and not health.json()["store_verified"]
    mi1 = net.node("MI1")
    os.kill(mi1["pid"], signal.SIGTERM)
    net.wait(lambda: not cluster._alive(mi1["pid"]), what="MI1 stopped")
    cluster.restart(net.folder, "MI1")
    height = net.client("MI2").status()["height"]
    net.wait(lambda: net.agree(ALL, height), timeout=60, what="MI1 rebuilt its store")
    assert httpx.get(net.node("MI1")["url"] + "/v1/health").status_code == 200
