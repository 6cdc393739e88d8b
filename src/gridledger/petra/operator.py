"""The bid store's node in PETra: the book, the clearing at each close, signature collection and submission."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from gridledger.chain import Chain
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds import decode_transaction
from gridledger.ledger.kinds.transfer import Transfer
from gridledger.market.clearing import clear
from gridledger.market.orders import Feeder
from gridledger.petra.bidstore import (
    NOT_ACTIVE,
    BidStore,
    BidStoreError,
    BidStoreService,
    Posted,
)
from gridledger.petra.onion import (
    OnionNode,
)
from gridledger.petra.settlement import Settlement, build_trades


class MarketOperator:
    """The bid store's node: the book, the clearing at each close, signature collection and submission.

    Adds the operations ``trades`` (``order_id`` → the trades to sign with their matches), ``sign``
    (``order_id``, ``witnesses``: ``[trade, input, pubkey, signature]``) and ``submit`` (a transaction, hex:
    forwarded to the chain, so prosumers never reach the coordinator under their own network identity).

    ``active``: whether this store is the market's active one now (a market with a standby store decides it with a
    lease; default: always). A store that is not refuses orders (:data:`~gridledger.petra.bidstore.NOT_ACTIVE`),
    and neither clears (:meth:`close`) nor submits trades (:meth:`submit_signed`, :meth:`check_active`); it still
    forwards ``submit`` (a prosumer's deposit needs no lease: the ledger alone decides whether a coin may move).
    """

    def __init__(
        self,
        node: OnionNode,
        chain: Chain,
        now: Callable[[], int],
        mechanism: str = "lp",
        feeders: Mapping[str, Feeder] | None = None,
        active: Callable[[], bool] | None = None,
    ) -> None:
        self.chain = chain
        self.store = BidStore(chain)
        self.service = BidStoreService(self.store, now, active)
        self.now = now
        self.mechanism = mechanism
        self.feeders = feeders
        self.settlement: Settlement | None = None
        self.unmatched: list[Posted] = []
        self.service.register("trades", self._trades)
        self.service.register("sign", self._sign)
        self.service.register("submit", self._submit, passive=True)
        node.serve(self.service.handle)

    def check_active(self, what: str) -> None:
        """Raise :data:`~gridledger.petra.bidstore.NOT_ACTIVE` unless this store is the active one now."""
        if not self.service.active():
            raise BidStoreError(NOT_ACTIVE, f"this bid store is not the active one: it does not {what}")

    def close(self) -> Settlement:
        """Clear the open book; matched orders leave it for settlement, unmatched ones stay listed. Only the active
        store clears (else :data:`~gridledger.petra.bidstore.NOT_ACTIVE`, the book untouched)."""
        self.check_active("clear the book")
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
        """Submit every completely signed trade of the current settlement to the chain (the active store only)."""
        self.check_active("submit trades")
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

