"""Every analytics command on a `gridledger simulate` output folder: the run's committed readings as input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from gridledger.analytics import default_model
from gridledger.analytics.data import DataError, to_cube
from gridledger.analytics.sources.simulate import community_readings, is_run_folder, load_input, read_simulate
from gridledger.cli.analytics import efficiency, forecast_app, pq_app, theft_app
from gridledger.profiles.community import generate_community
from gridledger.sim.run import run_community

app = typer.Typer()
app.add_typer(theft_app, name="theft")
app.add_typer(forecast_app, name="forecast")
app.add_typer(pq_app, name="pq")
app.command("efficiency")(efficiency)
HOMES, DAYS = 6, 3


def run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def as_json(*args: str) -> dict:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    run_community(generate_community(HOMES, DAYS, 4, feeders=1), out)
    return out


def test_the_loader_gives_the_committed_readings_in_the_analytics_units(folder):
    frame = read_simulate(folder)
    raw = pd.read_parquet(folder / "readings.parquet")
    summary = json.loads((folder / "summary.json").read_text())
    assert list(frame.columns) == [
        "meter_id", "timestamp", "consumption_wh", "production_wh", "voltage_v", "current_a", "power_factor",
    ]
    assert len(frame) == HOMES * DAYS * 96 == len(raw)
    assert frame["timestamp"].iloc[0] == pd.Timestamp(summary["start"])
    last = frame["timestamp"].iloc[-1] - frame["timestamp"].iloc[0]
    assert last == pd.Timedelta(seconds=int(raw["slot"].max()) * summary["slot_seconds"])
    np.testing.assert_array_equal(frame["voltage_v"] * 10, raw["voltage_dv"])
    np.testing.assert_allclose(frame["power_factor"] * 1000, raw["power_factor_pm"].abs())
    readings = load_input(folder)
    assert readings.step_s == summary["slot_seconds"] and not readings.repairs and is_run_folder(folder)
    cube = to_cube(readings)
    assert cube.valid.all() and cube.valid.shape == (HOMES, DAYS)


def test_the_readings_of_an_honest_run_are_reproduced_without_the_chains(folder):
    committed = read_simulate(folder).sort_values(["meter_id", "timestamp"]).reset_index(drop=True)
    frame, kit = community_readings(generate_community(HOMES, DAYS, 4, feeders=1))
    assert len(frame) == len(committed)
    for column in ("consumption_wh", "production_wh"):
        np.testing.assert_array_equal(frame[column].to_numpy(), committed[column].to_numpy())
    assert (frame["meter_id"].to_numpy() == committed["meter_id"].to_numpy()).all()
    assert set(kit.values()) <= {"none", "pv", "pv+battery"} and sorted(kit) == sorted(set(frame["meter_id"]))


def test_a_folder_that_is_not_a_run_is_refused_by_name(tmp_path, folder):
    with pytest.raises(DataError, match="no readings.parquet"):
        read_simulate(tmp_path)
    half = tmp_path / "half"
    half.mkdir()
    (half / "readings.parquet").write_bytes((folder / "readings.parquet").read_bytes())
    with pytest.raises(DataError, match=r"summary.json: no such file"):
        read_simulate(half)
    result = run("theft", "evaluate", "--data", tmp_path)
    assert result.exit_code == 2 and "no readings.parquet" in result.output and "Traceback" not in result.output


def test_efficiency_pays_exactly_what_the_runs_dso_paid(folder):
    paid = pd.read_parquet(folder / "rewards.parquet").sort_values(["period", "meter"]).reset_index(drop=True)
    summary = as_json("efficiency", "--data", folder)
    cards = pd.DataFrame(summary["periods"]).sort_values(["period", "meter_id"]).reset_index(drop=True)
    columns = ["period", "forecast_adherence", "power_quality", "peak_reduction", "score", "amount"]
    pd.testing.assert_frame_equal(cards[columns], paid[columns], check_dtype=False)
    assert cards["meter_id"].tolist() == paid["meter"].tolist()
    assert sum(m["reward"] for m in summary["meters"].values()) == paid["amount"].sum()
    assert len(paid) == HOMES * (DAYS - 1)
    doubled = as_json("efficiency", "--data", folder, "--rate", "2")
    assert all(d["reward"] == 2 * summary["meters"][m]["reward"] for m, d in doubled["meters"].items())


def test_efficiency_of_the_same_readings_as_a_file_is_the_same(tmp_path, folder):
    path = tmp_path / "readings.csv"
    read_simulate(folder).to_csv(path, index=False)
    out = tmp_path / "cards.parquet"
    from_file = as_json("efficiency", "--data", path, "--out", out)
    assert from_file["meters"] == as_json("efficiency", "--data", folder)["meters"]
    assert len(pd.read_parquet(out)) == HOMES * (DAYS - 1)


def test_theft_on_a_run_uses_the_shipped_model_and_reports_every_meter(folder):
    summary = as_json("theft", "evaluate", "--data", folder)
    assert summary["model"] == f"shipped model {default_model.FILE}" and summary["injected"] is True
    assert summary["n"] == HOMES * DAYS and sorted(summary["per_meter"]) == [f"MI00{i}" for i in range(1, 7)]
    assert sum(r["days"] for r in summary["per_meter"].values()) == summary["n"]
    (tp, fn), (fp, tn) = summary["confusion"]
    assert sum(r["flagged"] for r in summary["per_meter"].values()) == tp + fp
    assert sum(r["false_alarms"] for r in summary["per_meter"].values()) == fp
    assert sum(r["missed"] for r in summary["per_meter"].values()) == fn
    assert "fewer than 500" in summary["warning"]


def test_pq_and_forecast_on_a_run(folder):
    pq = as_json("pq", "evaluate", "--data", folder, "--per-day", "3")
    assert pq["meters"] == HOMES and set(pq["events"]) == {"sag", "swell", "poor_pf"} and pq["test_days"] == 1
    for r in pq["events"].values():
        assert r["events"] > 0 and 0 <= r["recall"] <= 1 and 0 <= r["precision"] <= 1
    # the run's readings reach the forecasts, which need more days than this short run has
    forecast = run("forecast", "evaluate", "--data", folder)
    assert forecast.exit_code == 2 and f"{DAYS} days with test fraction" in forecast.output


def test_piped_output_keeps_every_name_whole(tmp_path, community):
    long = {m: f"household-{m}-on-the-northern-feeder" for m in community["meter_id"].unique()}
    path = tmp_path / "long.csv"
    community.assign(meter_id=community["meter_id"].map(long))[
        ["meter_id", "timestamp", "consumption_wh", "production_wh"]
    ].to_csv(path, index=False)
    env = {**os.environ, "COLUMNS": "40", "TERM": "dumb"}

    def piped(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "gridledger", *args], capture_output=True, text=True, env=env, timeout=600
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    theft = piped("theft", "evaluate", "--data", str(path))
    forecast = piped("forecast", "evaluate", "--data", str(path), "--column", "consumption_wh")
    for text in (theft, forecast):
        assert "…" not in text

    def cells(text: str, name: str) -> list[str]:
        row = next(line for line in text.splitlines() if f"│ {name} " in line)
        return [c.strip() for c in row.split("│")[1:-1]]

    for name in long.values():  # Table 5: the full name and its seven figures
        row = cells(theft, name)
        assert row[0] == name and len(row) == 8 and all(c.replace(".", "").isdigit() for c in row[1:])
    for method in ("persistence", "seasonal-naive", "seasonal-naive-week", "edge", "fog"):
        row = cells(forecast, method)
        assert row[0] == method and len(row) == 7 and all(c.replace(".", "").isdigit() for c in row[1:])
    assert "nb MAPE%" in forecast and "false alarms" in theft
