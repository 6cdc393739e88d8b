"""The 51 % scenario across real node processes (shared by ``test_51_majority.py`` and ``benchmarks/majority.py``).

The network: a PoEf NAN (``cluster.up(poef=True)``: 3-member etcd, DC1 and DC1-backup, three meters) and above it a
PoEf FAN started here: its coordinator FC1 and, as its members, the NAN's two concentrators (``DC1@fan`` and
``DC1-backup@fan``: the same keys, one process each), which replicate the NAN (``children`` in their configuration).

The attack: whoever holds the keys of the NAN coordinator DC1 and of a majority of a block's committee (two of the
three meters) signs and certifies a block that over-issues energy for a meter, publishes it as the next final block
in the NAN's ordering log (as the captured leader would), and anchors it on the FAN. What the honest processes do
(all of them run unmodified software; the colluders act with their keys only) is timed from the publication.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

from gridledger.chain import Chain
from gridledger.consensus.anchoring import REFUSED_DETECTOR
from gridledger.ledger.assets import EPA, Output
from gridledger.ledger.block import ZERO_HASH, Block, Vote, make_block
from gridledger.ledger.committee import certify, check_block_certificate, committee_for
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.alarm import Alarm, AlarmCode
from gridledger.ledger.kinds.anchor import make_anchor
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.ledger.kinds.meter_issue import MeterIssue
from gridledger.ledger.kinds.reading import ContentKeys
from gridledger.ledger.ruleset import Tier, tier_ruleset
from gridledger.ledger.units import DEFAULT_SLOT_SECONDS
from gridledger.node import cluster
from gridledger.node.client import NodeClient
from gridledger.node.config import NodeConfig
from gridledger.node.netutil import free_port, wait_port
from gridledger.node.poef_board import EtcdPoefOrderer
from gridledger.node.testnet import wait_until
from gridledger.petra.dso import DSO
from gridledger.store.sqlite import SqliteStore
from gridledger.tiers.hierarchy import METER_LIMITS, chain_name

NAN_NODES = ("DC1", "DC1-backup", "MI1", "MI2", "MI3")
FAN_MEMBERS = ("DC1", "DC1-backup")
FAN_NODES = ("FC1", *(f"{m}@fan" for m in FAN_MEMBERS))
#: Seconds a FAN leader waits for a quorum (short: the refused anchor's round ends quickly).
FAN_ROUND_TIMEOUT_S = 1.0


@dataclass
class Network:
    folder: Path
    operator: KeyPair
    nan_id: bytes
    fan_id: bytes
    endpoints: list[str]

    def _state(self) -> dict:
        return json.loads((self.folder / cluster.STATE_FILE).read_text())

    def node(self, node_id: str) -> dict:
        return next(n for n in self._state()["nodes"] if n["id"] == node_id)

    def key(self, node_id: str) -> KeyPair:
        return NodeConfig.load(self.node(node_id)["config"]).key

    def client(self, node_id: str) -> NodeClient:
        return NodeClient(self.node(node_id)["url"], "operator", self.operator)

    def status(self, node_id: str) -> dict:
        with contextlib.closing(self.client(node_id)) as c:
            return c.status()

    def chain(self, node_id: str) -> Chain:
        """A fresh copy of ``node_id``'s chain, every block re-validated."""
        with contextlib.closing(self.client(node_id)) as c:
            rows = c.blocks(0, 1_000)
        chain = Chain.from_genesis_block(SqliteStore(":memory:"), Block.decode(rows[0][1]))
        for _, raw in rows[1:]:
            chain.append(Block.decode(raw))
        return chain


def start(folder: Path) -> Network:
    """The NAN cluster and the FAN above it, every node in its own process (stop with ``cluster.down``)."""
    cluster.up(folder, meters=3, concentrators=1, rate_limit=(1_000, 2_000), poef=True, insecure=True)
    state = json.loads((folder / cluster.STATE_FILE).read_text())
    operator = KeyPair(bytes.fromhex((folder / "keys" / "operator.seed").read_text()))
    endpoints = [m["url"] for m in state["etcd"]]
    nan_genesis = next(folder.glob("*.genesis"))
    nan_id = Block.decode(bytes.fromhex(nan_genesis.read_text())).header.chain_id
    net = Network(folder, operator, nan_id, b"", endpoints)
    wait_until(lambda: all(net.status(n)["height"] >= 1 for n in NAN_NODES), 60, "the NAN's enrolment block")

    fc1 = KeyPair.generate()
    now = int(time.time())
    fan = Genesis(
        chain_name(Tier.FAN, "FC1"),
        DEFAULT_SLOT_SECONDS,
        now - 60,
        operator.public,
        (fc1.public,),
        ruleset=tier_ruleset(Tier.FAN).name,
    )
    net.fan_id = fan.chain_id
    (folder / "fan.genesis").write_text(make_block(fan.chain_id, 0, ZERO_HASH, now, (fan,), fc1).encode().hex())
    members = {m: net.key(m) for m in FAN_MEMBERS}
    enrol = DSO(operator, fan.chain_id).policy(0, authorize={m: k.public for m, k in members.items()})
    with contextlib.closing(EtcdPoefOrderer(endpoints, fan.chain_id)) as board:
        board.submit(enrol.txid, enrol.encode())
    master = ContentKeys(bytes.fromhex((folder / "keys" / "content.root").read_text())).chain(fan.chain_id).master
    keys = {"FC1": fc1, **{f"{m}@fan": k for m, k in members.items()}}
    ports = {n: free_port() for n in FAN_NODES}
    registry = [("operator", "dso", operator)] + [(n, "concentrator", k) for n, k in keys.items()]
    for node_id in FAN_NODES:
        lines = [
            f'node_id = "{node_id}"',
            'role = "concentrator"',
            f'key_seed = "{keys[node_id].seed.hex()}"',
            f'store = "{node_id}.sqlite"',
            'genesis = "fan.genesis"',
            f'api = "127.0.0.1:{ports[node_id]}"',
            "orderer = [" + ", ".join(f'"{u}"' for u in endpoints) + "]",
            f'children = ["{nan_genesis.name}"]',
            f"round_timeout = {FAN_ROUND_TIMEOUT_S}",
            f"peer_limit = {{ rate = {cluster.LOOPBACK_PEER_LIMIT[0]}, burst = {cluster.LOOPBACK_PEER_LIMIT[1]} }}",
        ]
        if node_id == "FC1":
            lines.append(f'content_key = "{master.hex()}"')
        for rid, role, key in registry:
            lines += ["", "[[registry]]", f'id = "{rid}"', f'role = "{role}"', f'pubkey = "{key.public.hex()}"']
        cfg = folder / f"{node_id}.toml"
        cfg.write_text("\n".join(lines) + "\n")
        proc = cluster._start_node(folder, node_id, "concentrator", cfg)
        state["nodes"].append(
            {
                "id": node_id,
                "role": "concentrator",
                "chain": "fan",
                "pid": proc.pid,
                "url": f"http://127.0.0.1:{ports[node_id]}",
                "config": str(cfg),
            }
        )
        (folder / cluster.STATE_FILE).write_text(json.dumps(state, indent=2))  # so that cluster.down stops it
    for node_id in FAN_NODES:
        wait_port(ports[node_id], 60)
    wait_until(lambda: all(net.status(n)["height"] >= 1 for n in FAN_NODES), 60, "the FAN's enrolment block")
    return net


def collude(net: Network) -> Block:
    """The next NAN block, over-issuing energy for MI1: signed by DC1 and certified by a committee majority."""
    nan = net.chain("DC1-backup")
    state = nan.state
    meter = net.key("MI1")
    time_s = max(int(time.time()), state.tip_time)
    slot = state.slot_of(time_s)
    too_much = Output(EPA(METER_LIMITS[0] + 1, slot, slot + 1), KeyPair.from_secret("colluder").address)
    issue = MeterIssue("MI1", 1, (too_much,)).signed(nan.chain_id, meter)
    block = make_block(nan.chain_id, state.height + 1, state.tip_hash, time_s, (issue,), net.key("DC1"))
    committee = committee_for(state, block.header)
    keys = {k.public: k for k in (net.key(m) for m in ("MI1", "MI2", "MI3"))}
    signers = sorted(committee.keys)[: committee.required]  # the colluding majority
    votes = [Vote(pk, keys[pk].sign(block.header.signing_message())) for pk in signers]
    bad = dataclasses.replace(block, certificate=certify(committee, votes))
    check_block_certificate(state, bad)  # the certificate itself is valid
    return bad


def fan_alarms(net: Network) -> list[Alarm]:
    """The TAMPERING alarms about refused child blocks committed on the FAN (what the DSO reads)."""
    chain = net.chain("FC1")
    return [
        tx
        for b in chain.blocks(1)
        for tx in b.transactions
        if isinstance(tx, Alarm) and tx.code == AlarmCode.TAMPERING and tx.detector == REFUSED_DETECTOR
    ]


@dataclass
class Outcome:
    bad: Block
    #: Seconds from publishing the certified block until every NAN node reported refusing it.
    nan_refused_s: float
    #: Seconds until a TAMPERING alarm about it was committed on the FAN (the DSO can read it).
    fan_alarm_s: float
    nan_status: dict[str, dict]
    fan_status: dict[str, dict]
    alarms: list[Alarm]
    #: The FAN coordinator's answer about the captured coordinator's anchor covering the block.
    anchor_status: dict


def attack(net: Network) -> Outcome:
    """Publish the colluders' block, then anchor it on the FAN; time and collect what the honest processes do."""
    heights = {n: net.status(n)["height"] for n in NAN_NODES}
    bad = collude(net)
    with contextlib.closing(EtcdPoefOrderer(net.endpoints, net.nan_id)) as board:
        t0 = time.monotonic()
        assert board.publish(bad.height, bad.encode()), "the height was taken"

    def refused(node_id: str) -> bool:
        return "bad-issue-over-limit" in (net.status(node_id)["last_rejected"] or "")

    wait_until(lambda: all(refused(n) for n in NAN_NODES), 60, "every NAN node to refuse the block", interval=0.05)
    nan_refused_s = time.monotonic() - t0
    wait_until(lambda: any(a.subject == bad.hash for a in fan_alarms(net)), 60, "the alarm on the FAN", interval=0.1)
    fan_alarm_s = time.monotonic() - t0

    nan = net.chain("DC1-backup")
    hashes = [b.hash for b in nan.blocks(0)] + [bad.hash]
    anchor = make_anchor(net.fan_id, net.nan_id, 0, hashes, net.key("DC1"), nan.genesis)
    with contextlib.closing(net.client("FC1")) as fc1:
        assert fc1.submit(anchor).status_code == 202
        anchor_status = fc1.wait(anchor.txid, timeout=60)
    return Outcome(
        bad,
        nan_refused_s,
        fan_alarm_s,
        {n: net.status(n) | {"height_before": heights[n]} for n in NAN_NODES},
        {n: net.status(n) for n in FAN_NODES},
        fan_alarms(net),
        anchor_status,
    )
