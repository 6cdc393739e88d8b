"""Community meter readings: the long-format frame the analytics and the twin consume."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gridledger.profiles import COLUMNS, community_readings, household_load
from gridledger.profiles.electrical import VOLTAGE_BAND
from gridledger.profiles.meter_readings import meter_ids, random_meters

TZ = "America/Mexico_City"


@pytest.fixture(scope="module")
def week() -> pd.DataFrame:
    return community_readings(8, 7, "1min", start="2024-04-01", seed=5, pv_share=0.5)


def net_power(frame: pd.DataFrame, step_minutes: float = 1.0) -> np.ndarray:
    return (frame["consumption_wh"] - frame["production_wh"]).to_numpy() * 60 / step_minutes


def test_shape_columns_and_order(week):
    assert tuple(week.columns) == COLUMNS
    assert len(week) == 8 * 7 * 1440
    assert list(week["meter_id"].unique()) == [f"MI00{k}" for k in range(1, 9)]
    assert week["meter_id"].dtype == "str"
    assert str(week["timestamp"].dt.tz) == TZ
    assert week.equals(week.sort_values(["meter_id", "timestamp"], kind="stable"))
    first = week[week["meter_id"] == "MI001"]["timestamp"]
    assert first.iloc[0] == pd.Timestamp("2024-04-01", tz=TZ)
    assert (first.diff().dropna() == pd.Timedelta(minutes=1)).all()


def test_energy_registers_are_non_negative_and_exclusive(week):
    assert (week["consumption_wh"] >= 0).all() and (week["production_wh"] >= 0).all()
    assert not ((week["consumption_wh"] > 0) & (week["production_wh"] > 0)).any()
    assert (week["production_wh"] > 0).any()


def test_current_is_power_over_voltage_and_power_factor(week):
    expected = np.abs(net_power(week)) / (week["voltage_v"] * week["power_factor"])
    np.testing.assert_allclose(week["current_a"], expected, rtol=1e-12)


def test_voltage_is_mexican_residential_127_v_within_ten_percent(week):
    assert week["voltage_v"].between(*VOLTAGE_BAND).all()
    assert 124 < week["voltage_v"].mean() < 130
    assert week["voltage_v"].std() > 0.3
    assert week["power_factor"].between(0.5, 1.0).all()


def test_voltage_falls_when_a_home_draws_more(week):
    one = week[week["meter_id"] == "MI001"]
    assert np.corrcoef(net_power(one), one["voltage_v"])[0, 1] < 0


def test_the_same_seed_reproduces_and_another_differs():
    a = community_readings(3, 1, seed=1)
    pd.testing.assert_frame_equal(a, community_readings(3, 1, seed=1))
    assert not a.equals(community_readings(3, 1, seed=2))


def test_consumption_without_pv_is_the_household_load_of_its_seed():
    frame = community_readings(4, 2, "5min", start="2024-09-01", seed=8, pv_share=0.0)
    meters = random_meters(4, 8, 0.0)
    index = pd.date_range("2024-09-01", periods=2 * 288, freq="5min", tz=TZ)
    for meter in meters:
        load = household_load(index, meter.annual_kwh, meter.profile, meter.load_seed)
        rows = frame[frame["meter_id"] == meter.meter_id]
        np.testing.assert_allclose(rows["consumption_wh"].to_numpy(), load.to_numpy() * 5 / 60, rtol=1e-9)
    assert (frame["production_wh"] == 0).all()


def test_pv_share_sets_how_many_homes_have_pv():
    for share, expected in ((0.0, 0), (0.5, 10), (0.25, 5), (1.0, 20)):
        assert sum(m.pv_kw > 0 for m in random_meters(20, 3, share)) == expected


def test_a_homes_load_does_not_depend_on_the_community_size():
    small = community_readings(3, 1, seed=4, pv_share=0.0)
    large = community_readings(6, 1, seed=4, pv_share=0.0)
    pd.testing.assert_frame_equal(
        small[small["meter_id"] == "MI002"][["consumption_wh"]].reset_index(drop=True),
        large[large["meter_id"] == "MI002"][["consumption_wh"]].reset_index(drop=True),
    )


def test_meter_ids_sort_in_meter_order_for_large_communities():
    ids = meter_ids(1200)
    assert ids[0] == "MI0001" and ids[-1] == "MI1200" and ids == sorted(ids)
    assert meter_ids(5) == ["MI001", "MI002", "MI003", "MI004", "MI005"]


def test_coarser_steps_hold_the_energy_of_the_minutes():
    fine = community_readings(2, 1, "1min", seed=6, pv_share=0.0)
    coarse = community_readings(2, 1, "15min", seed=6, pv_share=0.0)
    assert len(coarse) == 2 * 96
    np.testing.assert_allclose(
        fine.groupby("meter_id")["consumption_wh"].sum(), coarse.groupby("meter_id")["consumption_wh"].sum()
    )


def test_fifty_meters_for_thirty_days_at_one_minute():
    frame = community_readings(50, 30, "1min")
    assert len(frame) == 2_160_000
    assert frame["meter_id"].is_monotonic_increasing
    monthly_kwh = frame.groupby("meter_id")["consumption_wh"].sum() / 1000
    assert 40 < monthly_kwh.median() < 250  # Mexican homes: roughly 150 kWh a month, before PV


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_meters": 0}, "n_meters must be an integer >= 1"),
        ({"n_meters": 2.5}, "n_meters must be an integer >= 1"),
        ({"days": 0}, "days must be an integer >= 1"),
        ({"freq": "7min"}, "divides a day"),
        ({"freq": "30s"}, "divides a day"),
        ({"freq": "fortnightly"}, "not a pandas frequency"),
        ({"start": "not a date"}, "is not a date"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"pv_share": 1.5}, r"pv_share must be in \[0, 1\]"),
        ({"pv_share": float("nan")}, r"pv_share must be in \[0, 1\]"),
        ({"variability": 2.0}, r"variability must be in \[0, 1\]"),
        ({"profile": "Z1"}, "unknown BDEW profile"),
    ],
)
def test_bad_inputs_are_rejected_with_a_specific_message(kwargs, message):
    args = {"n_meters": 2, "days": 1} | kwargs
    with pytest.raises(ValueError, match=message):
        community_readings(**args)


def test_power_factor_dips_at_light_load(week):
    one = week[week["meter_id"] == "MI002"]
    light = np.abs(net_power(one)) < 100
    assert one["power_factor"][light].mean() < one["power_factor"][~light].mean() - 0.03
