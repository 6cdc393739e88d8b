"""Jepsen-style faults on a local network (``faults.py``): partitions from etcd, clock skew, a full disk.

Each scenario runs a client workload through every node during the fault and checks afterwards that every
acknowledged transaction is committed exactly once, every node holds the same block at every height, and every
node's store passes the verifier. CI runs each fault for a few seconds (``benchmarks/partitions.py`` runs longer).
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from gridledger.chain import Chain
from gridledger.ledger.block import make_block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.node.etcd import EtcdUnavailable, etcd_binary
from gridledger.node.ordering import InProcessOrderer
from gridledger.node.sequencer import Sequencer
from gridledger.store.sqlite import SqliteStore

sys.path.insert(0, str(Path(__file__).parent))
from faults import SKEW_S, Disk, run_scenario  # noqa: E402


@pytest.fixture
def _etcd():
    try:
        etcd_binary()
    except EtcdUnavailable as e:
        pytest.skip(str(e))


class CutOff(InProcessOrderer):
    """An in-process orderer whose link can be cut: every call then fails as an unreachable etcd does."""

    cut = False

    def blocks(self, start: int, limit: int = 256):
        if self.cut:
            raise ConnectionError("no etcd member answered")
        return super().blocks(start, limit)


def test_a_leader_cut_off_from_the_orderer_stops_saying_it_leads():
    """Regression: a leader whose orderer calls fail kept ``leading`` (and ``/v1/status``) true while a backup led."""
    key = KeyPair.from_secret("coordinator")
    genesis = Genesis("nan-cut", 900, 1_767_225_600, KeyPair.from_secret("dso").public, (key.public,))
    block = make_block(genesis.chain_id, 0, bytes(32), 1_767_225_600, (genesis,), key)
    orderer = CutOff()
    seq = Sequencer(Chain.from_genesis_block(SqliteStore(":memory:"), block), orderer, "DC1", key)
    seq.step()
    assert seq.leading
    orderer.cut = True
    stop = threading.Event()
    thread = threading.Thread(target=seq.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while seq.leading and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not seq.leading
    finally:
        stop.set()
        thread.join(5)


@pytest.mark.etcd
@pytest.mark.slow
@pytest.mark.usefixtures("_etcd")
def test_leader_partitioned_from_etcd_loses_nothing(tmp_path):
    out = run_scenario("leader_partition", tmp_path)
    assert out.verdict.ok, out.verdict
    assert out.verdict.acked >= 20
    assert out.notes["failover_s"] < 10  # the cut-off leader's lease expired and the backup took over
    assert out.notes["stale_leading_s"] < 30  # and the cut-off leader stopped saying it leads (it did not before)


@pytest.mark.etcd
@pytest.mark.slow
@pytest.mark.usefixtures("_etcd")
def test_validator_partitioned_catches_up(tmp_path):
    out = run_scenario("validator_partition", tmp_path)
    assert out.verdict.ok, out.verdict
    assert out.notes["MI1_height_during"] < out.notes["others_height_during"]  # it really was cut off


@pytest.mark.etcd
@pytest.mark.slow
@pytest.mark.usefixtures("_etcd")
def test_clock_skew_keeps_block_times_ordered(tmp_path):
    out = run_scenario("clock_skew", tmp_path)
    assert out.verdict.ok, out.verdict
    assert out.notes["failover_s"] < 10
    assert out.notes["block_times_monotonic"]
    assert out.notes["max_block_time_ahead_s"] >= SKEW_S - 30  # the skewed leader's stamps stay in the chain


@pytest.mark.skipif(not Disk.available(), reason="needs root and tmpfs mounts for a real full disk")
@pytest.mark.etcd
@pytest.mark.slow
@pytest.mark.usefixtures("_etcd")
def test_full_disk_on_leader_loses_nothing(tmp_path):
    out = run_scenario("disk_full", tmp_path)
    assert out.verdict.ok, out.verdict
    assert out.notes["filled_bytes"] > 0
    assert out.notes["DC1_during"]["leading"] is False  # it cannot store its blocks: the backup leads meanwhile
