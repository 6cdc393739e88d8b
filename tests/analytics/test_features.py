"""Per meter-day theft features: shape, missing days, scale invariance and the signals the attacks leave."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.analytics.features import (
    BASE,
    NORMALIZED,
    THEFT_FEATURES,
    ZEROS,
    day_features,
    feature_names,
    theft_features,
)
from gridledger.analytics.theft_attacks import h1, h5, h6


def col(name: str, slots: int = 96) -> int:
    return feature_names(slots).index(name)


def test_shape_and_names(cube):
    x = cube.values["consumption_wh"]
    f = theft_features(x)
    assert f.shape == (*x.shape[:2], len(feature_names(96)))
    assert np.isfinite(f).all()
    assert len(feature_names(96)) == len(set(feature_names(96)))
    assert feature_names(96) == feature_names(4)  # the same features at every resolution
    # per-meter normalization: the raw day statistics reach the detector only as z-scores
    assert not set(NORMALIZED) - {"shape_corr", "shape_l1"} & set(feature_names(96))
    kept = set(NORMALIZED) - {"zero_share"}  # zero slots as an excess share instead (ZEROS)
    assert {f"z_{n}" for n in kept} | {f"nb_z_{n}" for n in kept} | set(ZEROS) <= set(feature_names(96))


def test_normalized_features_do_not_see_a_households_level_of_spikiness():
    """A meter whose every day is twice as spiky has the same z-scores: only its deviations count."""
    rng = np.random.default_rng(0)
    x = rng.gamma(4.0, 10.0, size=(4, 20, 96))
    spiky = x.copy()
    spiky[0] = x[0].mean(axis=-1, keepdims=True) + 2 * (x[0] - x[0].mean(axis=-1, keepdims=True))
    a, b = day_features(x), day_features(spiky)
    assert np.median(b["cv"][0]) > 1.5 * np.median(a["cv"][0])
    np.testing.assert_allclose(b["z_cv"][0], a["z_cv"][0], rtol=0.02)  # up to the scale floor


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
    np.testing.assert_allclose(theft_features(x * factor), theft_features(x), atol=1e-6)


def test_zero_and_flat_days_give_finite_features_without_warnings():
    x = np.random.default_rng(0).gamma(2.0, 10.0, size=(3, 5, 24))
    x[0, 0] = 0.0
    x[1, 1] = 5.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f = theft_features(x)
        table = day_features(x)
    assert np.isfinite(f).all()
    assert table["zero_share"][0, 0] == 1.0 and table["cv"][1, 1] == 0.0
    assert f[0, 0, col("zero_run", 24)] == 1.0


def test_attacks_move_the_features_they_should(cube):
    x = cube.values["consumption_wh"].copy()
    rng = np.random.default_rng(0)
    x[:, 5] = h1(x[:, 5], rng)
    x[:, 6] = h5(x[:, 6], rng)
    x[:, 7] = h6(x[:, 7], rng)
    f = theft_features(x)
    honest = np.median(f[:, [0, 1, 2, 3, 4]], axis=(0, 1))
    assert np.median(f[:, 5, col("log_energy_ratio")]) < honest[col("log_energy_ratio")] - 0.2
    assert (f[:, 6, col("z_cv")] < honest[col("z_cv")] - 2).all()
    assert np.median(f[:, 7, col("shape_corr")]) < honest[col("shape_corr")] - 0.3
    # the hourly features: a reversed day's reversal score drops, a flattened day's hours leave their normal
    assert (f[:, 7, col("reversal")] < honest[col("reversal")]).mean() > 0.9
    assert np.median(f[:, 7, col("z_reversal")]) < -2
    assert np.median(f[:, 6, col("hour_z_mean_abs")]) > honest[col("hour_z_mean_abs")] + 0.5


def test_one_zero_slot_moves_the_zero_features_by_its_share_not_by_a_z_score(cube):
    """A meter that never reads zero has a MAD of zero shares of 0: one zero slot made a z-score of about 10, which
    the v4 detector read (``z_zero_share``) and took for h2 on homes of a source it had not seen."""
    x = cube.values["consumption_wh"] + 1.0  # no zero slot anywhere
    x[0, 3, 10] = 0.0
    table = day_features(x)
    assert table["zero_excess"][0, 3] == pytest.approx(1 / x.shape[-1])
    assert table["zero_excess"][0, 2] == 0.0 and table["nb_zero_excess"][0, 3] == pytest.approx(1 / x.shape[-1])
    assert table["z_zero_share"][0, 3] > 5  # still computed, for the models up to v4 that read it
    assert not {"z_zero_share", "nb_z_zero_share"} & set(THEFT_FEATURES)


def test_the_base_load_tells_a_quiet_day_from_a_scaled_one():
    """h1 scales the always-on load with the rest of the day; a quiet honest day keeps it (BASE)."""
    rng = np.random.default_rng(0)
    activity = rng.gamma(0.5, 40.0, size=(4, 20, 96)) * (rng.uniform(size=(4, 20, 96)) < 0.3)
    x = 10.0 + activity  # an always-on load of 10 Wh per slot
    x[0, 5] = 10.0 + 0.2 * activity[0, 5]  # a quiet day: far less energy, the same base
    x[0, 6] = 0.5 * x[0, 6]  # h1 with alpha = 0.5
    table = day_features(x)
    assert table["log_energy_ratio"][0, 5] < -0.3 and abs(table["log_base_ratio"][0, 5]) < 0.05
    assert table["log_base_ratio"][0, 6] == pytest.approx(np.log(0.5), abs=0.05)
    assert table["nb_base_ratio"][0, 6] == pytest.approx(np.log(0.5), abs=0.05)
    assert set(BASE) <= set(THEFT_FEATURES)


def test_base_z_weighs_a_base_drop_by_the_meters_own_spread():
    """The same 20 % drop of the base is far out for a steady meter and ordinary for one whose base wanders."""
    rng = np.random.default_rng(1)
    steady = 10.0 * rng.lognormal(0.0, 0.01, size=(1, 20, 1)) + rng.gamma(0.5, 40.0, size=(1, 20, 96))
    wandering = 10.0 * rng.lognormal(0.0, 0.3, size=(1, 20, 1)) + rng.gamma(0.5, 40.0, size=(1, 20, 96))
    x = np.concatenate([steady, wandering])
    x[:, 4] *= 0.8
    table = day_features(x)
    assert table["log_base_ratio"][0, 4] < -0.15 and table["base_z"][0, 4] < -5
    assert abs(table["base_z"][1, 4]) < 2


def test_slots_with_export_are_not_the_base_load():
    """A PV home reads zero import at sunny midday: with its export register those slots are left out of the base,
    so a sunny honest day keeps its base; without it the base of such a day is zero."""
    x = np.full((2, 10, 96), 20.0)
    export = np.zeros_like(x)
    x[0, 3, 40:64], export[0, 3, 40:64] = 0.0, 50.0  # day 3: 6 h of PV surplus
    blind, seeing = day_features(x), day_features(x, export)
    assert blind["log_base_ratio"][0, 3] < -3
    assert seeing["log_base_ratio"][0, 3] == pytest.approx(0.0) and seeing["base_z"][0, 3] == pytest.approx(0.0)
    x[1, 5, 40:64] = 0.0  # zero import without export (h2) still pulls the base down
    assert day_features(x, export)["log_base_ratio"][1, 5] < -3
    with pytest.raises(ValueError, match="export register has shape"):
        day_features(x, export[:, :5])


def test_daily_resolution_works():
    x = np.random.default_rng(0).gamma(2.0, 10.0, size=(4, 10, 1))
    f = theft_features(x)
    assert f.shape == (4, 10, len(feature_names(1))) and np.isfinite(f).all()


def test_rejects_a_non_cube():
    with pytest.raises(ValueError, match="cube"):
        theft_features(np.zeros((3, 96)))
