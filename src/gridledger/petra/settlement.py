"""Settlement of PETra's trades on the chain: pure, deterministic, free of I/O.

At the close the bid store clears the book (:func:`gridledger.market.clear`) and builds one atomic ``Transfer`` per
matched (offer, bid) pair (:func:`build_trades`): EPA to the buyer, FA + ECA to the seller, which each party checks
(:func:`verify_trades`) and signs for its own inputs. A partial fill splits the coins in power and in time; what is
left goes back to the coin's own address. After trading, each party sends everything its order holds to a fresh
one-time address of its own meter (:func:`deposit`). :class:`Settlement` collects the parties' signatures.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from gridledger.ledger import crypto
from gridledger.ledger.assets import FA, Asset, AssetKind, Output, outpoint
from gridledger.ledger.kinds.transfer import Transfer, Witness
from gridledger.ledger.units import energy_cost
from gridledger.market.orders import Match, Side
from gridledger.petra.bidstore import (
    BidStoreError,
    Posted,
)
from gridledger.petra.wallet import Wallet


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
    return sum(energy_cost(m.power_w * slot_seconds, m.price) for m in matches)


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
