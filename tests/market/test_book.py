"""The order book's building blocks: expansion into slots, trade batches and flow decomposition."""

from __future__ import annotations

import numpy as np
import pytest

from gridledger.market.book import OrderBook, Trades, pair_streams, pair_through_blocks

from .test_lp import bid, offer


def ints(*values):
    return np.array(values, dtype=np.int64)


def test_rows_are_one_per_order_and_slot_in_merit_order():
    book = OrderBook.build([bid("b", "A", 5, 3, 1, 3), offer("s2", "A", 5, 9), offer("s1", "A", 5, 4)], None)
    ids = [book.ids[i] for i in book.row_order]
    assert list(zip(ids, book.row_slot.tolist(), strict=True)) == [("s1", 0), ("s2", 0), ("b", 1), ("b", 2)]


def test_pair_streams_cuts_at_every_boundary():
    i, j, amount = pair_streams(ints(3, 2), ints(1, 4))
    assert (i.tolist(), j.tolist(), amount.tolist()) == ([0, 0, 1], [0, 1, 1], [1, 2, 2])
    with pytest.raises(RuntimeError, match="different totals"):
        pair_streams(ints(3), ints(2))


def test_pair_through_blocks_keeps_pairs_inside_their_block():
    # sellers of key 0 (4 W) and 1 (2 W); buyers of key 5 (3 W) and 6 (3 W); blocks 0->6: 3, 0->5: 1, 1->5: 2
    s, b, amount = pair_through_blocks(
        ints(4, 2), ints(0, 1), ints(3, 3), ints(5, 6), ints(3, 1, 2), ints(0, 0, 1), ints(6, 5, 5)
    )
    assert sorted(zip(s.tolist(), b.tolist(), amount.tolist(), strict=True)) == [
        (0, 0, 1),
        (0, 1, 3),
        (1, 0, 2),
    ]
    with pytest.raises(RuntimeError, match="out of step"):
        pair_through_blocks(
            ints(4, 2), ints(0, 1), ints(3, 3), ints(5, 6), ints(2, 2, 2), ints(0, 0, 1), ints(6, 5, 5)
        )


def test_trade_batches_merge_repeated_pairs():
    trades = Trades.concat(
        [Trades(ints(1, 0), ints(2, 3), ints(0, 0), ints(5, 1)), Trades(ints(1), ints(2), ints(0), ints(4))]
    )
    assert (trades.offer.tolist(), trades.bid.tolist(), trades.power.tolist()) == ([0, 1], [3, 2], [1, 9])


@pytest.mark.parametrize("scale", [1, 2**40])  # 2**40: key ranges too wide to pack into one int64 key
def test_trade_batches_are_sorted_by_slot_offer_bid(scale):
    rng = np.random.default_rng(7)
    offer, bid, slot = (rng.integers(0, 5, 200) * scale for _ in range(3))
    trades = Trades.concat([Trades(offer, bid, slot, np.ones(200, dtype=np.int64))])
    expected = sorted({(s, o, b) for o, b, s in zip(offer.tolist(), bid.tolist(), slot.tolist(), strict=True)})
    assert list(zip(trades.slot.tolist(), trades.offer.tolist(), trades.bid.tolist(), strict=True)) == expected
    assert trades.power.sum() == 200
