"""Private market rounds of a simulated microgrid: who wants to trade, and running the rounds.

Each round every prosumer gets an intent (sell, buy, or only the cover trade), then the whole PETra cycle runs on
a SQLite chain: extract, CoinShuffle, anonymous onion-routed orders, clearing, atomic trades, deposits. Each meter
then measures exactly what its prosumer traded and bills the slot; the DSO sees only per-slot energy and
per-period bill totals.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from gridledger.market.orders import Side
from gridledger.market.workflows import Intent, Microgrid, RoundReport


def random_intents(names: list[str], rng: random.Random) -> dict[str, Intent]:
    """45 % sellers (limit 80–120), 45 % buyers (limit 90–140), 10 % cover only; 1–2 units each (minor units/kWh)."""
    out = {}
    for n in names:
        u, units = rng.random(), rng.choice((1, 1, 2))
        if u < 0.45:
            out[n] = Intent(Side.OFFER, units, rng.randrange(80, 121))
        elif u < 0.9:
            out[n] = Intent(Side.BID, units, rng.randrange(90, 141))
        else:
            out[n] = Intent()
    return out


async def run_rounds(
    path: Path, prosumers: int, rounds: int, seed: int, on_round: Callable[[RoundReport], None] | None = None
) -> Microgrid:
    """Run ``rounds`` rounds on a chain stored at ``path``; returns the (closed) microgrid for its reports."""
    g = await Microgrid.create(prosumers, path=path, symmetric=True, seed=seed)
    rng = random.Random(seed)
    g.reports = []
    try:
        for _ in range(rounds):
            intents = random_intents(list(g.prosumers), rng)
            report = await g.run_round(intents)
            energy_wh = g.unit_w * g.slots * g.SLOT_SECONDS // 3600
            measured = {
                n: (-1 if it.side is Side.OFFER else 1) * it.units * energy_wh
                for n, it in intents.items()
                if it.side is not None
            }
            g.bill(report.slot, measured)
            g.reports.append(report)
            if on_round:
                on_round(report)
            g.next_slot()
    finally:
        await g.close()
    return g
