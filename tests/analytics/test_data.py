"""Outside readings files: each bad file gets a clear error; safe repairs are applied and reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.analytics.data import (
    DataError,
    check_step,
    coarser_step,
    load_readings,
    to_cube,
    validate_readings,
)


def frame(
    meters: int = 2,
    days: int = 2,
    freq: str = "15min",
    tz: str | None = "America/Mexico_City",
    **extra: object,
) -> pd.DataFrame:
    """A clean long-format frame: consumption = 1 + slot index (Wh), so sums are easy to check."""
    idx = pd.date_range(
        "2024-03-01", periods=days * pd.Timedelta("1D") // pd.Timedelta(freq), freq=freq, tz=tz
    )
    parts = [
        pd.DataFrame(
            {"meter_id": f"M{m}", "timestamp": idx, "consumption_wh": 1.0 + np.arange(len(idx)), **extra}
        )
        for m in range(meters)
    ]
    return pd.concat(parts, ignore_index=True)


def as_csv(df: pd.DataFrame, tmp_path: Path, name: str = "r.csv") -> Path:
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def _mutate(fn):
    def build() -> pd.DataFrame:
        df = frame()
        fn(df)
        return df

    return build


def _set(col, row, value):
    def fn(df):
        df[col] = df[col].astype(object)
        df.loc[row, col] = value

    return _mutate(fn)


BAD = [
    (
        "missing column",
        lambda: frame().drop(columns="consumption_wh"),
        "missing required column(s) consumption_wh",
    ),
    ("unknown column", lambda: frame(extra_col=1), "unknown column(s) extra_col"),
    ("empty table", lambda: frame().iloc[:0], "no readings"),
    ("text energy", _set("consumption_wh", 5, "lots"), "consumption_wh is not a number"),
    ("negative energy", _set("consumption_wh", 7, -3.0), "consumption_wh is negative"),
    ("infinite energy", _set("consumption_wh", 7, np.inf), "consumption_wh is infinite"),
    ("power factor > 1", lambda: frame(power_factor=1.2), "power_factor is outside [0, 1]"),
    ("negative voltage", lambda: frame(voltage_v=-1.0), "voltage_v is negative"),
    ("label not 0/1", lambda: frame(label=2), "label must be 0 or 1"),
    ("empty meter id", _set("meter_id", 3, ""), "meter_id is empty"),
    ("bad timestamp", _set("timestamp", 4, "yesterday-ish"), "timestamp is not a date-time"),
    ("numeric timestamp", lambda: frame().assign(timestamp=np.arange(len(frame()))), "not numbers"),
    (
        "off-grid timestamp",
        _set("timestamp", 4, pd.Timestamp("2024-03-01 01:07", tz="America/Mexico_City")),
        "irregular timestamps",
    ),
    ("30-second data", lambda: frame(freq="30s", days=1), "finer than 1 minute"),
    ("45-minute data", lambda: frame(freq="45min", days=3), "45 min is not supported"),
    ("single reading per meter", lambda: frame().groupby("meter_id").head(1), "cannot infer the resolution"),
    (
        "conflicting duplicates",
        lambda: pd.concat([frame(), frame().iloc[[3]].assign(consumption_wh=99.0)], ignore_index=True),
        "conflicting duplicate readings: meter M0",
    ),
    (
        "mixed resolutions",
        lambda: pd.concat(
            [frame(meters=1), frame(meters=1, freq="30min").assign(meter_id="M9")], ignore_index=True
        ),
        "mixed resolutions",
    ),
]


@pytest.mark.parametrize(("build", "message"), [(b, m) for _, b, m in BAD], ids=[n for n, _, _ in BAD])
def test_bad_frames_are_rejected_with_a_specific_message(build, message):
    with pytest.raises(DataError, match=None) as info:
        validate_readings(build())
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("build", "message"),
    [(b, m) for _, b, m in BAD if "duplicate" not in m],
    ids=[n for n, _, m in BAD if "duplicate" not in m],
)
def test_bad_csv_files_are_rejected_naming_the_file(tmp_path, build, message):
    path = as_csv(build(), tmp_path)
    with pytest.raises(DataError) as info:
        load_readings(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_error_names_the_data_row_and_meter():
    df = frame()
    df.loc[50, "consumption_wh"] = -1.0
    with pytest.raises(DataError, match=r"first at data row 51, meter M0: -1.0"):
        validate_readings(df)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("r.txt", "meter_id,timestamp,consumption_wh\n", "unknown file type '.txt'"),
        ("r.parquet", "this is not parquet", "cannot be read as parquet"),
        ("r.csv", "", "cannot be read as csv"),
    ],
)
def test_unreadable_files(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_readings(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_readings(tmp_path / "absent.csv")


def test_csv_and_parquet_give_the_same_cube(tmp_path, community):
    sample = community[community["meter_id"].isin(["MI001", "MI002"])]
    pq = tmp_path / "r.parquet"
    sample.to_parquet(pq)
    a = to_cube(load_readings(as_csv(sample, tmp_path)))
    b = to_cube(load_readings(pq))
    assert a.meters == b.meters and a.step_s == b.step_s == 900
    np.testing.assert_allclose(a.values["consumption_wh"], b.values["consumption_wh"])


def test_exact_duplicates_are_dropped_and_reported():
    df = frame()
    r = validate_readings(pd.concat([df, df.iloc[:5]], ignore_index=True))
    assert len(r.frame) == len(df)
    assert r.repairs == ("dropped 5 exact duplicate row(s)",)


def test_short_gaps_are_interpolated_and_reported():
    df = frame(days=1).drop(index=[10, 11])  # 2 of 96 steps of meter M0 missing
    cube = to_cube(validate_readings(df))
    np.testing.assert_allclose(cube.values["consumption_wh"][0, 0, 10:12], [11.0, 12.0])
    assert any("filled gaps by linear interpolation in 1 meter-day" in r for r in cube.repairs)


def test_empty_cells_count_as_gaps():
    df = frame(days=1)
    df.loc[20, "consumption_wh"] = np.nan
    cube = to_cube(validate_readings(df))
    assert cube.values["consumption_wh"][0, 0, 20] == pytest.approx(21.0)


def test_incomplete_days_are_dropped_and_reported():
    df = frame(days=2)
    df = df[~((df["meter_id"] == "M1") & (df.index % 192 < 40))]  # M1 loses 40 of the first day's 96 steps
    cube = to_cube(validate_readings(df))
    assert cube.valid.tolist() == [[True, True], [False, True]]
    assert any("dropped 1 incomplete meter-day" in r and "meter M1" in r for r in cube.repairs)


def test_absent_days_inside_a_meters_range_are_reported():
    df = frame(days=3)
    day = df["timestamp"].dt.day
    cube = to_cube(validate_readings(df[~((df["meter_id"] == "M0") & (day == 2))]))
    assert cube.valid[0].tolist() == [True, False, True]
    assert any("1 whole meter-day(s) have no readings" in r for r in cube.repairs)


def test_daylight_saving_fall_back_hour_is_summed_not_lost():
    idx = pd.date_range("2024-11-03", "2024-11-04", freq="1h", tz="America/New_York", inclusive="left")
    assert len(idx) == 25
    df = pd.DataFrame({"meter_id": "M0", "timestamp": idx, "consumption_wh": 10.0})
    cube = to_cube(validate_readings(df))
    day = cube.values["consumption_wh"][0, 0]
    assert day.sum() == pytest.approx(250.0) and day[1] == pytest.approx(20.0)


def test_mixed_utc_offsets_are_converted_to_utc_and_reported():
    df = pd.DataFrame(
        {
            "meter_id": "M0",
            "timestamp": [
                "2024-03-01T00:00:00-06:00",
                "2024-03-01T02:00:00-05:00",
                "2024-03-01T03:00:00-05:00",
            ],
            "consumption_wh": [1.0, 2.0, 3.0],
        }
    )
    r = validate_readings(df)
    assert str(r.frame["timestamp"].dt.tz) == "UTC"
    assert any("mixed UTC offsets" in x for x in r.repairs)


def test_labels_must_be_constant_within_a_meter_day():
    df = frame(label=0)
    df.loc[5, "label"] = 1
    with pytest.raises(DataError, match="label differs within meter-day: meter M0 on 2024-03-01"):
        to_cube(validate_readings(df), ("consumption_wh",))


def test_labels_reach_the_cube_per_meter_day():
    df = frame(label=0)
    df.loc[df["timestamp"].dt.day == 2, "label"] = 1
    cube = to_cube(validate_readings(df))
    assert cube.labels.tolist() == [[0, 1], [0, 1]]


def test_cube_needs_the_columns_asked_for():
    with pytest.raises(DataError, match="production_wh"):
        to_cube(validate_readings(frame()), ("consumption_wh", "production_wh"))


def test_daily_data_is_supported():
    df = frame(days=5, freq="1D")
    cube = to_cube(validate_readings(df))
    assert cube.slots == 1 and cube.valid.all()


@given(st.sampled_from([60, 120, 300, 900, 1800, 3600]), st.sampled_from([1, 2, 3, 4, 6, 12]))
@settings(max_examples=30, deadline=None)
def test_coarsening_preserves_energy(step, k):
    target = coarser_step(step, step * k)
    df = frame(meters=1, days=1, freq=f"{step}s")
    cube = to_cube(validate_readings(df))
    coarse = cube.coarsen(target)
    assert coarse.values["consumption_wh"].sum() == pytest.approx(cube.values["consumption_wh"].sum())
    assert coarse.slots * target == 86_400


@given(st.integers(60, 86_400), st.integers(60, 86_400))
@settings(max_examples=200)
def test_coarser_step_is_supported_and_a_multiple(step, target):
    try:
        check_step(step)
    except DataError:
        return
    s = coarser_step(step, target)
    check_step(s)
    assert s % step == 0 and (s >= target or s == 86_400)


def test_coarsening_to_a_non_multiple_is_refused():
    cube = to_cube(validate_readings(frame(freq="20min")))
    with pytest.raises(DataError, match="whole multiple"):
        cube.coarsen(1800)
