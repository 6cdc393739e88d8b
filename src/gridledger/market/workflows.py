"""PETra's selling and buying workflows, the privacy cover trade, and settlement on the chain.

Every step is a real ledger transaction (Laszka et al. 2017, "selling" and "buying" workflows):

1. *extract*: the meter issues the prosumer's assets (``MeterIssue``) to fresh addresses, within MAXEPA /
   MAXECA and the prosumer's FA credit: EPA to sell, ECA + FA to buy. Assets come in equal **units** (one
   denomination per asset kind, power and interval), so that they can be mixed;
2. *mix*: every unit goes through a CoinShuffle mix to a fresh one-time address (``Transfer``);
3. *post*: the prosumer posts one anonymous order per unit to the bid store through an onion circuit,
   proving control of the mixed coins (an offer: one EPA; a bid: one ECA and one FA);
4. *trade*: at the close the store clears the book (:func:`gridledger.market.clear`) and builds one atomic
   ``Transfer`` per matched (offer, bid) pair — EPA to the buyer, FA + ECA to the seller — which each party
   checks (:func:`verify_trades`) and signs for its own inputs. A partial fill splits the coins in power and
   in time; what is left goes back to the coin's own address;
5. *deposit*: each party sends everything its order holds to a fresh one-time address of its own meter (one
   deposit per order or coin, never merging coins of different orders); unsold assets and unspent FA are
   returned the same way.

The **cover trade**: a prosumer who does not want to trade extracts, mixes and returns a unit all the same
(with ``symmetric`` extraction every prosumer extracts a unit of every kind every round), so its inactivity
leaks nothing on the chain.

:func:`build_trades`, :func:`verify_trades` and the deposit builders are deterministic and free of I/O;
:class:`MarketOperator` (the bid store's node: book, clearing, signature collection, submission) and
:class:`Prosumer` talk through onion circuits; :class:`Microgrid` runs whole rounds in one process on a
SQLite chain, for tests, demos and benchmarks.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nacl.public import PrivateKey

from gridledger.chain import Chain
from gridledger.ledger import crypto
from gridledger.ledger.assets import ECA, EPA, FA, Asset, AssetKind, Output, outpoint
from gridledger.ledger.billing import Bill
from gridledger.ledger.block import Block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds import decode_transaction
from gridledger.ledger.kinds.dso_policy import MeterLimits
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.ledger.kinds.transfer import Transfer, Witness
from gridledger.ledger.transactions import Transaction
from gridledger.market.bidstore import (
    AnonOrder,
    BidStore,
    BidStoreClient,
    BidStoreError,
    BidStoreService,
    Posted,
    max_payment,
    payment,
)
from gridledger.market.clearing import clear
from gridledger.market.coinshuffle import MixBoard, MixError, MixOutcome, Participant, mix_coin
from gridledger.market.controller import ControlSignal, MicrogridController, Prediction
from gridledger.market.onion import (
    InProcessNetwork,
    OnionNode,
    RelayDescriptor,
    RelayDirectory,
    RelayRegistry,
    Transport,
)
from gridledger.market.orders import Feeder, Match, Side
from gridledger.petra.dso import DSO
from gridledger.petra.meter import SmartMeter
from gridledger.petra.wallet import Wallet
from gridledger.store.sqlite import SqliteStore


class SettlementError(Exception):
    """A trade does not do what its order and matches say; the party refuses to sign it."""


# ------------------------------------------------------------------------------------------ trade building
def profile(assets: Iterable[Asset]) -> dict[int, int]:
    """Power (W) per slot of EPA/ECA ``assets``, summed."""
    p: dict[int, int] = defaultdict(int)
    for a in assets:
        for t in a.slots:
            p[t] += a.amount
    return dict(p)


def runs(per_slot: Mapping[int, int]) -> list[tuple[int, int, int]]:
    """``(start, end, power)`` runs of consecutive slots with equal positive power."""
    out: list[list[int]] = []
    for t in sorted(s for s, w in per_slot.items() if w > 0):
        if out and out[-1][1] == t and out[-1][2] == per_slot[t]:
            out[-1][1] = t + 1
        else:
            out.append([t, t + 1, per_slot[t]])
    return [tuple(r) for r in out]


def carve(kind: AssetKind, per_slot: Mapping[int, int], owner: bytes) -> list[Output]:
    """Outputs of ``kind`` carrying ``per_slot`` power to ``owner``, one per run of equal power."""
    return [Output(Asset(kind, w, s, e), owner) for s, e, w in runs(per_slot)]


@dataclass(frozen=True)
class Trade:
    """One atomic trade between an offer and a bid: the unsigned transfer and who signs which input."""

    offer_id: str
    bid_id: str
    matches: tuple[Match, ...]
    payment: int
    tx: Transfer
    signers: tuple[str, ...]


def _pay(matches: Iterable[Match], slot_seconds: int) -> int:
    return sum(payment(m.power_w, 1, m.price, slot_seconds) for m in matches)


def build_trades(posted: Mapping[str, Posted], matches: Sequence[Match], slot_seconds: int) -> list[Trade]:
    """The trades that settle ``matches`` between the ``posted`` orders, in a deterministic order.

    One transfer per (offer, bid) pair, pairs in sorted order. Inputs: the offer's EPA coins and the bid's ECA
    and FA coins (an order matched several times spends, in its next trade, the remainder of its previous
    one). Outputs: the matched EPA per run of equal power to the bid's ``pay_to``; the same ECA runs and the
    payment (FA, rounded down per match) to the offer's ``pay_to``; every remainder back to the address of
    the asset it came from. Each party can rebuild all of it from the book and the matches.
    """
    holdings: dict[tuple[str, AssetKind], list[tuple[bytes, Output]]] = {}
    for oid, p in posted.items():
        for op, out in zip(p.order.assets, p.outputs, strict=True):
            holdings[(oid, out.asset.kind)] = [(op, out)]
    pairs: dict[tuple[str, str], list[Match]] = defaultdict(list)
    for m in matches:
        pairs[(m.offer_id, m.bid_id)].append(m)
    trades = []
    for (oid, bid), ms in sorted(pairs.items()):
        offer_order, bid_order = posted[oid].order, posted[bid].order
        traded = profile(Asset(AssetKind.EPA, m.power_w, m.slot, m.slot + 1) for m in ms)
        pay = _pay(ms, slot_seconds)
        legs = [((oid, AssetKind.EPA), traded), ((bid, AssetKind.ECA), traded), ((bid, AssetKind.FA), pay)]
        inputs, signers = [], []
        outputs = [
            *carve(AssetKind.EPA, traded, bid_order.pay_to),
            *carve(AssetKind.ECA, traded, offer_order.pay_to),
        ]
        if pay:
            outputs.append(Output(FA(pay), offer_order.pay_to))
        rest: list[tuple[tuple[str, AssetKind], int]] = []
        for key, taken in legs:
            coins = holdings[key]
            inputs += [op for op, _ in coins]
            signers += [key[0]] * len(coins)
            home = _home(posted[key[0]], key[1])
            if key[1] == AssetKind.FA:
                left = sum(o.asset.amount for _, o in coins) - taken
                if left < 0:
                    raise SettlementError(f"bid {key[0]} cannot pay {taken}")
                new = [Output(FA(left), home)] if left else []
            else:
                have = profile(o.asset for _, o in coins)
                left = {t: have.get(t, 0) - taken.get(t, 0) for t in set(have) | set(taken)}
                if min(left.values()) < 0:
                    raise SettlementError(f"order {key[0]} holds too little {key[1].name} for its matches")
                new = carve(key[1], left, home)
            rest.append((key, len(outputs)))
            outputs += new
        tx = Transfer(tuple(inputs), tuple(outputs))
        bounds = [start for _, start in rest] + [len(outputs)]
        for (key, start), end in zip(rest, bounds[1:], strict=True):
            holdings[key] = [(outpoint(tx.txid, i), outputs[i]) for i in range(start, end)]
        trades.append(Trade(oid, bid, tuple(ms), pay, tx, tuple(signers)))
    return trades


def _home(p: Posted, kind: AssetKind) -> bytes:
    """The address an order's remainders of ``kind`` go back to: that of the asset it posted."""
    return next(o.owner for o in p.outputs if o.asset.kind == kind)


def verify_trades(
    trades: Sequence[Trade],
    posted: Posted,
    coins: Mapping[bytes, Output],
    mine: set[bytes],
    slot_seconds: int,
) -> None:
    """Check, as the owner of order ``posted``, that ``trades`` do exactly what its matches say.

    ``coins`` are the order's unspent outputs (its posted assets); ``mine`` the addresses it controls.
    For every trade: each match is of this order, inside its interval and power, at a price within its limit;
    the order gives exactly the matched power per slot of its energy asset and receives the same of the other
    (an offer gives EPA and receives ECA; a bid the reverse), and money moves by exactly the payment. Raises
    :class:`SettlementError` otherwise.
    """
    order, oid = posted.order, posted.order_id
    known = dict(coins)
    for tr in trades:
        for m in tr.matches:
            if oid not in (m.offer_id, m.bid_id) or (tr.offer_id, tr.bid_id) != (m.offer_id, m.bid_id):
                raise SettlementError(f"a match of trade {tr.offer_id}/{tr.bid_id} is not this order's")
            if not order.start_slot <= m.slot < order.end_slot or not 0 < m.power_w <= order.power_w:
                raise SettlementError(f"match in slot {m.slot} of {m.power_w} W is outside the order")
            beyond = m.price < order.limit_price if order.side is Side.OFFER else m.price > order.limit_price
            if beyond:
                raise SettlementError(f"price {m.price} is beyond the limit {order.limit_price}")
        flows: dict[AssetKind, dict[int, int]] = {k: defaultdict(int) for k in AssetKind}
        for op in tr.tx.inputs:
            if op in known:
                a = known.pop(op).asset
                _add(flows[a.kind], a, +1)
        for i, out in enumerate(tr.tx.outputs):
            if out.owner in mine:
                _add(flows[out.asset.kind], out.asset, -1)
                known[outpoint(tr.tx.txid, i)] = out
        traded = profile(Asset(AssetKind.EPA, m.power_w, m.slot, m.slot + 1) for m in tr.matches)
        pay = _pay(tr.matches, slot_seconds)
        sign = 1 if order.side is Side.OFFER else -1
        want = {
            AssetKind.EPA: {t: sign * w for t, w in traded.items()},
            AssetKind.ECA: {t: -sign * w for t, w in traded.items()},
            AssetKind.FA: {0: -sign * pay} if pay else {},
        }
        for kind in AssetKind:
            got = {t: w for t, w in flows[kind].items() if w}
            if got != want[kind]:
                raise SettlementError(
                    f"trade {tr.offer_id}/{tr.bid_id} moves {kind.name} {got}, expected {want[kind]}"
                )


def _add(flow: dict[int, int], a: Asset, sign: int) -> None:
    if a.kind == AssetKind.FA:
        flow[0] += sign * a.amount
    else:
        for t in a.slots:
            flow[t] += sign * a.amount


def deposit(wallet: Wallet, coins: Iterable[bytes], to: bytes, chain_id: bytes) -> Transfer:
    """A signed transfer of ``coins`` (outpoints in ``wallet``), unchanged, to the meter address ``to``."""
    ops = tuple(coins)
    tx = Transfer(ops, tuple(Output(wallet.coins[op].asset, to) for op in ops))
    return wallet.sign(tx, chain_id)


# -------------------------------------------------------------------------------------------- settlement
@dataclass
class Settlement:
    """The trades of one clearing round while the parties sign them."""

    trades: list[Trade]
    posted: dict[str, Posted]
    chain_id: bytes
    witnesses: dict[tuple[int, int], Witness] = field(default_factory=dict)

    def for_order(self, order_id: str) -> list[tuple[int, Trade]]:
        return [(i, t) for i, t in enumerate(self.trades) if order_id in (t.offer_id, t.bid_id)]

    def owner_of(self, trade: int, index: int) -> bytes:
        """The address that must sign input ``index`` of trade ``trade``."""
        op = self.trades[trade].tx.inputs[index]
        for p in self.posted.values():
            if op in p.order.assets:
                return p.outputs[p.order.assets.index(op)].owner
        for tr in self.trades[:trade]:
            for i, out in enumerate(tr.tx.outputs):
                if outpoint(tr.tx.txid, i) == op:
                    return out.owner
        raise SettlementError(f"input {index} of trade {trade} spends nothing known")

    def add(self, order_id: str, trade: int, index: int, pubkey: bytes, signature: bytes) -> None:
        """Accept one party's signature of one input after checking it."""
        if not 0 <= trade < len(self.trades) or not 0 <= index < len(self.trades[trade].tx.inputs):
            raise BidStoreError("bid-bad-witness", f"no input {index} in trade {trade}")
        tr = self.trades[trade]
        if tr.signers[index] != order_id:
            raise BidStoreError(
                "bid-bad-witness", f"input {index} of trade {trade} is not order {order_id}'s"
            )
        if crypto.address_of(pubkey) != self.owner_of(trade, index):
            raise BidStoreError("bid-bad-witness", "the key does not own the input")
        if not crypto.verify(pubkey, tr.tx.sighash(self.chain_id), signature):
            raise BidStoreError("bid-bad-witness", "the signature of the input is invalid")
        self.witnesses[(trade, index)] = Witness(pubkey, signature)

    def signed(self) -> list[Transfer]:
        """Every fully signed trade whose inputs do not depend on an unsigned trade, in order."""
        done, made = [], set()
        for i, tr in enumerate(self.trades):
            wits = [self.witnesses.get((i, j)) for j in range(len(tr.tx.inputs))]
            earlier = {t.tx.txid for t in self.trades[:i]}
            deps = {op[:32] for op in tr.tx.inputs} & earlier
            if all(wits) and deps <= made:
                done.append(Transfer(tr.tx.inputs, tr.tx.outputs, tuple(wits)))
                made.add(tr.tx.txid)
        return done


class MarketOperator:
    """The bid store's node: the book, the clearing at each close, signature collection and submission.

    Adds the operations ``trades`` (``order_id`` → the trades to sign with their matches), ``sign``
    (``order_id``, ``witnesses``: ``[trade, input, pubkey, signature]``) and ``submit`` (a transaction, hex:
    forwarded to the chain, so prosumers never reach the coordinator under their own network identity).
    """

    def __init__(
        self,
        node: OnionNode,
        chain: Chain,
        now: Callable[[], int],
        mechanism: str = "lp",
        feeders: Mapping[str, Feeder] | None = None,
    ) -> None:
        self.chain = chain
        self.store = BidStore(chain)
        self.service = BidStoreService(self.store, now)
        self.now = now
        self.mechanism = mechanism
        self.feeders = feeders
        self.settlement: Settlement | None = None
        self.unmatched: list[Posted] = []
        self.service.register("trades", self._trades)
        self.service.register("sign", self._sign)
        self.service.register("submit", self._submit)
        node.serve(self.service.handle)

    def close(self) -> Settlement:
        """Clear the open book; matched orders leave it for settlement, unmatched ones stay listed."""
        posted = {p.order_id: p for p in self.store.open_orders(self.now())}
        result = clear(
            [p.order.market_order() for p in posted.values()],
            self.feeders,
            self.mechanism,
            self.store.slot_seconds,
        )
        trades = build_trades(posted, result.matches, self.store.slot_seconds)
        matched = {t.offer_id for t in trades} | {t.bid_id for t in trades}
        for oid in matched:
            self.store.remove(oid)
        self.unmatched = [p for oid, p in posted.items() if oid not in matched]
        self.settlement = Settlement(trades, {oid: posted[oid] for oid in matched}, self.chain.chain_id)
        return self.settlement

    def submit_signed(self) -> list[Transfer]:
        """Submit every completely signed trade of the current settlement to the chain."""
        txs = self.settlement.signed() if self.settlement else []
        for tx in txs:
            self.chain.submit(tx)
        return txs

    async def _trades(self, request: dict) -> dict:
        oid = request["order_id"]
        s = self.settlement
        if s is None or oid not in s.posted:
            return {"trades": []}
        return {
            "trades": [
                {
                    "index": i,
                    "tx": t.tx.encode().hex(),
                    "offer_id": t.offer_id,
                    "bid_id": t.bid_id,
                    "matches": [[m.slot, m.power_w, m.price] for m in t.matches],
                }
                for i, t in s.for_order(oid)
            ]
        }

    async def _sign(self, request: dict) -> dict:
        if self.settlement is None:
            raise BidStoreError("bid-no-settlement", "no clearing round is being settled")
        for trade, index, pk, sig in request["witnesses"]:
            self.settlement.add(request["order_id"], trade, index, bytes.fromhex(pk), bytes.fromhex(sig))
        return {"signed": len(request["witnesses"])}

    async def _submit(self, request: dict) -> dict:
        try:
            tx = decode_transaction(bytes.fromhex(request["tx"]))
            return {"txid": self.chain.submit(tx).hex()}
        except (Reject, ValueError) as e:
            raise BidStoreError("bid-bad-transaction", str(e)) from None


# ---------------------------------------------------------------------------------------------- prosumer
@dataclass(frozen=True)
class Intent:
    """What a prosumer wants in a round: ``side`` (None: no trade, cover only), ``units``, ``limit_price``."""

    side: Side | None = None
    units: int = 0
    limit_price: int = 0


@dataclass
class OrderState:
    """A posted order: its keys, the addresses it controls, and the circuit it talks to the store on."""

    order: AnonOrder
    keys: tuple[KeyPair, ...]
    addresses: set[bytes]
    client: BidStoreClient


@dataclass
class Prosumer:
    """A prosumer with its smart meter, wallet and onion node (the node is also the meter's relay)."""

    meter: SmartMeter
    wallet: Wallet
    node: OnionNode
    feeder: str = "F0"
    mixed: dict[bytes, MixOutcome] = field(default_factory=dict)
    orders: dict[str, OrderState] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.meter.meter_id

    def extract(self, units: Mapping[Asset, int], slot: int) -> Transaction:
        """The meter's signed issue of ``units[d]`` coins of each denomination ``d`` to fresh addresses."""
        assets = [(d, self.wallet.new_address()) for d, n in units.items() for _ in range(n)]
        return self.meter.issue(assets, slot)

    async def mix(self, board: str, coins: Iterable[bytes], timeout: float) -> list[MixError]:
        """Mix each of ``coins`` (each through its own circuit); returns the failures."""

        async def one(op: bytes) -> MixError | None:
            out = self.wallet.coins[op]
            p = Participant(self.wallet.keys[out.owner], op, self.meter.chain_id, self.wallet.new_address)
            try:
                self.mixed[op] = await mix_coin(self.node, board, p, out.asset, timeout)
            except MixError as e:
                return e
            return None

        return [e for e in await asyncio.gather(*(one(op) for op in coins)) if e is not None]

    async def post(self, store: str, orders: Sequence[tuple[AnonOrder, tuple[KeyPair, ...]]]) -> list[str]:
        """Post each order through its own fresh circuit (so the store cannot group them).

        The circuit stays open for the order's settlement and is closed by :meth:`forget`.
        """
        ids = []
        for order, keys in orders:
            client = BidStoreClient(await self.node.open_circuit(store))
            oid = await client.post(order, keys)
            self.orders[oid] = OrderState(order, keys, {k.address for k in keys} | {order.pay_to}, client)
            ids.append(oid)
        return ids

    async def sign_trades(self, slot_seconds: int) -> int:
        """Fetch, verify and sign the trades of every order (each on its own circuit); returns inputs signed.

        An order whose trades do not match what it asked for (:func:`verify_trades`) signs nothing.
        """
        signed = await asyncio.gather(
            *(self._sign_order(oid, st, slot_seconds) for oid, st in self.orders.items())
        )
        return sum(signed)

    async def _sign_order(self, oid: str, st: OrderState, slot_seconds: int) -> int:
        rows = (await st.client.call("trades", order_id=oid))["trades"]
        if not rows:
            return 0
        trades = [
            Trade(
                r["offer_id"],
                r["bid_id"],
                tuple(Match(r["offer_id"], r["bid_id"], *m) for m in r["matches"]),
                0,
                decode_transaction(bytes.fromhex(r["tx"])),
                (),
            )
            for r in rows
        ]
        coins = {op: self.wallet.coins[op] for op in st.order.assets}
        try:
            verify_trades(
                trades, Posted(st.order, tuple(coins.values()), 0, 0), coins, st.addresses, slot_seconds
            )
        except SettlementError:
            return 0
        keys = {k.address: k for k in st.keys}
        witnesses = []
        for r, tr in zip(rows, trades, strict=True):
            msg = tr.tx.sighash(self.meter.chain_id)
            for j, op in enumerate(tr.tx.inputs):
                if op in coins:
                    key = keys[coins[op].owner]
                    witnesses.append([r["index"], j, key.public.hex(), key.sign(msg).hex()])
            coins.update({outpoint(tr.tx.txid, i): o for i, o in enumerate(tr.tx.outputs) if o.owner in keys})
        await st.client.call("sign", order_id=oid, witnesses=witnesses)
        return len(witnesses)

    def deposits(self) -> list[Transfer]:
        """Everything back to the meter: per order all it holds, and each other coin on its own."""
        txs, done = [], set()
        for st in self.orders.values():
            ops = [op for op, o in self.wallet.coins.items() if o.owner in st.addresses]
            if ops:
                txs.append(deposit(self.wallet, ops, self.meter.deposit_address(), self.meter.chain_id))
                done.update(ops)
        for op in self.wallet.coins:
            if op not in done:
                txs.append(deposit(self.wallet, [op], self.meter.deposit_address(), self.meter.chain_id))
        return txs

    async def forget(self) -> None:
        """End the round: close the orders' circuits and drop their state."""
        for st in self.orders.values():
            await st.client.circuit.close()
        self.orders.clear()
        self.mixed.clear()


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
    """

    START_TIME = 1_767_225_600
    SLOT_SECONDS = 900

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
    ) -> Microgrid:
        g = cls()
        g.unit_w, g.slots, g.price_cap, g.prices, g.symmetric = unit_w, slots, price_cap, prices, symmetric
        g.rng = random.Random(seed)
        g.board_silence = board_silence
        g.network = network or InProcessNetwork()
        g.coordinator = KeyPair.from_secret("microgrid-coordinator")
        dso_key = KeyPair.from_secret("microgrid-dso")
        genesis = Genesis(
            "nan-microgrid", cls.SLOT_SECONDS, cls.START_TIME, dso_key.public, (g.coordinator.public,)
        )
        g.store = SqliteStore(path)
        g.chain = Chain.create(g.store, genesis, g.coordinator, g.time)
        g.dso = DSO(dso_key, g.chain.chain_id)
        names = [f"MI{i + 1}" for i in range(prosumers)]
        meter_keys = {n: KeyPair.from_secret(f"microgrid-meter-{n}") for n in names}
        g.fa_unit = max_payment(unit_w, slots, price_cap, cls.SLOT_SECONDS)
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
            meter = SmartMeter(n, meter_keys[n], g.chain.chain_id, cls.SLOT_SECONDS, limits=lim)
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

    def _endpoint(self, name: str) -> Transport:
        return self.network.endpoint(name)

    @property
    def slot(self) -> int:
        return (self.time - self.START_TIME) // self.SLOT_SECONDS

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

        await asyncio.gather(*(post(n) for n in self._shuffled(self.prosumers)))

        # close → trades signed by both parties → committed; then every deposit
        start = time.perf_counter()
        settlement = self.operator.close()
        report.trades = settlement.trades
        await asyncio.gather(
            *(self.prosumers[n].sign_trades(self.SLOT_SECONDS) for n in self._shuffled(self.prosumers))
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
        self.time = self.START_TIME + (self.slot + 1) * self.SLOT_SECONDS

    async def close(self) -> None:
        for node in [*(p.node for p in self.prosumers.values()), self.store_node, self.board_node]:
            await node.close()
        self.store.close()
