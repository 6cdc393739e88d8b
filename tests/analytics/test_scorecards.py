"""The analytics in PoEf: the validators' check on community readings, exact efficiency scores from the ledger's
readings, and a reward computed, committed and audited end to end."""

from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.analytics.data import DataError
from gridledger.analytics.efficiency import _sqrt_half_down, efficiency_score, forecast_adherence
from gridledger.analytics.scorecards import audit_reward, evaluate_check, period_score, period_scores
from gridledger.consensus.plausibility import BandCheck, RobustWindowCheck
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.reading import ReadingValues
from gridledger.ledger.kinds.reward import make_reward
from gridledger.ledger.members import score
from gridledger.tiers.hierarchy import START_TIME, TierChain, build_neighbourhood


# ------------------------------------------------------------------ the check on community readings
def integer_wh(frame: pd.DataFrame, column: str) -> np.ndarray:
    return np.rint(frame[column].to_numpy()).astype(np.int64).reshape(frame["meter_id"].nunique(), -1)


def test_the_default_check_alarms_rarely_on_honest_readings_and_catches_spikes_and_zeros(minute_readings):
    consumption, production = (integer_wh(minute_readings, c) for c in ("consumption_wh", "production_wh"))
    robust = evaluate_check(RobustWindowCheck(), consumption, production, injections_per_meter=300)
    band = evaluate_check(BandCheck(), consumption, production, injections_per_meter=300)
    assert robust.readings == 3 * (3 * 1_440 - 12)
    assert robust.false_alarm <= 0.001
    assert robust.spike >= 0.95 and robust.spike > band.spike
    assert robust.zero > band.zero == 0.0
    for rates in (robust, band):
        assert all(0.0 <= getattr(rates, f) <= 1.0 for f in ("theft_readings", "theft_days", "honest_days"))


def test_evaluation_refuses_ragged_readings():
    with pytest.raises(ValueError, match="meters, days"):
        evaluate_check(RobustWindowCheck(), np.zeros((2, 100), np.int64), np.zeros((2, 100), np.int64))


# ------------------------------------------------------------------ exact efficiency arithmetic
@given(st.fractions(min_value=0, max_value=10**6, max_denominator=10**4))
def test_the_square_root_rounds_to_nearest_with_halves_down(q):
    c = _sqrt_half_down(q)
    assert (2 * c - 1) ** 2 < 4 * q <= (2 * c + 1) ** 2 or (c == 0 and 4 * q <= 1)


def test_square_root_boundaries():
    assert [_sqrt_half_down(Fraction(x)) for x in (0, 1, 4, 2)] == [0, 1, 2, 1]
    assert _sqrt_half_down(Fraction(9, 4)) == 1 and _sqrt_half_down(Fraction(9, 4) + Fraction(1, 10**9)) == 2


days_of_hours = st.lists(st.lists(st.integers(-3_000, 3_000), min_size=24, max_size=24), min_size=2, max_size=9)


@given(days_of_hours)
@settings(max_examples=60)
def test_forecast_adherence_is_the_float_formula_rounded_exactly(net):
    gross = [[abs(x) + 1 for x in day] for day in net]
    errors = [
        x - np.mean([r[h] for r in net[max(0, d - 7) : d]]) for d in range(1, len(net)) for h, x in enumerate(net[d])
    ]
    ratio = math.sqrt(np.mean(np.square(errors))) / np.mean([g for day in gross[1:] for g in day])
    assert abs(forecast_adherence(net, gross, 1) - 1000 * min(max(1 - ratio, 0), 1)) <= 0.5 + 1e-6


# ------------------------------------------------------------------ scores from the ledger
DSO = KeyPair.from_secret("dso")


def hourly_values(member: int, hour: int) -> ReadingValues:
    """A prosumer's hour: an evening peak, PV at midday for member 1, a poor power factor for member 2."""
    h = hour % 24
    load = 300 + 150 * member + (900 if 18 <= h < 22 else 0) + 37 * (hour % 5)
    pv = 700 if member == 1 and 10 <= h < 15 else 0
    return ReadingValues(max(load - pv, 0), max(pv - load, 0), 1_250 + hour % 40, None, 820 if member == 2 else 960)


@pytest.fixture
def two_days() -> Iterator[TierChain]:
    """A NAN of 3 meters that reported hourly for the chain's first 2 days (periods 0 and 1)."""
    node = build_neighbourhood(3)
    for hour in range(48):
        minute = 60 * hour + 59
        for m in node.members.values():
            node.coordinator.submit(m.device.reading(minute, hourly_values(m.index, hour)))
        assert node.round(START_TIME + 60 * (minute + 1) + 1).committed is not None
    yield node
    node.close()


def test_the_ledger_score_is_the_analytics_score_of_the_same_readings(two_days):
    readings = [(60 * h + 59, hourly_values(2, h)) for h in range(48)]
    frame = pd.DataFrame(
        {
            "meter_id": "MI-00002",
            "timestamp": pd.date_range("2026-01-01", periods=48, freq="h"),
            "consumption_wh": [v.consumption_wh for _, v in readings],
            "production_wh": [v.production_wh for _, v in readings],
            "voltage_v": [v.voltage_dv / 10 for _, v in readings],
            "power_factor": [v.power_factor_pm / 1000 for _, v in readings],
        }
    )
    assert period_score(readings, 1) == efficiency_score(frame)
    assert period_scores(two_days.coordinator.chain, two_days.coordinator.content, 1)[2] == efficiency_score(frame)
    with pytest.raises(DataError, match="reference day"):
        period_score(readings, 0)


def test_a_reward_from_the_chains_readings_commits_and_passes_the_audit(two_days):
    chain, keys = two_days.coordinator.chain, two_days.coordinator.content
    scores = period_scores(chain, keys, 1)
    assert sorted(scores) == [0, 1, 2] and scores[2].power_quality == 0 < scores[0].power_quality
    honest = make_reward(chain.state, 1, 10, {m: s.components for m, s in scores.items()}, DSO)
    assert audit_reward(chain, keys, honest) == {}
    # the ledger cannot open readings, so a DSO that publishes other components is caught by the audit
    inflated = {m: (1000, 1000, 1000) if m == 2 else s.components for m, s in scores.items()}
    assert audit_reward(chain, keys, make_reward(chain.state, 1, 10, inflated, DSO)) == {
        2: ((1000, 1000, 1000), scores[2].components)
    }
    two_days.coordinator.submit(honest)
    assert two_days.round(START_TIME + 2 * 86_400 + 1).committed is not None
    assert [score(two_days.replica.state, m) for m in range(3)] == [scores[m].score for m in range(3)]


def test_power_quality_counts_only_what_a_meter_measures_and_either_sign_of_power_factor():
    day = [(60 * h + 59, ReadingValues(400, 0)) for h in range(24)]

    def quality(*values: ReadingValues) -> int:
        return period_score(day + [(1_440 + 60 * h + 59, v) for h, v in enumerate(values)], 1).power_quality

    assert quality(*[ReadingValues(400, 0)] * 24) == 1000  # nothing measured: no evidence of poor quality
    assert quality(*[ReadingValues(400, 0, 1_270, None, -950)] * 24) == 1000  # leading 0.95 is good
    poor_half = [ReadingValues(400, 0, 1_270, None, pf) for pf in (950, 850) * 12]
    assert quality(*poor_half) == 500
    assert quality(*[ReadingValues(400, 0, v, None, 950) for v in (1_142, 1_143, 1_397, 1_398) * 6]) == 500


def test_cube_rewards_refuse_what_the_rule_cannot_score(cube):
    from gridledger.analytics.data import DataError
    from gridledger.analytics.scorecards import cube_rewards

    with pytest.raises(DataError, match="at least hourly"):
        cube_rewards(cube.coarsen(7200))
    with pytest.raises(DataError, match=r"rate must be 0\.\.100"):
        cube_rewards(cube, rate=101)
    one_day = type(cube)(cube.meters, cube.days[:1], cube.step_s, {k: v[:, :1] for k, v in cube.values.items()},
                         cube.labels[:, :1])
    with pytest.raises(DataError, match="two complete days"):
        cube_rewards(one_day)


def test_cube_rewards_without_electrical_columns_count_power_quality_as_full(cube):
    from gridledger.analytics.scorecards import cube_rewards

    energy = {k: cube.values[k] for k in ("consumption_wh", "production_wh")}
    bare = type(cube)(cube.meters, cube.days, cube.step_s, energy, cube.labels)
    full, plain = cube_rewards(cube), cube_rewards(bare)
    assert (plain["power_quality"] == 1000).all() and (full["power_quality"] < 1000).any()
    assert plain["forecast_adherence"].tolist() == full["forecast_adherence"].tolist()
