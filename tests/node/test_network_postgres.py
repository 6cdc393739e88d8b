"""The multi-process network with every node's chain in PostgreSQL (a real server on loopback)."""

from __future__ import annotations

import pytest
from tests import requires

from gridledger.chain import verify_store
from gridledger.ledger.kinds.dso_policy import DsoPolicy
from gridledger.node import cluster
from gridledger.node.testnet import Testnet, wait_until
from gridledger.store import open_store

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_nodes_on_postgresql_commit_catch_up_and_verify(tmp_path):
    requires.etcd()
    requires.postgres()
    folder = tmp_path / "net"
    cluster.up(folder, meters=2, concentrators=1, postgres=True)
    try:
        net = Testnet(folder)
        ids = net.ids()
        assert all(
            n["config"] and "postgresql://" in (folder / f"{n['id']}.toml").read_text() for n in net.state["nodes"]
        )
        chain_id, operator = net.chain_id, net.operator
        client = net.client("MI1")
        txids = []
        for nonce in range(1, 4):
            tx = DsoPolicy(nonce, 10_000 + nonce, prices=(100 + nonce, 80)).signed(chain_id, operator)
            assert client.submit(tx).status_code == 202
            txids.append(tx.txid)
        wait_until(lambda: all(client.tx_status(t)["status"] == "committed" for t in txids), what="commits")
        height = client.tx_status(txids[-1])["height"]
        net.wait_agree(ids, at_least=height)
        net.kill("MI2")
        tx = DsoPolicy(4, 10_004, prices=(1, 1)).signed(chain_id, operator)
        assert client.submit(tx).status_code == 202
        wait_until(lambda: client.tx_status(tx.txid)["status"] == "committed", what="commit")
        net.restart("MI2")
        net.wait_agree(ids, at_least=height + 1)
        url = next(
            line.split('"')[1] for line in (folder / "DC1.toml").read_text().splitlines() if line.startswith("store")
        )
        store = open_store(url)
        try:
            assert verify_store(store).height >= height + 1
        finally:
            store.close()
    finally:
        cluster.down(folder)
