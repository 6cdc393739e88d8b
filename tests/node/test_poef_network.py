"""PoEf across processes on a real local network: 3-member etcd, a primary and a backup concentrator and three
meters (the committee: every block needs two of their votes), one process each, started by ``cluster.up(poef=True)``.

A round commits with a valid quorum certificate on every node; an implausible reading carries its alarm; readings
are served only to the meter, its coordinators and the DSO; a dead validator does not stop commits while a majority
lives; the leader killed mid-round is replaced by the backup, which finishes the very block the committee was
voting on, and nothing committed is lost.
"""

from __future__ import annotations

import json
import os
import re
import signal

import httpx
import pytest
from tests import requires
from typer.testing import CliRunner

from gridledger.chain import Chain
from gridledger.cli.node import cluster_app
from gridledger.ledger.block import Block, Vote
from gridledger.ledger.committee import check_certificate, committee_for
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.alarm import Alarm, AlarmCode
from gridledger.ledger.kinds.reading import ReadingValues
from gridledger.ledger.kinds.reading_batch import batch_of
from gridledger.node import cluster
from gridledger.node.client import NodeClient
from gridledger.node.config import NodeConfig
from gridledger.node.poef_board import EtcdPoefOrderer
from gridledger.node.testnet import wait_until
from gridledger.petra.dso import DSO
from gridledger.store.sqlite import SqliteStore

pytestmark = pytest.mark.slow

METERS = ("MI1", "MI2", "MI3")
ALL = ("DC1", "DC1-backup", *METERS)


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    requires.etcd()
    folder = tmp_path_factory.mktemp("poef-cluster")
    # plain: the tests below read etcd with their own client
    cluster.up(folder, meters=3, concentrators=1, rate_limit=(1_000, 2_000), poef=True, insecure=True)
    try:
        network = PoefNet(folder)
        network.wait(lambda: network.agree(ALL, 1), what="the enrolment block on every node")
        yield network
    finally:
        cluster.down(folder)


class PoefNet:
    """The running cluster as the tests see it: signed clients, meter devices, the round board in etcd."""

    def __init__(self, folder) -> None:
        self.folder = folder
        self.operator = KeyPair(bytes.fromhex((folder / "keys" / "operator.seed").read_text()))
        self.devices = {m: cluster.meter_device(folder, m) for m in METERS}
        self.chain_id = self.devices["MI1"].chain_id
        self.dso = DSO(self.operator, self.chain_id, nonce=1)  # nonce 1 enrolled the meters
        self.submitted: list[bytes] = []
        self._clients: dict[tuple[str, str], NodeClient] = {}

    @property
    def state(self) -> dict:
        return json.loads((self.folder / cluster.STATE_FILE).read_text())

    def node(self, node_id: str) -> dict:
        return next(n for n in self.state["nodes"] if n["id"] == node_id)

    def key(self, node_id: str) -> KeyPair:
        return self.operator if node_id == "operator" else NodeConfig.load(self.node(node_id)["config"]).key

    def client(self, node_id: str, as_id: str = "operator", key: KeyPair | None = None) -> NodeClient:
        if key is not None:
            return NodeClient(self.node(node_id)["url"], as_id, key)
        if (node_id, as_id) not in self._clients:
            self._clients[node_id, as_id] = NodeClient(self.node(node_id)["url"], as_id, self.key(as_id))
        return self._clients[node_id, as_id]

    def board(self) -> EtcdPoefOrderer:
        return EtcdPoefOrderer([m["url"] for m in self.state["etcd"]], self.chain_id)

    def wait(self, predicate, timeout: float = 30.0, what: str = "condition"):
        return wait_until(predicate, timeout, what, interval=0.05)

    def read(self, wh: int | dict[str, int] = 10, meters=METERS) -> dict[str, bytes]:
        """Each meter measures its next minute, encrypts and signs it, and submits it through its own API."""
        out = {}
        for m in meters:
            device = self.devices[m]
            value = wh if isinstance(wh, int) else wh.get(m, 10)
            tx = device.reading(device.last_minute + 1, ReadingValues(value))
            r = self.client(m, m).submit(tx)
            assert r.status_code == 202, r.text
            out[m] = tx.txid
        self.submitted += out.values()
        return out

    def policy(self) -> bytes:
        tx = self.dso.policy(100 + self.dso.nonce, prices=(100 + self.dso.nonce, 80))
        assert self.client("DC1").submit(tx).status_code == 202
        self.submitted.append(tx.txid)
        return tx.txid

    def height_of(self, txids, via: str = "MI1") -> int:
        """Wait until every txid is committed (as ``via`` sees it); the highest height."""
        c = self.client(via)
        statuses = self.wait(
            lambda: (s := [c.tx_status(t) for t in txids]) and all(x["status"] == "committed" for x in s) and s,
            what="commits",
        )
        return max(s["height"] for s in statuses)

    def agree(self, ids, at_least: int) -> bool:
        tips = {(s["height"], s["tip"]) for s in (self.client(i).status() for i in ids)}
        return len(tips) == 1 and next(iter(tips))[0] >= at_least

    def block(self, height: int, via: str = "MI1") -> Block:
        return Block.decode(self.client(via).blocks(height, 1)[0][1])

    def verifier(self, upto: int) -> Chain:
        """A fresh copy of the chain up to ``upto``, every block re-validated (certificates included)."""
        rows = self.client("DC1").blocks(0, upto + 1)
        chain = Chain.from_genesis_block(SqliteStore(":memory:"), Block.decode(rows[0][1]))
        for _, raw in rows[1:]:
            chain.append(Block.decode(raw))
        return chain

    def leader(self) -> str:
        return self.wait(lambda: next((i for i in ("DC1", "DC1-backup") if self.client(i).status()["leading"]), None))


def test_rounds_commit_with_a_valid_certificate_on_every_node(net):
    txids = net.read()
    height = net.height_of(txids.values())
    net.wait(lambda: net.agree(ALL, height), what="every node at the block")
    chain = net.verifier(1)  # genesis and the enrolment block (the DSO's, before anyone could vote)
    for h in range(2, height + 1):
        raws = {net.client(i).blocks(h, 1)[0][1] for i in ALL}
        assert len(raws) == 1  # the same certified block everywhere
        block = Block.decode(raws.pop())
        committee = committee_for(chain.state, block.header)
        assert committee.keys == {net.key(m).public for m in METERS} and committee.required == 2
        check_certificate(committee, block.header, block.certificate)
        assert len(block.certificate) >= committee.required
        chain.append(block)  # and the core accepts it as every node did
    assert set(txids.values()) <= {tx.txid for b in chain.blocks(2) for tx in b.transactions}


def test_an_implausible_reading_carries_its_alarm(net):
    for _ in range(3):
        net.height_of(net.read(10).values())
    spike = net.read({"MI2": 600})["MI2"]
    block = net.block(net.height_of([spike]))
    txs = block.transactions
    i = next(k for k, tx in enumerate(txs) if tx.txid == spike)
    alarm = txs[i + 1]
    assert isinstance(alarm, Alarm) and alarm.code == AlarmCode.IMPLAUSIBLE_READING and alarm.subject == spike
    assert len(block.certificate) >= 2  # the committee agreed: the reading is recorded, with its alarm
    seen = net.client("DC1").request("GET", f"/v1/readings/{spike.hex()}").json()
    assert seen["consumption_wh"] == 600 and seen["implausible"] and seen["meter"] == "MI2"


def test_readings_are_served_only_to_the_meter_its_coordinators_and_the_dso(net):
    mine = net.read({"MI1": 42}, meters=["MI1"])["MI1"]
    net.height_of([mine], via="DC1")
    net.wait(lambda: net.client("MI1").tx_status(mine)["status"] == "committed", what="MI1 has its reading")
    path = f"/v1/readings/{mine.hex()}"

    def ask(via: str, as_id: str):
        return net.client(via, as_id).request("GET", path)

    for via, as_id, basis in [
        ("DC1", "MI1", "meter"),
        ("DC1", "operator", "dso"),
        ("DC1", "DC1-backup", "coordinator"),
        ("MI1", "MI1", "meter"),  # a meter's node opens its own readings with its member key
        ("MI1", "DC1", "coordinator"),
    ]:
        r = ask(via, as_id)
        assert r.status_code == 200, (via, as_id, r.text)
        assert r.json()["served_as"] == basis and r.json()["consumption_wh"] == 42
    unknown = f"/v1/readings/{bytes(32).hex()}"
    for via in ("DC1", "MI1", "MI3"):
        for p in (path, unknown):  # a reading that does not exist is refused exactly like one the caller may not read
            r = net.client(via, "MI2").request("GET", p)
            assert r.status_code == 403
            assert r.json()["detail"] == (
                f"node MI2 may not read reading {p.rsplit('/', 1)[1]}: only the meter that made it, "
                "the chain's coordinators and the DSO may"
            )
    assert net.client("DC1", "operator").request("GET", unknown).status_code == 404
    stranger = net.client("DC1", "stranger", KeyPair.generate())
    assert stranger.request("GET", path).status_code == 401
    impostor = net.client("DC1", "MI1", KeyPair.generate())  # MI1's name without MI1's key
    assert impostor.request("GET", path).status_code == 401
    r = ask("MI2", "MI1")  # entitled, but MI2's node holds no key of MI1's readings
    assert r.status_code == 404 and "does not hold the content key of meter MI1" in r.json()["detail"]
    summary = net.client("DC1", "MI1").request("GET", "/v1/readings", {"meter": "MI1"}).json()
    assert summary["count"] >= 2 and summary["consumption_wh"] == sum(v["consumption_wh"] for v in summary["readings"])
    for meter in ("MI1", "NO-SUCH-METER"):  # an unknown meter is refused like a meter MI3 may not read
        r = net.client("DC1", "MI3").request("GET", "/v1/readings", {"meter": meter})
        assert r.status_code == 403 and r.json()["detail"].startswith(
            f"node MI3 may not read the readings of meter {meter}:"
        )
    assert net.client("DC1").request("GET", "/v1/readings", {"meter": "NO-SUCH-METER"}).status_code == 404



def test_a_batch_of_minutes_commits_under_one_signature_and_each_minute_is_served(net):
    """A meter reporting three minutes in one READING_BATCH: the committee gets each minute's key disclosed, votes
    for the block, and every node serves each minute by its own id, to the meter, as a reading of its own."""
    device = net.devices["MI2"]
    first = device.last_minute + 1
    views = [device.seal_minute(first + i, ReadingValues(wh)) for i, wh in enumerate((7, 8, 9))]
    tx = batch_of(views).signed(net.chain_id, device.key)
    assert net.client("MI2", "MI2").submit(tx).status_code == 202
    block = net.block(net.height_of([tx.txid], via="DC1"), via="DC1")
    assert tx.txid in {t.txid for t in block.transactions} and len(block.certificate) >= 2  # certified by PoEf
    for view, wh in zip(views, (7, 8, 9), strict=True):
        seen = net.client("DC1", "MI2").request("GET", f"/v1/readings/{view.txid.hex()}")
        assert seen.status_code == 200, seen.text
        assert (seen.json()["consumption_wh"], seen.json()["meter"]) == (wh, "MI2")
        assert net.client("DC1").tx_status(view.txid)["status"] == "committed"
    summary = net.client("DC1", "MI2").request("GET", "/v1/readings", {"meter": "MI2"}).json()
    assert {view.txid.hex() for view in views} <= {r["txid"] for r in summary["readings"]}

def test_a_validator_down_does_not_stop_commits_while_a_majority_lives(net):
    mi3 = net.node("MI3")
    os.kill(mi3["pid"], signal.SIGKILL)
    net.wait(lambda: not cluster._alive(mi3["pid"]), what="MI3 gone")
    txids = [*net.read(meters=["MI1", "MI2"]).values(), net.policy()]
    height = net.height_of(txids)
    voters = {v.pubkey for v in net.block(height).certificate}
    assert voters == {net.key("MI1").public, net.key("MI2").public}
    cluster.restart(net.folder, "MI3")
    net.wait(lambda: net.agree(ALL, height), timeout=60, what="MI3 caught up, checking every certificate")


def test_the_leader_killed_mid_round_is_replaced_and_the_backup_finishes_the_block(net):
    leader = net.leader()
    backup = "DC1-backup" if leader == "DC1" else "DC1"
    before = {tx.txid for b in net.verifier(net.client("MI1").status()["height"]).blocks(1) for tx in b.transactions}
    board = net.board()
    stopped = [net.node(m)["pid"] for m in ("MI2", "MI3")]
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)  # two of three validators hang: no quorum, the round stays open
    try:
        height = net.client("MI1").status()["height"] + 1
        txids = [net.read(meters=["MI1"])["MI1"], net.policy()]
        me = net.key("MI1").public

        def voted_proposal():
            for _, raw in reversed(board.proposals(height)):
                block = Block.decode(raw)
                if isinstance(board.verdicts(height).get(block.hash, {}).get(me), Vote):
                    return block
            return None

        in_flight = net.wait(voted_proposal, what="a proposal MI1 voted for")
        assert {tx.txid for tx in in_flight.transactions} & set(txids)
        # past its round time-out the leader reports the height, its one vote of two, and who is silent; so does
        # the operator's `cluster status`
        waiting = net.wait(lambda: net.client(leader).status()["waiting_for_quorum"], what="the leader's report")
        assert (waiting["height"], waiting["votes"], waiting["needed"]) == (height, 1, 2)
        assert sorted(waiting["silent"]) == ["MI2", "MI3"] and waiting["for_s"] >= 3
        metrics = httpx.get(net.node(leader)["url"] + "/v1/metrics", timeout=5).text
        assert float(re.search(r"^gridledger_quorum_wait_seconds (\S+)$", metrics, re.M).group(1)) >= 3
        shown = CliRunner().invoke(cluster_app, ["status", "--dir", str(net.folder)], env={"COLUMNS": "200"})
        assert shown.exit_code == 0 and f"{leader}: height {height} has no quorum" in shown.output, shown.output
        assert "silent committee members: MI2, MI3" in shown.output.replace("\n", " ")
        os.kill(net.node(leader)["pid"], signal.SIGKILL)
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        board.close()
    assert net.height_of(txids) >= height  # every transaction committed (the policy may come a block later)
    final = net.block(height)
    assert final.hash == in_flight.hash and final.header.proposer == net.key(leader).public  # finished, not replaced
    assert net.client(backup).status()["leading"]

    def alarm_committed():  # the backup recorded the take-over on the ledger
        tip = net.client("MI1").status()["height"]
        return any(
            isinstance(tx, Alarm) and tx.code == AlarmCode.COORDINATOR_DOWN and tx.subject == net.key(leader).public
            for h in range(height, tip + 1)
            for tx in net.block(h).transactions
        )

    net.wait(alarm_committed, what="the COORDINATOR_DOWN alarm")
    cluster.restart(net.folder, leader)
    tip = net.client("MI1").status()["height"]
    net.wait(lambda: net.agree(ALL, tip), timeout=60, what="the restarted coordinator caught up")
    # nothing committed is lost: every transaction of every test is on every node's chain
    for node_id in ALL:
        chain = {tx.txid for _, raw in net.client(node_id).blocks(1, 1000) for tx in Block.decode(raw).transactions}
        assert before <= chain and set(net.submitted) <= chain, node_id
