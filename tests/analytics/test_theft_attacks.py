"""The Jokar et al. (2016) attack models h1-h6, each checked against its definition."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gridledger.analytics.theft_attacks import (
    ATTACKS,
    PERSISTENT_START,
    h1,
    h2,
    h3,
    h4,
    h5,
    h6,
    inject_theft,
    persistent_theft,
)

SLOTS = st.sampled_from([1, 4, 24, 96, 1440])


def days(n_rows: int, slots: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).gamma(2.0, 50.0, size=(n_rows, slots)) + 1.0


@given(SLOTS, st.integers(0, 2**32 - 1))
@settings(max_examples=40, deadline=None)
def test_h1_scales_the_whole_day_by_one_alpha(slots, seed):
    x = days(5, slots, seed)
    ratio = h1(x, np.random.default_rng(seed)) / x
    assert np.allclose(ratio, ratio[:, :1])
    assert ((ratio >= 0.1) & (ratio <= 0.8)).all()


@given(SLOTS, st.integers(0, 2**32 - 1))
@settings(max_examples=40, deadline=None)
def test_h2_zeroes_one_interval_of_at_least_four_hours(slots, seed):
    x = days(20, slots, seed)
    y = h2(x, np.random.default_rng(seed))
    for before, after in zip(x, y, strict=True):
        zero = after == 0
        idx = np.flatnonzero(zero)
        assert idx.size >= np.ceil(slots * 4 / 24)
        assert (np.diff(idx) == 1).all(), "one contiguous interval"
        np.testing.assert_array_equal(after[~zero], before[~zero])


@given(SLOTS, st.integers(0, 2**32 - 1))
@settings(max_examples=40, deadline=None)
def test_h3_scales_each_step_independently(slots, seed):
    x = days(5, slots, seed)
    ratio = h3(x, np.random.default_rng(seed)) / x
    assert ((ratio >= 0.1) & (ratio <= 0.8)).all()
    if slots > 1:
        assert np.unique(ratio).size > 5


def test_h4_is_gamma_times_the_mean():
    x = days(5, 96)
    ratio = h4(x, np.random.default_rng(1)) / x.mean(axis=1, keepdims=True)
    assert ((ratio >= 0.1) & (ratio <= 0.8)).all() and np.unique(ratio).size > 96


def test_h5_is_the_flat_mean_and_keeps_the_energy():
    x = days(3, 96)
    y = h5(x, np.random.default_rng(0))
    np.testing.assert_allclose(y.sum(axis=1), x.sum(axis=1))
    assert np.allclose(y, y[:, :1])


def test_h6_reverses_the_day_and_keeps_the_energy():
    x = days(3, 96)
    y = h6(x, np.random.default_rng(0))
    np.testing.assert_array_equal(y, x[:, ::-1])


def test_inject_respects_the_rate_and_leaves_missing_days_alone():
    x = days(2000, 24)
    x[:10] = np.nan
    y, kind = inject_theft(x, 0.5, np.random.default_rng(0))
    assert (kind[:10] == 0).all() and np.isnan(y[:10]).all()
    assert 0.45 < (kind > 0).mean() < 0.55
    assert set(np.unique(kind[kind > 0])) == {1, 2, 3, 4, 5, 6}
    honest = kind == 0
    np.testing.assert_array_equal(y[honest][10:], x[honest][10:])
    assert not np.allclose(y[~honest], x[~honest])


@given(arrays(float, (4, 3, 24), elements=st.floats(0, 1e4)), st.floats(0, 1), st.integers(0, 1000))
@settings(max_examples=30, deadline=None)
def test_inject_keeps_shape_and_energy_nonnegative(x, rate, seed):
    y, kind = inject_theft(x, rate, np.random.default_rng(seed))
    assert y.shape == x.shape and kind.shape == x.shape[:2]
    assert (y >= 0).all()


@given(arrays(float, (6, 5, 24), elements=st.sampled_from([0.0, 0.0, 0.0, 1.0, 250.0])), st.integers(0, 1000))
@settings(max_examples=40, deadline=None)
def test_a_day_is_labelled_tampered_exactly_when_its_readings_changed(x, seed):
    y, kind = inject_theft(x, 1.0, np.random.default_rng(seed))
    changed = (y != x).any(axis=-1)
    np.testing.assert_array_equal(kind > 0, changed)


def test_an_attack_on_a_day_without_import_is_no_theft():
    # a battery home that imported nothing all day: every attack reports the truth, so nothing is stolen or labelled
    x = days(600, 24)
    x[::2] = 0.0
    y, kind = inject_theft(x, 1.0, np.random.default_rng(0))
    assert (kind[::2] == 0).all() and (y[::2] == 0).all()
    assert (kind[1::2] > 0).all()


def test_inject_with_a_subset_of_attacks():
    _, kind = inject_theft(days(500, 24), 1.0, np.random.default_rng(0), ("h5", "h6"))
    assert set(np.unique(kind)) == {5, 6}


@pytest.mark.parametrize(
    ("rate", "attacks", "message"),
    [
        (1.5, tuple(ATTACKS), "theft rate"),
        (0.5, ("h7",), "unknown attack"),
        (0.5, (), "unknown attack"),
    ],
)
def test_inject_rejects_bad_arguments(rate, attacks, message):
    with pytest.raises(ValueError, match=message):
        inject_theft(days(2, 24), rate, np.random.default_rng(0), attacks)


@given(st.integers(1, 40), st.floats(0.0, 1.0), st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_a_persistent_thief_scales_every_day_from_its_start_on_by_one_alpha(n_days, share, seed):
    x = days(6 * n_days, 8, seed).reshape(6, n_days, 8)
    x[0, n_days // 2] = np.nan  # a missing day is never tampered
    y, tampered = persistent_theft(x, share, np.random.default_rng(seed))
    assert tampered.shape == (6, n_days) and not tampered[0, n_days // 2]
    np.testing.assert_array_equal(y[~tampered], x[~tampered])
    for m in range(6):
        if not tampered[m].any():
            continue
        first = int(np.argmax(tampered[m]))
        latest = int(PERSISTENT_START[1] * n_days) + (m == 0)  # meter 0's start may be its missing day
        assert int(PERSISTENT_START[0] * n_days) <= first <= latest
        assert tampered[m, first:][np.isfinite(x[m, first:]).all(axis=-1)].all(), "to the end of the period"
        ratio = y[m][tampered[m]] / x[m][tampered[m]]
        assert np.allclose(ratio, ratio.flat[0]) and 0.1 <= ratio.flat[0] <= 0.8


def test_persistent_thieves_are_the_share_asked_for_and_bad_input_is_rejected():
    x = days(400 * 10, 4).reshape(400, 10, 4)
    _, tampered = persistent_theft(x, 0.25, np.random.default_rng(0))
    assert 0.2 < tampered.any(axis=1).mean() < 0.3
    assert not persistent_theft(x, 0.0, np.random.default_rng(0))[1].any()
    with pytest.raises(ValueError, match="thief share must be in"):
        persistent_theft(x, 1.5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="expected a"):
        persistent_theft(x[0], 0.5, np.random.default_rng(0))
