"""The meters' and the concentrator's prediction stores (the paper's Tables 3 and 4)."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest

from gridledger.analytics.edge_fog import record_forecasts
from gridledger.analytics.forecast import DAY_AHEAD, NEXT_SLOT, ForecastSettings, evaluate_forecasts
from gridledger.analytics.prediction_store import PredictionStore, StoreError

T0 = pd.Timestamp("2024-01-01 10:00")


def columns(path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[1] for row in db.execute("PRAGMA table_info(predictions)")]


def test_meter_and_concentrator_tables_have_the_papers_columns(tmp_path):
    PredictionStore(tmp_path / "m.sqlite", "meter").close()
    PredictionStore(tmp_path / "c.sqlite", "concentrator").close()
    values = ["consumption_pred_wh", "consumption_delta_wh", "production_pred_wh", "production_delta_wh"]
    assert columns(tmp_path / "m.sqlite") == ["timestamp", "horizon", *values]
    assert columns(tmp_path / "c.sqlite") == ["timestamp", "sm_id", "horizon", *values]


def test_predictions_are_records_and_deltas_come_later(tmp_path):
    with PredictionStore(tmp_path / "m.sqlite", "meter") as store:
        rows = pd.DataFrame(
            {
                "timestamp": [T0, T0 + pd.Timedelta("1min")],
                "horizon": NEXT_SLOT,
                "consumption_pred_wh": [115.0, 80.0],
            }
        )
        assert store.record(rows) == 2
        with pytest.raises(StoreError, match="already stored"):
            store.record(rows.iloc[:1])
        store.observe([{"timestamp": T0, "horizon": NEXT_SLOT, "consumption_delta_wh": 60.0}])
        with pytest.raises(StoreError, match="no stored prediction"):
            store.observe(
                [{"timestamp": T0 + pd.Timedelta("1h"), "horizon": NEXT_SLOT, "consumption_delta_wh": 1.0}]
            )
        table = store.table()
    assert table["consumption_pred_wh"].tolist() == [115.0, 80.0]
    assert table["consumption_delta_wh"].iloc[0] == 60.0 and pd.isna(table["consumption_delta_wh"].iloc[1])
    assert table["timestamp"].iloc[0] == "2024-01-01T10:00:00"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (pd.DataFrame({"timestamp": [T0], "consumption_pred_wh": [1.0]}), "missing \\['sm_id', 'horizon'\\]"),
        (
            pd.DataFrame({"timestamp": [T0], "sm_id": ["1"], "horizon": ["x"], "price": [1.0]}),
            "unknown \\['price'\\]",
        ),
    ],
)
def test_bad_rows_are_refused(tmp_path, rows, message):
    with (
        PredictionStore(tmp_path / "c.sqlite", "concentrator") as store,
        pytest.raises(StoreError, match=message),
    ):
        store.record(rows)


def test_unknown_level():
    with pytest.raises(StoreError, match="unknown level"):
        PredictionStore(":memory:", "cloud")


def test_each_level_records_its_forecasts(tmp_path, cube):
    sub = cube.select(range(3))
    settings = ForecastSettings(test_fraction=0.3)
    evs = [
        evaluate_forecasts(sub, c, h, settings)
        for c in ("consumption_wh", "production_wh")
        for h in (NEXT_SLOT, DAY_AHEAD)
    ]
    files = record_forecasts(tmp_path, sub.meters, sub.days, evs)
    assert [f.name for f in files] == [f"meter_{m}.sqlite" for m in sub.meters] + ["concentrator.sqlite"]
    test_days = len(sub.days) - evs[0].split_day
    with PredictionStore(files[0], "meter") as store:
        meter = store.table()
    assert (meter["horizon"] == NEXT_SLOT).sum() == test_days * 96
    assert (meter["horizon"] == DAY_AHEAD).sum() == test_days * 24
    first = meter[meter["horizon"] == DAY_AHEAD].iloc[0]
    edge = evs[1].forecasts["edge"][0]
    t = evs[1].split_day * 24
    assert first["consumption_pred_wh"] == pytest.approx(edge[t])
    assert first["consumption_delta_wh"] == pytest.approx(evs[1].observed[0, t] - edge[t])
    with PredictionStore(files[-1], "concentrator") as store:
        fog = store.table()
    assert set(fog["sm_id"]) == {*sub.meters, "NAN"}
    total = fog[(fog["sm_id"] == "NAN") & (fog["horizon"] == DAY_AHEAD)]["consumption_pred_wh"].to_numpy()
    per_meter = fog[(fog["sm_id"] != "NAN") & (fog["horizon"] == DAY_AHEAD)]
    assert total.sum() == pytest.approx(per_meter["consumption_pred_wh"].sum())
