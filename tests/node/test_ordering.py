"""The ordering contract, on both backends, and coordinator fail-over through etcd."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from tests import requires

from gridledger.chain import Chain
from gridledger.ledger.block import make_block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.node import ordering
from gridledger.node.etcd import EtcdCluster
from gridledger.node.ordering import EtcdOrderer, InProcessOrderer
from gridledger.node.sequencer import Sequencer
from gridledger.petra.dso import DSO
from gridledger.store.sqlite import SqliteStore

START = 1_767_225_600
DSO_KEY, C1, C2 = KeyPair.from_secret("dso"), KeyPair.from_secret("coordinator-1"), KeyPair.from_secret("coordinator-2")
GENESIS = Genesis("nan-test", 900, START, DSO_KEY.public, (C1.public, C2.public))


def _slot() -> int:
    return (int(time.time()) - START) // 900


@pytest.fixture(params=["inprocess", "etcd"])
def make_orderer(request):
    made = []
    chain_id = os.urandom(32)  # a fresh key space per test on the shared cluster
    if request.param == "etcd":
        cluster = request.getfixturevalue("etcd_cluster")

        def make():
            made.append(EtcdOrderer(cluster.endpoints, chain_id))
            return made[-1]
    else:
        shared = InProcessOrderer()

        def make():
            return shared

    yield make
    for o in made:
        o.close()


def test_submit_is_idempotent_and_drop_forgets(make_orderer):
    """The same bytes again change nothing; another copy of a txid (another witness) waits beside the first, so a
    garbage-signed copy submitted first cannot shadow the honest one; dropping a txid drops every copy."""
    a, b = make_orderer(), make_orderer()
    a.submit(b"\x01" * 32, b"tx1")
    b.submit(b"\x01" * 32, b"tx1")
    b.submit(b"\x01" * 32, b"tx1-other-witness")
    a.submit(b"\x02" * 32, b"tx2")
    assert b.pending(10) == [(b"\x01" * 32, b"tx1"), (b"\x01" * 32, b"tx1-other-witness"), (b"\x02" * 32, b"tx2")]
    b.drop([b"\x01" * 32])
    assert a.pending(10) == [(b"\x02" * 32, b"tx2")]


def test_a_height_is_final_once(make_orderer):
    a, b = make_orderer(), make_orderer()
    assert a.publish(1, b"block-a")
    assert not b.publish(1, b"block-b")
    assert b.publish(2, b"block-b2")
    assert a.blocks(1) == [(1, b"block-a"), (2, b"block-b2")]
    assert a.blocks(3) == []


def test_blocks_stop_at_a_gap(make_orderer):
    a = make_orderer()
    a.publish(1, b"one")
    a.publish(3, b"three")
    assert a.blocks(1) == [(1, b"one")]


def test_one_leader_at_a_time(make_orderer):
    a, b = make_orderer(), make_orderer()
    assert a.campaign("a")
    assert not b.campaign("b")
    assert a.campaign("a")  # stays leader
    assert a.leader() == "a"
    a.resign()
    assert b.campaign("b")
    assert a.leader() == "b"


def _chain(tmp_path, name: str) -> Chain:
    return Chain.create(SqliteStore(tmp_path / f"{name}.sqlite"), GENESIS, C1, START)


def test_sequencers_agree_and_a_backup_takes_over(tmp_path, make_orderer):
    chains = [_chain(tmp_path, n) for n in ("primary", "backup", "meter")]
    orderers = [make_orderer() for _ in chains]
    seqs = [
        Sequencer(chains[0], orderers[0], "primary", C1),
        Sequencer(chains[1], orderers[1], "backup", C2),
        Sequencer(chains[2], orderers[2], "meter"),
    ]
    seqs[0].step()  # the primary campaigns first
    dso = DSO(DSO_KEY, chains[0].chain_id)
    for k in range(3):
        tx = dso.policy(_slot() + 10 + k, prices=(100 + k, 80))
        orderers[2].submit(tx.txid, tx.encode())
        for s in seqs:
            s.step()
    for s in seqs:
        s.step()
    assert [c.height for c in chains] == [3, 3, 3]
    assert len({c.state.tip_hash for c in chains}) == 1
    assert {b.header.proposer for c in chains[2:] for b in list(c.blocks())[1:]} == {C1.public}
    # the primary stops: the backup leads and goes on from the pending transactions
    orderers[0].resign()
    tx = dso.policy(_slot() + 20, prices=(1, 1))
    orderers[2].submit(tx.txid, tx.encode())
    for s in seqs[1:]:
        s.step()
    seqs[2].step()
    assert chains[2].height == 4
    last = list(chains[2].blocks(4))[0]
    assert last.header.proposer == C2.public and last.transactions[0].txid == tx.txid
    assert orderers[2].pending(10) == []


def test_a_garbage_signed_copy_submitted_first_does_not_shadow_the_honest_one(tmp_path, make_orderer):
    """The txid does not cover the signature: an adversary's copy with a garbage signature, queued first, is
    refused while the validly signed copy queued after it is committed."""
    chain, orderer = _chain(tmp_path, "leader"), make_orderer()
    seq = Sequencer(chain, orderer, "leader", C1)
    honest = DSO(DSO_KEY, chain.chain_id).policy(_slot() + 10, prices=(101, 80))
    garbage = dataclasses.replace(honest, signature=bytes(64))
    assert garbage.txid == honest.txid
    orderer.submit(garbage.txid, garbage.encode())
    orderer.submit(honest.txid, honest.encode())
    seq.step()
    seq.step()
    assert chain.height == 1 and [t.raw for t in list(chain.blocks(1))[0].transactions] == [honest.raw]
    assert orderer.pending(10) == []


_KILLABLE_LEADER = textwrap.dedent(
    """
    import sys, time
    from gridledger.ledger.crypto import KeyPair
    from gridledger.node.ordering import EtcdOrderer
    o = EtcdOrderer(sys.argv[1].split(","), bytes.fromhex(sys.argv[2]))
    assert o.campaign("doomed")
    print("leading", flush=True)
    while True:
        o.campaign("doomed")
        time.sleep(0.05)
    """
)


def test_sigkilled_leader_is_replaced_within_the_lease(etcd_cluster):
    chain_id = os.urandom(32)
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE_LEADER, ",".join(etcd_cluster.endpoints), chain_id.hex()],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "leading"
        backup = EtcdOrderer(etcd_cluster.endpoints, chain_id)
        assert not backup.campaign("backup")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while not backup.campaign("backup"):
            assert time.monotonic() < deadline, "the backup never took over"
            time.sleep(0.05)
        assert backup.leader() == "backup"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_member_down_is_tolerated(etcd_cluster):
    """The orderer tries the next etcd member when one does not answer."""
    o = EtcdOrderer(["http://127.0.0.1:1", *etcd_cluster.endpoints], os.urandom(32))
    assert o.publish(1, b"x")
    assert o.blocks(1) == [(1, b"x")]


def test_threads_keep_up(tmp_path, etcd_cluster):
    """A coordinator loop in a thread commits what a client submits; stopping it resigns leadership."""
    chain = _chain(tmp_path, "threaded")
    orderer = EtcdOrderer(etcd_cluster.endpoints, os.urandom(32))
    seq = Sequencer(chain, orderer, "primary", C1)
    stop = threading.Event()
    t = threading.Thread(target=seq.run, args=(stop,))
    t.start()
    try:
        dso = DSO(DSO_KEY, chain.chain_id)
        tx = dso.policy(_slot() + 5, prices=(7, 5))
        orderer.submit(tx.txid, tx.encode())
        deadline = time.monotonic() + 10
        while chain.height < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        stop.set()
        t.join()
    assert orderer.leader() is None


def test_void_moves_only_the_exact_entry_to_quarantine(make_orderer):
    a = make_orderer()
    a.publish(1, b"junk")
    assert not a.void(1, b"other bytes")  # compare-and-delete: a block that replaced the junk stays
    assert a.blocks(1) == [(1, b"junk")]
    assert a.void(1, b"junk")
    assert a.blocks(1) == [] and a.quarantined(1) == [b"junk"]
    assert a.publish(1, b"block")  # the height is free again
    assert not a.void(1, b"junk")


def test_junk_entries_are_voided_and_a_coordinator_signed_bad_block_is_held(tmp_path, make_orderer):
    """No entry stops a sequencer: junk (or a block no coordinator signed) is void and the leader proposes the
    height again; a block a coordinator signed that breaks a rule is refused by every node, which holds there."""
    chains = [_chain(tmp_path, n) for n in ("primary", "meter")]
    orderers = [make_orderer() for _ in chains]
    leader, meter = Sequencer(chains[0], orderers[0], "primary", C1), Sequencer(chains[1], orderers[1], "meter")
    leader.step()
    dso = DSO(DSO_KEY, chains[0].chain_id)
    stranger = KeyPair.from_secret("stranger")
    forged = make_block(chains[0].chain_id, 2, bytes(32), START + 60, (), stranger)
    for junk in (b"\x07junk", forged.encode()):
        height = chains[0].height + 1
        orderers[0].publish(height, junk)
        tx = dso.policy(_slot() + 10 + height, prices=(100 + height, 80))
        orderers[1].submit(tx.txid, tx.encode())
        meter.step()  # the meter refuses the entry first, and waits
        assert meter.entries_rejected == height and chains[1].height == height - 1
        meter.step()
        assert meter.entries_rejected == height  # counted once
        for _ in range(3):
            leader.step()
        meter.step()
        assert [c.height for c in chains] == [height, height]
        assert next(chains[1].blocks(height)).transactions[0].txid == tx.txid
        assert orderers[0].quarantined(height) == [junk]
    assert meter.last_rejected.code == "bad-blk-proposer" and meter.last_rejected.height == 2
    # a coordinator's block that breaks a rule (here: a wrong parent) is refused, never voided
    bad = make_block(chains[0].chain_id, 3, bytes(32), START + 120, (), C2)
    orderers[0].publish(3, bad.encode())
    for _ in range(3):
        leader.step()
        meter.step()
    assert [c.height for c in chains] == [2, 2]
    assert meter.last_rejected.code == "bad-blk-prev" and orderers[0].quarantined(3) == []
    assert leader.entries_rejected == 3 and leader.leading


class _FailingOnce(InProcessOrderer):
    """An orderer whose first read fails with an error no one planned for."""

    failed = False

    def blocks(self, start: int, limit: int = 256) -> list[tuple[int, bytes]]:
        if not self.failed:
            self.failed = True
            raise ValueError("an unplanned failure")
        return super().blocks(start, limit)


def test_an_unexpected_failure_is_counted_and_the_loop_goes_on(tmp_path):
    chain = _chain(tmp_path, "robust")
    orderer = _FailingOnce()
    seq = Sequencer(chain, orderer, "primary", C1)
    stop = threading.Event()
    t = threading.Thread(target=seq.run, args=(stop,))
    t.start()
    try:
        tx = DSO(DSO_KEY, chain.chain_id).policy(_slot() + 5, prices=(7, 5))
        orderer.submit(tx.txid, tx.encode())
        deadline = time.monotonic() + 10
        while chain.height < 1:
            assert time.monotonic() < deadline and t.is_alive()
            time.sleep(0.02)
        assert seq.errors == 1
    finally:
        stop.set()
        t.join()


def _until(condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_a_watch_rings_on_each_write_of_its_kind(etcd_cluster):
    """The stream rings once open (writes before it are for the first read), then on every put under its kind."""
    orderer = EtcdOrderer(etcd_cluster.endpoints, os.urandom(32))
    rings: list[str] = []
    try:
        assert orderer.wake_on(("blocks",), rings.append)
        _until(lambda: rings, "the watch never opened")
        for height in (1, 2):
            seen = len(rings)
            assert orderer.publish(height, b"entry")
            _until(lambda seen=seen: len(rings) > seen, f"no ring for the block at height {height}")
        assert set(rings) == {"blocks"}
    finally:
        orderer.close()


def test_a_follower_whose_watch_member_dies_still_gets_every_block_in_order(tmp_path, monkeypatch):
    """The etcd member a follower watches through is killed: its watch opens again on another member and it goes on
    appending every block, in order, long before its fallback poll (set to a minute here) would have read them."""
    requires.etcd()
    monkeypatch.setattr(ordering, "POLL_S", 60.0)
    cluster = EtcdCluster(3).start()
    chain_id = os.urandom(32)
    follower_orderer = EtcdOrderer(cluster.endpoints, chain_id)  # watches (and reads) through member 0 first
    leader_orderer = EtcdOrderer(cluster.endpoints[1:], chain_id)
    leader = Sequencer(_chain(tmp_path, "leader"), leader_orderer, "primary", C1)
    follower = Sequencer(_chain(tmp_path, "follower"), follower_orderer, "meter")
    stop = threading.Event()
    thread = threading.Thread(target=follower.run, args=(stop,))
    dso = DSO(DSO_KEY, leader.chain.chain_id)

    def commit(k: int) -> None:
        tx = dso.policy(_slot() + 10 + k, prices=(100 + k, 80))
        leader_orderer.submit(tx.txid, tx.encode())
        _until(lambda: leader.step() is not None, f"the leader never made block {k + 1}")  # it may campaign again
        _until(lambda: follower.chain.height == leader.chain.height, f"the follower never got block {k + 1}")

    try:
        thread.start()
        time.sleep(0.5)  # its first step and its watch streams (reads would take POLL_S = 60 s after that)
        commit(0)
        os.killpg(cluster.members[0].process.pid, signal.SIGKILL)
        for k in range(1, 4):
            commit(k)
    finally:
        stop.set()
        thread.join()
        for o in (follower_orderer, leader_orderer):
            o.close()
        cluster.stop()
    assert [b.hash for b in follower.chain.blocks()] == [b.hash for b in leader.chain.blocks()]
