"""Per-slot double auction with feeder-capacity bookkeeping (greedy; pay-as-clear priced later).

In each slot the offers are taken in ascending and the bids in descending limit price (ties: earlier
input row first), and matched while the bid is at least the offer. With feeder limits every feeder
keeps its own queue of offers and of bids; each step matches, among the feeders' best offers and best
bids, the pair with the largest surplus ``bid - offer`` that the limits still allow (internal capacity
used inside a feeder; external capacity left for the net flow of both feeders), for as much power as
both orders and the limits allow (ties: lowest seller feeder, then buyer feeder, by name). Without
feeder limits this is the classic sorted merge of the double auction and is welfare-optimal. With
binding feeder limits the greedy is not welfare-optimal (:mod:`gridledger.market.lp` is).

Implementation: all slots advance together, one *run* per slot and iteration, on ``(slot, feeder)``
arrays. A run repeats the greedy's choice for as long as that choice provably cannot change: both
queues stay at the same limit price and the pair's capacity lasts. The choice can only change early if
the run could reopen capacity for a pair ranked above it (a cross-feeder trade that lowers the buyer
feeder's net import or the seller feeder's net export); then the run stops at the first order boundary,
exactly like one greedy step. Queue positions are cumulative power (W) along the merit-ordered rows;
the runs are cut into pairwise trades at the orders' boundaries once, at the end.
"""

from __future__ import annotations

import numpy as np

from gridledger.market.book import OrderBook, Trades, expand_ranges, pair_streams


def clear_auction(book: OrderBook) -> Trades:
    """Match ``book`` slot by slot with the greedy double auction; integral trades."""
    if not len(book.row_slot):
        return Trades.concat([])
    queues = _Queues(book)
    return Trades.concat([queues.trades(*queues.runs())])


class _Queues:
    """The book's rows as one offer and one bid queue per (slot, feeder), in cumulative power (W).

    Row ``r`` covers ``[edge[r], edge[r + 1])``; a queue is a contiguous range of rows (rows are sorted
    by slot, side, feeder, merit price). ``price_end[r]``: where the run of equal limit price that row
    ``r`` belongs to ends within its queue.
    """

    def __init__(self, book: OrderBook) -> None:
        self.book = book
        n_feeders = len(book.feeder_names)
        order = book.row_order
        self.edge = np.r_[0, np.cumsum(book.row_power)]
        self.price = book.price[order]
        first = np.r_[True, book.row_slot[1:] != book.row_slot[:-1]]
        slot_index = np.cumsum(first) - 1
        self.n_slots = int(slot_index[-1]) + 1
        # queue key of a row: ((slot * 2 + side) * n_feeders + feeder), side 0 = offers, 1 = bids
        queue = (slot_index * 2 + ~book.is_offer[order]) * n_feeders + book.feeder[order]
        keys = np.arange(self.n_slots * 2 * n_feeders).reshape(self.n_slots, 2, n_feeders)
        self.start = self.edge[np.searchsorted(queue, keys, "left")]  # (slot, side, feeder)
        self.end = self.edge[np.searchsorted(queue, keys, "right")]
        segment_last = np.r_[(queue[1:] != queue[:-1]) | (self.price[1:] != self.price[:-1]), True]
        self.price_end = self.edge[1:][np.flatnonzero(segment_last)][np.cumsum(np.r_[0, segment_last[:-1]])]

    def top(self, position: np.ndarray) -> np.ndarray:
        """The row at each queue ``position`` (only meaningful where the queue is not exhausted)."""
        return np.minimum(np.searchsorted(self.edge, position, "right") - 1, len(self.price) - 1)

    def runs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Simulate the greedy; return each run's offer position, bid position and power (W)."""
        book = self.book
        n_feeders = len(book.feeder_names)
        o_pos, b_pos = self.start[:, 0].copy(), self.start[:, 1].copy()
        o_end, b_end = self.end[:, 0], self.end[:, 1]
        internal_left = np.tile(book.internal_cap, (self.n_slots, 1))
        net_export = np.zeros((self.n_slots, n_feeders), dtype=np.int64)
        external = book.external_cap
        diagonal = np.eye(n_feeders, dtype=bool)
        feeders = np.arange(n_feeders)
        pair_index = np.arange(n_feeders**2).reshape(n_feeders, n_feeders)  # the greedy's tie order
        found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        o_top, b_top = self.top(o_pos), self.top(b_pos)
        while len(o_pos):
            has_o, has_b = o_pos < o_end, b_pos < b_end
            surplus = self.price[b_top][:, None, :] - self.price[o_top][:, :, None]  # (slot, seller, buyer)
            room = np.minimum((external - net_export)[:, :, None], (external + net_export)[:, None, :])
            room = np.where(diagonal, internal_left[:, :, None], room)
            candidate = has_o[:, :, None] & has_b[:, None, :] & (surplus >= 0)
            ok = candidate & (room > 0)
            flat = np.where(ok, surplus, -1).reshape(len(o_pos), -1)
            best = np.argmax(flat, axis=1)
            going = flat[np.arange(len(o_pos)), best] >= 0
            if not going.all():
                keep = np.flatnonzero(going)
                best = best[keep]
                o_pos, b_pos, o_end, b_end = o_pos[keep], b_pos[keep], o_end[keep], b_end[keep]
                internal_left, net_export = internal_left[keep], net_export[keep]
                o_top, b_top = o_top[keep], b_top[keep]
                surplus, room, candidate = surplus[keep], room[keep], candidate[keep]
                if not len(keep):
                    break
            rows = np.arange(len(o_pos))
            f, g = np.divmod(best, n_feeders)
            chosen = surplus[rows, f, g]
            # a cross trade f -> g adds room for pairs selling from g or buying into f: if such a pair
            # ranks above the choice and is blocked only by room, the greedy may switch after one order
            ranked_above = (surplus > chosen[:, None, None]) | (
                (surplus == chosen[:, None, None]) & (pair_index < best[:, None, None])
            )
            reopens = (feeders[:, None] == g[:, None, None]) | (feeders[None, :] == f[:, None, None])
            hazard = (candidate & ranked_above & (room == 0) & ~diagonal & reopens).any(axis=(1, 2)) & (f != g)
            o_row, b_row = o_top[rows, f], b_top[rows, g]
            o_at, b_at = o_pos[rows, f], b_pos[rows, g]
            o_stop = np.where(hazard, self.edge[o_row + 1], self.price_end[o_row])
            b_stop = np.where(hazard, self.edge[b_row + 1], self.price_end[b_row])
            amount = np.minimum(np.minimum(o_stop - o_at, b_stop - b_at), room[rows, f, g])
            found.append((o_at, b_at, amount))
            o_pos[rows, f] += amount
            b_pos[rows, g] += amount
            o_top[rows, f], b_top[rows, g] = self.top(o_pos[rows, f]), self.top(b_pos[rows, g])
            inside = f == g
            internal_left[rows[inside], f[inside]] -= amount[inside]
            cross = rows[~inside]
            net_export[cross, f[~inside]] += amount[~inside]
            net_export[cross, g[~inside]] -= amount[~inside]
        if not found:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        return tuple(np.concatenate(part) for part in zip(*found, strict=True))

    def trades(self, o_at: np.ndarray, b_at: np.ndarray, amount: np.ndarray) -> Trades:
        """Cut runs (queue positions and power, W) into pairwise trades at the orders' boundaries."""
        o_row, o_size = self._pieces(o_at, amount)
        b_row, b_size = self._pieces(b_at, amount)
        i, j, power = pair_streams(o_size, b_size)
        book = self.book
        return Trades(book.row_order[o_row[i]], book.row_order[b_row[j]], book.row_slot[o_row[i]], power)

    def _pieces(self, at: np.ndarray, amount: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rows that the intervals ``[at, at + amount)`` cover, in order, and the power of each piece."""
        run, row = expand_ranges(self.top(at), self.top(at + amount - 1) + 1)
        size = np.minimum(self.edge[row + 1], at[run] + amount[run]) - np.maximum(self.edge[row], at[run])
        return row, size
