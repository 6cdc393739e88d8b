"""PV output: pvlib clear sky and PVWatts at Morelia, with the seeded cloud process."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pvlib.location import Location

from gridledger.profiles import MORELIA, PVArray, pv_power, synthetic_weather

TZ = "America/Mexico_City"


def minutes(start: str, days: float, tz: str | None = TZ) -> pd.DatetimeIndex:
    return pd.date_range(start, periods=int(days * 1440), freq="1min", tz=tz)


def test_morelia_is_the_papers_testbed():
    assert (MORELIA.latitude, MORELIA.longitude, MORELIA.altitude, str(MORELIA.tz)) == (
        19.70,
        -101.19,
        1920,
        TZ,
    )


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    peak=st.floats(0.1, 20),
    variability=st.floats(0, 1),
    month=st.integers(1, 12),
)
def test_zero_at_night_and_never_above_peak(seed, peak, variability, month):
    index = minutes(f"2024-{month:02d}-10", 2)
    power = pv_power(index, peak, seed=seed, variability=variability)
    elevation = MORELIA.get_solarposition(index + pd.Timedelta(seconds=30))["apparent_elevation"].to_numpy()
    assert (power.to_numpy()[elevation < -1] == 0).all()
    assert power.between(0, peak * 1000).all()


def test_clear_noon_produces_most_and_the_peak_is_reachable_in_cool_sunshine():
    power = pv_power(minutes("2024-03-20", 1), 1.0, variability=0.0)
    noon = power.between_time("12:30", "13:30").mean()
    assert 650 < noon <= 1000
    assert power.idxmax().hour in (12, 13)


def test_clear_sky_ignores_the_seed_and_clouds_use_it():
    index = minutes("2024-05-01", 1)
    pd.testing.assert_series_equal(pv_power(index, 2, seed=1, variability=0), pv_power(index, 2, seed=2, variability=0))
    pd.testing.assert_series_equal(pv_power(index, 2, seed=1), pv_power(index, 2, seed=1))
    assert not np.allclose(pv_power(index, 2, seed=1, variability=0.5), pv_power(index, 2, seed=2, variability=0.5))


def test_more_clouds_less_energy():
    index = pd.date_range("2024-01-01", periods=60 * 96, freq="15min", tz=TZ)
    energy = [pv_power(index, 1, seed=3, variability=v).sum() for v in (0.0, 0.3, 0.7, 1.0)]
    assert energy == sorted(energy, reverse=True)
    assert energy[-1] < 0.5 * energy[0]


def test_clouds_hide_the_sun_for_the_share_of_the_day_they_cover():
    weather = synthetic_weather(minutes("2024-01-01", 60), seed=9, variability=0.4)
    by_day = weather.groupby(weather.index.date)
    hidden, cover = by_day["sun_hidden"].mean(), by_day["cloud_cover"].first()
    assert abs(hidden.mean() - cover.mean()) < 0.03
    assert 0.25 < cover.mean() < 0.55
    assert cover.std() > 0.1  # days differ


def test_cloudy_minutes_have_no_beam_and_less_light():
    weather = synthetic_weather(minutes("2024-06-01", 3), seed=1, variability=0.5)
    clear = synthetic_weather(minutes("2024-06-01", 3), variability=0.0)
    hidden = weather["sun_hidden"]
    assert hidden.any() and (~hidden).any()
    assert (weather.loc[hidden, "dni"] == 0).all()
    assert (weather.loc[hidden, "ghi"] <= clear.loc[hidden, "ghi"]).all()
    pd.testing.assert_series_equal(weather.loc[~hidden, "ghi"], clear.loc[~hidden, "ghi"])


def test_yearly_clear_sky_yield_is_plausible_for_central_mexico():
    index = pd.date_range("2023-01-01", "2024-01-01", freq="60min", inclusive="left", tz=TZ)
    clear = pv_power(index, 1.0, variability=0.0).sum() / 1000
    cloudy = pv_power(index, 1.0, variability=0.3).sum() / 1000
    assert 1800 < clear < 2300  # kWh/kWp: cloudless upper bound
    assert 1400 < cloudy < clear  # central Mexico: about 1600-1800 kWh/kWp


def test_output_scales_with_the_nameplate():
    index = minutes("2024-02-01", 1)
    np.testing.assert_allclose(pv_power(index, 4.0), 4 * pv_power(index, 1.0))
    assert (pv_power(index, 0.0) == 0).all()


def test_naive_index_is_local_time_of_the_location():
    aware = pv_power(minutes("2024-02-01", 1), 1.0, seed=4)
    naive = pv_power(minutes("2024-02-01", 1, tz=None), 1.0, seed=4)
    np.testing.assert_array_equal(aware.to_numpy(), naive.to_numpy())


def test_orientation_matters_and_a_west_roof_peaks_later():
    index = minutes("2024-04-01", 1)
    south = pv_power(index, 1.0, variability=0.0)
    west = pv_power(index, 1.0, variability=0.0, array=PVArray(surface_tilt=30, surface_azimuth=270))
    assert west.idxmax() > south.idxmax()


def test_other_locations_work_offline():
    oslo = Location(59.91, 10.75, tz="Europe/Oslo", altitude=20)
    day = pd.date_range("2024-12-21", periods=1440, freq="1min")
    oslo_wh = pv_power(day, 1.0, oslo, 0, 0.0).sum() / 60
    morelia_wh = pv_power(day, 1.0, MORELIA, 0, 0.0).sum() / 60
    assert 0 < 3 * oslo_wh < morelia_wh  # a short, low winter day


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"peak_kw": -1}, "peak_kw must be a finite number >= 0"),
        ({"peak_kw": float("nan")}, "peak_kw must be a finite number >= 0"),
        ({"variability": 1.5}, r"variability must be in \[0, 1\]"),
        ({"variability": -0.1}, r"variability must be in \[0, 1\]"),
        ({"seed": -3}, "seed must be a non-negative integer"),
        ({"index": pd.date_range("2024-01-01", periods=5, freq="90s")}, "whole number of minutes"),
    ],
)
def test_bad_inputs_are_rejected_with_a_specific_message(kwargs, message):
    args = {"index": minutes("2024-01-01", 0.1), "peak_kw": 1.0} | kwargs
    with pytest.raises(ValueError, match=message):
        pv_power(**args)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"surface_tilt": 95},
        {"surface_azimuth": 360},
        {"gamma_pdc": 0.01},
        {"losses_percent": 100},
        {"eta_inv_nom": 0},
        {"dc_ac_ratio": 0.8},
    ],
)
def test_bad_array_parameters_are_rejected(kwargs):
    with pytest.raises(ValueError, match=f"PVArray.{next(iter(kwargs))}"):
        PVArray(**kwargs)


def test_hot_cells_lose_power():
    index = minutes("2024-05-15", 1)
    default = pv_power(index, 1.0, variability=0.0)
    no_temperature_loss = pv_power(index, 1.0, variability=0.0, array=PVArray(gamma_pdc=0.0))
    noon = default.between_time("12:00", "14:00").index
    assert (no_temperature_loss[noon] > default[noon]).all()
