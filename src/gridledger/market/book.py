"""The order book as integer arrays: one row per (order, slot), in merit order.

Both mechanisms work on the same expansion of orders into slots. Rows are sorted by
``(slot, side, feeder, merit price, input position)``: offers by ascending limit price, bids by
descending limit price, ties by the order's position in the input (earlier first).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from operator import attrgetter

import numpy as np

from gridledger.market.orders import Feeder, MarketInputError, Order, Side

#: Capacity used for "no limit" (no feeders file): larger than any power sum of int64 orders.
UNLIMITED = np.iinfo(np.int64).max // 4


def as_bound(cap: np.ndarray) -> np.ndarray:
    """Capacities as solver bounds: float, ``UNLIMITED`` as ``inf``."""
    return np.where(cap >= UNLIMITED, np.inf, cap.astype(np.float64))


@dataclass(frozen=True)
class OrderBook:
    """Orders and feeders as arrays (all int64 unless noted).

    Per order: ``ids``, ``is_offer`` (bool), ``feeder`` (index into ``feeder_names``), ``price``.
    Per feeder: ``internal_cap``, ``external_cap`` in W (``UNLIMITED`` without a feeders file).
    Per (order, slot) row, merit-sorted: ``row_order`` (order index), ``row_slot``, ``row_power``.
    """

    ids: tuple[str, ...]
    is_offer: np.ndarray
    feeder: np.ndarray
    price: np.ndarray
    feeder_names: tuple[str, ...]
    internal_cap: np.ndarray
    external_cap: np.ndarray
    row_order: np.ndarray
    row_slot: np.ndarray
    row_power: np.ndarray

    def only_slot(self, slot: int) -> OrderBook:
        """The same book restricted to the rows of one slot."""
        keep = self.row_slot == slot
        return replace(
            self, row_order=self.row_order[keep], row_slot=self.row_slot[keep], row_power=self.row_power[keep]
        )

    @classmethod
    def build(cls, orders: Sequence[Order], feeders: Mapping[str, Feeder] | None) -> OrderBook:
        """Index ``orders``; reject duplicate ids and, given ``feeders``, unknown feeders."""
        for order in orders:
            if not isinstance(order, Order):
                raise MarketInputError(f"not an Order: {order!r}")
        ids = tuple(o.id for o in orders)
        if len(set(ids)) < len(ids):
            seen: set[str] = set()
            for ident in ids:
                if ident in seen:
                    raise MarketInputError(f"order {ident!r}: duplicate id")
                seen.add(ident)
        feeder_of = [o.feeder for o in orders]
        if feeders is None:
            names = tuple(sorted(set(feeder_of)))
            internal = external = np.full(len(names), UNLIMITED, dtype=np.int64)
        else:
            names = tuple(sorted(feeders))
            if not set(feeder_of) <= set(feeders):
                order = next(o for o in orders if o.feeder not in feeders)
                raise MarketInputError(f"order {order.id!r}: unknown feeder {order.feeder!r}")
            internal = np.array([feeders[n].internal_capacity_w for n in names], dtype=np.int64)
            external = np.array([feeders[n].external_capacity_w for n in names], dtype=np.int64)
        index = {name: i for i, name in enumerate(names)}
        n = len(orders)
        is_offer = np.fromiter((o.side is Side.OFFER for o in orders), bool, n)
        feeder = np.fromiter(map(index.__getitem__, feeder_of), np.int64, n)
        price, start, end, power = (
            np.fromiter(map(attrgetter(name), orders), np.int64, n)
            for name in ("limit_price", "start_slot", "end_slot", "power_w")
        )
        # merit order within (side, feeder) first, over orders; then a stable sort of the rows by slot
        by_merit = np.lexsort((np.arange(n), np.where(is_offer, price, -price), feeder, ~is_offer))
        by_merit = by_merit[power[by_merit] > 0]
        row_order, row_slot = expand_ranges(start[by_merit], end[by_merit])
        by_slot = np.argsort(row_slot, kind="stable")
        row_order, row_slot = by_merit[row_order[by_slot]], row_slot[by_slot]
        return cls(
            ids=ids,
            is_offer=is_offer,
            feeder=feeder,
            price=price,
            feeder_names=names,
            internal_cap=internal,
            external_cap=external,
            row_order=row_order,
            row_slot=row_slot,
            row_power=power[row_order],
        )


@dataclass(frozen=True)
class Trades:
    """Unpriced matches as int64 arrays: order indexes of the offer and the bid, slot, power in W."""

    offer: np.ndarray
    bid: np.ndarray
    slot: np.ndarray
    power: np.ndarray

    @classmethod
    def concat(cls, parts: Sequence[Trades]) -> Trades:
        """Join batches of trades: one entry per (slot, offer, bid), sorted by (slot, offer, bid)."""
        offer, bid, slot, power = (
            np.concatenate([getattr(p, f) for p in parts] or [np.zeros(0, np.int64)]).astype(np.int64)
            for f in ("offer", "bid", "slot", "power")
        )
        if not len(power):
            return cls(offer, bid, slot, power)
        perm = _lexsort_ints(bid, offer, slot)
        offer, bid, slot, power = offer[perm], bid[perm], slot[perm], power[perm]
        first = np.r_[True, (np.diff(offer) != 0) | (np.diff(bid) != 0) | (np.diff(slot) != 0)]
        start = np.flatnonzero(first)
        return cls(offer[start], bid[start], slot[start], np.add.reduceat(power, start))


def _lexsort_ints(*keys: np.ndarray) -> np.ndarray:
    """``np.lexsort(keys)`` (last key primary) for non-empty int64 keys, as one stable argsort of a packed
    key when the keys' ranges fit in int64 (several times faster than ``np.lexsort``)."""
    low = [int(k.min()) for k in keys]
    spans = [int(k.max()) - lo + 1 for k, lo in zip(keys, low, strict=True)]
    if np.prod(spans, dtype=object) >= 2**63:
        return np.lexsort(keys)
    packed, scale = np.zeros(len(keys[0]), dtype=np.int64), 1
    for key, lo, span in zip(keys, low, spans, strict=True):
        packed += (key - lo) * scale
        scale *= span
    return np.argsort(packed, kind="stable")


def pair_streams(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lay two sequences of positive amounts with equal totals side by side and cut at every boundary.

    Returns ``(i, j, amount)``: piece ``k`` takes ``amount[k]`` from ``a[i[k]]`` and ``b[j[k]]``.
    Used to decompose aggregate flows into pairwise matches (north-west corner rule).
    """
    ca, cb = np.cumsum(a), np.cumsum(b)
    if (ca[-1] if len(ca) else 0) != (cb[-1] if len(cb) else 0):
        raise RuntimeError("pair_streams: the two sequences have different totals")
    # both cumsums are sorted: a stable sort of the two runs is one linear merge (np.union1d hashes)
    ends = np.sort(np.concatenate([ca, cb]), kind="stable")
    ends = ends[np.r_[True, ends[1:] != ends[:-1]]] if len(ends) else ends
    starts = np.r_[0, ends][:-1].astype(np.int64)
    return np.searchsorted(ca, starts, "right"), np.searchsorted(cb, starts, "right"), ends - starts


def expand_ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All ``(k, v)`` with ``lo[k] <= v < hi[k]``, ordered by ``k`` then ``v``."""
    count = hi - lo
    owner = np.repeat(np.arange(len(lo)), count)
    return owner, lo[owner] + np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)


def pair_through_blocks(
    s_amount: np.ndarray,
    s_key: np.ndarray,
    b_amount: np.ndarray,
    b_key: np.ndarray,
    blk_amount: np.ndarray,
    blk_s_key: np.ndarray,
    blk_b_key: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pair seller pieces with buyer pieces along integral block flows ``s_key -> b_key``.

    Seller pieces must be sorted by ``s_key`` and sum, per key, to the blocks leaving it; likewise
    buyer pieces by ``b_key``. Returns ``(seller piece, buyer piece, amount)``.
    """
    by_s = np.lexsort((blk_b_key, blk_s_key))
    s_piece, s_block, s_part = pair_streams(s_amount, blk_amount[by_s])
    by_b = np.lexsort((blk_s_key, blk_b_key))
    b_piece, b_block, b_part = pair_streams(b_amount, blk_amount[by_b])
    rank = np.empty(len(by_s), dtype=np.int64)
    rank[by_s] = np.arange(len(by_s))
    regroup = np.argsort(rank[by_b[b_block]], kind="stable")
    i, j, amount = pair_streams(s_part, b_part[regroup])
    block = by_s[s_block[i]]
    if not (
        (block == by_b[b_block[regroup[j]]]).all()
        and (blk_s_key[block] == s_key[s_piece[i]]).all()
        and (blk_b_key[block] == b_key[b_piece[regroup[j]]]).all()
    ):
        raise RuntimeError("flow decomposition out of step: totals per key do not match the blocks")
    return s_piece[i], b_piece[regroup[j]], amount


@dataclass(frozen=True)
class Segments:
    """The tradable rows of a book grouped into segments of equal (slot, side, feeder, price).

    A row is tradable if its order can meet a counterpart in its slot (an offer not above the slot's
    dearest bid, a bid not below its cheapest offer). ``rows`` index the book's rows (merit order);
    ``slot`` is a compact slot index ``0..n_slots-1``; ``seg_*`` describe each segment.
    """

    rows: np.ndarray
    slot: np.ndarray
    n_slots: int
    seg_start: np.ndarray
    seg_of_row: np.ndarray
    seg_cap: np.ndarray
    seg_slot: np.ndarray
    seg_offer: np.ndarray
    seg_feeder: np.ndarray
    seg_price: np.ndarray

    @classmethod
    def build(cls, book: OrderBook) -> Segments:
        # rows are sorted by slot: a compact slot index counts the changes
        slot = np.r_[0, np.cumsum(np.diff(book.row_slot) != 0)][: len(book.row_slot)]
        n_slots = int(slot[-1]) + 1 if len(slot) else 0
        order = book.row_order
        offer, price = book.is_offer[order], book.price[order]
        max_bid = np.full(n_slots, np.iinfo(np.int64).min)
        np.maximum.at(max_bid, slot[~offer], price[~offer])
        min_offer = np.full(n_slots, np.iinfo(np.int64).max)
        np.minimum.at(min_offer, slot[offer], price[offer])
        rows = np.flatnonzero(np.where(offer, price <= max_bid[slot], price >= min_offer[slot]))
        key = (slot[rows], offer[rows], book.feeder[order[rows]], price[rows])
        first = np.zeros(len(rows), dtype=bool)
        first[:1] = True
        for column in key:
            first[1:] |= column[1:] != column[:-1]
        start = np.flatnonzero(first)
        cap = np.add.reduceat(book.row_power[rows], start) if len(rows) else np.zeros(0, dtype=np.int64)
        return cls(
            rows,
            slot[rows],
            n_slots,
            start,
            np.cumsum(first) - 1,
            cap,
            key[0][start],
            key[1][start],
            key[2][start],
            key[3][start],
        )

    def fill_rows(self, book: OrderBook, seg_value: np.ndarray) -> np.ndarray:
        """Spread each segment's accepted power over its rows, earlier input rows first."""
        power = book.row_power[self.rows]
        before = np.cumsum(power) - power
        before -= before[self.seg_start][self.seg_of_row]
        return np.clip(seg_value[self.seg_of_row] - before, 0, power)
