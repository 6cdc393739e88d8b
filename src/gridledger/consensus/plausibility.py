"""The analytics plausibility check of PoEf validation: the plug-in point, the default check and the band check.

In PoEf the validators check transactions with the ledger rules *and* with data analytics (Olivares-Rojas et al.
2023, §3.2): a reading far off what the member's history makes plausible raises an alarm, it does not silently
pass. The coordinator runs the check on every reading it orders and adds an ALARM transaction for each implausible
one; every committee member runs the same check on the same readings and votes no if an alarm is missing.

A check is any object with ``name`` (the detector name alarms record, 1..32 of ``[A-Za-z0-9_.:-]``), ``window``
(how many of the member's previous readings it looks at) and ``check(values, history)``. It must be
deterministic — every committee member must reach the same verdict — so it uses integers only, no clock and no
randomness.

The default is :class:`RobustWindowCheck`, the compact form of the analytics rank test
(:func:`gridledger.analytics.plausibility.plausibility`) that fits the disclosure and latency budget of a round;
:class:`BandCheck`, the first default, stays available. docs/consensus.md compares them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Protocol, runtime_checkable

from gridledger.ledger.kinds.reading import ReadingValues


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


_ENERGIES = tuple((field, attrgetter(field)) for field in ("consumption_wh", "production_wh"))


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


@dataclass(frozen=True)
class RobustWindowCheck:
    """The default check: the analytics rank test made compact, on the member's last ``window`` readings.

    The rank test (:func:`gridledger.analytics.plausibility.plausibility`) centres the history on its median and
    flags a reading whose deviation from the centre ranks beyond all but a share ``alpha`` of the history's
    deviations. To flag anything at ``alpha`` = 0.001 it needs at least 999 earlier readings (4,320 with its daily
    period), and every one of them would be disclosed to, and opened by, every committee member of every block.
    This check keeps its centre and its deviations but reads only the last ``window`` = 12 readings (12 minutes
    on a NAN): for consumption and for production separately, with ``m`` the lower median of the window and
    ``q`` the upper quartile of the window's absolute deviations from ``m`` (blind to the 3 largest, so a burst of
    up to 4 spikes does not widen its own band), a reading ``x`` is implausible if

        ``x − m > max(step_wh, m · rise_pct / 100, spread · q)``

    — a rise larger than a household's appliance step, than a doubling of its recent level, and than
    ``spread`` times its recent variation. Independently, a reading of zero consumption and zero production is
    implausible when every reading of the window consumed at least ``zero_floor_wh`` and none produced (a meter
    that suddenly reads nothing, as a bypass or tampered sensor does; a PV home whose load its panels just cover
    is excused). With fewer than ``min_history`` earlier readings there is no verdict.

    Energies are integer Wh per reading interval (1 minute on a NAN); every operation is a comparison, a sort
    or an integer product or floor division on Python integers, so every machine reaches the same verdict for any
    reading the ledger can hold (0..2^32 − 1 Wh). False-alarm and detection rates on the community profiles are
    in docs/consensus.md (``benchmarks/analytics_eval.py``).
    """

    name: str = "robust-window"
    window: int = 12
    min_history: int = 3
    step_wh: int = 45  # 45 Wh in one minute = a 2.7 kW step above the recent median
    rise_pct: int = 100
    spread: int = 3
    zero_floor_wh: int = 3  # 3 Wh in one minute = a 180 W base load

    def check(self, values: ReadingValues, history: Sequence[ReadingValues]) -> Implausible | None:
        history = history[-self.window :]
        n = len(history)
        if n < self.min_history:
            return None
        for field, energy in _ENERGIES:
            past = sorted(map(energy, history))
            centre = past[(n - 1) // 2]
            deviations = sorted([abs(v - centre) for v in past])
            tolerance = max(self.step_wh, centre * self.rise_pct // 100, self.spread * deviations[3 * (n - 1) // 4])
            x = energy(values)
            if x - centre > tolerance:
                return Implausible(
                    self.name,
                    f"{field} {x} Wh is more than {tolerance} Wh above the median {centre} Wh of the last {n} readings",
                )
        if values.consumption_wh == 0 == values.production_wh and all(
            h.production_wh == 0 and h.consumption_wh >= self.zero_floor_wh for h in history
        ):
            return Implausible(
                self.name,
                f"a zero reading after {len(history)} readings of at least {self.zero_floor_wh} Wh consumed",
            )
        return None
