"""Private market rounds of a simulated PETra microgrid in one process: a simulation, not a protocol role.

:class:`Microgrid` runs whole rounds on a SQLite chain: the chain, the DSO, the meters (onion relays), the
prosumers (:class:`gridledger.petra.prosumer.Prosumer`), the bid store
(:class:`gridledger.petra.operator.MarketOperator`) and the mix board, over an in-process network. Each round every
prosumer gets an intent (sell, buy, or only the cover trade), then the whole PETra cycle runs: extract, CoinShuffle,
anonymous onion-routed orders, clearing, atomic trades, deposits. Each meter then measures exactly what its
prosumer traded and bills the slot; the DSO sees only per-slot energy and per-period bill totals (:class:`DsoView`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nacl.public import PrivateKey

from gridledger.chain import Chain
from gridledger.ledger.assets import ECA, EPA, FA, Asset, AssetKind
from gridledger.ledger.billing import Bill
from gridledger.ledger.block import Block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.dso_policy import MeterLimits
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.ledger.units import DEFAULT_SLOT_SECONDS, energy_cost
from gridledger.market.orders import Side
from gridledger.petra.bidstore import (
    AnonOrder,
)
from gridledger.petra.coinshuffle import MixBoard
from gridledger.petra.controller import ControlSignal, MicrogridController, Prediction
from gridledger.petra.dso import DSO
from gridledger.petra.meter import SmartMeter
from gridledger.petra.onion import (
    InProcessNetwork,
    OnionNode,
    RelayDescriptor,
    RelayDirectory,
    RelayRegistry,
    Transport,
)
from gridledger.petra.operator import MarketOperator
from gridledger.petra.prosumer import Intent, Prosumer
from gridledger.petra.settlement import Trade
from gridledger.petra.wallet import Wallet
from gridledger.store.sqlite import SqliteStore


# --------------------------------------------------------------------------------------------- microgrid
@dataclass
class RoundReport:
    """What one round did: the slot traded, the mixes, orders, trades, and how long settlement took."""

    slot: int
    mixes: list[tuple[Asset, int, int]] = field(default_factory=list)
    mix_failures: int = 0
    orders: dict[str, str] = field(default_factory=dict)
    trades: list[Trade] = field(default_factory=list)
    committed_trades: int = 0
    deposits: int = 0
    blocks: list[Block] = field(default_factory=list)
    close_to_commit_s: float = 0.0
    prediction: Prediction | None = None
    signal: ControlSignal | None = None


@dataclass
class DsoView:
    """All the DSO learns from the meters: per meter and slot the energy to settle (W·s), and bill totals.

    ``period_bills`` holds one total per meter and billing period (minor units); nothing names a trade.
    """

    period_slots: int
    energy_ws: dict[tuple[str, int], int] = field(default_factory=dict)
    period_bills: dict[tuple[str, int], int] = field(default_factory=dict)

    def record(self, meter: str, bill: Bill) -> None:
        self.energy_ws[(meter, bill.slot)] = bill.energy_ws
        key = (meter, bill.slot // self.period_slots)
        self.period_bills[key] = self.period_bills.get(key, 0) + bill.amount


class Microgrid:
    """A PETra microgrid in one process: chain, DSO, meters (onion relays), prosumers, bid store, mix board.

    Build it with :meth:`create` (inside a running event loop); run rounds with :meth:`run_round`.

    Parameters of :meth:`create`
    ----------------------------
    prosumers : number of prosumers (meters ``MI1…``).
    path : SQLite file of the chain (``":memory:"`` by default).
    unit_w : power of one unit (W); ``slots``: slots per unit (its interval ``[t, t + slots)``).
    price_cap : highest bid price (minor units per kWh); an FA unit pays a full unit at this price.
    prices : the DSO's (priceConsumption, priceProduction), minor units per kWh.
    symmetric : every prosumer extracts one unit of every kind every round (the full cover trade).
    seed : seeds the order in which prosumers act (their keys are always fresh).
    mix_timeout : seconds a mix phase may stall before the board excludes the silent participants.
    board_silence : seconds a mixer waits for the board before giving up.
    slot_seconds : slot length (s) of the new chain; afterwards read from its genesis (:attr:`slot_seconds`).
    """

    START_TIME = 1_767_225_600

    def __init__(self) -> None:
        self.time = self.START_TIME
        self.blocks: list[Block] = []
        self.prosumers: dict[str, Prosumer] = {}
        self.truth: dict[str, str] = {}

    @classmethod
    async def create(
        cls,
        prosumers: int,
        *,
        path: str | Path = ":memory:",
        unit_w: int = 500,
        slots: int = 1,
        price_cap: int = 150,
        prices: tuple[int, int] = (120, 80),
        symmetric: bool = True,
        max_units: int = 4,
        billing_period_slots: int = 96,
        seed: int = 0,
        network: InProcessNetwork | None = None,
        mix_timeout: float = 10.0,
        board_silence: float = 120.0,
        controller: MicrogridController | None = None,
        mechanism: str = "lp",
        slot_seconds: int = DEFAULT_SLOT_SECONDS,
    ) -> Microgrid:
        g = cls()
        g.unit_w, g.slots, g.price_cap, g.prices, g.symmetric = unit_w, slots, price_cap, prices, symmetric
        g.rng = random.Random(seed)
        g.board_silence = board_silence
        g.network = network or InProcessNetwork()
        g.coordinator = KeyPair.from_secret("microgrid-coordinator")
        dso_key = KeyPair.from_secret("microgrid-dso")
        genesis = Genesis(
            "nan-microgrid", slot_seconds, cls.START_TIME, dso_key.public, (g.coordinator.public,)
        )
        g.store = SqliteStore(path)
        g.chain = Chain.create(g.store, genesis, g.coordinator, g.time)
        g.dso = DSO(dso_key, g.chain.chain_id)
        names = [f"MI{i + 1}" for i in range(prosumers)]
        meter_keys = {n: KeyPair.from_secret(f"microgrid-meter-{n}") for n in names}
        g.fa_unit = energy_cost(unit_w * slots * g.slot_seconds, price_cap)
        limits = [MeterLimits(n, max_units * unit_w, max_units * unit_w, 2**40) for n in names]
        g.chain.submit(
            g.dso.policy(
                0, prices=prices, authorize={n: k.public for n, k in meter_keys.items()}, limits=limits
            )
        )
        g.commit()
        relay_keys = {n: PrivateKey.generate() for n in names}
        g.registry = RelayRegistry()
        for n in names:
            g.registry.publish(RelayDescriptor.create(n, f"relay-{n}", relay_keys[n], meter_keys[n]))
        g.directory = RelayDirectory.from_registry(g.registry, g.chain.state.policy, g.slot)
        for n, lim in zip(names, limits, strict=True):
            meter = SmartMeter(n, meter_keys[n], g.chain.chain_id, g.slot_seconds, limits=lim)
            node = await OnionNode(g._endpoint(f"relay-{n}"), relay_keys[n], g.directory).start()
            g.prosumers[n] = Prosumer(meter, Wallet(), node)
        g.store_node = await OnionNode(g._endpoint("bidstore")).start()
        g.operator = MarketOperator(g.store_node, g.chain, lambda: g.slot, mechanism)
        g.board_node = await OnionNode(g._endpoint("mixboard")).start()
        g.board = MixBoard(
            g.board_node,
            g.chain.chain_id,
            lambda op: g.chain.state.output(op),
            g.chain.submit,
            timeout=mix_timeout,
        )
        g.controller = controller
        g.dso_view = DsoView(period_slots=billing_period_slots)
        return g

    @property
    def slot_seconds(self) -> int:
        """Slot length (s), from the chain's genesis."""
        return self.chain.genesis.slot_seconds

    def _endpoint(self, name: str) -> Transport:
        return self.network.endpoint(name)

    @property
    def slot(self) -> int:
        return (self.time - self.START_TIME) // self.slot_seconds

    def commit(self) -> Block | None:
        """The coordinator orders the mempool into a block; every wallet and meter scans it."""
        self.time += 1
        res = self.chain.propose(self.coordinator, self.time)
        if res.block is None:
            return None
        self.blocks.append(res.block)
        slot = self.chain.state.slot_of(res.block.header.time)
        for p in self.prosumers.values():
            p.wallet.scan(res.block)
            p.meter.scan(res.block, slot)
        return res.block

    def denominations(self, t: int) -> dict[AssetKind, Asset]:
        return {
            AssetKind.EPA: EPA(self.unit_w, t, t + self.slots),
            AssetKind.ECA: ECA(self.unit_w, t, t + self.slots),
            AssetKind.FA: FA(self.fa_unit),
        }

    def _shuffled(self, items: Iterable) -> list:
        out = list(items)
        self.rng.shuffle(out)
        return out

    async def run_round(self, intents: Mapping[str, Intent]) -> RoundReport:
        """One round in the current slot for the next: extract, mix, post, clear, trade, deposit."""
        t = self.slot + 1
        report = RoundReport(t)
        units = self.denominations(t)
        wanted: dict[str, dict[Asset, int]] = {}
        for name in self.prosumers:
            it = intents.get(name, Intent())
            n = {k: (1 if self.symmetric else 0) for k in AssetKind}
            if it.side is Side.OFFER:
                n[AssetKind.EPA] = it.units
            elif it.side is Side.BID:
                n[AssetKind.ECA] = n[AssetKind.FA] = it.units
            elif not self.symmetric:
                n[AssetKind.EPA] = 1
            wanted[name] = {units[k]: c for k, c in n.items() if c}
        for name in self._shuffled(self.prosumers):
            self.chain.submit(self.prosumers[name].extract(wanted[name], self.slot))
        report.blocks.append(self.commit())

        # mixing: one pool per denomination, every coin through its own circuit
        pools: dict[Asset, int] = defaultdict(int)
        for w in wanted.values():
            for d, c in w.items():
                pools[d] += c
        for d, c in pools.items():
            self.board.expect(d, c)
        coins = {n: list(p.wallet.coins) for n, p in self.prosumers.items()}
        failures = await asyncio.gather(
            *(
                self.prosumers[n].mix("mixboard", coins[n], self.board_silence)
                for n in self._shuffled(self.prosumers)
            )
        )
        report.mix_failures = sum(len(f) for f in failures)
        while not self.board.finished.empty():
            b = self.board.finished.get_nowait()
            report.mixes.append((b.denomination, len(b.active), b.runs))
        report.blocks.append(self.commit())

        # posting: one order per mixed unit, each prosumer in random order
        async def post(name: str) -> None:
            p, it = self.prosumers[name], intents.get(name, Intent())
            if it.side is None:
                return
            mixed = {o.coin: o for o in p.mixed.values() if o.coin in p.wallet.coins}
            by_kind: dict[AssetKind, list[bytes]] = defaultdict(list)
            for op in mixed:
                by_kind[p.wallet.coins[op].asset.kind].append(op)
            orders = []
            energy = by_kind[AssetKind.EPA if it.side is Side.OFFER else AssetKind.ECA]
            for i, op in enumerate(energy[: it.units]):
                backing = [op] if it.side is Side.OFFER else [op, *by_kind[AssetKind.FA][i : i + 1]]
                if len(backing) != (1 if it.side is Side.OFFER else 2):
                    continue
                order = AnonOrder(
                    it.side,
                    p.feeder,
                    t,
                    t + self.slots,
                    self.unit_w,
                    it.limit_price,
                    t,
                    p.wallet.new_address(),
                    tuple(backing),
                )
                keys = tuple(p.wallet.keys[p.wallet.coins[b].owner] for b in backing)
                orders.append((order, keys))
            for oid in await p.post("bidstore", orders):
                report.orders[oid] = name
                self.truth[oid] = name

        for name in self._shuffled(self.prosumers):  # one after another: the store's arrival order, its
            await post(name)  # tie-break among equal orders, is then the seed's

        # close → trades signed by both parties → committed; then every deposit
        start = time.perf_counter()
        settlement = self.operator.close()
        report.trades = settlement.trades
        await asyncio.gather(
            *(self.prosumers[n].sign_trades(self.slot_seconds) for n in self._shuffled(self.prosumers))
        )
        self.operator.submit_signed()
        block = self.commit()
        report.blocks.append(block)
        on_chain = {tx.txid for tx in block.transactions} if block else set()
        committed = [m for tr in settlement.trades if tr.tx.txid in on_chain for m in tr.matches]
        report.committed_trades = sum(tr.tx.txid in on_chain for tr in settlement.trades)
        if self.controller is not None:
            orders = [p.order.market_order() for p in [*settlement.posted.values(), *self.operator.unmatched]]
            report.prediction, report.signal, _ = self.controller.step(
                self.chain, self.dso, t, committed, orders
            )
        deposits = [tx for n in self._shuffled(self.prosumers) for tx in self.prosumers[n].deposits()]
        for tx in self._shuffled(deposits):
            self.chain.submit(tx)
        report.deposits = len(deposits)
        report.blocks.append(self.commit())
        report.close_to_commit_s = time.perf_counter() - start
        await asyncio.gather(*(p.forget() for p in self.prosumers.values()))
        return report

    def bill(self, slot: int, measured_wh: Mapping[str, int]) -> dict[str, Bill]:
        """Every meter bills ``slot`` from its measurement (Wh) and reports only to the DSO view."""
        prices = self.chain.state.policy.prices(slot)
        bills = {}
        for name, p in self.prosumers.items():
            bills[name] = p.meter.bill(slot, measured_wh.get(name, 0), prices)
            self.dso_view.record(name, bills[name])
        return bills

    def next_slot(self) -> None:
        """Move the clock to the start of the next slot."""
        self.time = self.START_TIME + (self.slot + 1) * self.slot_seconds

    async def close(self) -> None:
        for node in [*(p.node for p in self.prosumers.values()), self.store_node, self.board_node]:
            await node.close()
        self.store.close()

def random_intents(names: list[str], rng: random.Random) -> dict[str, Intent]:
    """45 % sellers (limit 80–120), 45 % buyers (limit 90–140), 10 % cover only; 1–2 units each (minor units/kWh)."""
    out = {}
    for n in names:
        u, units = rng.random(), rng.choice((1, 1, 2))
        if u < 0.45:
            out[n] = Intent(Side.OFFER, units, rng.randrange(80, 121))
        elif u < 0.9:
            out[n] = Intent(Side.BID, units, rng.randrange(90, 141))
        else:
            out[n] = Intent()
    return out


async def run_rounds(
    path: Path, prosumers: int, rounds: int, seed: int, on_round: Callable[[RoundReport], None] | None = None
) -> Microgrid:
    """Run ``rounds`` rounds on a chain stored at ``path``; returns the (closed) microgrid for its reports."""
    g = await Microgrid.create(prosumers, path=path, symmetric=True, seed=seed)
    rng = random.Random(seed)
    g.reports = []
    try:
        for _ in range(rounds):
            intents = random_intents(list(g.prosumers), rng)
            report = await g.run_round(intents)
            energy_wh = g.unit_w * g.slots * g.slot_seconds // 3600
            measured = {
                n: (-1 if it.side is Side.OFFER else 1) * it.units * energy_wh
                for n, it in intents.items()
                if it.side is not None
            }
            g.bill(report.slot, measured)
            g.reports.append(report)
            if on_round:
                on_round(report)
            g.next_slot()
    finally:
        await g.close()
    return g
