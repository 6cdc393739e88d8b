"""Offers, bids, feeders and matches of the forward energy market (PETra's bid storage service).

An order is PETra's offer (sell EPA) or bid (buy with ECA + FA) over a slot range, as in TRANSAX
(Laszka et al. 2018): it covers slots ``[start_slot, end_slot)`` with up to ``power_w`` W in every
slot, and may be filled partially, in power and in time, slot by slot. All quantities are integers:
power in W, time as slot indexes, prices in minor money units per kWh.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gridledger.ledger.units import MAX_SLOT

#: Bounds that keep every product of power and price, and the expansion into slots, in range.
MAX_POWER_W = 10**9
MAX_ABS_PRICE = 10**6
MAX_ORDER_SLOTS = 10_000


class MarketInputError(ValueError):
    """An order, feeder or match that the market rejects; the message names the offending item."""


class Side(StrEnum):
    """``offer`` sells energy (holds EPA); ``bid`` buys energy (holds ECA and FA)."""

    OFFER = "offer"
    BID = "bid"


def _require_int(owner: str, name: str, value: object, minimum: int, maximum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise MarketInputError(f"{owner}: {name} must be an integer, got {value!r}")
    if not minimum <= value <= maximum:
        raise MarketInputError(f"{owner}: {name} must be in [{minimum}, {maximum}], got {value}")


@dataclass(frozen=True, slots=True)
class Order:
    """One offer or bid.

    Parameters
    ----------
    id : str
        Unique, non-empty identifier (an anonymous handle in PETra).
    side : Side
        ``offer`` (sell) or ``bid`` (buy).
    feeder : str
        Name of the distribution feeder the prosumer is connected to.
    start_slot, end_slot : int
        The order covers slots ``start_slot <= t < end_slot`` (``0 <= start_slot < end_slot <= 10**9``,
        at most ``MAX_ORDER_SLOTS`` slots).
    power_w : int
        Maximum power in W in each covered slot (``0..10**9``).
    limit_price : int
        Minor money units per kWh (``|limit_price| <= 10**6``): an offer sells at no less, a bid buys
        at no more.
    """

    id: str
    side: Side
    feeder: str
    start_slot: int
    end_slot: int
    power_w: int
    limit_price: int

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise MarketInputError(f"order {self.id!r}: id must be a non-empty string")
        owner = f"order {self.id!r}"
        if self.side not in (Side.OFFER, Side.BID):
            raise MarketInputError(f"{owner}: side must be 'offer' or 'bid', got {self.side!r}")
        object.__setattr__(self, "side", Side(self.side))
        if not isinstance(self.feeder, str) or not self.feeder:
            raise MarketInputError(f"{owner}: feeder must be a non-empty string, got {self.feeder!r}")
        _require_int(owner, "start_slot", self.start_slot, 0, MAX_SLOT)
        _require_int(owner, "end_slot", self.end_slot, 0, MAX_SLOT)
        if self.start_slot >= self.end_slot:
            raise MarketInputError(
                f"{owner}: start_slot ({self.start_slot}) must be < end_slot ({self.end_slot})"
            )
        if self.end_slot - self.start_slot > MAX_ORDER_SLOTS:
            raise MarketInputError(f"{owner}: an order may cover at most {MAX_ORDER_SLOTS} slots")
        _require_int(owner, "power_w", self.power_w, 0, MAX_POWER_W)
        _require_int(owner, "limit_price", self.limit_price, -MAX_ABS_PRICE, MAX_ABS_PRICE)


@dataclass(frozen=True, slots=True)
class Feeder:
    """Per-slot trading limits of one feeder (TRANSAX's internal and external line capacities).

    Parameters
    ----------
    internal_capacity_w : int
        Maximum total power in W traded between prosumers of this feeder in one slot.
    external_capacity_w : int
        Maximum net power in W flowing out of (or into) this feeder to other feeders in one slot,
        i.e. ``|sold by the feeder's offers - bought by its bids| <= external_capacity_w``.
    """

    internal_capacity_w: int
    external_capacity_w: int

    def __post_init__(self) -> None:
        for name in ("internal_capacity_w", "external_capacity_w"):
            _require_int("feeder", name, getattr(self, name), 0, MAX_POWER_W * MAX_ORDER_SLOTS)


@dataclass(frozen=True, slots=True)
class Match:
    """One cleared trade: ``power_w`` W from ``offer_id`` to ``bid_id`` in ``slot`` at ``price``.

    ``price`` is in minor money units per kWh; the buyer pays ``price * power_w * slot_seconds / 3.6e6``.
    """

    offer_id: str
    bid_id: str
    slot: int
    power_w: int
    price: int
