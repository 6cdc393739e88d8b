"""Every tier in one process: summaries upwards, anchors to the head-end, and proofs from a HAN reading up."""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Iterator

import pytest

from gridledger.chain import verify_store
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds.alarm import Alarm, AlarmCode
from gridledger.ledger.kinds.reading import Reading, ReadingValues, open_reading, summarize
from gridledger.ledger.ruleset import Tier
from gridledger.tiers.audit import check_anchors
from gridledger.tiers.hierarchy import Hierarchy
from gridledger.tiers.prove import CoverageProof, Index, ProofError, check_proof, head_hash, prove

MINUTES = 10


@pytest.fixture(scope="module")
def world() -> Iterator[Hierarchy]:
    """Read-only in the tests: 1 FAN/WAN, 1 NAN, 2 homes of 2 appliances, 10 minutes, anchored to the top."""
    h = Hierarchy(fans=1, nans=1, homes=2, appliances=2, summary_minutes=5, anchor_minutes=5)
    h.publish_prices((120, 80), 1)
    h.run(MINUTES)
    h.settle()
    yield h
    h.close()


def opened(node, chain_keys=None) -> list[tuple[int, int, object]]:
    """(member, minute, values) of every reading on the node's chain, opened with the DSO's keys."""
    keys = chain_keys or node.coordinator.content
    return [
        (tx.member, tx.minute, open_reading(node.chain_id, tx, keys.key_of(tx)))
        for b in node.coordinator.chain.blocks(1)
        for tx in b.transactions
        if isinstance(tx, Reading)
    ]


def test_every_chain_verifies_and_every_block_is_anchored(world):
    for node in world.chains.values():
        state = verify_store(node.coordinator.chain.store)
        assert state.snapshot() == node.replica.state.snapshot()
        if node.parent is not None:
            assert node.anchored() == state.height + 1
    covered = check_anchors(n.coordinator.chain for n in world.chains.values())
    assert set(covered) == {n.name for n in world.chains.values() if n.parent is not None}


def test_each_tier_stores_summaries_of_the_tier_below(world):
    nan = world.chains["nan:DC-0-0"]
    per_minute: dict[tuple[str, int], list] = defaultdict(list)
    for han in (n for n in world.chains.values() if n.tier == Tier.HAN):
        assert len(opened(han)) == 2 * MINUTES  # the appliances' raw readings stay on the HAN
        for _, minute, values in opened(han):
            per_minute[(han.name.partition(":")[2], minute)].append(values)
    meters = {m.index: ident for ident, m in nan.members.items()}
    nan_readings = opened(nan)
    assert len(nan_readings) == 2 * MINUTES  # one total per home per minute, nothing per appliance
    for member, minute, values in nan_readings:
        assert values == summarize(per_minute[(meters[member], minute)])
    fan_readings = opened(world.chains["fan:FAN-0"])
    assert [m for m, _, _ in fan_readings] == [0, 0]  # the concentrator's 5-minute totals
    assert sum(v.consumption_wh for _, _, v in fan_readings) == sum(v.consumption_wh for _, _, v in nan_readings)
    assert len(opened(world.head)) == 2


def test_no_alarm_for_steady_consumption(world):
    blocks = [b for n in world.chains.values() for b in n.coordinator.chain.blocks(1)]
    assert not any(isinstance(tx, Alarm) for b in blocks for tx in b.transactions)


@pytest.fixture(scope="module")
def proof(world) -> CoverageProof:
    han = world.chains["han:MI-0-0-1"]
    reading = next(tx for b in han.coordinator.chain.blocks(5) for tx in b.transactions if isinstance(tx, Reading))
    return prove(Index(n.coordinator.chain for n in world.chains.values()), reading.txid)


def check(world, p: CoverageProof) -> list[str]:
    head = world.head.coordinator.chain
    return check_proof(p, head.chain_id, head_hash(head, p.head.height if p.links else 0))


def test_a_han_reading_is_proven_up_to_the_head_end(world, proof):
    assert [link.chain for link in proof.links] == ["han:MI-0-0-1", "nan:DC-0-0", "fan:FAN-0", "head:utility"]
    lines = check(world, proof)
    assert lines[-1].startswith("head-end block") and len(lines) == 8
    assert check(world, CoverageProof.from_json(json.loads(json.dumps(proof.to_json())))) == lines


def flip(b: bytes) -> bytes:
    return bytes([b[0] ^ 1]) + b[1:]


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        (lambda links: [dataclasses.replace(links[0], item=flip(links[0].item)), *links[1:]], "bad-proof-tx-path"),
        (
            lambda links: [
                dataclasses.replace(links[0], tx_path=[(links[0].tx_path[0][0], flip(links[0].tx_path[0][1]))]),
                *links[1:],
            ],
            "bad-proof-tx-path",
        ),
        (
            lambda links: [
                dataclasses.replace(links[0], anchor_path=[(left, flip(h)) for left, h in links[0].anchor_path]),
                *links[1:],
            ],
            "bad-proof-anchor-path",
        ),
        (lambda links: [dataclasses.replace(links[0], anchor=links[2].item), *links[1:]], "bad-proof-anchor"),
        (lambda links: [links[0], links[2], links[3]], "bad-proof-item"),
        (lambda links: links[:-1], "bad-proof-head"),
        (lambda links: [], "bad-proof-empty"),
    ],
)
def test_a_tampered_proof_fails(world, proof, tamper, code):
    with pytest.raises(Reject) as e:
        check(world, CoverageProof(tuple(tamper(list(proof.links)))))
    assert e.value.code == code


def test_a_proof_against_another_head_end_block_fails(world, proof):
    head = world.head.coordinator.chain
    with pytest.raises(Reject, match="bad-proof-head"):
        check_proof(proof, head.chain_id, head_hash(head, proof.head.height - 1))


def test_no_proof_before_the_blocks_are_anchored():
    h = Hierarchy(fans=1, nans=1, homes=1, appliances=1, anchor_minutes=60)
    h.run(2)
    han = h.chains["han:MI-0-0-0"]
    reading = next(tx for b in han.coordinator.chain.blocks(2) for tx in b.transactions if isinstance(tx, Reading))
    index = Index(n.coordinator.chain for n in h.chains.values())
    with pytest.raises(ProofError, match="not anchored"):
        prove(index, reading.txid)
    with pytest.raises(ProofError, match="no transaction"):
        prove(index, bytes(32))
    h.close()


def test_the_fan_wan_coordinator_fails_over_with_only_a_delay():
    """§4.3 of the paper: a DoS on the FAN/WAN coordinator; the second coordinator takes over."""
    h = Hierarchy(fans=1, nans=1, homes=1, appliances=1, summary_minutes=2, anchor_minutes=2)
    h.run(4)
    fan = h.chains["fan:FAN-0"]
    primary, backup = fan.coordinators
    dc = fan.members["DC-0-0"].device
    pending = primary.submit(dc.reading(dc.last_minute + 1, ReadingValues(500)))  # sent, not yet in a block
    fan.fail_over()
    assert fan.coordinator is backup
    h.run(4)
    h.settle()
    assert pending in {tx.txid for b in backup.chain.blocks(1) for tx in b.transactions}  # not lost
    assert fan.coordinator.chain.height > primary.chain.height
    assert [b.header.proposer for b in backup.chain.blocks(primary.chain.height + 1)][-1] == backup.key.public
    covered = check_anchors(n.coordinator.chain for n in h.chains.values())
    assert covered["nan:DC-0-0"] == h.chains["nan:DC-0-0"].coordinator.chain.height + 1
    assert covered["fan:FAN-0"] == backup.chain.height + 1
    alarms = [tx for b in backup.chain.blocks(1) for tx in b.transactions if isinstance(tx, Alarm)]
    assert [a.subject for a in alarms if a.code == AlarmCode.COORDINATOR_DOWN] == [primary.key.public]
    h.close()
