"""Shared fixtures: a ready neighbourhood (NAN) chain built with the real ledger core, store and PETra roles.

``net`` is a funded chain on a SQLite file: genesis (one coordinator), a DSO policy in force from slot 0 that
authorizes meters MI1 and MI2 (MAXEPA = MAXECA = 5 kW, FA credit 100 000 minor units, prices 120/80 minor
units per kWh), and one issue block: MI1 gave its prosumer (wallet ``seller``) EPA 2000 W over slots [1, 5)
and FA 500; MI2 gave its prosumer (wallet ``buyer``) ECA 2000 W over [1, 5) and FA 1000. The clock stands in
slot 0. ``bare_net`` is the same chain without the issue block. ``new_net`` is a session-scoped factory
(in-memory SQLite) for hypothesis tests, which may not use function-scoped fixtures.

``Net`` drives the chain as the nodes and participants would: ``commit`` (submit + the coordinator's proposal,
all must be accepted), ``append`` / ``next_block`` (a block from elsewhere, optionally with a doctored header,
always validly signed), ``issue`` (by a meter's firmware), ``pay`` (a signed wallet transfer), ``at_slot`` and
``tick`` (the clock), ``tables`` (every SQLite row, read with ``sqlite3`` itself).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from gridledger.chain import Chain
from gridledger.ledger.assets import ECA, EPA, FA, Asset
from gridledger.ledger.block import Block, make_block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.dso_policy import MeterLimits
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.ledger.kinds.meter_issue import MeterIssue
from gridledger.ledger.kinds.transfer import Transfer
from gridledger.ledger.state import LedgerState
from gridledger.ledger.transactions import Transaction
from gridledger.petra.dso import DSO
from gridledger.petra.meter import SmartMeter
from gridledger.petra.wallet import Wallet, combine
from gridledger.store.sqlite import SqliteStore

START_TIME = 1_767_225_600  # 2026-01-01T00:00:00Z = slot 0
SLOT_SECONDS = 900
PRICES = (120, 80)  # (priceConsumption, priceProduction), minor units per kWh
MAX_W = 5_000  # MAXEPA = MAXECA of both meters (W per slot)
CREDIT = 100_000  # FA credit of each meter (minor units)
MAX_ISSUE_SLOTS = 96
METERS = ("MI1", "MI2")


@dataclass
class Net:
    """One chain with its coordinator, DSO, meters and prosumer wallets, driven by a manual clock (Unix s)."""

    store: SqliteStore
    chain: Chain
    coordinator: KeyPair
    dso: DSO
    meters: dict[str, SmartMeter]
    wallets: dict[str, Wallet] = field(default_factory=dict)
    time: int = START_TIME

    # ------------------------------------------------------------ clock
    @property
    def chain_id(self) -> bytes:
        return self.chain.chain_id

    @property
    def state(self) -> LedgerState:
        return self.chain.state

    @property
    def slot(self) -> int:
        """The slot of the clock (= the slot of the next block)."""
        return (self.time - START_TIME) // SLOT_SECONDS

    def at_slot(self, slot: int) -> Net:
        """Move the clock forward into ``slot`` (to its start, unless the clock is in that slot already)."""
        if slot < self.slot:
            raise ValueError(f"the clock is already in slot {self.slot}, past slot {slot}")
        if slot > self.slot:
            self.time = START_TIME + slot * SLOT_SECONDS
        return self

    def tick(self) -> int:
        """One second later: every block gets its own time."""
        self.time += 1
        return self.time

    # ------------------------------------------------------------ blocks
    def commit(self, *txs: Transaction) -> Block:
        """Submit ``txs``, let the coordinator propose, and insist that all were accepted."""
        for tx in txs:
            self.chain.submit(tx)
        res = self.chain.propose(self.coordinator, self.tick())
        if res.rejected or res.block is None:
            raise AssertionError(f"rejected: {[str(e) for e in res.rejected.values()]}")
        self.scan(res.block)
        return res.block

    def next_block(self, *txs: Transaction, proposer: KeyPair | None = None, **header: object) -> Block:
        """A signed block at the next height over ``txs`` (not committed); ``header`` overrides header fields.

        The block is always validly signed by ``proposer`` (default: the coordinator), whatever its content.
        """
        key = proposer or self.coordinator
        block = make_block(self.chain_id, self.state.height + 1, self.state.tip_hash, self.tick(), txs, key)
        if header:
            h = replace(block.header, **header)
            block = Block(h, key.sign(h.signing_message()), block.transactions)
        return block

    def append(self, *txs: Transaction) -> Block:
        """Append a block over ``txs`` received from elsewhere (``Chain.append``)."""
        block = self.next_block(*txs)
        self.chain.append(block)
        self.scan(block)
        return block

    def scan(self, block: Block) -> None:
        slot = self.state.slot_of(block.header.time)
        for w in self.wallets.values():
            w.scan(block)
        for m in self.meters.values():
            m.scan(block, slot)

    # ------------------------------------------------------------ transactions
    def issue(self, meter: str, *assets: tuple[Asset, bytes]) -> MeterIssue:
        """A signed issue by ``meter`` at the clock's slot (the meter itself enforces its limits first)."""
        return self.meters[meter].issue(list(assets), slot=self.slot)

    def pay(self, wallet: str, want: Asset, to: bytes | None = None) -> Transfer:
        """A signed transfer of ``want`` from ``wallet`` (change back to fresh addresses of the wallet)."""
        w = self.wallets[wallet]
        return w.sign(combine(w.leg(want, to or Wallet().new_address())), self.chain_id)

    # ------------------------------------------------------------ inspection
    def tables(self, db: sqlite3.Connection | None = None) -> dict[str, list[tuple]]:
        """Every row of every table of the chain's SQLite file (or of ``db``), sorted.

        Read with ``sqlite3`` itself, not with the store code under test, so the comparison is independent.
        """
        db = self.store.db if db is None else db
        names = [
            r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        ]
        return {n: sorted(db.execute(f'SELECT * FROM "{n}"').fetchall(), key=repr) for n in names}


def build_net(store: SqliteStore, *, funded: bool = True) -> Net:
    """A chain whose DSO authorized MI1 and MI2 from slot 0; with ``funded`` both prosumers hold assets."""
    dso_key, coordinator = KeyPair.from_secret("dso"), KeyPair.from_secret("concentrator-DC1")
    genesis = Genesis(
        "nan-test",
        SLOT_SECONDS,
        START_TIME,
        dso_key.public,
        (coordinator.public,),
        max_issue_slots=MAX_ISSUE_SLOTS,
    )
    chain = Chain.create(store, genesis, coordinator, START_TIME)
    meters = {
        m: SmartMeter(m, KeyPair.from_secret(f"meter-{m}"), chain.chain_id, SLOT_SECONDS) for m in METERS
    }
    net = Net(store, chain, coordinator, DSO(dso_key, chain.chain_id), meters)
    limits = [MeterLimits(m, MAX_W, MAX_W, CREDIT) for m in METERS]
    net.commit(
        net.dso.policy(
            0, prices=PRICES, authorize={m: k.key.public for m, k in meters.items()}, limits=limits
        )
    )
    for lim in limits:
        meters[lim.meter].limits = lim
    net.wallets = {"seller": Wallet(), "buyer": Wallet()}
    if funded:
        seller, buyer = net.wallets["seller"], net.wallets["buyer"]
        net.commit(
            net.issue("MI1", (EPA(2_000, 1, 5), seller.new_address()), (FA(500), seller.new_address())),
            net.issue("MI2", (ECA(2_000, 1, 5), buyer.new_address()), (FA(1_000), buyer.new_address())),
        )
    return net


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    """A funded chain on a SQLite file (see the module docstring)."""
    store = SqliteStore(tmp_path / "chain.sqlite")
    yield build_net(store)
    store.close()


@pytest.fixture
def bare_net(tmp_path: Path) -> Iterator[Net]:
    """A chain with MI1 and MI2 authorized and priced, and no assets yet."""
    store = SqliteStore(tmp_path / "chain.sqlite")
    yield build_net(store, funded=False)
    store.close()


@pytest.fixture(scope="session")
def new_net() -> Callable[..., Net]:
    """Factory of fresh in-memory chains: ``new_net(funded=True)``."""
    return lambda funded=True: build_net(SqliteStore(":memory:"), funded=funded)
