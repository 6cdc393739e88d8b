"""``gridledger tx status TXID`` and ``GET /v1/transactions/{txid}`` against a running node (its API served by uvicorn
on loopback, a real sequencer and in-process orderer): pending while queued, committed at its height, rejected with
the ledger's code, unknown when never queued; bad input is one line and exit code 2."""

from __future__ import annotations

import os

import pytest
from tests.node.test_client import C1, DSO_KEY, START, current_slot, make_node
from typer.testing import CliRunner

from gridledger.chain import Chain
from gridledger.cli import app
from gridledger.client import NodeClient
from gridledger.node.auth import NodeRegistry, RateLimiter
from gridledger.node.netutil import free_port
from gridledger.node.sequencer import Sequencer
from gridledger.node.service import NodeService
from gridledger.node.testnet import serve, wait_until
from gridledger.petra.dso import DSO
from gridledger.store.sqlite import SqliteStore

runner = CliRunner()


@pytest.fixture
def node(tmp_path):
    """(service, base URL, DSO key file) of a node whose sequencer is not started yet."""
    svc = make_node(tmp_path)
    key = tmp_path / "dso.seed"
    key.write_text(DSO_KEY.seed.hex())
    key.chmod(0o600)
    try:
        with serve(svc.app) as url:
            yield svc, url, key
    finally:
        svc.stop()


def status(url, key, txid: str):
    return runner.invoke(app, ["tx", "status", txid, "--node", url, "--key", str(key)])


def test_pending_then_committed_then_a_rejected_replay_and_an_unknown_txid(node):
    svc, url, key = node
    dso = DSO(DSO_KEY, svc.chain.chain_id)
    tx = dso.policy(current_slot() + 5, prices=(120, 90))
    svc.orderer.submit(tx.txid, tx.encode())  # queued; no sequencer runs yet
    shown = status(url, key, tx.txid.hex())
    assert shown.exit_code == 0 and shown.output.strip() == "pending"
    svc.start()
    with NodeClient(url, "operator", DSO_KEY) as client:
        assert client.wait(tx.txid) == {"status": "committed", "height": 1}
        shown = status(url, key, tx.txid.hex())
        assert shown.exit_code == 0 and shown.output.strip() == "committed at height 1"
        replay = DSO(DSO_KEY, svc.chain.chain_id).policy(current_slot() + 6, prices=(121, 90))  # nonce 1 again
        client.send(replay)
        wait_until(lambda: client.tx_status(replay.txid)["status"] != "pending", 30, "the replay judged")
        answer = client.tx_status(replay.txid)
        assert answer["status"] == "rejected" and answer["code"].startswith("bad-policy")
    shown = status(url, key, replay.txid.hex())
    assert shown.exit_code == 1 and shown.output.startswith(f"rejected: {answer['code']}: ")
    shown = status(url, key, os.urandom(32).hex())
    assert shown.exit_code == 1 and shown.output.startswith("unknown: ")


def test_a_follower_says_pending_until_it_applies_the_block_the_leader_published(node, tmp_path):
    leader, _, _ = node
    genesis = leader.chain.genesis_block.transactions[0]
    chain = Chain.create(SqliteStore(tmp_path / "DC2.sqlite"), genesis, C1, START)  # the same chain
    registry = NodeRegistry()
    registry.register("operator", "dso", DSO_KEY.public)
    follower = NodeService(
        "DC2", "meter", chain, leader.orderer, Sequencer(chain, leader.orderer, "DC2"), registry, RateLimiter(1e4, 1e4)
    )
    tx = DSO(DSO_KEY, chain.chain_id).policy(current_slot() + 5, prices=(100, 80))
    leader.orderer.submit(tx.txid, tx.encode())
    with serve(follower.app) as url, NodeClient(url, "operator", DSO_KEY) as client:
        assert client.tx_status(tx.txid) == {"status": "pending"}  # in the queue
        assert leader.sequencer.step() is not None  # block 1 published; the queue no longer holds the transaction
        assert leader.orderer.pending(10) == [] and chain.height == 0
        assert client.tx_status(tx.txid) == {"status": "pending"}  # in a block the follower has not applied yet
        follower.sequencer.step()
        assert client.tx_status(tx.txid) == {"status": "committed", "height": 1}
        assert client.tx_status(os.urandom(32))["status"] == "unknown"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nothex",), "TXID 'nothex': a transaction id is 64 hex characters"),
        (("ab" * 31,), "a transaction id is 64 hex characters"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(node, args, message):
    _, url, key = node
    shown = runner.invoke(app, ["tx", "status", *args, "--node", url, "--key", str(key)])
    assert shown.exit_code == 2 and message in shown.output and "Traceback" not in shown.output


def test_a_readable_key_a_silent_node_and_an_unregistered_id_are_one_line(node, tmp_path):
    _, url, key = node
    txid = os.urandom(32).hex()
    key.chmod(0o644)
    shown = status(url, key, txid)
    assert shown.exit_code == 2 and "--key" in shown.output and "chmod 600" in shown.output
    key.chmod(0o600)
    shown = status(f"http://127.0.0.1:{free_port()}", key, txid)
    assert shown.exit_code == 2 and "the node did not answer" in shown.output
    shown = runner.invoke(app, ["tx", "status", txid, "--node", url, "--key", str(key), "--id", "nobody"])
    assert shown.exit_code == 2 and "refused: http-401: unregistered node 'nobody'" in shown.output
