"""A PETra prosumer: the selling and buying workflows and the privacy cover trade.

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

:class:`Prosumer` is the prosumer's side of steps 1–5: it talks to the mix board and to the bid store
(:class:`gridledger.petra.operator.MarketOperator`) through onion circuits; the trades it checks and signs are
built by :mod:`gridledger.petra.settlement`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from gridledger.ledger.assets import Asset, outpoint
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds import decode_transaction
from gridledger.ledger.kinds.transfer import Transfer
from gridledger.ledger.transactions import Transaction
from gridledger.market.orders import Match, Side
from gridledger.petra.bidstore import (
    AnonOrder,
    BidStoreClient,
    Posted,
)
from gridledger.petra.coinshuffle import MixError, MixOutcome, Participant, mix_coin
from gridledger.petra.meter import SmartMeter
from gridledger.petra.onion import (
    OnionNode,
)
from gridledger.petra.settlement import SettlementError, Trade, deposit, verify_trades
from gridledger.petra.wallet import Wallet


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

