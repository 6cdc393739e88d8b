"""The ledger's units, in one place: slot numbers, slot length, energy and money. Pure, no I/O.

* Time is cut into slots of ``slot_seconds`` seconds. A chain's slot length is fixed in its genesis
  (``Genesis.slot_seconds``) and read from there (or from the community file) by everything downstream;
  :data:`DEFAULT_SLOT_SECONDS` is only the default used where a chain is created.
* Power is in W, energy in W·s (J) or Wh, prices in minor money units per kWh, money in whole minor units.
"""

from __future__ import annotations

MAX_SLOT = 0xFFFF_FFFF
"""The last slot number a chain, an asset or an order can name (slots are u32 on the ledger)."""

DEFAULT_SLOT_SECONDS = 900
"""Slot length (s) of a new chain unless its creator says otherwise: 15 minutes."""

WS_PER_WH = 3_600
WS_PER_KWH = 3_600_000


def energy_cost(energy_ws: int, price_per_kwh: int) -> int:
    """Money for ``energy_ws`` W·s at ``price_per_kwh`` minor units per kWh, in whole minor units, rounded down.

    The one rounding rule of the system (bills, trade payments, the bid store's backing check, reports): the
    exact amount ``energy_ws · price_per_kwh / 3.6e6`` is rounded down (towards −∞). Rounding down is the one rule
    under which pieces never add up to more than the whole (``⌊a⌋ + ⌊b⌋ ≤ ⌊a + b⌋``): the payments of a bid's
    partial fills, each at most its limit price, never exceed the backing the bid store required for the whole
    bid, so the check and the settlement agree. A charge is never above its exact value; a credit (negative
    energy) is never below it.
    """
    return energy_ws * price_per_kwh // WS_PER_KWH
