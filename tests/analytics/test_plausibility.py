"""The validator's per-reading plausibility check."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.consensus.plausibility import plausibility

HISTORY = np.random.default_rng(0).gamma(4.0, 2.5, size=2000)  # Wh per minute, mean 10


def test_a_typical_reading_passes():
    ok, score, reason = plausibility(HISTORY, 10.0)
    assert ok and score > 0.5 and "within the meter's history" in reason


def test_a_reading_far_off_raises_an_alarm():
    ok, score, reason = plausibility(HISTORY, 500.0)
    assert not ok and score < 0.001 and "far above" in reason


@pytest.mark.parametrize(
    ("value", "reason"), [(-1.0, "negative energy"), (np.nan, "not a finite"), (np.inf, "not a finite")]
)
def test_impossible_readings_are_never_plausible(value, reason):
    ok, score, why = plausibility(HISTORY, value)
    assert not ok and score == 0.0 and reason in why


def test_too_little_history_passes_and_says_so():
    ok, score, reason = plausibility(np.array([1.0, 2.0, np.nan]), 1000.0)
    assert ok and score == 1.0 and "only 2 earlier reading(s)" in reason


def test_a_period_compares_with_the_same_phase_of_earlier_days():
    day = np.r_[np.full(12, 1.0), np.full(12, 50.0)]  # night 1 Wh, evening 50 Wh
    history = np.tile(day, 10) + np.random.default_rng(1).normal(0, 0.1, 240)
    # next reading is at phase 0 (night): 50 Wh is normal for the history as a whole, not at night
    assert plausibility(history, 50.0).ok
    ok, _, reason = plausibility(history, 50.0, period=24, alpha=0.05)
    assert not ok and "far above the expected 1.0" in reason


@given(st.floats(0, 1e4), st.floats(0, 1e4))
@settings(max_examples=100)
def test_score_is_a_probability_that_falls_with_distance(a, b):
    near, far = sorted([a, b], key=lambda v: abs(v - np.median(HISTORY)))
    s_near = plausibility(HISTORY, near).score
    s_far = plausibility(HISTORY, far).score
    assert 0 < s_far <= s_near <= 1


@pytest.mark.parametrize(("kwargs", "message"), [({"alpha": 0.0}, "alpha"), ({"period": 0}, "period")])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plausibility(HISTORY, 1.0, **kwargs)
