"""The analytics plausibility check of PoEf validation: the plug-in point and the default band check.

In PoEf the validators check transactions with the ledger rules *and* with data analytics (Olivares-Rojas et al.
2023, §3.2): a reading far off what the member's history makes plausible raises an alarm, it does not silently
pass. The coordinator runs the check on every reading it orders and adds an ALARM transaction for each implausible
one; every committee member runs the same check on the same readings and votes no if an alarm is missing.

A check is any object with ``name`` (the detector name alarms record, 1..32 of ``[A-Za-z0-9_.:-]``), ``window``
(how many of the member's previous readings it looks at) and ``check(values, history)``. It must be
deterministic — every committee member must reach the same verdict — so it uses integers only, no clock and no
randomness. The analytics issue replaces the default with trained models (``gridledger.analytics``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from gridledger.tiers.readings import ReadingValues


@dataclass(frozen=True)
class Implausible:
    """A check's verdict that a reading is implausible: which detector and why (for people; not on the ledger)."""

    detector: str
    reason: str


@runtime_checkable
class Plausibility(Protocol):
    """The plug-in interface of the plausibility check."""

    name: str
    window: int

    def check(self, values: ReadingValues, history: Sequence[ReadingValues]) -> Implausible | None:
        """``None`` if ``values`` is plausible after ``history`` (oldest first, at most ``window`` readings)."""
        ...


def _lower_median(xs: Sequence[int]) -> int:
    return sorted(xs)[(len(xs) - 1) // 2]


@dataclass(frozen=True)
class BandCheck:
    """The default check: each energy must lie in a band around the median of the member's recent readings.

    With m the (lower) median of the last ``window`` readings' consumption (resp. production), a reading x is
    implausible if ``|x − m| > max(abs_tol_wh, m · rel_tol_pct / 100)``. Fewer than ``min_history`` previous
    readings: no verdict (plausible). Energies in Wh per reading interval.
    """

    name: str = "band"
    window: int = 6
    min_history: int = 3
    abs_tol_wh: int = 60  # 60 Wh in one minute = a 3.6 kW step
    rel_tol_pct: int = 300

    def check(self, values: ReadingValues, history: Sequence[ReadingValues]) -> Implausible | None:
        history = history[-self.window :]
        if len(history) < self.min_history:
            return None
        for field in ("consumption_wh", "production_wh"):
            median = _lower_median([getattr(h, field) for h in history])
            tolerance = max(self.abs_tol_wh, median * self.rel_tol_pct // 100)
            x = getattr(values, field)
            if abs(x - median) > tolerance:
                return Implausible(
                    self.name, f"{field} {x} Wh is outside {median} ± {tolerance} Wh (median of {len(history)})"
                )
        return None
