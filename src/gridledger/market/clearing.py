"""Market clearing for one or many slots: one interface, two mechanisms, and a checker of results.

``clear(orders, feeders, mechanism)`` runs the double auction (:mod:`~gridledger.market.auction`) or the
welfare-maximizing TRANSAX LP (:mod:`~gridledger.market.lp`), prices the matches pay-as-clear
(:mod:`~gridledger.market.pricing`) and returns the matches with their welfare. ``verify_matches``
re-checks any set of matches against the orders and feeder limits (as a validator would) and returns
its surplus. Pure functions over plain data: no ledger, no I/O.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property

import numpy as np
import pandas as pd

from gridledger.ledger.units import DEFAULT_SLOT_SECONDS, WS_PER_KWH
from gridledger.market.auction import clear_auction
from gridledger.market.book import OrderBook, Trades
from gridledger.market.lp import clear_lp
from gridledger.market.orders import Feeder, MarketInputError, Match, Order, Side
from gridledger.market.pricing import pay_as_clear

MECHANISMS = {"auction": clear_auction, "lp": clear_lp}


def welfare_of(surplus: int, slot_seconds: int) -> Fraction:
    """Welfare in minor money units of a surplus in (minor units / kWh) x W summed over slots."""
    return Fraction(surplus * slot_seconds, WS_PER_KWH)


@dataclass(frozen=True)
class ClearingResult:
    """Matches of one clearing, as parallel arrays, with their surplus.

    ``surplus`` is ``sum((bid limit - offer limit) * power_w)`` over matches, in
    (minor units / kWh) x W per slot: an exact integer; ``welfare`` converts it to minor money units.
    """

    offer_id: np.ndarray
    bid_id: np.ndarray
    slot: np.ndarray
    power_w: np.ndarray
    price: np.ndarray
    surplus: int
    slot_seconds: int
    mechanism: str

    @property
    def welfare(self) -> Fraction:
        """Total gains from trade, minor money units (exact)."""
        return welfare_of(self.surplus, self.slot_seconds)

    @property
    def energy_wh(self) -> Fraction:
        """Total traded energy in Wh (exact)."""
        return Fraction(int(self.power_w.sum()) * self.slot_seconds, 3600)

    def table(self) -> pd.DataFrame:
        """The matches as a table with columns ``offer_id, bid_id, slot, power_w, price``."""
        return pd.DataFrame(
            {
                "offer_id": self.offer_id.astype(str),
                "bid_id": self.bid_id.astype(str),
                "slot": self.slot,
                "power_w": self.power_w,
                "price": self.price,
            }
        )

    @cached_property
    def matches(self) -> tuple[Match, ...]:
        """The matches as :class:`Match` objects, by slot, then by the input position of offer and bid."""
        columns = (self.offer_id, self.bid_id, self.slot.tolist(), self.power_w.tolist(), self.price.tolist())
        return tuple(Match(*row) for row in zip(*columns, strict=True))


def clear(
    orders: Sequence[Order],
    feeders: Mapping[str, Feeder] | None = None,
    mechanism: str = "lp",
    slot_seconds: int = DEFAULT_SLOT_SECONDS,
) -> ClearingResult:
    """Clear ``orders`` under the ``feeders`` limits (``None``: no limits) with ``mechanism``.

    Parameters
    ----------
    orders : sequence of Order
        Offers and bids; ids must be unique and, given ``feeders``, every feeder known.
    feeders : mapping of feeder name to Feeder, optional
        Per-slot internal and external capacities in W.
    mechanism : {"lp", "auction"}
        ``lp``: welfare-optimal (TRANSAX on HiGHS); ``auction``: greedy double auction.
    slot_seconds : int
        Slot length in seconds, used only to express welfare in money.
    """
    if mechanism not in MECHANISMS:
        raise MarketInputError(f"unknown mechanism {mechanism!r} (expected one of {', '.join(MECHANISMS)})")
    if not isinstance(slot_seconds, int) or isinstance(slot_seconds, bool) or slot_seconds <= 0:
        raise MarketInputError(f"slot length must be a positive integer number of seconds, got {slot_seconds!r}")
    book = OrderBook.build(orders, feeders)
    trades: Trades = MECHANISMS[mechanism](book)
    offer_limit, bid_limit = book.price[trades.offer], book.price[trades.bid]
    price = pay_as_clear(
        offer_limit, bid_limit, trades.slot, book.feeder[trades.offer], book.feeder[trades.bid]
    )
    ids = np.array(book.ids, dtype=object)
    return ClearingResult(
        offer_id=ids[trades.offer],
        bid_id=ids[trades.bid],
        slot=trades.slot,
        power_w=trades.power,
        price=price,
        surplus=sum(((bid_limit - offer_limit) * trades.power).tolist()),  # exact, beyond int64
        slot_seconds=slot_seconds,
        mechanism=mechanism,
    )


def verify_matches(
    orders: Sequence[Order], feeders: Mapping[str, Feeder] | None, matches: Sequence[Match]
) -> int:
    """Check ``matches`` against the orders and feeder limits; return their surplus.

    Raises :class:`MarketInputError` naming the first violated rule, with a short reject code:
    ``unknown-order``, ``wrong-side``, ``bad-power``, ``slot-outside-order``, ``price-below-offer``,
    ``price-above-bid``, ``bad-price``, ``order-overfilled``, ``unknown-feeder``, ``internal-capacity``,
    ``external-capacity``.
    """
    by_id = {o.id: o for o in orders}
    filled: dict[tuple[str, int], int] = defaultdict(int)
    internal: dict[tuple[str, int], int] = defaultdict(int)
    net: dict[tuple[str, int], int] = defaultdict(int)
    surplus = 0
    for n, m in enumerate(matches):
        where = f"match {n} ({m.offer_id!r} -> {m.bid_id!r}, slot {m.slot})"
        for ident, side in ((m.offer_id, Side.OFFER), (m.bid_id, Side.BID)):
            if ident not in by_id:
                raise MarketInputError(f"{where}: no order {ident!r} [unknown-order]")
            if by_id[ident].side is not side:
                raise MarketInputError(f"{where}: {ident!r} is not an {side} [wrong-side]")
        offer, bid = by_id[m.offer_id], by_id[m.bid_id]
        if not isinstance(m.power_w, int) or m.power_w <= 0:
            raise MarketInputError(f"{where}: power_w must be a positive integer [bad-power]")
        if not isinstance(m.price, int):
            raise MarketInputError(f"{where}: price must be an integer [bad-price]")
        for o in (offer, bid):
            if not o.start_slot <= m.slot < o.end_slot:
                raise MarketInputError(f"{where}: slot outside order {o.id!r} [slot-outside-order]")
            filled[o.id, m.slot] += m.power_w
            if filled[o.id, m.slot] > o.power_w:
                raise MarketInputError(
                    f"{where}: order {o.id!r} filled beyond {o.power_w} W [order-overfilled]"
                )
        if m.price < offer.limit_price:
            raise MarketInputError(f"{where}: price {m.price} below the offer's limit [price-below-offer]")
        if m.price > bid.limit_price:
            raise MarketInputError(f"{where}: price {m.price} above the bid's limit [price-above-bid]")
        if offer.feeder == bid.feeder:
            internal[offer.feeder, m.slot] += m.power_w
        else:
            net[offer.feeder, m.slot] += m.power_w
            net[bid.feeder, m.slot] -= m.power_w
        surplus += (bid.limit_price - offer.limit_price) * m.power_w
    if feeders is None:
        return surplus
    for (name, slot), power in internal.items():
        if power > _feeder(feeders, name).internal_capacity_w:
            raise MarketInputError(
                f"feeder {name!r}, slot {slot}: {power} W traded inside [internal-capacity]"
            )
    for (name, slot), power in net.items():
        if abs(power) > _feeder(feeders, name).external_capacity_w:
            raise MarketInputError(f"feeder {name!r}, slot {slot}: net flow {power} W [external-capacity]")
    return surplus


def _feeder(feeders: Mapping[str, Feeder], name: str) -> Feeder:
    if name not in feeders:
        raise MarketInputError(f"unknown feeder {name!r} [unknown-feeder]")
    return feeders[name]
