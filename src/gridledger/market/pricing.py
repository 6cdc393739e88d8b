"""Pay-as-clear pricing of matches: one integer price per group, inside every matched limit.

Rule. A group of matches gets the uniform price ``floor((c + v) / 2)``, the midpoint of its marginal
pair, where ``c`` is the highest offer limit and ``v`` the lowest bid limit among the group's matches;
this price respects every limit in the group exactly when ``c <= v``. The group is the whole slot
whenever that holds (always the case when no feeder limit binds); otherwise, the slot's matches are
grouped by (seller feeder, buyer feeder), zonal pricing under congestion; a block that still has
``c > v`` prices each of its matches at the midpoint of its own two limits. So no matched party ever
trades beyond its limit price, and the price is uniform per slot in an uncongested market.
"""

from __future__ import annotations

import numpy as np


def pay_as_clear(offer_limit, bid_limit, slot, seller_feeder, buyer_feeder) -> np.ndarray:
    """Prices in minor units per kWh for matches given as int64 arrays (one entry per match)."""
    price = (offer_limit + bid_limit) // 2
    if not len(price):
        return price
    n_feeders = int(max(seller_feeder.max(), buyer_feeder.max())) + 1
    _, slot_group = np.unique(slot, return_inverse=True)
    block_group = (slot_group * n_feeders + seller_feeder) * n_feeders + buyer_feeder
    todo = np.ones(len(price), dtype=bool)
    for key in (slot_group, block_group):
        _, group = np.unique(key[todo], return_inverse=True)
        dearest = np.full(group.max() + 1, np.iinfo(np.int64).min)
        np.maximum.at(dearest, group, offer_limit[todo])
        cheapest = np.full(group.max() + 1, np.iinfo(np.int64).max)
        np.minimum.at(cheapest, group, bid_limit[todo])
        uniform = (dearest <= cheapest)[group]
        rows = np.flatnonzero(todo)[uniform]
        price[rows] = (dearest[group[uniform]] + cheapest[group[uniform]]) // 2
        todo[rows] = False
        if not todo.any():
            break
    return price
