"""PETra on one NAN chain of the community run: day-long units, one mix per trading day, a round per slot.

Every transaction is one of the NAN chain's own, ordered and committed under PoEf with the meters' readings:

* **extract** (once per trading day): every meter issues the same ``units`` of every kind (the cover trade: a
  prosumer's activity does not show in what it extracts): EPA and ECA of ``unit_w`` W over the trading day's
  slots, and FA worth a full unit over the day at the price cap; MAXEPA/MAXECA and the FA credit are checked by
  the meter and again by every validator;
* **mix** (once per trading day): each denomination's coins go through CoinShuffle in sessions of at most
  ``mix_size`` coins, each coin over its own onion circuit, to fresh one-time addresses;
* **trade** (every slot, for the next one): each prosumer posts one anonymous order per day coin it uses,
  proving control of the coin, over the coin's own onion circuit to the store (one circuit per coin and day;
  an ECA coin bids with the same FA coin all day); the bid store clears the book with the LP under the feeder's
  limits; every trade is one atomic transfer that both parties check and sign; a partial fill splits the day
  coin in time and power, and the remainder returns to the coin's own address, where the order is also paid;
* **deposit** (at the end of the trading day): everything each prosumer holds goes back to fresh one-time
  addresses of its meter, one transfer per address (a day coin's remainders and what its orders were paid).

A trading day's units are one pseudonym per coin for the day: the bid store and the chain can link a coin's
orders within its day (its remainders stay at its address), never across days and never to a meter (the mix).
That is the price of one mix per day instead of one per slot (see docs/privacy.md).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from nacl.public import PrivateKey

from gridledger.ledger.assets import ECA, EPA, FA, Asset, AssetKind
from gridledger.ledger.block import Block
from gridledger.ledger.kinds.dso_policy import MeterLimits
from gridledger.ledger.units import energy_cost
from gridledger.market.orders import Feeder, Side
from gridledger.petra.bidstore import AnonOrder, BidStoreClient
from gridledger.petra.coinshuffle import MixBoard, MixError, Participant, mix_coin
from gridledger.petra.meter import SmartMeter
from gridledger.petra.onion import InProcessNetwork, OnionNode, RelayDescriptor, RelayDirectory, RelayRegistry
from gridledger.petra.operator import MarketOperator
from gridledger.petra.prosumer import OrderState, Prosumer
from gridledger.petra.settlement import Trade, deposit
from gridledger.petra.wallet import Wallet
from gridledger.tiers.hierarchy import TierChain


def unit_fa(unit_w: int, seconds: int, price: int) -> int:
    """The FA (minor units) that pays one unit of ``unit_w`` W over ``seconds`` s in full at ``price`` per kWh."""
    return energy_cost(unit_w * seconds, price)


@dataclass(frozen=True)
class Intent:
    """What a prosumer asks for one slot: ``side``, total ``power_w`` (W) and ``limit_price`` (minor units/kWh)."""

    side: Side
    power_w: int
    limit_price: int


@dataclass
class SlotTrades:
    """What one round settled: the trades committed and the orders posted (order id → meter, the ground truth)."""

    slot: int
    trades: list[Trade]
    posted: dict[str, str]


class _ActiveChain:
    """The NAN chain as the coordinator in charge holds it (its backup's copy after a fail-over)."""

    def __init__(self, nan: TierChain) -> None:
        self._nan = nan

    def __getattr__(self, name: str):
        return getattr(self._nan.coordinator.chain, name)


class NanMarket:
    """The PETra participants of one NAN: prosumers (meter, wallet, onion relay), the bid store and the mix board.

    Parameters
    ----------
    nan : the feeder's NAN chain (the market's transactions go to its coordinator).
    feeder : the feeder's id and its limits.
    commit : runs one PoEf round on the NAN at the current time and returns the committed block (or None).
    limits : (MAXEPA W, MAXECA W, FA credit) of every meter, as the DSO enrolled them.
    unit_w, units, price_cap : the unit's power, units of each kind per prosumer per day, the highest bid price.
    mix_size : most coins in one CoinShuffle session.
    seed : seeds the order in which prosumers act.
    wallet : the wallet of ``"<meter>/wallet"`` (the prosumer's) and of ``"<meter>/deposits"`` (the meter's deposit
        addresses); default: fresh random keys (:mod:`.checkpoint` derives them, so a resumed run finds its coins).
    """

    def __init__(
        self,
        nan: TierChain,
        feeder: str,
        feeder_limits: Feeder,
        commit: Callable[[], Block | None],
        limits: tuple[int, int, int],
        *,
        unit_w: int,
        units: int,
        price_cap: int,
        mix_size: int = 16,
        mix_timeout: float = 30.0,
        seed: int = 0,
        wallet: Callable[[str], Wallet] = lambda _: Wallet(),
    ) -> None:
        self.nan = nan
        self.feeder = feeder
        self.feeder_limits = feeder_limits
        self._commit = commit
        self.limits = limits
        self.unit_w, self.units, self.price_cap = unit_w, units, price_cap
        self.mix_size, self.mix_timeout = mix_size, mix_timeout
        self.rng = random.Random(seed)
        self.wallet = wallet
        self.slot_seconds = nan.genesis.slot_seconds
        self.prosumers: dict[str, Prosumer] = {}
        self.slot = 0
        self.truth: dict[str, str] = {}
        self.mix_sessions: list[tuple[Asset, int]] = []
        #: Each day coin's circuit to the bid store (by the coin's address: its orders are linkable anyway).
        self._circuits: dict[bytes, BidStoreClient] = {}
        #: The FA day coin (address) each ECA day coin (address) bids with.
        self._pairs: dict[bytes, bytes] = {}
        #: Whether the previous round's book held offers (public: the store lists its open orders).
        self.offers_seen = False

    @property
    def chain(self):
        return self.nan.coordinator.chain

    async def start(self, network: InProcessNetwork) -> NanMarket:
        """Start every node: each meter's onion relay (published in the NAN's relay registry), store and board."""
        chain = self.chain
        relay_keys = {name: PrivateKey.generate() for name in self.nan.members}
        registry = RelayRegistry()
        for name, member in self.nan.members.items():
            registry.publish(RelayDescriptor.create(name, self._node(f"relay-{name}"), relay_keys[name], member.key))
        directory = RelayDirectory.from_registry(registry, chain.state.policy, self.slot)
        for name, member in self.nan.members.items():
            meter = SmartMeter(
                name,
                member.key,
                chain.chain_id,
                self.slot_seconds,
                limits=MeterLimits(name, *self.limits),
                deposits=self.wallet(f"{name}/deposits"),
            )
            node = await OnionNode(network.endpoint(self._node(f"relay-{name}")), relay_keys[name], directory).start()
            self.prosumers[name] = Prosumer(meter, self.wallet(f"{name}/wallet"), node, feeder=self.feeder)
        self.store_node = await OnionNode(network.endpoint(self._node("bidstore"))).start()
        self.operator = MarketOperator(
            self.store_node, _ActiveChain(self.nan), lambda: self.slot, "lp", {self.feeder: self.feeder_limits}
        )
        self.board_node = await OnionNode(network.endpoint(self._node("mixboard"))).start()
        self.board = MixBoard(
            self.board_node,
            chain.chain_id,
            lambda op: self.chain.state.output(op),
            lambda tx: self.chain.submit(tx),
            self.mix_timeout,
        )
        return self

    def _node(self, name: str) -> str:
        return f"{self.feeder}.{name}"

    def commit(self) -> Block | None:
        """One PoEf round of the NAN; every wallet and meter scans what it committed."""
        block = self._commit()
        if block is not None:
            for p in self.prosumers.values():
                p.wallet.scan(block)
                p.meter.scan(block, self.slot)
        return block

    def _shuffled(self, items) -> list:
        out = list(items)
        self.rng.shuffle(out)
        return out

    # ------------------------------------------------------------------------------------------ per day
    def denominations(self, start: int, end: int) -> dict[AssetKind, Asset]:
        """The units of the trading day ``[start, end)``: EPA, ECA and an FA that pays a full unit at the cap."""
        fa = unit_fa(self.unit_w, (end - start) * self.slot_seconds, self.price_cap)
        return {
            AssetKind.EPA: EPA(self.unit_w, start, end),
            AssetKind.ECA: ECA(self.unit_w, start, end),
            AssetKind.FA: FA(fa),
        }

    def extract(self, start: int, end: int) -> None:
        """Every meter issues ``units`` of each of the day's denominations to fresh addresses (submitted only)."""
        units = {d: self.units for d in self.denominations(start, end).values()}
        for name in self._shuffled(self.prosumers):
            self.chain.submit(self.prosumers[name].extract(units, self.slot))

    async def mix(self, start: int, end: int) -> int:
        """Mix every coin of the day's denominations in sessions of at most ``mix_size``; returns the failures."""
        failures = await asyncio.gather(*(self._mix_denomination(d) for d in self.denominations(start, end).values()))
        return sum(failures)

    async def _mix_denomination(self, d: Asset) -> int:
        coins = [(p, op) for p in self.prosumers.values() for op, out in p.wallet.coins.items() if out.asset == d]
        self.rng.shuffle(coins)
        sessions = [coins[i : i + self.mix_size] for i in range(0, len(coins), self.mix_size)]
        if len(sessions) > 1 and len(sessions[-1]) < 2:
            sessions[-2] += sessions.pop()
        failed = 0
        for session in sessions:
            self.board.expect(d, len(session))
            results = await asyncio.gather(*(self._mix_one(p, op, d) for p, op in session), return_exceptions=True)
            failed += sum(isinstance(r, MixError) for r in results)
            for r in results:
                if isinstance(r, BaseException) and not isinstance(r, MixError):
                    raise r
            self.mix_sessions.append((d, len(session)))
        return failed

    async def _mix_one(self, p: Prosumer, op: bytes, d: Asset) -> None:
        key = p.wallet.keys[p.wallet.coins[op].owner]
        participant = Participant(key, op, self.chain.chain_id, p.wallet.new_address)
        await mix_coin(p.node, self._node("mixboard"), participant, d, self.mix_timeout)

    def deposit(self) -> int:
        """Every prosumer sends every coin it holds back to fresh addresses of its meter, one transfer per address it
        holds coins at (a day coin's remainders and what its orders received); returns the transfers."""
        txs = []
        for name in self._shuffled(self.prosumers):
            p = self.prosumers[name]
            by_address: dict[bytes, list[bytes]] = {}
            for op, out in p.wallet.coins.items():
                by_address.setdefault(out.owner, []).append(op)
            txs += [deposit(p.wallet, ops, p.meter.deposit_address(), p.meter.chain_id) for ops in by_address.values()]
        for tx in self._shuffled(txs):
            self.chain.submit(tx)
        return len(txs)

    # ------------------------------------------------------------------------------------------ per slot
    async def trade(self, intents: Mapping[str, Intent]) -> SlotTrades:
        """The round in the current slot for the next: post, clear, sign and submit the trades (not committed)."""
        t = self.slot + 1
        self.operator.store.open_orders(self.slot)  # the store drops orders that expired (their coins are free)
        posted: dict[str, str] = {}

        async def post(name: str) -> None:
            p, intent = self.prosumers[name], intents.get(name)
            if intent is None:
                return
            for order, keys in self._orders(p, intent, t):
                client = self._circuits.get(order.pay_to)
                if client is None:
                    client = self._circuits[order.pay_to] = BidStoreClient(
                        await p.node.open_circuit(self._node("bidstore"))
                    )
                oid = await client.post(order, keys)
                p.orders[oid] = OrderState(order, keys, {k.address for k in keys} | {order.pay_to}, client)
                posted[oid] = name

        for name in self._shuffled(self.prosumers):  # one after another: the store's arrival order, its
            await post(name)  # tie-break among equal orders, is then the seed's (same seed, same trades)
        self.truth.update(posted)
        self.offers_seen = any(p.order.side is Side.OFFER for p in self.operator.store.orders.values())
        settlement = self.operator.close()
        await asyncio.gather(
            *(self.prosumers[n].sign_trades(self.slot_seconds) for n in self._shuffled(self.prosumers))
        )
        self.operator.submit_signed()
        return SlotTrades(t, settlement.trades, posted)

    def _orders(self, p: Prosumer, intent: Intent, t: int) -> list:
        """One order per day coin covering slot ``t`` until ``intent.power_w`` is covered (a bid adds an FA coin)."""
        energy_kind = AssetKind.EPA if intent.side is Side.OFFER else AssetKind.ECA
        coins = p.wallet.coins
        energy = [op for op, o in coins.items() if o.asset.kind == energy_kind and o.asset.start <= t < o.asset.end]
        money = {o.owner: op for op, o in coins.items() if o.asset.kind == AssetKind.FA}
        orders, left = [], intent.power_w
        for op in energy:
            power = min(left, coins[op].asset.amount)
            if power <= 0:
                break
            backing = [op]
            if intent.side is Side.BID:
                # an ECA day coin keeps one FA day coin for the day, so bids link no two coins of the day
                paired = self._pairs.get(coins[op].owner)
                if paired is None:
                    taken = set(self._pairs.values())
                    paired = next((a for a in money if a not in taken and coins[money[a]].asset.amount > 0), None)
                    if paired is None:
                        break
                    self._pairs[coins[op].owner] = paired
                fa = money.get(paired)
                if fa is None or coins[fa].asset.amount < energy_cost(power * self.slot_seconds, intent.limit_price):
                    continue
                backing.append(fa)
            # paid at the day coin's own address: the order names the coin already, so this links nothing new,
            # and all a coin's day ends up at one address (one deposit)
            pay_to = coins[op].owner
            order = AnonOrder(intent.side, self.feeder, t, t + 1, power, intent.limit_price, t, pay_to, tuple(backing))
            orders.append((order, tuple(p.wallet.keys[coins[b].owner] for b in backing)))
            left -= power
        return orders

    def forget(self) -> None:
        """End the round: the prosumers drop its orders (each day coin keeps its circuit to the store for the day)."""
        for p in self.prosumers.values():
            p.orders.clear()

    async def end_day(self) -> None:
        """Close the day coins' circuits and forget their pairs."""
        await asyncio.gather(*(client.circuit.close() for client in self._circuits.values()))
        self._circuits.clear()
        self._pairs.clear()

    def issued_and_deposited(self, name: str) -> tuple[list[tuple[int, Asset]], list[tuple[int, Asset]]]:
        """What meter ``name`` recorded: ``(slot, asset)`` it issued and that was deposited back to it."""
        meter = self.prosumers[name].meter
        return meter.issued, meter.deposited

    async def close(self) -> None:
        for node in [*(p.node for p in self.prosumers.values()), self.store_node, self.board_node]:
            await node.close()
