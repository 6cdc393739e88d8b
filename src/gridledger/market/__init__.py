"""The forward energy market: orders, clearing (double auction and TRANSAX LP), pricing, checks.

The Python API the ledger side calls::

    from gridledger.market import Order, Feeder, Side, clear
    result = clear(orders, feeders, mechanism="lp")
    result.matches, result.welfare
"""

from gridledger.market.clearing import MECHANISMS, ClearingResult, clear, verify_matches
from gridledger.market.orders import Feeder, MarketInputError, Match, Order, Side

__all__ = [
    "MECHANISMS",
    "ClearingResult",
    "Feeder",
    "MarketInputError",
    "Match",
    "Order",
    "Side",
    "clear",
    "verify_matches",
]
