"""Each prosumer's edge forecast of its next slot and the orders it derives from it.

**Forecast** (seasonal naive, at the meter, from the meter's own history only): the net energy of slot ``t`` is
the mean of the same slot on the up to 7 previous days; with no earlier day, the last measured slot (persistence).
When the forecast is made (during slot ``t − 1``), the last measured slot is ``t − 2``.

**Orders** (the documented strategy): a forecast surplus above ``deadband_w`` becomes an offer of that power, a
deficit above it a bid; sellers ask the production price plus a quarter of the spread to the consumption price,
buyers bid the consumption price minus a quarter (both do better than with the DSO), never above the cap. Buyers
bid only when the bid store's public book held offers in the previous round (at night nobody sells: a bid would
only cost its poster a circuit and the store a proof check).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridledger.market.orders import Side
from gridledger.sim.nan_market import Intent

#: Days of history the seasonal forecast averages.
SEASON_DAYS = 7


def forecast_next(net_wh: np.ndarray, t: int, slots_per_day: int) -> np.ndarray:
    """Forecast net energy (Wh, import positive) of slot ``t`` for every home, from measured slots ``< t − 1``.

    ``net_wh`` has shape (homes, slots); only its columns before ``t − 1`` are read.
    """
    past = [t - k * slots_per_day for k in range(1, SEASON_DAYS + 1) if t - k * slots_per_day < t - 1]
    past = [s for s in past if s >= 0]
    if past:
        return np.rint(net_wh[:, past].mean(axis=1)).astype(np.int64)
    last = max(t - 2, 0)
    return net_wh[:, last].copy() if t >= 2 else np.zeros(net_wh.shape[0], dtype=np.int64)


@dataclass(frozen=True)
class Strategy:
    """The prosumers' order strategy: prices (priceConsumption, priceProduction) and the cap, minor units/kWh."""

    prices: tuple[int, int]
    price_cap: int
    deadband_w: int = 50

    @property
    def ask(self) -> int:
        consumption, production = self.prices
        return production + (consumption - production) // 4

    @property
    def bid(self) -> int:
        consumption, production = self.prices
        return min(self.price_cap, consumption - (consumption - production) // 4)

    def intents(
        self, homes: list[str], forecast_wh: np.ndarray, slot_seconds: int, offers_seen: bool
    ) -> dict[str, Intent]:
        """Each home's order intent from its forecast net energy for the slot (homes with nothing to trade omitted);
        ``offers_seen``: the previous round's book held offers."""
        power = forecast_wh * 3600 // slot_seconds
        out = {}
        for home, w in zip(homes, power.tolist(), strict=True):
            if w < -self.deadband_w:
                out[home] = Intent(Side.OFFER, -w, self.ask)
            elif w > self.deadband_w and offers_seen:
                out[home] = Intent(Side.BID, w, self.bid)
        return out
