"""The exact price-level model of TRANSAX's trading problem (see :mod:`gridledger.market.lp`), on HiGHS.

It has one variable per (slot, feeder, side, price) segment and per (slot, feeder, price level), not per
(offer, bid, slot) triple, and encodes the pairwise price condition exactly. It is slower than the
aggregate model of :mod:`~gridledger.market.lp`, which hands it only the slots it cannot decompose.

* **segments** - the orders of one (slot, feeder, side, price) are one variable; within a segment the
  earlier input row is filled first;
* **levels** - every trade is booked at the buyer's limit price (a *level*). A feeder's offers feed a
  *supply chain* over the slot's levels: an offer enters at the first level not below its price and its
  power may rise to higher levels (carry ``a``), so every trade at level ``v`` uses offers priced
  ``<= v``: price compatibility is built in;
* at each node ``(f, v)`` of the chain the power leaves as internal trade ``I`` to ``f``'s bids at ``v``
  or as export ``X`` to the level-``v`` exchange, from which other feeders' bids import ``M``;
* feeder limits: ``sum_v I[f, v] <= internal``, ``|offers(f) - bids(f)| <= external``; and an import may
  not be served by the feeder's own exports (that would be internal trade):
  ``M[g, v] <= sum_{h != g} X[h, v]``, which is exactly the condition for the level-``v`` exchange to
  decompose into cross-feeder pairs.

The LP relaxation is solved first; if its vertex is fractional (common when feeder limits bind), the
same model is re-solved as a MILP to a zero optimality gap, so the integral answer has the optimal
welfare. The integral solution is then decomposed into pairwise matches: each feeder's chain first-in
first-out, and each level's exchange by an integral transportation LP (totally unimodular).
"""

from __future__ import annotations

import numpy as np

from gridledger.market.book import (
    UNLIMITED,
    OrderBook,
    Segments,
    Trades,
    as_bound,
    expand_ranges,
    pair_streams,
    pair_through_blocks,
)
from gridledger.market.highs import Model, to_int

_INF = np.inf


def clear_levels(book: OrderBook) -> Trades:
    """Clear ``book`` exactly to maximal welfare under the feeder limits; integral, price-compatible."""
    p = _Problem(book)
    if not len(p.seg.rows):
        return Trades.concat([])
    model, cols = p.model()
    values = to_int(model.solve(relax=True))
    if values is None:  # fractional vertex: the MILP
        model.integer = [np.full(len(c), True) for c in model.cost]
        values = to_int(model.solve())
    if values is None:
        raise RuntimeError("HiGHS returned a non-integral solution for an integer model")
    return p.decompose(*(values[c] for c in cols))


class _Problem:
    """Segments, levels and chain nodes of a book, and the level model built on them."""

    def __init__(self, book: OrderBook) -> None:
        self.book = book
        self.seg = seg = Segments.build(book)
        if not len(seg.rows):
            return
        n_feeders = len(book.feeder_names)
        self.offers, self.bids = np.flatnonzero(seg.seg_offer), np.flatnonzero(~seg.seg_offer)
        self.bid_feeder = seg.seg_feeder[self.bids]
        # levels: the distinct bid prices of each slot, sorted by (slot, price)
        width = int(seg.seg_price.max() - seg.seg_price.min() + 1)
        code = seg.seg_slot * width + seg.seg_price - seg.seg_price.min()
        level_code, self.bid_level = np.unique(code[self.bids], return_inverse=True)
        self.n_levels = len(level_code)
        level_end = np.searchsorted(level_code // width, np.arange(seg.n_slots), "right")
        entry = np.searchsorted(level_code, code[self.offers], "left")
        # chain nodes: per (slot, feeder) with offers, from its lowest entry level to the slot's last
        group = seg.seg_slot[self.offers] * n_feeders + seg.seg_feeder[self.offers]
        first = np.r_[True, group[1:] != group[:-1]]
        start, end = entry[first], level_end[seg.seg_slot[self.offers][first]]
        node_group, self.node_level = expand_ranges(start, end)
        self.node_feeder = seg.seg_feeder[self.offers][first][node_group]
        self.node_last = np.r_[node_group[1:] != node_group[:-1], True]
        offer_group = np.cumsum(first) - 1
        self.offer_node = (np.cumsum(end - start) - (end - start))[offer_group] + entry - start[offer_group]
        # the node of each bid segment's own feeder at its level (-1: its feeder sells nothing that low)
        node_code = self.node_level * n_feeders + self.node_feeder
        bid_code = self.bid_level * n_feeders + self.bid_feeder
        by_code = np.argsort(node_code, kind="stable")
        at = np.minimum(np.searchsorted(node_code[by_code], bid_code), len(node_code) - 1)
        found = node_code[by_code][at] == bid_code
        self.bid_node = np.where(found, by_code[at], -1)
        self.inner = np.flatnonzero(found)

    def model(self) -> tuple[Model, tuple[np.ndarray, ...]]:
        """The level model and the column indexes of (offer x, internal I, import M, export X)."""
        book, seg, bids, inner = self.book, self.seg, self.bids, self.inner
        n_feeders, n_nodes = len(book.feeder_names), len(self.node_level)
        cap, price = seg.seg_cap, seg.seg_price
        m = Model()
        x = m.add_cols(price[self.offers], 0, cap[self.offers])
        i = m.add_cols(-price[bids][inner], 0, cap[bids][inner])
        mm = m.add_cols(-price[bids], 0, cap[bids])
        xx = m.add_cols(np.zeros(n_nodes), 0, _INF)
        carry = np.flatnonzero(~self.node_last)
        a = m.add_cols(np.zeros(len(carry)), 0, _INF)
        # chain balance at every node: offers entering + carry from below = I + X + carry up
        m.add_rows(
            n_nodes,
            0,
            0,
            np.r_[self.offer_node, self.bid_node[inner], np.arange(n_nodes), carry, carry + 1],
            np.r_[x, i, xx, a, a],
            np.r_[np.ones(len(x)), -np.ones(len(i) + n_nodes + len(a)), np.ones(len(a))],
        )
        # a bid segment buys at most its power, internally and by import together
        m.add_rows(len(bids), -_INF, cap[bids], np.r_[inner, np.arange(len(bids))], np.r_[i, mm], 1.0)
        # every level's exchange balances
        m.add_rows(
            self.n_levels,
            0,
            0,
            np.r_[self.node_level, self.bid_level],
            np.r_[xx, mm],
            np.r_[np.ones(n_nodes), -np.ones(len(bids))],
        )
        # imports of g at level v come from other feeders' exports at v (needless without internal limit)
        limited = book.internal_cap < UNLIMITED
        own = inner[limited[self.bid_feeder[inner]]]
        by_level = np.argsort(self.node_level, kind="stable")
        levels_sorted = self.node_level[by_level]
        row, at = expand_ranges(
            np.searchsorted(levels_sorted, self.bid_level[own], "left"),
            np.searchsorted(levels_sorted, self.bid_level[own], "right"),
        )
        peer = by_level[at]
        other = self.node_feeder[peer] != self.bid_feeder[own][row]
        m.add_rows(
            len(own),
            -_INF,
            0,
            np.r_[np.arange(len(own)), row[other]],
            np.r_[mm[own], xx[peer[other]]],
            np.r_[np.ones(len(own)), -np.ones(other.sum())],
        )
        # feeder limits per (slot, feeder): internal trade, and net flow out of the feeder
        zones, zone_row = np.unique(seg.seg_slot * n_feeders + seg.seg_feeder, return_inverse=True)
        internal, external = (
            as_bound(book.internal_cap)[zones % n_feeders],
            as_bound(book.external_cap)[zones % n_feeders],
        )
        m.add_rows(len(zones), -_INF, internal, zone_row[bids][inner], i, 1.0)
        m.add_rows(
            len(zones),
            -external,
            external,
            np.r_[zone_row[self.offers], zone_row[bids][inner], zone_row[bids]],
            np.r_[x, i, mm],
            np.r_[np.ones(len(x)), -np.ones(len(i) + len(mm))],
        )
        return m, (x, i, mm, xx)

    def decompose(self, x, i, mm, xx) -> Trades:
        """Turn an integral solution into pairwise trades (see the module docstring)."""
        book, seg, bids, inner = self.book, self.seg, self.bids, self.inner
        n_feeders, n_nodes = len(book.feeder_names), len(self.node_level)
        seg_value = np.zeros(len(seg.seg_start), dtype=np.int64)
        seg_value[self.offers] = x
        seg_value[bids] = mm
        seg_value[bids[inner]] += i
        fill = seg.fill_rows(book, seg_value)
        offer_row = seg.seg_offer[seg.seg_of_row]
        sellers, buyers = np.flatnonzero(offer_row & (fill > 0)), np.flatnonzero(~offer_row & (fill > 0))
        # sellers: each feeder's chain first in, first out, against its outputs (I, then X, per node)
        node_internal = np.zeros(n_nodes, dtype=np.int64)
        node_internal[self.bid_node[inner]] = i
        s_row, s_kind, s_node, s_amount = _split(fill[sellers], node_internal, xx)
        s_row = sellers[s_row]
        # buyers: each bid segment's rows against its parts (I, then M)
        bid_internal = np.zeros(len(bids), dtype=np.int64)
        bid_internal[inner] = i
        b_row, b_kind, b_bid, b_amount = _split(fill[buyers], bid_internal, mm)
        b_row = buyers[b_row]
        # internal trades: node (f, v)'s I against bid segment (f, v)'s I
        s_in = np.flatnonzero(s_kind == 0)
        s_in = s_in[np.argsort(s_node[s_in], kind="stable")]
        b_in = np.flatnonzero(b_kind == 0)
        b_in = b_in[np.argsort(self.bid_node[b_bid[b_in]], kind="stable")]
        p, q, amount = pair_streams(s_amount[s_in], b_amount[b_in])
        trades = [self._trades(s_row[s_in[p]], b_row[b_in[q]], amount)]
        # cross trades: per level, a transportation of exports X[f] to imports M[g], f != g
        exporters, importers, flow = self._exchange(xx, mm)
        s_key = self.node_level * n_feeders + self.node_feeder
        b_key = self.bid_level * n_feeders + self.bid_feeder
        s_ex = np.flatnonzero(s_kind == 1)
        s_ex = s_ex[np.argsort(s_key[s_node[s_ex]], kind="stable")]
        b_ex = np.flatnonzero(b_kind == 1)
        b_ex = b_ex[np.argsort(b_key[b_bid[b_ex]], kind="stable")]
        p, q, amount = pair_through_blocks(
            s_amount[s_ex],
            s_key[s_node[s_ex]],
            b_amount[b_ex],
            b_key[b_bid[b_ex]],
            flow,
            s_key[exporters],
            b_key[importers],
        )
        trades.append(self._trades(s_row[s_ex[p]], b_row[b_ex[q]], amount))
        return Trades.concat(trades)

    def _exchange(self, xx: np.ndarray, mm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Integral cross-feeder flows per level: (exporting node, importing bid segment, amount).

        A transportation LP per level without same-feeder arcs (for feeders with an internal limit);
        the model's ``M[g, v] <= sum_{h != g} X[h, v]`` makes it feasible, and total unimodularity makes
        its simplex vertex integral.
        """
        exporters, importers = np.flatnonzero(xx > 0), np.flatnonzero(mm > 0)
        by_level = np.argsort(self.bid_level[importers], kind="stable")
        levels_sorted = self.bid_level[importers][by_level]
        e, at = expand_ranges(
            np.searchsorted(levels_sorted, self.node_level[exporters], "left"),
            np.searchsorted(levels_sorted, self.node_level[exporters], "right"),
        )
        k = by_level[at]
        f, g = self.node_feeder[exporters[e]], self.bid_feeder[importers[k]]
        keep = (f != g) | (self.book.internal_cap[f] >= UNLIMITED)
        e, k = e[keep], k[keep]
        if not len(e):
            return (np.zeros(0, dtype=np.int64),) * 3
        model = Model()
        z = model.add_cols(np.zeros(len(e)), 0, _INF)
        model.add_rows(len(exporters), xx[exporters], xx[exporters], e, z, 1.0)
        model.add_rows(len(importers), mm[importers], mm[importers], k, z, 1.0)
        flow = to_int(model.solve())
        if flow is None:
            raise RuntimeError("the level exchange LP returned a non-integral vertex")
        used = flow > 0
        return exporters[e[used]], importers[k[used]], flow[used]

    def _trades(self, seller_rows, buyer_rows, amount) -> Trades:
        seller, buyer = self.seg.rows[seller_rows], self.seg.rows[buyer_rows]
        order = self.book.row_order
        return Trades(order[seller], order[buyer], self.book.row_slot[seller], amount)


def _split(fill: np.ndarray, first: np.ndarray, second: np.ndarray):
    """Lay rows (``fill``) against per-owner outputs ``first`` then ``second``; returns for each piece
    its row, kind (0: first, 1: second), owner and amount."""
    amount = np.stack([first, second], axis=1).ravel()
    kind = np.tile([0, 1], len(first))
    owner = np.repeat(np.arange(len(first)), 2)
    keep = amount > 0
    row, part, piece = pair_streams(fill, amount[keep])
    return row, kind[keep][part], owner[keep][part], piece
