"""Per meter-day theft features: shape, missing days, scale invariance and the signals the attacks leave."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.analytics.features import feature_names, theft_features
from gridledger.analytics.theft_attacks import h1, h5, h6


def col(name: str, slots: int = 96) -> int:
    return feature_names(slots).index(name)


def test_shape_and_names(cube):
    x = cube.values["consumption_wh"]
    f = theft_features(x)
    assert f.shape == (*x.shape[:2], len(feature_names(96)))
    assert np.isfinite(f).all()
    assert len(feature_names(96)) == len(set(feature_names(96)))
    assert [n for n in feature_names(96) if n[6:].isdigit()] == [f"shape_{h:02d}" for h in range(24)]


def test_missing_days_get_nan_and_are_no_reference(cube):
    x = cube.values["consumption_wh"].copy()
    full = theft_features(x)
    x[0, 3] = np.nan
    f = theft_features(x)
    assert np.isnan(f[0, 3]).all()
    assert np.isfinite(f[0, np.arange(x.shape[1]) != 3]).all()
    assert not np.allclose(f[0, 0], full[0, 0])  # the meter's references changed without that day


@given(st.floats(0.01, 100.0))
@settings(max_examples=10, deadline=None)
def test_features_do_not_depend_on_the_unit_of_energy(factor):
    x = np.random.default_rng(0).gamma(2.0, 10.0, size=(5, 8, 96))
    np.testing.assert_allclose(theft_features(x * factor)[..., :40], theft_features(x)[..., :40], atol=1e-6)


def test_zero_and_flat_days_give_finite_features_without_warnings():
    x = np.random.default_rng(0).gamma(2.0, 10.0, size=(3, 5, 24))
    x[0, 0] = 0.0
    x[1, 1] = 5.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f = theft_features(x)
    assert np.isfinite(f).all()
    assert f[0, 0, col("zero_share", 24)] == 1.0 and f[1, 1, col("cv", 24)] == 0.0


def test_attacks_move_the_features_they_should(cube):
    x = cube.values["consumption_wh"].copy()
    rng = np.random.default_rng(0)
    x[:, 5] = h1(x[:, 5], rng)
    x[:, 6] = h5(x[:, 6], rng)
    x[:, 7] = h6(x[:, 7], rng)
    f = theft_features(x)
    honest = np.median(f[:, [0, 1, 2, 3, 4]], axis=(0, 1))
    assert np.median(f[:, 5, col("log_energy_ratio")]) < honest[col("log_energy_ratio")] - 0.2
    assert (f[:, 6, col("cv")] < 1e-9).all()
    assert np.median(f[:, 7, col("shape_corr")]) < honest[col("shape_corr")] - 0.3


def test_daily_resolution_works():
    x = np.random.default_rng(0).gamma(2.0, 10.0, size=(4, 10, 1))
    f = theft_features(x)
    assert f.shape == (4, 10, len(feature_names(1))) and np.isfinite(f).all()


def test_rejects_a_non_cube():
    with pytest.raises(ValueError, match="cube"):
        theft_features(np.zeros((3, 96)))
