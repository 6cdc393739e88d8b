"""The analytics plausibility check of PoEf validation: the plug-in point, the default check and the other checks.

One home for the check, used by the validators and by the analytics evaluation alike
(:func:`gridledger.analytics.scorecards.evaluate_check`, ``benchmarks/analytics_eval.py``).

In PoEf the validators check transactions with the ledger rules *and* with data analytics (Olivares-Rojas et al.
2023, §3.2): a reading far off what the member's history makes plausible raises an alarm, it does not silently
pass. The coordinator runs the check on every reading it orders and adds an ALARM transaction for each implausible
one; every committee member runs the same check on the same readings and votes no if an alarm is missing. A
READING_BATCH is checked minute by minute, each minute after the member's earlier minutes, as if it were a READING
(:mod:`gridledger.consensus.poef`).

A check is any object with ``name`` (the detector name alarms record, 1..32 of ``[A-Za-z0-9_.:-]``), ``window``
(how many of the member's previous readings it looks at) and ``check(values, history)``. It must be
deterministic — every committee member must reach the same verdict — so it uses integers only, no clock and no
randomness.

The default is :class:`RobustWindowCheck`, the compact form of the rank test (:class:`RankCheck`) that fits the
disclosure and latency budget of a round; :class:`BandCheck`, the first default, stays available; :class:`RankCheck`
is the distribution-free rank test on a long history (days), the reference the compact form is measured against.
docs/consensus.md compares them.
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

    The rank test (:class:`RankCheck`) centres the history on its median and
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


@dataclass(frozen=True)
class RankCheck:
    """The rank test: a reading is implausible when its deviation ranks beyond all but ``alpha_ppm`` of history's.

    For consumption and for production separately: without a ``period`` (or with fewer than three whole periods
    of history) the centre ``c`` is the lower median of the last ``window`` readings and each reading's deviation
    is ``d_i = |h_i − c|``; with a ``period`` (1440 for the daily cycle of 1-minute readings) and at least three
    whole periods, every phase has its own centre (the lower median of the readings at that phase), ``c`` is the
    one of the new reading's phase and ``d_i`` each reading's deviation from its own phase's centre. A reading
    ``x`` is implausible if its rank p-value ``(1 + #{d_i ≥ |x − c|}) / (n + 1)`` is below ``alpha_ppm`` / 10^6.
    Fewer than ``min_history`` earlier readings: no verdict. Integer Wh only, so every machine agrees; but at
    ``alpha_ppm`` = 1000 it needs ≥ 999 earlier readings (three days with the daily period), each disclosed to
    every committee member: docs/consensus.md explains why validators run :class:`RobustWindowCheck` instead.
    """

    name: str = "rank"
    window: int = 3 * 1440
    period: int | None = 1440
    alpha_ppm: int = 1_000
    min_history: int = 24

    def __post_init__(self) -> None:
        if not 0 < self.alpha_ppm < 1_000_000:
            raise ValueError(f"alpha_ppm must be in (0, 10^6), got {self.alpha_ppm}")
        if self.period is not None and self.period < 1:
            raise ValueError(f"period must be >= 1, got {self.period}")

    def check(self, values: ReadingValues, history: Sequence[ReadingValues]) -> Implausible | None:
        history = history[-self.window :]
        n = len(history)
        if n < self.min_history:
            return None
        periods = n // self.period if self.period else 0
        for field, energy in _ENERGIES:
            past = list(map(energy, history))
            if periods >= 3:
                block = past[n - periods * self.period :]  # its phase 0 is the new reading's phase
                centres = [_lower_median(block[p :: self.period]) for p in range(self.period)]
                deviations = [abs(v - centres[i % self.period]) for i, v in enumerate(block)]
                centre = centres[0]
            else:
                centre = _lower_median(past)
                deviations = [abs(v - centre) for v in past]
            x = energy(values)
            at_least = sum(d >= abs(x - centre) for d in deviations)
            if (1 + at_least) * 1_000_000 < self.alpha_ppm * (len(deviations) + 1):
                side = "above" if x > centre else "below"
                return Implausible(
                    self.name,
                    f"{field} {x} Wh is far {side} the expected {centre} Wh: {at_least} of {len(deviations)} "
                    f"earlier readings deviate as much",
                )
        return None
