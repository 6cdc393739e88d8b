"""Fixtures of the private-market tests: a real chain with authorized meters, and a local CoinShuffle driver.

``Grid`` is a neighbourhood chain on in-memory SQLite with meters ``MI1…MIn`` authorized by the DSO
(MAXEPA = MAXECA = 10 kW, prices 120/80 minor units per kWh), one prosumer wallet per meter, and a manual
clock standing in slot 0. ``grid.coins(asset, n)`` has ``n`` meters issue ``asset`` to fresh addresses of
their prosumers and returns (owner key, outpoint) pairs. ``run_local`` drives a CoinShuffle ``Board`` and its
participants by passing messages directly, with no network, so that the tests can inject deviations.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest
from nacl.public import PrivateKey

from gridledger.chain import Chain
from gridledger.ledger.assets import Asset, outpoint
from gridledger.ledger.block import Block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.dso_policy import DsoPolicy, MeterLimits
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.ledger.policy import PolicyTimeline
from gridledger.ledger.transactions import Transaction
from gridledger.petra.coinshuffle import Board, MixError, Participant
from gridledger.petra.dso import DSO
from gridledger.petra.meter import SmartMeter
from gridledger.petra.onion import (
    InProcessNetwork,
    OnionNode,
    RelayDescriptor,
    RelayDirectory,
    RelayRegistry,
)
from gridledger.petra.wallet import Wallet
from gridledger.store.sqlite import SqliteStore

START_TIME = 1_767_225_600
SLOT_SECONDS = 900
PRICES = (120, 80)
MAX_W = 10_000


@dataclass
class Grid:
    chain: Chain
    coordinator: KeyPair
    dso: DSO
    meters: dict[str, SmartMeter]
    wallets: dict[str, Wallet]
    time: int = START_TIME
    blocks: list[Block] = field(default_factory=list)

    @property
    def chain_id(self) -> bytes:
        return self.chain.chain_id

    @property
    def slot(self) -> int:
        return (self.time - START_TIME) // SLOT_SECONDS

    def commit(self, *txs: Transaction) -> Block:
        """Submit, propose, insist that everything was accepted, and let wallets and meters scan the block."""
        for tx in txs:
            self.chain.submit(tx)
        self.time += 1
        res = self.chain.propose(self.coordinator, self.time)
        assert not res.rejected and res.block is not None, [str(e) for e in res.rejected.values()]
        for w in self.wallets.values():
            w.scan(res.block)
        for m in self.meters.values():
            m.scan(res.block, self.chain.state.slot_of(res.block.header.time))
        self.blocks.append(res.block)
        return res.block

    def rejected(self, tx: Transaction) -> str:
        """Submit ``tx`` alone and return its reject code (it must be rejected)."""
        self.chain.submit(tx)
        self.time += 1
        res = self.chain.propose(self.coordinator, self.time)
        assert res.block is None and tx.txid in res.rejected
        return res.rejected[tx.txid].code

    def coins(self, asset: Asset, n: int) -> list[tuple[KeyPair, bytes]]:
        """``n`` meters each issue ``asset`` to a fresh address of their prosumer."""
        issues, owners = [], []
        for name in list(self.meters)[:n]:
            address = self.wallets[name].new_address()
            issues.append(self.meters[name].issue([(asset, address)], self.slot))
            owners.append((name, address))
        self.commit(*issues)
        return [
            (self.wallets[name].keys[address], outpoint(issue.txid, 0))
            for (name, address), issue in zip(owners, issues, strict=True)
        ]


def build_grid(meters: int = 6) -> Grid:
    dso_key, coordinator = KeyPair.from_secret("pm-dso"), KeyPair.from_secret("pm-coordinator")
    genesis = Genesis("nan-privmarket", SLOT_SECONDS, START_TIME, dso_key.public, (coordinator.public,))
    chain = Chain.create(SqliteStore(":memory:"), genesis, coordinator, START_TIME)
    names = [f"MI{i + 1}" for i in range(meters)]
    keys = {n: KeyPair.from_secret(f"pm-meter-{n}") for n in names}
    limits = {n: MeterLimits(n, MAX_W, MAX_W, 1_000_000) for n in names}
    grid = Grid(
        chain,
        coordinator,
        DSO(dso_key, chain.chain_id),
        {n: SmartMeter(n, keys[n], chain.chain_id, SLOT_SECONDS, limits=limits[n]) for n in names},
        {n: Wallet() for n in names},
    )
    grid.commit(
        grid.dso.policy(
            0, prices=PRICES, authorize={n: k.public for n, k in keys.items()}, limits=list(limits.values())
        )
    )
    return grid


@pytest.fixture
def grid() -> Grid:
    return build_grid()


def participants(grid: Grid, coins: Sequence[tuple[KeyPair, bytes]], kinds: Sequence[type] = ()) -> list:
    """One participant per coin; ``kinds[i]`` (a Participant subclass) replaces the honest one for coin i."""
    out = []
    for i, (key, op) in enumerate(coins):
        cls = kinds[i] if i < len(kinds) and kinds[i] is not None else Participant
        out.append(cls(key, op, grid.chain_id, Wallet().new_address))
    return out


def run_local(board: Board, parts: Sequence[Participant], max_steps: int = 100_000) -> dict[bytes, MixError]:
    """Pass messages between ``board`` and ``parts`` until the mix ends; a stall calls ``board.timeout()``.

    Returns the errors raised to participants (by input public key), e.g. the excluded ones' aborts.
    """
    by_key = {p.key.public: p for p in parts}
    errors: dict[bytes, MixError] = {}
    queue = deque(board.begin())
    for _ in range(max_steps):
        if not queue:
            if board.done:
                return errors
            queue.extend(board.timeout())
            continue
        member, msg = queue.popleft()
        p = by_key[board.members[member][1]]
        try:
            outs = p.receive(msg)
        except MixError as e:
            errors[p.key.public] = e
            continue
        for out in outs:
            queue.extend(board.receive(member, out))
    raise AssertionError("the mix did not end")


# --------------------------------------------------------------------------------------------- onion
@dataclass
class Onion:
    network: InProcessNetwork
    directory: RelayDirectory
    relays: list[OnionNode]
    keys: dict[str, KeyPair]


async def onion_network(relays: int = 5, tap: Callable[[OnionNode], object] | None = None) -> Onion:
    """An in-process network with ``relays`` authorized meter relays ``relay-MI1…``.

    ``tap`` is called on each relay before it starts (e.g. to record what it receives).
    """
    network = InProcessNetwork()
    policy, registry = PolicyTimeline(), RelayRegistry()
    meter_keys = {f"MI{i + 1}": KeyPair.from_secret(f"onion-meter-{i}") for i in range(relays)}
    relay_keys = {m: PrivateKey.generate() for m in meter_keys}
    for m, k in meter_keys.items():
        registry.publish(RelayDescriptor.create(m, f"relay-{m}", relay_keys[m], k))
    policy.add(DsoPolicy(1, 0, authorize=tuple((m, k.public) for m, k in meter_keys.items())))
    directory = RelayDirectory.from_registry(registry, policy, 0)
    nodes = [OnionNode(network.endpoint(f"relay-{m}"), relay_keys[m], directory) for m in meter_keys]
    for node in nodes:
        if tap is not None:
            tap(node)
        await node.start()
    return Onion(network, directory, nodes, meter_keys)


def run(coro):
    """Run a coroutine to completion on a fresh event loop (the tests need no asyncio plugin)."""
    return asyncio.run(coro)
