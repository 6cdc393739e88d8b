"""The rank test (RankCheck): the long-history reference check of the analytics evaluation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.consensus.plausibility import Plausibility, RankCheck
from gridledger.ledger.kinds.reading import ReadingValues

CHECK = RankCheck(window=2000, period=None)
HISTORY = [ReadingValues(int(w)) for w in np.random.default_rng(0).gamma(4.0, 2.5, size=2000).round()]  # mean 10


def test_it_is_a_plausibility_plug_in():
    assert isinstance(CHECK, Plausibility) and CHECK.name == "rank"


def test_a_typical_reading_passes():
    assert CHECK.check(ReadingValues(10), HISTORY) is None


def test_a_reading_far_off_raises_an_alarm():
    verdict = CHECK.check(ReadingValues(500), HISTORY)
    assert verdict is not None and "consumption_wh 500 Wh is far above the expected 9 Wh" in verdict.reason


def test_production_is_judged_too():
    past = [ReadingValues(10, 3)] * 1200  # at alpha = 1000 ppm it needs >= 999 readings
    verdict = CHECK.check(ReadingValues(10, 400), past)
    assert verdict is not None and verdict.reason.startswith("production_wh 400 Wh")


def test_too_little_history_gives_no_verdict():
    assert CHECK.check(ReadingValues(10_000), HISTORY[:23]) is None


def test_a_period_compares_with_the_same_phase_of_earlier_days():
    day = [1] * 12 + [50] * 12  # night 1 Wh, evening 50 Wh; the next reading is at phase 0 (night)
    past = [ReadingValues(w + i % 2) for i, w in enumerate(day * 10)]
    assert RankCheck(window=240, period=None, alpha_ppm=50_000).check(ReadingValues(50), past) is None
    verdict = RankCheck(window=240, period=24, alpha_ppm=50_000).check(ReadingValues(50), past)
    assert verdict is not None and "far above the expected 1 Wh" in verdict.reason


@given(st.integers(0, 10_000), st.integers(0, 10_000))
@settings(max_examples=60, deadline=None)
def test_a_reading_further_off_is_never_more_plausible(a, b):
    near, far = sorted([a, b], key=lambda v: abs(v - 9))
    if CHECK.check(ReadingValues(near), HISTORY) is not None:
        assert CHECK.check(ReadingValues(far), HISTORY) is not None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"alpha_ppm": 0}, "alpha_ppm"), ({"alpha_ppm": 10**6}, "alpha_ppm"), ({"period": 0}, "period")],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RankCheck(**kwargs)
