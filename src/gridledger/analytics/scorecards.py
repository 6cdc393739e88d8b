"""The analytics in PoEf: efficiency scorecards from a chain's readings, their audit, and how well the
validators' plausibility check does on community readings.

Olivares-Rojas et al. (2023), §3.2–3.3: the validators check each reading with the analytics and efficient users
are rewarded by their analytics score. The per-reading check a committee runs is
:class:`gridledger.consensus.plausibility.RobustWindowCheck`; the reward rule is
:mod:`gridledger.ledger.kinds.reward`. This module is the key holders' side of the reward: the DSO (which derives
every reading key) computes each member's period scorecard from the committed readings with
:func:`period_scores`, and anyone holding the chain's content key re-derives them with :func:`audit_reward`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gridledger.chain import Chain
from gridledger.consensus.plausibility import Plausibility
from gridledger.ledger.kinds.reading import ChainKeys, ReadingValues, open_reading
from gridledger.ledger.kinds.reading_batch import readings_of
from gridledger.ledger.kinds.reward import PERIOD_MINUTES, RATE_CAP, Reward, Scorecard, reward_amounts

from .data import DataError, DayCube, describe_step
from .efficiency import HOURS, REFERENCE_DAYS, EfficiencyScore, QualityTally, integer_limits, score_days
from .power_quality import Limits
from .theft_attacks import inject_theft

Timed = tuple[int, ReadingValues]


# ------------------------------------------------------------------ efficiency scorecards from the ledger
def period_score(readings: Iterable[Timed], period: int, limits: Limits = Limits()) -> EfficiencyScore:
    """A member's efficiency score for reward period ``period`` (day ``period`` of the chain).

    Parameters
    ----------
    readings : the member's ``(minute, values)``, minutes since the chain's start (a reading's energy counts in
        the hour of its minute); those outside the period and its 7 reference days are ignored.
    period : ≥ 1; the days before it (up to 7) are the forecast's reference, so period 0 has no score.
    limits : power-quality limits.
    """
    first = max(0, period - REFERENCE_DAYS)
    days = period + 1 - first
    net = [[0] * HOURS for _ in range(days)]
    gross = [[0] * HOURS for _ in range(days)]
    low, high, min_pf = integer_limits(limits)
    metered = good = voltages = in_band = 0
    for minute, v in readings:
        d = minute // PERIOD_MINUTES - first
        if not 0 <= d < days:
            continue
        h = minute % PERIOD_MINUTES // 60
        net[d][h] += v.consumption_wh - v.production_wh
        gross[d][h] += v.consumption_wh + v.production_wh
        if d == days - 1:
            if v.power_factor_pm is not None:
                metered += v.consumption_wh
                good += v.consumption_wh if abs(v.power_factor_pm) >= min_pf else 0
            if v.voltage_dv is not None:
                voltages += 1
                in_band += low <= v.voltage_dv <= high
    return score_days(net, gross, QualityTally(metered, good, voltages, in_band), days - 1)


def member_readings(chain: Chain, keys: ChainKeys, first_minute: int, end_minute: int) -> dict[int, list[Timed]]:
    """Every member's committed readings with ``first_minute <= minute < end_minute``, opened with the chain's
    content key (held by its coordinators and the DSO)."""
    out: dict[int, list[Timed]] = defaultdict(list)
    for block in chain.blocks(1):
        for tx in block.transactions:
            for r in readings_of(tx):  # a READING, or each minute of a READING_BATCH
                if first_minute <= r.minute < end_minute:
                    out[r.member].append((r.minute, open_reading(chain.chain_id, r, keys.key_of(r))))
    return dict(out)


def period_scores(chain: Chain, keys: ChainKeys, period: int) -> dict[int, EfficiencyScore]:
    """The score of every member with a committed reading in period ``period`` (the DSO's side of a reward)."""
    first = max(0, period - REFERENCE_DAYS) * PERIOD_MINUTES
    by_member = member_readings(chain, keys, first, (period + 1) * PERIOD_MINUTES)
    return {
        m: period_score(rs, period)
        for m, rs in sorted(by_member.items())
        if any(minute // PERIOD_MINUTES == period for minute, _ in rs)
    }


def audit_reward(chain: Chain, keys: ChainKeys, reward: Reward) -> dict[int, tuple[tuple, tuple]]:
    """Members whose published components differ from their committed readings' (member → (published,
    recomputed)); empty when the reward is faithful."""
    scores = period_scores(chain, keys, reward.period)
    wrong = {}
    for card in reward.cards:
        actual = scores[card.member].components if card.member in scores else ()
        if card.components != actual:
            wrong[card.member] = (card.components, actual)
    return wrong


# ------------------------------------------------------------------ efficiency scores and rewards of a readings cube
def _timed_readings(cube: DayCube, m: int) -> list[Timed]:
    """Meter ``m``'s complete days as ledger readings ``(minute, values)``: minutes since the cube's first
    midnight, each step's reading at its last minute (as a meter reports a slot), values rounded to integer
    Wh, 0.1 V, 0.01 A and per-mille power factor (None for a quantity the data lacks)."""
    step_min = cube.step_s // 60
    scales = {"voltage_v": 10, "current_a": 100, "power_factor": 1000}
    optional = {k: np.rint(cube.values[k][m] * f) if k in cube.values else None for k, f in scales.items()}
    energy = [np.rint(cube.values.get(k, np.zeros_like(cube.values["consumption_wh"]))[m]) for k in
              ("consumption_wh", "production_wh")]
    out = []
    for d in np.flatnonzero(cube.valid[m]):
        for s in range(cube.slots):
            extra = [
                int(v[d, s]) if v is not None and np.isfinite(v[d, s]) else None for v in optional.values()
            ]
            out.append((int(d) * PERIOD_MINUTES + (s + 1) * step_min - 1,
                        ReadingValues(int(energy[0][d, s]), int(energy[1][d, s]), *extra)))
    return out


def cube_rewards(cube: DayCube, rate: int = 10, limits: Limits = Limits()) -> pd.DataFrame:
    """Every meter's PoEf efficiency score and reward for every period (day 1.. of the cube), as the DSO of a run
    scores and pays them (:func:`period_score`, :func:`gridledger.ledger.kinds.reward.reward_amounts`).

    A meter is scored for a period when its day is complete; earlier days (up to 7) are the forecast's reference.
    Returns one row per scored meter-period: ``period``, ``date``, ``meter_id``, the three components, ``score``
    (per mille) and ``amount`` (minor units at ``rate`` per score point above the threshold).

    Raises
    ------
    DataError
        If the resolution is coarser than 1 hour or not whole minutes, ``rate`` is outside 0..RATE_CAP, or no
        meter has two complete days.
    """
    if cube.step_s > 3600 or cube.step_s % 60:
        raise DataError(f"efficiency scores need readings at least hourly, in whole minutes; got "
                        f"{describe_step(cube.step_s)}")
    if not 0 <= rate <= RATE_CAP:
        raise DataError(f"the reward rate must be 0..{RATE_CAP} minor units per score point, not {rate}")
    timed = [_timed_readings(cube, m) for m in range(len(cube.meters))]
    rows = []
    for period in range(1, len(cube.days)):
        scored = [m for m in range(len(cube.meters)) if cube.valid[m, period] and cube.valid[m, :period].any()]
        scores = {m: period_score(timed[m], period, limits) for m in scored}
        cards = [Scorecard(m, *s.components, s.score) for m, s in scores.items()]
        paid = dict(reward_amounts(rate, cards))
        for m, s in scores.items():
            rows.append((period, cube.days[period].date().isoformat(), cube.meters[m], *s.components, s.score,
                         paid.get(m, 0)))
    if not rows:
        raise DataError("no meter has two complete days: a score needs a day and an earlier reference day")
    columns = ["period", "date", "meter_id", "forecast_adherence", "power_quality", "peak_reduction", "score"]
    return pd.DataFrame(rows, columns=[*columns, "amount"])


# ------------------------------------------------------------------ the plausibility check on community readings
SPIKE = "10 x + 50 Wh"


@dataclass(frozen=True)
class CheckRates:
    """How a plausibility check does on honest and tampered 1-minute readings (shares in [0, 1]).

    ``false_alarm``: honest readings flagged; ``spike``: readings replaced by ``10 x + 50`` Wh flagged;
    ``zero``: non-zero readings replaced by a zero reading flagged; ``theft_readings``: readings changed by an
    attack h1–h6 (:mod:`.attacks`) flagged; ``theft_days``: tampered meter-days with at least one alarm;
    ``honest_days``: honest meter-days with at least one alarm.
    """

    readings: int
    false_alarm: float
    spike: float
    zero: float
    theft_readings: float
    theft_days: float
    honest_days: float


def _series(consumption: np.ndarray, production: np.ndarray) -> list[ReadingValues]:
    return [ReadingValues(int(c), int(p)) for c, p in zip(consumption, production, strict=True)]


def _alarms(check: Plausibility, values: list[ReadingValues], start: int, end: int) -> np.ndarray:
    """Whether each reading ``start <= t < end`` (``t >= window``) is implausible after the readings before it."""
    w = check.window
    return np.array([check.check(values[t], values[t - w : t]) is not None for t in range(start, end)], dtype=bool)


def evaluate_check(
    check: Plausibility,
    consumption: np.ndarray,
    production: np.ndarray,
    seed: int = 0,
    injections_per_meter: int = 500,
    theft_share: float = 0.5,
) -> CheckRates:
    """Rates of ``check`` on integer 1-minute readings ``(meters, days · 1440)`` Wh: every honest reading after
    the first ``window``; spikes and zeros at ``injections_per_meter`` random minutes of each meter; attacks h1–h6
    on a ``theft_share`` of the meter-days (every reading of a tampered day checked, after the tampered series'
    readings before it)."""
    if consumption.shape != production.shape or consumption.ndim != 2 or consumption.shape[1] % PERIOD_MINUTES:
        raise ValueError("readings must be two (meters, days * 1440) arrays of the same shape")
    rng = np.random.default_rng(seed)
    w = check.window
    meters, steps = consumption.shape
    days = steps // PERIOD_MINUTES
    tampered, kind = inject_theft(consumption.reshape(meters, days, -1).astype(float), theft_share, rng)
    tampered = np.rint(tampered).astype(np.int64).reshape(meters, steps)
    honest = spikes = zeros = nonzero = theft_hits = changed = 0
    day_alarm = np.zeros((meters, days), dtype=bool)
    for m in range(meters):
        values = _series(consumption[m], production[m])
        flags = np.r_[np.zeros(w, dtype=bool), _alarms(check, values, w, steps)]
        honest += int(flags.sum())
        day_alarm[m] = flags.reshape(days, -1).any(axis=1)
        for t in rng.integers(w, steps, injections_per_meter):
            x, before = values[t], values[t - w : t]
            spikes += check.check(ReadingValues(10 * x.consumption_wh + 50, x.production_wh), before) is not None
            if x.consumption_wh or x.production_wh:
                nonzero += 1
                zeros += check.check(ReadingValues(0, 0), before) is not None
        attacked = _series(tampered[m], production[m])
        for d in np.flatnonzero(kind[m]):
            start, end = d * PERIOD_MINUTES, (d + 1) * PERIOD_MINUTES
            alarms = np.r_[np.zeros(max(0, w - start), dtype=bool), _alarms(check, attacked, max(w, start), end)]
            changed_here = tampered[m, start:end] != consumption[m, start:end]
            theft_hits += int((alarms & changed_here).sum())
            changed += int(changed_here.sum())
            day_alarm[m, d] = alarms.any()
    n = meters * (steps - w)
    return CheckRates(
        readings=n,
        false_alarm=honest / n,
        spike=spikes / (meters * injections_per_meter),
        zero=zeros / max(nonzero, 1),
        theft_readings=theft_hits / max(changed, 1),
        theft_days=float(day_alarm[kind > 0].mean()) if (kind > 0).any() else 0.0,
        honest_days=float(day_alarm[kind == 0].mean()) if (kind == 0).any() else 0.0,
    )
