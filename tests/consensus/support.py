"""Helpers of the consensus tests: a clock and every meter's signed readings."""

from __future__ import annotations

from gridledger.ledger.kinds.reading import Reading, ReadingValues
from gridledger.tiers.hierarchy import START_TIME, TierChain

METERS = 7


def minute_time(minute: int) -> int:
    """A block time just after ``minute`` ended (Unix s)."""
    return START_TIME + 60 * (minute + 1) + 1


def readings(node: TierChain, minute: int, wh: int | dict[str, int] = 10) -> list[Reading]:
    """Every meter's signed reading of ``wh`` (or ``wh[meter]``) Wh for ``minute``."""
    out = []
    for ident, m in node.members.items():
        value = wh if isinstance(wh, int) else wh.get(ident, 10)
        out.append(m.device.reading(minute, ReadingValues(value, 0)))
    return out


def commit_minutes(node: TierChain, minutes: range, wh: int = 10) -> None:
    """Commit every meter's readings for ``minutes``, one round per minute."""
    for minute in minutes:
        for tx in readings(node, minute, wh):
            node.coordinator.submit(tx)
        result = node.round(minute_time(minute))
        assert result.committed is not None, result.failure
