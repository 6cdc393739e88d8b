"""Shared helpers for the market tests: random books (hypothesis) and independent welfare checks."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
from hypothesis import strategies as st
from scipy.optimize import Bounds, LinearConstraint, milp

from gridledger.market import Feeder, Order, Side


@st.composite
def books(draw, max_orders=8, max_feeders=3, max_slots=3, max_power=8, max_price=12, feeders_optional=True):
    """``(orders, feeders or None)``: a small random order book over ``max_slots`` slots."""
    n_feeders = draw(st.integers(1, max_feeders))
    names = [f"F{i}" for i in range(n_feeders)]
    orders = []
    for k in range(draw(st.integers(0, max_orders))):
        start = draw(st.integers(0, max_slots - 1))
        orders.append(
            Order(
                f"o{k}",
                draw(st.sampled_from(Side)),
                draw(st.sampled_from(names)),
                start,
                draw(st.integers(start + 1, max_slots)),
                draw(st.integers(0, max_power)),
                draw(st.integers(0, max_price)),
            )
        )
    if feeders_optional and draw(st.booleans()):
        return orders, None
    caps = st.integers(0, 2 * max_power)
    return orders, {name: Feeder(draw(caps), draw(caps)) for name in names}


def _triples(orders: Sequence[Order]):
    offers = [o for o in orders if o.side is Side.OFFER]
    bids = [o for o in orders if o.side is Side.BID]
    return [
        (s, b, t)
        for s in offers
        for b in bids
        if s.limit_price <= b.limit_price
        for t in range(max(s.start_slot, b.start_slot), min(s.end_slot, b.end_slot))
    ]


def pairwise_optimum(orders: Sequence[Order], feeders: Mapping[str, Feeder] | None) -> int:
    """Optimal surplus by TRANSAX's pairwise MILP, one integer variable per (offer, bid, slot) triple.

    Written independently of gridledger.market (dense matrices, scipy.optimize.milp).
    """
    triples = _triples(orders)
    if not triples:
        return 0
    rows, lower, upper = [], [], []

    def row(coefficients, lo, hi):
        if any(coefficients):
            rows.append(coefficients)
            lower.append(lo)
            upper.append(hi)

    slots = {t for _, _, t in triples}
    for order in orders:
        for t in slots:
            row([int((s is order or b is order) and u == t) for s, b, u in triples], 0, order.power_w)
    for name, feeder in (feeders or {}).items():
        for t in slots:
            row(
                [int(s.feeder == b.feeder == name and u == t) for s, b, u in triples],
                0,
                feeder.internal_capacity_w,
            )
            row(
                [(int(s.feeder == name) - int(b.feeder == name)) * int(u == t) for s, b, u in triples],
                -feeder.external_capacity_w,
                feeder.external_capacity_w,
            )
    gain = np.array([b.limit_price - s.limit_price for s, b, _ in triples], dtype=float)
    result = milp(
        -gain,
        integrality=np.ones(len(triples)),
        bounds=Bounds(0, np.inf),
        constraints=LinearConstraint(np.array(rows, dtype=float), lower, upper),
        options={"mip_rel_gap": 0},
    )
    assert result.success, result.message
    return round(-result.fun)


def brute_force_optimum(orders: Sequence[Order], feeders: Mapping[str, Feeder] | None) -> int:
    """Optimal surplus by enumerating every integral trade vector, slot by slot (tiny books only)."""
    triples = _triples(orders)
    best_total = 0
    for t in {u for _, _, u in triples}:
        pairs = [(s, b) for s, b, u in triples if u == t]
        best = 0
        for q in itertools.product(*(range(min(s.power_w, b.power_w) + 1) for s, b in pairs)):
            filled: dict[str, int] = {}
            inside: dict[str, int] = {}
            net: dict[str, int] = {}
            for (s, b), amount in zip(pairs, q, strict=True):
                filled[s.id] = filled.get(s.id, 0) + amount
                filled[b.id] = filled.get(b.id, 0) + amount
                if s.feeder == b.feeder:
                    inside[s.feeder] = inside.get(s.feeder, 0) + amount
                else:
                    net[s.feeder] = net.get(s.feeder, 0) + amount
                    net[b.feeder] = net.get(b.feeder, 0) - amount
            by_id = {o.id: o for o in orders}
            if any(v > by_id[k].power_w for k, v in filled.items()):
                continue
            if feeders and (
                any(v > feeders[f].internal_capacity_w for f, v in inside.items())
                or any(abs(v) > feeders[f].external_capacity_w for f, v in net.items())
            ):
                continue
            best = max(
                best, sum((b.limit_price - s.limit_price) * a for (s, b), a in zip(pairs, q, strict=True))
            )
        best_total += best
    return best_total
