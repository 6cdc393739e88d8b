"""The plausibility plug-in point and the default band check."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gridledger.consensus.plausibility import BandCheck, Implausible, Plausibility
from gridledger.ledger.kinds.reading import ReadingValues

CHECK = BandCheck()
energy = st.integers(0, 100_000)


def history(*wh: int) -> list[ReadingValues]:
    return [ReadingValues(w, 0) for w in wh]


def test_the_default_is_a_plausibility_plug_in():
    assert isinstance(CHECK, Plausibility)
    assert CHECK.name == "band" and CHECK.window == 6


def test_no_verdict_without_enough_history():
    assert CHECK.check(ReadingValues(10_000), history(10, 10)) is None


def test_a_spike_and_a_drop_far_outside_the_band_are_flagged():
    past = history(20, 22, 18, 21, 19, 20)
    assert CHECK.check(ReadingValues(21), past) is None
    assert CHECK.check(ReadingValues(79), past) is None  # within the 60 Wh floor of the band
    spike = CHECK.check(ReadingValues(200), past)
    assert isinstance(spike, Implausible) and spike.detector == "band" and "consumption_wh 200" in spike.reason
    big = history(1_000, 1_100, 900, 1_000)
    assert CHECK.check(ReadingValues(0), big) is None  # −100 % stays within ±300 %
    assert CHECK.check(ReadingValues(4_100), big) is not None
    assert CHECK.check(ReadingValues(20, 500), past) is not None  # production is checked too


def test_only_the_last_window_counts():
    past = history(*([5_000] * 10), *([20] * 6))
    assert CHECK.check(ReadingValues(20), past) is None
    assert CHECK.check(ReadingValues(5_000), past) is not None


@given(st.lists(energy, min_size=3, max_size=12))
def test_the_median_of_the_history_is_always_plausible(past):
    values = history(*past)
    window = sorted(past[-CHECK.window :])
    median = window[(len(window) - 1) // 2]
    assert CHECK.check(ReadingValues(median, 0), values) is None


@given(st.lists(energy, min_size=0, max_size=12), energy, energy)
def test_the_verdict_is_a_function_of_its_inputs(past, consumption, production):
    values = history(*past)
    reading = ReadingValues(consumption, production)
    assert CHECK.check(reading, values) == CHECK.check(reading, list(values))
