"""The pay-as-clear price rule: uniform per slot when possible, else per feeder block, else per pair."""

from __future__ import annotations

import numpy as np

from gridledger.market.pricing import pay_as_clear


def prices(offer, bid, slot, seller, buyer):
    return pay_as_clear(*(np.array(v, dtype=np.int64) for v in (offer, bid, slot, seller, buyer))).tolist()


def test_one_uniform_price_per_slot_at_the_marginal_midpoint():
    # slot 0: dearest offer 8, cheapest bid 13 -> 10; slot 1 alone: (3 + 4) // 2
    assert prices([5, 8, 3], [20, 13, 4], [0, 0, 1], [0, 0, 0], [0, 1, 1]) == [10, 10, 3]


def test_zonal_prices_when_one_price_cannot_fit_the_slot():
    # feeder 0 trades at 50..60, feeder 1 at 10..20: no single price; each block gets its own
    assert prices([50, 10], [60, 20], [0, 0], [0, 1], [0, 1]) == [55, 15]


def test_pair_prices_when_even_the_block_is_split():
    # the same block (0 -> 1) holds pairs (30, 35) and (10, 12): each pair at its own midpoint
    assert prices([30, 10], [35, 12], [0, 0], [0, 0], [1, 1]) == [32, 11]


def test_negative_prices_round_down_inside_the_limits():
    assert prices([-7], [-4], [0], [0], [0]) == [-6]
