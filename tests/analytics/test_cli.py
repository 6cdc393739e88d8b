"""`gridledger theft ...`, `forecast ...`, `pq ...` and `efficiency` on files, as a user runs them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from gridledger.analytics import default_model
from gridledger.cli.analytics import efficiency, forecast_app, pq_app, theft_app

app = typer.Typer()
app.add_typer(theft_app, name="theft")
app.add_typer(forecast_app, name="forecast")
app.add_typer(pq_app, name="pq")
app.command("efficiency")(efficiency)
runner = CliRunner()
KEYS = {"accuracy", "precision", "recall", "f1", "auc", "confusion"}


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory, community):
    path = tmp_path_factory.mktemp("cli") / "community.csv"
    community[["meter_id", "timestamp", "consumption_wh", "production_wh"]].to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("model") / "theft.json"
    result = run("theft", "train", "--data", str(data), "--model", str(path), "--draws", "1")
    assert result.exit_code == 0, result.output
    assert "trained on 16 meters x 14 days at 15 min" in result.output
    return path


def test_model_file_is_plain_json(model):
    data = json.loads(model.read_text())
    assert data["format"] == "gridledger-theft-model" and data["step_s"] == 900


def test_score_writes_one_row_per_meter_day(tmp_path, data, model):
    out = tmp_path / "scores.parquet"
    result = run("theft", "score", "--data", str(data), "--model", str(model), "--out", str(out))
    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(out)
    assert len(scores) == 16 * 14
    assert list(scores.columns) == [
        "meter_id",
        "date",
        "theft_probability",
        "detector_flag",
        "agent_score",
        "flag",
    ]
    assert scores["theft_probability"].between(0, 1).all()


def test_evaluate_holds_out_meters_and_prints_the_tables(data):
    result = run("theft", "evaluate", "--data", str(data), "--holdout", "--test-fraction", "0.25")
    assert result.exit_code == 0, result.output
    assert "4 held-out meters, 56 meter-days; synthetic attacks (Jokar h1-h6) injected" in result.output
    assert "detector + RL" in result.output and "Table 6 form" in result.output
    assert "confusion matrix, detector (Table 6 form)" in result.output and "Table 5 form" in result.output
    assert "warning: only 56 labelled meter-days" in result.stderr


def test_evaluate_json_has_the_metrics_with_and_without_rl(data, model):
    for extra, name in (([], "shipped model"), (["--model", str(model)], str(model)), (["--holdout"], "trained")):
        result = run("theft", "evaluate", "--data", str(data), "--json", *extra)
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert set(summary) >= KEYS and set(summary["without_rl"]) >= KEYS
        assert summary["injected"] is True and name in summary["model"]
        assert sum(map(sum, summary["confusion"])) == summary["n"]
        assert sorted(summary["per_meter"]) == sorted(summary["test_meters"])
        assert summary["n"] < 500 and str(summary["n"]) in summary["warning"]


def test_the_shipped_model_is_the_default_for_score_and_evaluate(tmp_path, data):
    from gridledger.analytics.default_model import load_default_model
    from gridledger.analytics.theft import detect

    out = tmp_path / "scores.csv"
    result = run("theft", "score", "--data", str(data), "--out", str(out))
    assert result.exit_code == 0 and f"shipped model {default_model.FILE}" in result.output
    cube = _cube_of(data)
    x, export = cube.values["consumption_wh"], cube.values["production_wh"]
    expected = detect(load_default_model(), cube.meters, x, export=export)
    np.testing.assert_allclose(pd.read_csv(out)["theft_probability"], expected.probability.ravel())
    # the export register is read: PV homes' zero import while exporting is not their base load
    assert not np.allclose(expected.logits, load_default_model().logits(x))
    both = run("theft", "evaluate", "--data", str(data), "--holdout", "--model", str(out))
    assert both.exit_code == 2 and "either --model or --holdout" in both.output


def _cube_of(path):
    from gridledger.analytics.data import load_readings, to_cube

    return to_cube(load_readings(path), ("consumption_wh", "production_wh"))


def test_evaluate_uses_labels_from_the_file(tmp_path, community):
    df = community[["meter_id", "timestamp", "consumption_wh"]].copy()
    day = df["timestamp"].dt.day
    df["label"] = ((day % 3 == 0) & (df["meter_id"] > "MI008")).astype(int)
    df.loc[df["label"] == 1, "consumption_wh"] *= 0.3
    path = tmp_path / "labelled.csv"
    df.to_csv(path, index=False)
    summary = json.loads(run("theft", "evaluate", "--data", str(path), "--json").stdout)
    assert summary["injected"] is False
    assert summary["n"] == 16 * 14 and sum(r["tampered"] for r in summary["per_meter"].values()) == int(
        df.groupby(["meter_id", df["timestamp"].dt.date])["label"].max().sum()
    )


def test_forecast_evaluate_json_and_stores(tmp_path, data):
    store = tmp_path / "stores"
    result = run("forecast", "evaluate", "--data", str(data), "--json", "--store", str(store))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert set(summary) == {
        f"{c}/{h}" for c in ("consumption_wh", "production_wh") for h in ("next-slot", "day-ahead")
    }
    day_ahead = summary["consumption_wh/day-ahead"]
    assert day_ahead["step_s"] == 3600 and set(day_ahead["neighbourhood"]) >= {
        "persistence",
        "seasonal-naive",
        "fog",
    }
    assert len(list(store.glob("meter_*.sqlite"))) == 16 and (store / "concentrator.sqlite").exists()
    again = run("forecast", "evaluate", "--data", str(data), "--store", str(store))
    assert again.exit_code == 2 and "already holds prediction stores" in again.output


def test_forecast_evaluate_prints_tables(data):
    result = run(
        "forecast", "evaluate", "--data", str(data), "--column", "consumption_wh", "--horizon", "day-ahead"
    )
    assert result.exit_code == 0, result.output
    assert "seasonal-naive" in result.output and "seasonal-naive at the neighbourhood level" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["theft", "evaluate", "--data", "{bad}"], "consumption_wh is negative"),
        (["theft", "train", "--data", "{missing}", "--model", "{tmp}/m.json"], "no such file"),
        (["theft", "score", "--data", "{data}", "--model", "{corrupt}", "--out", "{tmp}/s.csv"], "not JSON"),
        (["theft", "score", "--data", "{data}", "--model", "{data}", "--out", "{tmp}/s.csv"], "not JSON"),
        (
            ["theft", "score", "--data", "{data}", "--model", "{model}", "--out", "{tmp}/s.xlsx"],
            "unknown file type",
        ),
        (["forecast", "evaluate", "--data", "{data}", "--horizon", "next-week"], "--horizon must be"),
        (["forecast", "evaluate", "--data", "{data}", "--column", "voltage_v"], "--column must be"),
        (["forecast", "evaluate", "--data", "{data}", "--test-fraction", "0.9"], "at least 8 training days"),
        (["pq", "evaluate", "--data", "{data}"], "no voltage_v or power_factor column"),
        (["efficiency", "--data", "{data}", "--rate", "101"], "rate must be 0..100"),
        (["efficiency", "--data", "{tmp}"], "no readings.parquet"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(tmp_path, data, model, args, message):
    bad = tmp_path / "bad.csv"
    pd.DataFrame(
        {
            "meter_id": ["a", "a"],
            "timestamp": ["2024-01-01 00:00", "2024-01-01 00:15"],
            "consumption_wh": [1.0, -2.0],
        }
    ).to_csv(bad, index=False)
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{not json")
    paths = {
        "bad": bad,
        "missing": tmp_path / "nope.csv",
        "tmp": tmp_path,
        "data": data,
        "corrupt": corrupt,
        "model": model,
    }
    result = run(*(a.format(**paths) for a in args))
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert result.output.strip().startswith("error:")


@pytest.mark.parametrize(
    "command",
    [["theft", "train"], ["theft", "score"], ["theft", "evaluate"], ["forecast", "evaluate"], ["pq", "evaluate"],
     ["efficiency"]],
)
def test_every_command_has_help(command):
    result = run(*command, "--help")
    assert result.exit_code == 0 and "--data" in result.output


def test_daily_files_work_end_to_end(tmp_path, community):
    daily = (
        community.assign(timestamp=community["timestamp"].dt.normalize())
        .groupby(["meter_id", "timestamp"], as_index=False)[["consumption_wh", "production_wh"]]
        .sum()
    )
    path = tmp_path / "daily.csv"
    daily.to_csv(path, index=False)
    theft = run("theft", "evaluate", "--data", str(path), "--json", "--holdout")
    assert theft.exit_code == 0, theft.output
    assert json.loads(theft.stdout)["n"] == 5 * 14
    shipped = run("theft", "evaluate", "--data", str(path))
    assert shipped.exit_code == 2 and "cannot be aggregated to it; use --holdout" in shipped.output
    forecast = run("forecast", "evaluate", "--data", str(path), "--json", "--test-fraction", "0.3")
    assert forecast.exit_code == 0, forecast.output
    assert json.loads(forecast.stdout)["consumption_wh/day-ahead"]["step_s"] == 86_400


def test_pq_and_efficiency_on_a_file(tmp_path, community):
    path = tmp_path / "full.parquet"
    community.to_parquet(path)
    pq = run("pq", "evaluate", "--data", str(path), "--per-day", "3")
    assert pq.exit_code == 0, pq.output
    assert "power-quality events" in pq.output and "poor_pf" in pq.output
    said = " ".join(pq.output.split())
    assert "16 meters: each meter's model fitted on its first 9 days, disturbances injected into its last 5" in said
    summary = json.loads(run("pq", "evaluate", "--data", str(path), "--per-day", "3", "--json").stdout)
    assert summary["meters"] == 16 and all(r["recall"] > 0.8 for r in summary["events"].values())
    eff = run("efficiency", "--data", str(path))
    assert eff.exit_code == 0, eff.output
    assert "PoEf efficiency and rewards, 208 meter-days scored" in eff.output
    cards = json.loads(run("efficiency", "--data", str(path), "--json").stdout)
    assert len(cards["periods"]) == 16 * 13 and cards["threshold"] == 500
    for card in cards["periods"]:
        assert card["amount"] == max(0, card["score"] - 500)  # the default rate, 1
        parts = (card["forecast_adherence"], card["power_quality"], card["peak_reduction"])
        assert card["score"] == sum(parts) // 3 and all(0 <= p <= 1000 for p in parts)
