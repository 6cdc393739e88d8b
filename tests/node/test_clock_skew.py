"""A proposer whose clock runs ahead: nodes refuse its blocks (``bad-blk-time-future``) until their own clocks
come within the bound, then append them; a PoEf committee member does not vote for them."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from tests import requires

from gridledger.chain import Chain
from gridledger.ledger.block import Vote, make_block
from gridledger.ledger.committee import committee_for
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds.dso_policy import DsoPolicy
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.node.ordering import InProcessOrderer
from gridledger.node.sequencer import Sequencer
from gridledger.node.testnet import Testnet, wait_until
from gridledger.petra.dso import DSO
from gridledger.store.sqlite import SqliteStore
from gridledger.tiers.hierarchy import Hierarchy

sys.path.insert(0, str(Path(__file__).parent))
from faults import FaultNet, rewire  # noqa: E402

START = 1_767_225_600
DSO_KEY, C1 = KeyPair.from_secret("dso"), KeyPair.from_secret("coordinator-1")
GENESIS = Genesis("skew-test", 900, START, DSO_KEY.public, (C1.public,))
BOUND = 2 * 900


def test_a_block_from_a_clock_ahead_is_refused_then_appended_when_the_clock_catches_up(tmp_path):
    chains = [Chain.create(SqliteStore(tmp_path / f"{n}.sqlite"), GENESIS, C1, START) for n in ("leader", "meter")]
    orderer, now = InProcessOrderer(), time.time()
    meter_clock = [now]
    leader = Sequencer(chains[0], orderer, "leader", C1, clock=lambda: now + BOUND + 600)  # 40 min ahead
    meter = Sequencer(chains[1], orderer, "meter", clock=lambda: meter_clock[0])
    dso = DSO(DSO_KEY, chains[0].chain_id)
    tx = dso.policy((int(now) - START) // 900 + 10, prices=(100, 80))
    orderer.submit(tx.txid, tx.encode())
    assert leader.step() is not None and chains[0].height == 1  # its own clock accepts its block
    for _ in range(3):
        meter.step()
    assert chains[1].height == 0 and meter.entries_rejected == 1  # refused, counted once
    assert meter.last_rejected.code == "bad-blk-time-future" and meter.last_rejected.height == 1
    assert orderer.quarantined(1) == []  # a coordinator's block: held, never voided
    meter_clock[0] = now + 600  # the meter's clock comes within the bound of the block's time
    meter.step()
    assert chains[1].height == 1 and next(chains[1].blocks(1)).hash == next(chains[0].blocks(1)).hash


@pytest.mark.etcd
@pytest.mark.slow
def test_node_processes_refuse_the_blocks_of_a_leader_whose_clock_runs_an_hour_ahead(tmp_path):
    """Real node processes: the leading coordinator's clock is an hour ahead (``GRIDLEDGER_CLOCK_SKEW_S``); the
    nodes with a right clock refuse its blocks with ``bad-blk-time-future`` and report it on ``/v1/status``."""
    requires.etcd()
    # the fault proxies rewire etcd over plain http
    net = Testnet.start(tmp_path, meters=1, rate_limit=(100_000, 100_000), insecure=True)
    faults = FaultNet()
    try:
        rewire(net, faults, skew={"DC1": 3600.0})
        primary, backup = net.ids("concentrator")
        h0 = net.status("MI1")["height"]
        tx = DsoPolicy(1, net.slot() + 10, prices=(100, 80)).signed(net.chain_id, net.operator)
        assert net.client("MI1").submit(tx).status_code == 202
        wait_until(lambda: net.status(primary)["height"] > h0, 30, f"{primary} to commit")
        for node_id in ("MI1", backup):
            wait_until(lambda n=node_id: net.status(n)["last_rejected"], 30, f"{node_id} to refuse")
            status = net.status(node_id)
            assert "bad-blk-time-future" in status["last_rejected"], status
            assert status["height"] == h0 and status["entries_rejected"] >= 1
    finally:
        net.stop()
        faults.close()


def test_a_committee_member_votes_only_for_a_block_within_the_bound_of_its_clock():
    h = Hierarchy(fans=1, nans=1, homes=3, appliances=1, anchor_minutes=2, summary_minutes=2)
    try:
        h.run(2)
        nan = h.chains["nan:DC-0-0"]
        state = nan.coordinator.chain.state
        policy = h.dsos[nan.chain_id].policy(state.slot_of(state.tip_time) + 5, ban=["ghost"])
        block = make_block(
            nan.chain_id, state.height + 1, state.tip_hash, state.tip_time, (policy,), nan.coordinator.key
        )
        member = nan.validators[sorted(committee_for(state, block.header).keys)[0]]
        late_clock = block.header.time - state.max_future_s - 1  # the member's clock is behind the block's time
        refused = member.validate(block, None, now=late_clock)
        assert isinstance(refused, Reject) and refused.code == "bad-blk-time-future"
        assert isinstance(member.validate(block, None, now=late_clock + 1), Vote)
    finally:
        h.close()
