"""Welfare-maximizing clearing over time slots with feeder limits (TRANSAX, Laszka et al. 2018), on HiGHS.

The problem is TRANSAX's trading problem with welfare as the objective: choose integral trades
``q[s, b, t]`` (W) between offers ``s`` and bids ``b`` in slots ``t`` both cover, only between
price-compatible orders (``limit_price[s] <= limit_price[b]``), to maximize
``sum (limit_price[b] - limit_price[s]) * q`` subject to each order's power in each slot and, per feeder
``f`` and slot: trades between prosumers of ``f`` sum to at most ``internal_capacity_w``, and
``|sold by f - bought by f| <= external_capacity_w``. Orders may be filled slot by slot, so the slots
are independent problems; they are solved together.

Fast path (no variable per (offer, bid, slot) triple):

1. **Aggregate LP.** The orders of one (slot, feeder, side, price) form one segment variable; per slot
   and feeder the sold power ``S`` and bought power ``D`` (integer variables); per slot a flow
   ``y[f, g]`` from sellers in ``f`` to buyers in ``g``: ``sum_g y[f, g] = S[f]``,
   ``sum_f y[f, g] = D[g]``, ``y[f, f] <= internal``, ``-external <= S[f] - D[f] <= external``.
   Orders that meet no counterpart in their slot are left out. Its LP relaxation is solved; if the
   vertex has fractional ``S`` or ``D`` (possible when feeder limits bind) the MILP is solved.
2. **Merit order.** From integral ``S``, ``D`` each feeder fills its cheapest offers and dearest bids
   (ties: earlier input row), which is integral and optimal for those totals.
3. **Decomposition.** Each feeder trades ``I = min(S, D, internal)`` inside: its dearest accepted
   offers with its cheapest accepted bids (checked pairwise compatible). The rest - its cheapest offers
   and dearest bids - trades across feeders on blocks ``f -> g`` (``f != g``) whose every offer is
   priced at most every bid; an integral flow routing it all (a transportation LP, totally unimodular)
   is split into pairs by the north-west corner rule.

The aggregate model omits the pairwise price condition, so it is a relaxation of the problem: a slot
decomposed in step 3 is solved optimally. A slot that step 3 cannot decompose (a feeder whose
internal capacity forces it to export and import at once at prices no partner can meet) is re-solved
exactly with the price-level model of :mod:`gridledger.market.price_levels`. Every MILP is solved to a zero
optimality gap, so the integral result has the optimal welfare of the integral problem.
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
from gridledger.market.price_levels import clear_levels

_INF = np.inf


def clear_lp(book: OrderBook) -> Trades:
    """Clear ``book`` to maximal welfare under the feeder limits; integral, price-compatible trades."""
    seg = Segments.build(book)
    if not len(seg.rows):
        return Trades.concat([])
    sold, bought = _feeder_totals(book, seg)
    fill = _merit_fill(book, seg, sold, bought)
    trades, failed = _decompose(book, seg, fill, sold, bought)
    # one small level model per slot: HiGHS takes far longer on one model of many slots
    trades += [clear_levels(book.only_slot(slot)) for slot in np.unique(book.row_slot)[failed]]
    return Trades.concat(trades)


def _feeder_totals(book: OrderBook, seg: Segments) -> tuple[np.ndarray, np.ndarray]:
    """Step 1: integral sold ``S`` and bought ``D`` power per zone ``slot * n_feeders + feeder``."""
    n_feeders = len(book.feeder_names)
    seg_zone = seg.seg_slot * n_feeders + seg.seg_feeder
    s_keys, d_keys = np.unique(seg_zone[seg.seg_offer]), np.unique(seg_zone[~seg.seg_offer])
    pair_s, pair_d = _same_slot_pairs(s_keys // n_feeders, d_keys // n_feeders)
    pair_f, pair_g = s_keys[pair_s] % n_feeders, d_keys[pair_d] % n_feeders
    model = Model()
    x = model.add_cols(np.where(seg.seg_offer, seg.seg_price, -seg.seg_price), 0, seg.seg_cap)
    s_var = model.add_cols(np.zeros(len(s_keys)), 0, _INF, integer=True)
    d_var = model.add_cols(np.zeros(len(d_keys)), 0, _INF, integer=True)
    y = model.add_cols(
        np.zeros(len(pair_s)), 0, np.where(pair_f == pair_g, as_bound(book.internal_cap)[pair_f], _INF)
    )
    for keys, var, side, end in (
        (s_keys, s_var, seg.seg_offer, pair_s),
        (d_keys, d_var, ~seg.seg_offer, pair_d),
    ):
        count, member = len(keys), np.searchsorted(keys, seg_zone[side])
        model.add_rows(
            count,
            0,
            0,
            np.r_[np.arange(count), member],
            np.r_[var, x[side]],
            np.r_[np.ones(count), -np.ones(len(member))],
        )
        model.add_rows(
            count, 0, 0, np.r_[end, np.arange(count)], np.r_[y, var], np.r_[np.ones(len(y)), -np.ones(count)]
        )
    zones = np.union1d(s_keys, d_keys)
    zones = zones[book.external_cap[zones % n_feeders] < UNLIMITED]
    s_in, d_in = np.isin(s_keys, zones), np.isin(d_keys, zones)
    limit = book.external_cap[zones % n_feeders].astype(np.float64)
    model.add_rows(
        len(zones),
        -limit,
        limit,
        np.r_[np.searchsorted(zones, s_keys[s_in]), np.searchsorted(zones, d_keys[d_in])],
        np.r_[s_var[s_in], d_var[d_in]],
        np.r_[np.ones(s_in.sum()), -np.ones(d_in.sum())],
    )
    solution = model.solve(relax=True)
    sold, bought = to_int(solution[s_var]), to_int(solution[d_var])
    if sold is None or bought is None:  # a fractional vertex: solve the MILP
        solution = model.solve()
        sold, bought = to_int(solution[s_var]), to_int(solution[d_var])
    if sold is None or bought is None:
        raise RuntimeError("HiGHS returned non-integral feeder totals for an integer model")
    dense_s = np.zeros(seg.n_slots * n_feeders, dtype=np.int64)
    dense_s[s_keys] = sold
    dense_d = np.zeros(seg.n_slots * n_feeders, dtype=np.int64)
    dense_d[d_keys] = bought
    return dense_s, dense_d


def _same_slot_pairs(s_slot: np.ndarray, d_slot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (i, j) with ``s_slot[i] == d_slot[j]`` (both sorted), ordered by (i, j)."""
    return expand_ranges(np.searchsorted(d_slot, s_slot, "left"), np.searchsorted(d_slot, s_slot, "right"))


def _group_before(amount: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Sum of ``amount`` over the earlier rows of the same (contiguous) group."""
    before = np.cumsum(amount) - amount
    start = np.r_[True, group[1:] != group[:-1]]
    return before - np.maximum.accumulate(np.where(start, before, 0))


def _merit_fill(book: OrderBook, seg: Segments, sold: np.ndarray, bought: np.ndarray) -> np.ndarray:
    """Step 2: accepted power per tradable row, each feeder's best orders first."""
    offer = seg.seg_offer[seg.seg_of_row]
    zone = seg.slot * len(book.feeder_names) + book.feeder[book.row_order[seg.rows]]
    power = book.row_power[seg.rows]
    before = _group_before(power, zone * 2 + ~offer)
    return np.clip(np.where(offer, sold[zone], bought[zone]) - before, 0, power)


def _decompose(book, seg, fill, sold, bought) -> tuple[list[Trades], np.ndarray]:
    """Step 3: pairwise trades of the decomposable slots, and a mask of the slots that are not."""
    n_feeders = len(book.feeder_names)
    accepted = np.flatnonzero(fill > 0)  # a feeder's accepted rows come first in its merit order
    rows, slot, fill = seg.rows[accepted], seg.slot[accepted], fill[accepted]
    order = book.row_order[rows]
    offer, price = book.is_offer[order], book.price[order]
    zone = slot * n_feeders + book.feeder[order]
    inside = np.minimum(np.minimum(sold, bought), np.tile(book.internal_cap, seg.n_slots))
    cross_total = np.where(offer, (sold - inside)[zone], (bought - inside)[zone])
    cross = np.clip(cross_total - _group_before(fill, zone * 2 + ~offer), 0, fill)
    internal = fill - cross
    failed = np.zeros(seg.n_slots, dtype=bool)

    # internal trades: a feeder's dearest accepted offers against its cheapest accepted bids
    s_in = np.flatnonzero(offer & (internal > 0))
    b_in = np.flatnonzero(~offer & (internal > 0))
    b_in = b_in[np.lexsort((price[b_in], zone[b_in]))]
    i, j, amount_in = pair_streams(internal[s_in], internal[b_in])
    s_in, b_in = s_in[i], b_in[j]
    failed[slot[s_in[price[s_in] > price[b_in]]]] = True

    # cross trades: blocks f -> g (f != g) where every crossing offer of f is priced <= every bid of g
    s_ex, b_ex = np.flatnonzero(offer & (cross > 0)), np.flatnonzero(~offer & (cross > 0))
    dearest = np.full(len(sold), np.iinfo(np.int64).min)
    np.maximum.at(dearest, zone[s_ex], price[s_ex])
    cheapest = np.full(len(sold), np.iinfo(np.int64).max)
    np.minimum.at(cheapest, zone[b_ex], price[b_ex])
    exporters = np.flatnonzero(sold - inside > 0)
    importers = np.flatnonzero(bought - inside > 0)
    e, m = _same_slot_pairs(exporters // n_feeders, importers // n_feeders)
    e, m = exporters[e], importers[m]
    allowed = (e != m) & (dearest[e] <= cheapest[m])
    e, m = e[allowed], m[allowed]
    flow = _max_flow(e, m, sold - inside, bought - inside)
    routed = np.zeros(seg.n_slots, dtype=np.int64)
    np.add.at(routed, e // n_feeders, flow)
    to_route = np.add.reduceat(sold - inside, np.arange(0, len(sold), n_feeders))
    failed |= routed != to_route

    ok_in = ~failed[slot[s_in]]
    trades = [_trades(book, rows[s_in[ok_in]], rows[b_in[ok_in]], amount_in[ok_in])]
    s_ex, b_ex = s_ex[~failed[slot[s_ex]]], b_ex[~failed[slot[b_ex]]]
    keep = (flow > 0) & ~failed[e // n_feeders]
    p, q, amount = pair_through_blocks(
        cross[s_ex], zone[s_ex], cross[b_ex], zone[b_ex], flow[keep], e[keep], m[keep]
    )
    trades.append(_trades(book, rows[s_ex[p]], rows[b_ex[q]], amount))
    return trades, failed


def _max_flow(e: np.ndarray, m: np.ndarray, supply: np.ndarray, demand: np.ndarray) -> np.ndarray:
    """Integral maximal flow on arcs ``e[k] -> m[k]`` within ``supply[e]`` and ``demand[m]``.

    A transportation LP: its constraint matrix is totally unimodular, so the simplex vertex is integral.
    """
    if not len(e):
        return np.zeros(0, dtype=np.int64)
    sources, e_row = np.unique(e, return_inverse=True)
    sinks, m_row = np.unique(m, return_inverse=True)
    model = Model()
    z = model.add_cols(-np.ones(len(e)), 0, _INF)
    model.add_rows(len(sources), -_INF, supply[sources], e_row, z, 1.0)
    model.add_rows(len(sinks), -_INF, demand[sinks], m_row, z, 1.0)
    flow = to_int(model.solve())
    if flow is None:
        raise RuntimeError("the transportation LP returned a non-integral vertex")
    return flow


def _trades(book: OrderBook, seller_rows, buyer_rows, amount) -> Trades:
    return Trades(book.row_order[seller_rows], book.row_order[buyer_rows], book.row_slot[seller_rows], amount)
