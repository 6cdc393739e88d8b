"""A generated community file: ``homes`` homes over ``days`` days, for ``gridledger simulate --homes N --days D``.

Homes are :func:`gridledger.profiles.readings.random_meters` (lognormal yearly consumption, PV on ``pv_share`` of
them sized to their consumption); every fourth PV home has a battery of 2.5 kWh per kWp; homes fill feeders of
``homes_per_feeder`` in order (the last feeder takes the rest, so none has fewer than three homes). Each feeder may
carry 4 kW per home between its homes and 2.5 kW per home upstream.
"""

from __future__ import annotations

import math
from typing import Any

from gridledger.profiles.readings import random_meters

START = "2024-04-11"


def community_data(
    homes: int, days: int, seed: int = 0, *, homes_per_feeder: int = 50, pv_share: float = 0.4, slot_seconds: int = 900
) -> dict[str, Any]:
    """The community file (as the dict ``tomllib`` would read) of a generated community."""
    meters = random_meters(homes, seed, pv_share)
    feeders = max(1, homes // homes_per_feeder)
    size = math.ceil(homes / feeders)
    rows = []
    pv_homes = 0
    for k, m in enumerate(meters):
        row: dict[str, Any] = {
            "id": m.meter_id,
            "feeder": f"F{min(k // size, feeders - 1) + 1}",
            "annual_kwh": round(m.annual_kwh, 1),
        }
        if m.pv_kw > 0:
            row["pv_kw"] = m.pv_kw
            if pv_homes % 4 == 0:
                row["battery_wh"] = int(2500 * m.pv_kw)
            pv_homes += 1
        rows.append(row)
    return {
        "community": {
            "name": f"generated {homes} homes",
            "location": "morelia",
            "slot_seconds": slot_seconds,
            "start": START,
            "days": days,
            "seed": seed,
        },
        "feeders": [
            {
                "id": f"F{f + 1}",
                "internal_capacity_w": 4000 * sum(r["feeder"] == f"F{f + 1}" for r in rows),
                "external_capacity_w": 2500 * sum(r["feeder"] == f"F{f + 1}" for r in rows),
            }
            for f in range(feeders)
        ],
        "homes": rows,
    }
