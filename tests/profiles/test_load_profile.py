"""Household load: BDEW scaling, the 1-minute disaggregation and the seeded individualisation."""

from __future__ import annotations

import datetime as dt
import warnings

import numpy as np
import pandas as pd
import pytest
from demandlib import bdew
from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.profiles import PROFILES, LoadNoise, household_load
from gridledger.profiles.holidays import mexican_holidays
from gridledger.profiles.load import bdew_shares

TZ = "America/Mexico_City"


def minutes(start: str, days: float, tz: str | None = TZ) -> pd.DatetimeIndex:
    return pd.date_range(start, periods=int(days * 1440), freq="1min", tz=tz)


def quarter_hours(start: str, days: float, tz: str | None = TZ) -> pd.DatetimeIndex:
    return pd.date_range(start, periods=int(days * 96), freq="15min", tz=tz)


def test_one_minute_disaggregation_preserves_each_quarter_hour_energy():
    fine = household_load(minutes("2024-03-01", 3), 2400, seed=7)
    coarse = household_load(quarter_hours("2024-03-01", 3), 2400, seed=7)
    np.testing.assert_allclose(fine.resample("15min").mean().to_numpy(), coarse.to_numpy(), rtol=1e-12)
    assert fine.std() > coarse.std()  # the minutes really vary inside the blocks


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    annual=st.floats(100, 20000),
    profile=st.sampled_from(["H0", "H25", "G0", "S25"]),
    offset=st.integers(0, 14),
    step=st.sampled_from([1, 3, 5]),
)
def test_any_minute_step_averages_the_one_minute_series(seed, annual, profile, offset, step):
    start = pd.Timestamp("2024-05-10 06:00", tz=TZ) + pd.Timedelta(minutes=offset)
    base = pd.date_range(start, periods=300, freq="1min")
    fine = household_load(base, annual, profile, seed)
    coarse = household_load(pd.date_range(start, periods=300 // step, freq=f"{step}min"), annual, profile, seed)
    expected = fine.to_numpy()[: 300 // step * step].reshape(-1, step).mean(axis=1)
    np.testing.assert_allclose(coarse.to_numpy(), expected, rtol=1e-9)
    assert (fine >= 0).all()


@pytest.mark.parametrize("profile", ["H0", "H0_DYN", "H25", "G0", "L0", "P25"])
@pytest.mark.parametrize("noise", [LoadNoise(), LoadNoise.none()])
def test_a_calendar_year_holds_exactly_the_annual_consumption(profile, noise):
    index = pd.date_range("2023-01-01", "2024-01-01", freq="15min", inclusive="left", tz=TZ)
    load = household_load(index, 2750.0, profile, seed=3, noise=noise)
    assert load.sum() * 0.25 / 1000 == pytest.approx(2750.0, rel=1e-9)


def test_load_is_linear_in_annual_consumption():
    index = minutes("2024-07-01", 2)
    np.testing.assert_allclose(household_load(index, 3000, seed=1), 2 * household_load(index, 1500, seed=1))


@pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")  # demandlib 0.2.2 on pandas 3
def test_without_noise_it_is_demandlib_h25_scaled_to_the_year():
    index = pd.date_range("2025-01-01", "2026-01-01", freq="15min", inclusive="left")
    ours = household_load(index, 1000.0, "H25", noise=LoadNoise.none())
    theirs_kw = bdew.H25(index, holidays=mexican_holidays(2025)).to_numpy()  # kW for about 1 GWh a year
    year_kwh = theirs_kw.sum() / 4
    np.testing.assert_allclose(ours.to_numpy(), theirs_kw * 1000 * (1000.0 / year_kwh), rtol=1e-12)


def test_without_noise_the_power_is_constant_inside_each_block():
    load = household_load(minutes("2024-02-01", 1), 2000, noise=LoadNoise.none())
    assert (load.groupby(load.index.floor("15min")).nunique() == 1).all()


def test_mexican_holidays_are_sundays_in_the_bdew_profile():
    # 5 Feb 2024 is Constitution Day (first Monday of February); 4 Feb is a Sunday, 12 Feb an ordinary Monday
    def day(date: str) -> np.ndarray:
        return household_load(quarter_hours(date, 1), 2000, "H0", noise=LoadNoise.none()).to_numpy()

    np.testing.assert_array_equal(day("2024-02-05"), day("2024-02-04"))
    assert not np.array_equal(day("2024-02-12"), day("2024-02-04"))


def test_mexican_holidays_follow_the_labour_law():
    assert mexican_holidays(2024) == [
        dt.date(2024, 1, 1),
        dt.date(2024, 2, 5),
        dt.date(2024, 3, 18),
        dt.date(2024, 5, 1),
        dt.date(2024, 9, 16),
        dt.date(2024, 10, 1),
        dt.date(2024, 11, 18),
        dt.date(2024, 12, 25),
    ]
    assert dt.date(2018, 12, 1) in mexican_holidays(2018)
    assert len(mexican_holidays(2025)) == 7


def test_the_same_seed_reproduces_and_another_seed_differs():
    index = minutes("2024-01-15", 2)
    a, b, c = (household_load(index, 2000, seed=s) for s in (11, 11, 12))
    pd.testing.assert_series_equal(a, b)
    assert not np.allclose(a, c)


def test_households_differ_but_hold_the_same_energy_over_the_span():
    index = minutes("2024-08-01", 7)
    loads = [household_load(index, 2000, seed=s) for s in range(5)]
    totals = [load.sum() for load in loads]
    np.testing.assert_allclose(totals, totals[0], rtol=1e-9)
    assert np.corrcoef(loads[0], loads[1])[0, 1] < 0.9


def test_tz_aware_and_naive_indexes_follow_the_same_wall_clock():
    aware = household_load(minutes("2024-04-01", 1), 2000, seed=2)
    naive = household_load(minutes("2024-04-01", 1, tz=None), 2000, seed=2)
    np.testing.assert_array_equal(aware.to_numpy(), naive.to_numpy())
    assert aware.index.equals(minutes("2024-04-01", 1))


def test_evening_peak_above_night_in_h0():
    load = household_load(minutes("2024-03-04", 28), 2000, seed=5)
    by_hour = load.groupby(load.index.hour).mean()
    assert by_hour[19] > 1.5 * by_hour[3]


def test_appliance_events_stay_below_their_cap():
    noise = LoadNoise(minute_sigma=0.0, event_probability=1.0, event_share=(0.8, 0.8), event_max_w=400.0)
    load = household_load(minutes("2024-03-01", 2), 9000, seed=4, noise=noise)
    blocks = load.groupby(load.index.floor("15min"))
    assert ((blocks.max() - blocks.min()) <= 400.0 + 1e-6).all()
    assert (blocks.max() - blocks.min()).max() > 100  # the events are there


def test_profiles_listed_are_all_available():
    for profile in PROFILES:
        shares = bdew_shares(profile, 2024)
        assert shares.shape == (366 * 96,)
        assert shares.sum() == pytest.approx(1.0)
        assert (shares >= 0).all()


def test_elec_slp_workaround_leaves_the_warning_filters_alone():
    before = list(warnings.filters)
    bdew_shares("G3", 2031)  # a year no other test builds: runs demandlib's ElecSlp
    assert warnings.filters == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"annual_kwh": -1}, "annual_kwh must be a finite number >= 0"),
        ({"annual_kwh": float("nan")}, "annual_kwh must be a finite number >= 0"),
        ({"annual_kwh": float("inf")}, "annual_kwh must be a finite number >= 0"),
        ({"profile": "X9"}, "unknown BDEW profile 'X9'"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"seed": 1.5}, "seed must be a non-negative integer"),
        ({"seed": True}, "seed must be a non-negative integer"),
        ({"index": pd.date_range("2024-01-01", periods=10, freq="30s")}, "whole number of minutes"),
        ({"index": pd.DatetimeIndex([])}, "index is empty"),
        ({"index": pd.DatetimeIndex(["2024-01-01 00:00", "2024-01-01 00:01", "2024-01-01 00:03"])}, "evenly"),
        ({"index": pd.DatetimeIndex(["2024-01-01 00:01", "2024-01-01 00:00"])}, "strictly increasing"),
        ({"index": pd.DatetimeIndex(["2024-01-01"])}, "needs a freq"),
        ({"index": pd.DatetimeIndex(["2024-01-01", None])}, "NaT"),
        ({"index": [1, 2, 3]}, "must be a pandas.DatetimeIndex"),
    ],
)
def test_bad_inputs_are_rejected_with_a_specific_message(kwargs, message):
    args = {"index": minutes("2024-01-01", 0.1), "annual_kwh": 1000.0} | kwargs
    with pytest.raises(ValueError, match=message):
        household_load(**args)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"day_sigma": -0.1}, "day_sigma"),
        ({"block_sigma": float("nan")}, "block_sigma"),
        ({"block_corr": 1.0}, "block_corr"),
        ({"minute_corr": -0.2}, "minute_corr"),
        ({"event_probability": 1.5}, "event_probability"),
        ({"event_share": (0.9, 0.2)}, "event_share"),
        ({"event_max_w": 0.0}, "event_max_w"),
        ({"max_shift_minutes": 20}, "max_shift_minutes"),
    ],
)
def test_bad_noise_parameters_are_rejected(kwargs, key):
    with pytest.raises(ValueError, match=f"LoadNoise.{key}"):
        LoadNoise(**kwargs)


def test_a_one_element_index_with_a_freq_is_a_step():
    index = pd.date_range("2024-06-01 12:00", periods=1, freq="15min", tz=TZ)
    load = household_load(index, 2000, noise=LoadNoise.none())
    longer = household_load(
        pd.date_range("2024-06-01 12:00", periods=4, freq="15min", tz=TZ), 2000, noise=LoadNoise.none()
    )
    assert load.iloc[0] == pytest.approx(longer.iloc[0])


@pytest.mark.parametrize("day", ["2022-04-02", "2022-10-29"])  # Mexico City's last daylight-saving changes
def test_daylight_saving_changes_keep_the_energy_of_every_block(day):
    fine = household_load(minutes(day, 3), 2000, seed=3)
    coarse = household_load(quarter_hours(day, 3), 2000, seed=3)
    assert fine.notna().all() and (fine >= 0).all()
    np.testing.assert_allclose(fine.resample("15min").mean().to_numpy(), coarse.to_numpy(), rtol=1e-12)
