"""Per-slot double auction with feeder-capacity bookkeeping (greedy; pay-as-clear priced later).

In each slot the offers are taken in ascending and the bids in descending limit price (ties: earlier
input row first), and matched while the bid is at least the offer. With feeder limits every feeder
keeps its own queue of offers and of bids; each step matches, among the feeders' best offers and best
bids, the pair with the largest surplus ``bid - offer`` that the limits still allow (internal capacity
used inside a feeder; external capacity left for the net flow of both feeders), for as much power as
both orders and the limits allow (ties: lowest seller feeder, then buyer feeder, by name). Without
feeder limits this is the classic sorted merge of the double auction and is welfare-optimal. With
binding feeder limits the greedy is not welfare-optimal (:mod:`gridledger.market.lp` is).
"""

from __future__ import annotations

import numpy as np

from gridledger.market.book import OrderBook, Trades


def clear_auction(book: OrderBook) -> Trades:
    """Match ``book`` slot by slot with the greedy double auction; integral trades."""
    if not len(book.row_slot):
        return Trades.concat([])
    bounds = np.flatnonzero(np.r_[True, book.row_slot[1:] != book.row_slot[:-1], True])
    found: list[tuple[int, int, int, int]] = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        _clear_slot(book, lo, hi, found)
    if not found:
        return Trades.concat([])
    offer, bid, slot, power = np.array(found, dtype=np.int64).T
    return Trades.concat([Trades(offer, bid, slot, power)])


def _clear_slot(book: OrderBook, lo: int, hi: int, found: list[tuple[int, int, int, int]]) -> None:
    order = book.row_order[lo:hi]
    price, feeder = book.price[order], book.feeder[order]
    remaining = book.row_power[lo:hi].copy()
    slot = int(book.row_slot[lo])
    n_feeders = len(book.feeder_names)
    n_offers = int(book.is_offer[order].sum())
    feeders = np.arange(n_feeders)
    # rows of a slot are offers then bids, each grouped by feeder in merit order
    o_next = np.searchsorted(feeder[:n_offers], feeders, "left")
    o_end = np.searchsorted(feeder[:n_offers], feeders, "right")
    b_next = n_offers + np.searchsorted(feeder[n_offers:], feeders, "left")
    b_end = n_offers + np.searchsorted(feeder[n_offers:], feeders, "right")
    internal_left = book.internal_cap.copy()
    net_export = np.zeros(n_feeders, dtype=np.int64)
    diagonal = np.eye(n_feeders, dtype=bool)
    while True:
        has_o, has_b = o_next < o_end, b_next < b_end
        if not (has_o.any() and has_b.any()):
            return
        o_top, b_top = np.minimum(o_next, hi - lo - 1), np.minimum(b_next, hi - lo - 1)
        surplus = np.where(has_b, price[b_top], 0)[None, :] - np.where(has_o, price[o_top], 0)[:, None]
        qty = np.minimum(
            np.where(has_o, remaining[o_top], 0)[:, None], np.where(has_b, remaining[b_top], 0)[None, :]
        )
        room = np.minimum(
            (book.external_cap - net_export)[:, None], (book.external_cap + net_export)[None, :]
        )
        qty = np.minimum(qty, np.where(diagonal, internal_left[:, None], room))
        ok = (surplus >= 0) & (qty > 0)
        if not ok.any():
            return
        f, g = divmod(int(np.argmax(np.where(ok, surplus, np.iinfo(np.int64).min))), n_feeders)
        q, i, j = int(qty[f, g]), int(o_next[f]), int(b_next[g])
        found.append((int(order[i]), int(order[j]), slot, q))
        remaining[i] -= q
        remaining[j] -= q
        if f == g:
            internal_left[f] -= q
        else:
            net_export[f] += q
            net_export[g] -= q
        o_next[f] += remaining[i] == 0
        b_next[g] += remaining[j] == 0
