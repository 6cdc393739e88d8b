"""PETra's microgrid controller: predicts the microgrid's net load, signals the DSO, and reprices.

In PETra the DSO runs a controller that "predicts the load of the microgrid from the transactions on the
ledger and the offers and bids in the bid storage service", emits a control signal to raise or lower the
load, and updates the price policy accordingly (Laszka et al. 2017, § microgrid controller).

Model (per slot ``t``, powers in W, import from the upstream grid positive):

* traded energy is exchanged inside the microgrid (each trade moves equal EPA and ECA), so it nets out;
* an open bid's unmatched power ``b_t`` will be drawn from the grid; an open offer's unmatched power ``s_t``
  will be fed into it;
* ``P_t = base_t + Σ b_t − Σ s_t``, where ``base_t`` is the forecast net load of everything outside the
  market (zero unless given). The unmatched power of an order is its posted power minus its committed fills.

If ``P_t`` leaves the DSO's band ``[low_w, high_w]`` the controller emits a :class:`ControlSignal` asking
to shed (``P_t > high_w``) or add (``P_t < low_w``) that much load, and reprices slot ``t`` proportionally:
with ``d = (P_t − high_w) / (high_w − low_w)`` above the band (``(P_t − low_w) / (high_w − low_w)`` below),
both prices are multiplied by ``1 + gain · d`` (clamped to ``[0, max_factor]``, rounded to integers), so
buying from the grid costs more when the grid is overloaded and selling to it earns less when there is
surplus. A new price policy is a DSO transaction in force from slot ``t``; when ``P_t`` is back in the band
the base prices are restored.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction

from gridledger.chain import Chain
from gridledger.ledger.kinds.dso_policy import DsoPolicy
from gridledger.market.orders import Match, Order, Side
from gridledger.petra.dso import DSO


@dataclass(frozen=True)
class Band:
    """The DSO's admissible net load of the microgrid in one slot (W, import positive)."""

    low_w: int
    high_w: int

    def __post_init__(self) -> None:
        if not self.low_w < self.high_w:
            raise ValueError(f"band low {self.low_w} W must be below high {self.high_w} W")


@dataclass(frozen=True)
class Prediction:
    """The controller's forecast of one slot (W)."""

    slot: int
    base_w: int
    open_bids_w: int
    open_offers_w: int
    traded_w: int

    @property
    def net_load_w(self) -> int:
        """Predicted import from the grid (negative: export)."""
        return self.base_w + self.open_bids_w - self.open_offers_w


@dataclass(frozen=True)
class ControlSignal:
    """Shed (``action == "shed"``) or add (``"add"``) ``amount_w`` W of load in ``slot``."""

    slot: int
    action: str
    amount_w: int
    predicted_w: int


class MicrogridController:
    """The DSO's controller of one microgrid.

    Parameters
    ----------
    band : the admissible net load.
    base_prices : (priceConsumption, priceProduction) in minor units per kWh when the load is in the band.
    gain : price change per band width of deviation (e.g. 1/2: +50 % one band width above).
    max_factor : largest price multiplier.
    base_load_w : forecast net load outside the market per slot (W), e.g. from the profiles package.
    """

    def __init__(
        self,
        band: Band,
        base_prices: tuple[int, int],
        gain: Fraction = Fraction(1, 2),
        max_factor: Fraction = Fraction(3),
        base_load_w: Callable[[int], int] | Mapping[int, int] | None = None,
    ) -> None:
        self.band = band
        self.base_prices = base_prices
        self.gain = gain
        self.max_factor = max_factor
        if base_load_w is None:
            self.base_load = lambda slot: 0
        elif callable(base_load_w):
            self.base_load = base_load_w
        else:
            self.base_load = lambda slot: base_load_w.get(slot, 0)
        self.signals: list[ControlSignal] = []

    def predict(self, slot: int, committed: Iterable[Match], open_orders: Iterable[Order]) -> Prediction:
        """Forecast ``slot`` from the committed matches and the open orders (posted power minus fills)."""
        filled: dict[str, int] = defaultdict(int)
        traded = 0
        for m in committed:
            if m.slot == slot:
                filled[m.offer_id] += m.power_w
                filled[m.bid_id] += m.power_w
                traded += m.power_w
        bids = offers = 0
        for o in open_orders:
            if o.start_slot <= slot < o.end_slot:
                left = max(0, o.power_w - filled.get(o.id, 0))
                if o.side is Side.BID:
                    bids += left
                else:
                    offers += left
        return Prediction(slot, int(self.base_load(slot)), bids, offers, traded)

    def signal(self, p: Prediction) -> ControlSignal | None:
        """The control signal for a prediction outside the band, else None."""
        load = p.net_load_w
        if load > self.band.high_w:
            return ControlSignal(p.slot, "shed", load - self.band.high_w, load)
        if load < self.band.low_w:
            return ControlSignal(p.slot, "add", self.band.low_w - load, load)
        return None

    def prices(self, p: Prediction) -> tuple[int, int]:
        """The prices for the predicted slot (the base prices inside the band)."""
        width = self.band.high_w - self.band.low_w
        load = p.net_load_w
        if load > self.band.high_w:
            d = Fraction(load - self.band.high_w, width)
        elif load < self.band.low_w:
            d = Fraction(load - self.band.low_w, width)
        else:
            return self.base_prices
        factor = min(self.max_factor, max(Fraction(0), 1 + self.gain * d))
        return tuple(round(price * factor) for price in self.base_prices)

    def step(
        self, chain: Chain, dso: DSO, slot: int, committed: Iterable[Match], open_orders: Iterable[Order]
    ) -> tuple[Prediction, ControlSignal | None, DsoPolicy | None]:
        """Predict ``slot``, signal, and submit a new price policy if the prices in force must change."""
        p = self.predict(slot, committed, open_orders)
        sig = self.signal(p)
        if sig is not None:
            self.signals.append(sig)
        prices = self.prices(p)
        policy = None
        if chain.state.policy.prices(slot) != prices:
            policy = dso.policy(slot, prices=prices)
            chain.submit(policy)
        return p, sig, policy
