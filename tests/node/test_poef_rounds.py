"""PoEf rounds over the orderer's board, in one process: the same ``PoefSequencer`` the node processes run, each
with its own replica, stepped by hand on a shared ``InProcessPoefOrderer`` (the etcd board's contract is checked
on both backends). Clocks are injected, so round time-outs need no waiting."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridledger.chain import Chain
from gridledger.consensus.plausibility import RobustWindowCheck
from gridledger.consensus.poef import Coordinator, Replica
from gridledger.ledger.block import ZERO_HASH, Block, Vote, make_block
from gridledger.ledger.committee import check_certificate, committee_for
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds.alarm import Alarm, AlarmCode
from gridledger.ledger.kinds.dso_policy import MeterLimits
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.ledger.kinds.reading import ContentKeys, Reading, ReadingDevice, ReadingValues
from gridledger.node.config import ConfigError, NodeConfig
from gridledger.node.poef_board import (
    EtcdPoefOrderer,
    InProcessPoefOrderer,
    decode_verdict,
    encode_verdict,
)
from gridledger.node.poef_net import PoefSequencer
from gridledger.node.restricted import COORDINATOR, DSO, METER, Forbidden, NotHeld, ReadingKeys, entitlement
from gridledger.node.run import build_service
from gridledger.petra.dso import DSO as DsoSigner
from gridledger.store.sqlite import SqliteStore

START = 1_767_225_600
DSO_KEY, C1, C2 = KeyPair.from_secret("dso"), KeyPair.from_secret("DC-T"), KeyPair.from_secret("DC-T.backup")
METERS = {f"MI{i}": KeyPair.from_secret(f"MI{i}") for i in range(1, 4)}
GENESIS = Genesis("nan:DC-T", 900, START, DSO_KEY.public, (C1.public, C2.public), ruleset="nan")
CONTENT = ContentKeys(KeyPair.from_secret("content-root").seed).chain(GENESIS.chain_id)
GENESIS_BLOCK = make_block(GENESIS.chain_id, 0, ZERO_HASH, START, (GENESIS,), C1)


class Lenient:
    """A coordinator-side check that never flags anything (an outdated analytics model)."""

    name = "lenient"
    window = 12

    def check(self, values, history):
        return None


class Clock:
    """Wall time (block times) and monotonic time (round time-outs), advanced by hand."""

    def __init__(self) -> None:
        self.now = START + 61.0

    def __call__(self) -> float:
        return self.now


class Net:
    """Two coordinators and three meters, each with its own in-memory chain, on one in-process board."""

    def __init__(self, coordinator_check=None) -> None:
        self.board = InProcessPoefOrderer()
        self.clock = Clock()
        self.nodes: dict[str, PoefSequencer] = {}
        check = coordinator_check or RobustWindowCheck()
        for name, key in (("DC", C1), ("DC-backup", C2)):
            replica = Replica(Chain.from_genesis_block(SqliteStore(":memory:"), GENESIS_BLOCK), check.window)
            coordinator = Coordinator(replica, key, CONTENT, check)
            self.nodes[name] = self._sequencer(replica, name, coordinator=coordinator)
        for name, key in METERS.items():
            chain = Chain.from_genesis_block(SqliteStore(":memory:"), GENESIS_BLOCK)
            self.nodes[name] = PoefSequencer.for_node(chain, self.board, name, key, None, **self._options())
        self.down: set[str] = set()
        self.dso = DsoSigner(DSO_KEY, GENESIS.chain_id)
        self.devices = {}

    def _options(self) -> dict:
        return {"clock": self.clock, "monotonic": self.clock, "round_timeout": 3.0}

    def _sequencer(self, replica, name, **roles) -> PoefSequencer:
        return PoefSequencer(replica, self.board, name, **roles, **self._options())

    def step(self, times: int = 1) -> None:
        for _ in range(times):
            for name, seq in self.nodes.items():
                if name not in self.down:
                    seq.step()

    def submit(self, tx) -> bytes:
        self.board.submit(tx.txid, tx.encode())
        return tx.txid

    def enrol(self) -> None:
        authorize = {m: k.public for m, k in METERS.items()}
        self.submit(self.dso.policy(0, authorize=authorize, limits=[MeterLimits(m, 5000, 5000, 0) for m in METERS]))
        self.step(2)
        assert self.height("DC") == 1
        index = {m: i for i, (m, _) in enumerate(self.chain("DC").state.policy.policies[0].authorize)}
        self.devices = {
            m: ReadingDevice(GENESIS.chain_id, index[m], k, CONTENT.member_key(index[m])) for m, k in METERS.items()
        }

    def read(self, minute: int, wh: int | dict[str, int] = 10, meters=METERS) -> list[bytes]:
        return [
            self.submit(self.devices[m].reading(minute, ReadingValues(wh if isinstance(wh, int) else wh.get(m, 10))))
            for m in meters
        ]

    def chain(self, name: str) -> Chain:
        return self.nodes[name].chain

    def height(self, name: str) -> int:
        return self.chain(name).height

    def block(self, name: str, height: int) -> Block:
        return next(iter(self.chain(name).blocks(height)))

    def committed(self, name: str) -> set[bytes]:
        return {tx.txid for b in self.chain(name).blocks(1) for tx in b.transactions}


@pytest.fixture
def net() -> Net:
    n = Net()
    n.enrol()
    return n


def test_a_round_commits_with_a_quorum_certificate_on_every_node(net):
    txids = net.read(0)
    net.step(3)
    assert {net.height(n) for n in net.nodes} == {2}
    block = net.block("MI1", 2)
    assert set(txids) <= {tx.txid for tx in block.transactions}
    before = Chain.from_genesis_block(SqliteStore(":memory:"), GENESIS_BLOCK)
    before.append(net.block("MI1", 1))
    committee = committee_for(before.state, block.header)
    assert committee.keys == {k.public for k in METERS.values()} and committee.required == 2
    check_certificate(committee, block.header, block.certificate)
    assert len(block.certificate) == 2
    assert net.board.proposals(2) == [] and net.board.verdicts(2) == {}  # cleared once final


def test_a_member_down_does_not_stop_commits_while_a_majority_lives(net):
    net.down.add("MI3")
    net.read(0, meters=["MI1", "MI2"])
    net.step(3)
    block = net.block("DC", 2)
    assert {v.pubkey for v in block.certificate} == {METERS["MI1"].public, METERS["MI2"].public}
    net.down.clear()
    net.step()
    assert net.height("MI3") == 2  # it catches up, checking the certificate


def test_without_a_quorum_the_leader_reproposes_the_same_block_in_a_new_round(net):
    net.down |= {"MI2", "MI3"}
    net.read(0, meters=["MI1"])
    net.step(3)
    assert net.height("DC") == 1
    [(round_no, first)] = net.board.proposals(2)
    assert round_no == 0
    leader = net.nodes["DC"]
    assert leader.waiting is None  # within the round time-out: not reported
    net.clock.now += 3.5
    net.step()
    rounds = net.board.proposals(2)
    assert [r for r, _ in rounds] == [0, 1] and rounds[1][1] == first
    # the leader reports the height it waits for: one vote of the two needed, MI2 and MI3 silent
    w = leader.waiting
    assert (w.height, w.rounds, w.votes, w.needed, w.refused) == (2, 1, 1, 2, 0)
    assert set(w.silent) == {METERS["MI2"].public, METERS["MI3"].public}
    net.clock.now += 3.5
    net.step()
    assert leader.waiting.rounds == 2 and leader.waiting.to_json(net.clock.now, {METERS["MI2"].public: "MI2"}) == {
        "height": 2,
        "for_s": 7.0,
        "rounds": 2,
        "votes": 1,
        "needed": 2,
        "refused": 0,
        "silent": ["MI2", METERS["MI3"].public.hex()],  # committee order; by node id where the node knows it
    }
    net.down.discard("MI2")
    net.step(2)
    assert net.height("DC") == 2 and net.block("DC", 2).hash == Block.decode(first).hash
    assert leader.waiting is None  # committed: nothing to report


def test_a_proposal_copied_into_the_blocks_key_is_void_and_the_certified_block_replaces_it(net):
    """Anyone who can write to etcd can copy the leader's uncertified proposal (coordinator-signed) under the next
    block's key before the leader publishes: every node refuses it (no quorum certificate), none dies, the leader
    quarantines it and publishes its certified block."""
    net.read(0)
    net.nodes["DC"].step()  # the leader posts its proposal for height 2
    [(_, proposal)] = net.board.proposals(2)
    assert net.board.publish(2, proposal)
    net.step(4)
    assert {name: net.height(name) for name in net.nodes} == dict.fromkeys(net.nodes, 2)
    assert net.block("MI1", 2).hash == Block.decode(proposal).hash and len(net.block("MI1", 2).certificate) >= 2
    assert net.board.quarantined(2) == [proposal]
    assert net.nodes["DC"].last_rejected.code.startswith("bad-qc-")


def test_transactions_the_committee_refuses_are_dropped_after_the_time_out():
    net = Net(coordinator_check=Lenient())  # the coordinator misses a spike the members' check flags
    net.enrol()
    for minute in range(4):
        net.read(minute)
        net.step(3)
    spike = net.read(4, {"MI2": 900}, meters=["MI2"])[0]
    others = net.read(4, meters=["MI1", "MI3"])
    net.step(3)
    assert net.height("DC") == 5
    votes = next(iter(net.board.verdicts(6).values()))
    assert {v.code for v in votes.values()} == {"bad-poef-alarm-missing"}
    net.clock.now += 3.5
    net.step(3)
    assert net.height("MI1") == 6
    assert set(others) <= net.committed("MI1") and spike not in net.committed("MI1")
    assert net.nodes["DC"].rejected[spike].code == "bad-poef-alarm-missing"


def test_an_implausible_reading_carries_its_alarm(net):
    for minute in range(4):
        net.read(minute)
        net.step(3)
    spike = net.read(4, {"MI3": 500})[2]
    net.step(3)
    txs = net.block("MI1", 6).transactions
    i = next(i for i, tx in enumerate(txs) if tx.txid == spike)
    alarm = txs[i + 1]
    assert isinstance(alarm, Alarm) and alarm.code == AlarmCode.IMPLAUSIBLE_READING and alarm.subject == spike


def test_a_backup_finishes_the_block_the_members_voted_for(net):
    net.down |= {"MI2", "MI3"}
    net.read(0)
    net.step(2)
    [(_, raw)] = net.board.proposals(2)
    in_flight = Block.decode(raw)
    assert list(net.board.verdicts(2)[in_flight.hash]) == [METERS["MI1"].public]
    net.nodes["DC"].orderer.resign()  # the primary stops
    net.down = {"DC"}
    net.step(3)
    final = net.block("DC-backup", 2)
    assert final.hash == in_flight.hash and final.header.proposer == C1.public  # finished, not replaced
    assert net.nodes["DC-backup"].leading
    net.step(3)
    down = [tx for tx in net.block("MI1", 3).transactions if isinstance(tx, Alarm)]
    assert [(a.code, a.subject, a.raiser) for a in down] == [(AlarmCode.COORDINATOR_DOWN, C1.public, C2.public)]


def test_a_member_never_votes_for_two_blocks_at_one_height(net):
    net.down |= {"DC-backup", "MI2", "MI3"}
    net.read(0, meters=["MI1"])
    net.step(2)
    [(_, raw)] = net.board.proposals(2)
    first = Block.decode(raw)
    h = first.header
    other = make_block(h.chain_id, h.height, h.prev_hash, h.time + 1, first.transactions, C2)
    assert net.board.propose(2, 1, other.encode())
    net.down.add("DC")
    net.step()
    me = METERS["MI1"].public
    assert isinstance(net.board.verdicts(2)[first.hash][me], Vote)
    assert net.board.verdicts(2)[other.hash][me].code == "bad-poef-equivocation"
    # a restarted member (fresh memory) finds its vote on the board and refuses the other block too
    net.board._verdict_rows.pop((2, other.hash, me))
    chain = net.chain("MI1")
    net.nodes["MI1"] = PoefSequencer.for_node(chain, net.board, "MI1", METERS["MI1"], None, **net._options())
    net.step()
    assert net.board.verdicts(2)[other.hash][me].code == "bad-poef-equivocation"


def test_a_coordinator_of_a_poef_chain_needs_the_content_key():
    chain = Chain.from_genesis_block(SqliteStore(":memory:"), GENESIS_BLOCK)
    with pytest.raises(ValueError, match="content key"):
        PoefSequencer.for_node(chain, InProcessPoefOrderer(), "DC", C1, None)


# ------------------------------------------------------------------ verdict records and the board contract
votes = st.builds(Vote, st.binary(min_size=32, max_size=32), st.binary(min_size=64, max_size=64))
rejects = st.builds(
    lambda code, msg, i: Reject(code, msg, tx_index=i),
    st.from_regex(r"bad-[a-z-]{1,20}", fullmatch=True),
    st.text(max_size=80),
    st.none() | st.integers(0, 10_000),
)


@given(votes | rejects)
def test_verdict_records_round_trip(verdict):
    back = decode_verdict(encode_verdict(verdict))
    if isinstance(verdict, Vote):
        assert back == verdict
    else:
        assert (back.code, back.message, back.tx_index) == (verdict.code, verdict.message, verdict.tx_index)


@pytest.mark.parametrize("raw", [b"", b"\x01" + bytes(95), b"\x00not json", b'\x00{"code": 1}', b"\x02" + bytes(96)])
def test_malformed_verdict_records_are_refused(raw):
    with pytest.raises(Reject, match="bad-poef-verdict"):
        decode_verdict(raw)


@pytest.fixture(params=["inprocess", "etcd"])
def board(request):
    if request.param == "inprocess":
        yield InProcessPoefOrderer()
        return
    cluster = request.getfixturevalue("etcd_cluster")
    made = EtcdPoefOrderer(cluster.endpoints, os.urandom(32))
    yield made
    made.close()


def test_board_contract(board):
    assert board.proposals(5) == []
    assert board.propose(5, 0, b"block-a")
    assert not board.propose(5, 0, b"block-b")  # one block per (height, round)
    assert board.propose(5, 1, b"block-b")
    assert board.propose(6, 0, b"next")
    assert board.proposals(5) == [(0, b"block-a"), (1, b"block-b")]
    a, b, m1, m2 = b"\xaa" * 32, b"\xbb" * 32, b"\x01" * 32, b"\x02" * 32
    board.disclose(5, a, m1, b"sealed")
    assert board.disclosure(5, a, m1) == b"sealed" and board.disclosure(5, a, m2) is None
    board.vote(5, a, m1, Reject("bad-blk-prev", "behind"))
    board.vote(5, a, m1, Vote(m1, bytes(64)))  # a later vote replaces the member's reject
    board.vote(5, b, m2, Reject("bad-poef-alarm-missing", "no alarm", tx_index=3))
    verdicts = board.verdicts(5)
    assert verdicts[a] == {m1: Vote(m1, bytes(64))} and verdicts[b][m2].tx_index == 3
    board.clear(5)
    assert board.proposals(5) == [] and board.verdicts(5) == {} and board.disclosure(5, a, m1) is None
    assert board.proposals(6) == [(0, b"next")]


# ------------------------------------------------------------------ restricted data
def test_entitlement_goes_by_the_signing_key():
    mine = frozenset({METERS["MI1"].public})
    assert entitlement(GENESIS, "operator", DSO_KEY.public, "MI1", mine) == DSO
    assert entitlement(GENESIS, "DC-backup", C2.public, "MI1", mine) == COORDINATOR
    assert entitlement(GENESIS, "MI1", METERS["MI1"].public, "MI1", mine) == METER
    with pytest.raises(Forbidden, match="node MI2 may not read the readings of meter MI1"):
        entitlement(GENESIS, "MI2", METERS["MI2"].public, "MI1", mine)
    with pytest.raises(Forbidden):  # a name is not an identity
        entitlement(GENESIS, "MI1", METERS["MI2"].public, "MI1", mine)


def test_only_the_keys_a_node_holds_open_a_reading(net):
    net.read(0)
    net.step(3)
    state = net.chain("DC").state
    readings = {tx.member: tx for tx in net.block("DC", 2).transactions if isinstance(tx, Reading)}
    mi1 = readings[net.devices["MI1"].member]
    assert ReadingKeys(master=CONTENT).open(state, mi1) == ReadingValues(10)
    own = ReadingKeys(own=("MI1", CONTENT.member_key(net.devices["MI1"].member)))
    assert own.open(state, mi1) == ReadingValues(10)
    with pytest.raises(NotHeld, match="meter MI2"):
        own.open(state, readings[net.devices["MI2"].member])
    wrong = ReadingKeys(own=("MI1", bytes(32)))
    with pytest.raises(NotHeld, match="does not open"):
        wrong.open(state, mi1)


# ------------------------------------------------------------------ configuration
def _config(tmp_path, key: KeyPair, extra: str = "") -> Path:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "nan.genesis").write_text(GENESIS_BLOCK.encode().hex())
    path = tmp_path / "node.toml"
    path.write_text(
        f'node_id = "N"\nrole = "concentrator"\nkey_seed = "{key.seed.hex()}"\nstore = "n.sqlite"\n'
        f'genesis = "nan.genesis"\napi = "127.0.0.1:1"\norderer = "inprocess"\n{extra}'
    )
    return path


@pytest.mark.parametrize(
    "extra, message",
    [
        ('content_key = "abcd"', "content_key must be 64 hex characters"),
        ('content_key = "zz"', "content_key must be 64 hex characters"),
        ("content_key = 7", "content_key must be 64 hex characters"),
        ("round_timeout = 0", "round_timeout must be a number of seconds"),
        ('round_timeout = "3"', "round_timeout must be a number of seconds"),
    ],
)
def test_bad_poef_settings_are_named(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        NodeConfig.load(_config(tmp_path, C1, extra))


def test_a_node_takes_its_role_on_a_poef_chain_from_its_key(tmp_path):
    with pytest.raises(ConfigError, match="needs content_key"):
        build_service(NodeConfig.load(_config(tmp_path, C1)))
    coordinator = build_service(NodeConfig.load(_config(tmp_path / "c", C1, f'content_key = "{CONTENT.master.hex()}"')))
    member = build_service(NodeConfig.load(_config(tmp_path / "m", METERS["MI1"], "round_timeout = 1.5")))
    assert isinstance(coordinator.sequencer, PoefSequencer) and coordinator.sequencer.coordinator is not None
    assert member.sequencer.validator is not None and member.sequencer.round_timeout == 1.5
    assert coordinator.reading_keys.master == CONTENT and member.reading_keys == ReadingKeys()
