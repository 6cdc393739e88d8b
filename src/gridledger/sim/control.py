"""The DSO's microgrid controller in the community run: one PETra controller per feeder.

After each market round, the DSO's controller of a feeder predicts the feeder's net import (W) for the slot just
traded, with :class:`gridledger.petra.controller.MicrogridController`:

* its *base* is the DSO's own forecast of the feeder (the seasonal rule of :func:`gridledger.sim.strategy.forecast_next`
  on the per-feeder slot totals the DSO view holds) less the net power of the round's posted orders, as the bid
  store's public book shows them (the market's share of the feeder);
* to that it adds the orders' unmatched power (an unmatched bid is drawn from the grid, an unmatched offer fed in):
  traded power stays inside the feeder.

When the prediction leaves the feeder's band, ± its external capacity (the power it may exchange upstream), the
controller emits a control signal and reprices: the DSO publishes the new prices on the head-end for that feeder,
they are replicated down the FAN/WAN to the feeder's NAN and are in force from ``REPRICE_LAG_SLOTS`` slots after
the round (the replication takes one PoEf round per tier); the base tariff returns once a prediction is back in the
band. Prosumers price their orders from the prices in force on their NAN and meters bill at them. The controller
sees only what the DSO may see: feeder totals and the anonymous book, never a meter's slot or a trade's parties.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from gridledger.market.orders import Match, Order, Side
from gridledger.petra.controller import Band, ControlSignal, MicrogridController, Prediction
from gridledger.profiles.community import Feeder
from gridledger.sim.strategy import forecast_next

#: Slots from a round to the slot its reprice is in force from (head-end, FAN/WAN and NAN rounds; one to spare).
REPRICE_LAG_SLOTS = 3


@dataclass
class FeederControl:
    """The controller of one feeder and the DSO's record of the feeder's measured net energy (Wh per slot)."""

    feeder: Feeder
    controller: MicrogridController
    slot_seconds: int
    slots_per_day: int
    net_wh: np.ndarray
    base_w: dict[int, int]
    in_force: tuple[int, int] = field(init=False)

    def __post_init__(self) -> None:
        self.in_force = self.controller.base_prices

    @classmethod
    def create(cls, feeder: Feeder, prices: tuple[int, int], slot_seconds: int, slots: int) -> FeederControl:
        """The controller of ``feeder`` at the base ``prices`` (minor units per kWh) for a run of ``slots`` slots."""
        band = Band(-feeder.external_capacity_w, feeder.external_capacity_w)
        base_w: dict[int, int] = {}
        controller = MicrogridController(band, prices, base_load_w=base_w)
        return cls(feeder, controller, slot_seconds, 86_400 // slot_seconds, np.zeros((1, slots), np.int64), base_w)

    def record(self, slot: int, import_wh: int, export_wh: int) -> None:
        """The feeder's measured totals of ``slot`` (from the DSO view)."""
        self.net_wh[0, slot] = import_wh - export_wh

    def step(
        self, slot: int, matches: Iterable[Match], orders: Iterable[Order]
    ) -> tuple[Prediction, ControlSignal | None, tuple[int, int] | None]:
        """Predict ``slot`` after its round; the signal (or None) and the new prices to publish (or None)."""
        orders = [o for o in orders if o.start_slot <= slot < o.end_slot]
        book_w = sum(o.power_w if o.side is Side.BID else -o.power_w for o in orders)
        forecast_w = int(forecast_next(self.net_wh, slot, self.slots_per_day)[0]) * 3600 // self.slot_seconds
        self.base_w[slot] = forecast_w - book_w
        p = self.controller.predict(slot, matches, orders)
        signal = self.controller.signal(p)
        prices = self.controller.prices(p)
        if prices == self.in_force:
            return p, signal, None
        self.in_force = prices
        return p, signal, prices
