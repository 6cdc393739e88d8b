"""`gridledger simulate`: a generated community end to end from the command line, its verification, bad input."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gridledger.cli import app

EXAMPLES = Path(__file__).parents[2] / "examples"
runner = CliRunner()


def test_a_generated_community_runs_and_verifies(tmp_path):
    out = tmp_path / "run"
    r = runner.invoke(app, ["simulate", "--homes", "6", "--days", "1", "--seed", "3", "--out", str(out), "--no-report"])
    assert r.exit_code == 0, r.output
    assert (out / "community.toml").is_file()  # the generated community is kept beside its outputs
    summary = json.loads((out / "summary.json").read_text())
    assert summary["homes"] == 6 and summary["slots"] == 96 and summary["blocks"] > 0
    assert f"outputs in {out}" in r.output
    v = runner.invoke(app, ["verify", str(out)])
    assert v.exit_code == 0, v.output
    assert "valid" in v.output
    again = tmp_path / "again"
    r = runner.invoke(app, ["simulate", str(out / "community.toml"), "--out", str(again), "--no-report"])
    assert r.exit_code == 0, r.output  # the written community file reads back
    assert json.loads((again / "summary.json").read_text())["homes"] == 6


def test_a_tampered_run_does_not_verify(tmp_path):
    out = tmp_path / "run"
    r = runner.invoke(app, ["simulate", "--homes", "6", "--days", "1", "--out", str(out), "--no-report"])
    assert r.exit_code == 0, r.output

    store = sorted((out / "chains").glob("nan_*.members.sqlite"))[0]
    with sqlite3.connect(store) as db:  # flip one byte of a committed block
        height, data = db.execute("SELECT height, data FROM blocks WHERE height = 3").fetchone()
        db.execute("UPDATE blocks SET data = ? WHERE height = ?", (data[:-1] + bytes([data[-1] ^ 1]), height))
    assert runner.invoke(app, ["verify", str(out)]).exit_code == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--homes", "6", "--days", "0"], "--days"),
        (["--homes", "2"], "--homes"),
        (["/nonexistent/community.toml"], "community.toml"),
    ],
)
def test_bad_flags_are_one_clear_error(tmp_path, args, message):
    out = tmp_path / "run"
    r = runner.invoke(app, ["simulate", *args, "--out", str(out), "--no-report"])
    assert r.exit_code == 2 and message in r.output
    assert not out.exists() or not any(out.iterdir())  # nothing half-written


def test_a_bad_community_file_names_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text((EXAMPLES / "community-small.toml").read_text() + "\n[surprise]\nx = 1\n")
    out = tmp_path / "run"
    r = runner.invoke(app, ["simulate", str(bad), "--out", str(out), "--no-report"])
    assert r.exit_code == 2 and "bad.toml" in r.output and "surprise" in r.output
    assert not out.exists()


def test_an_earlier_run_is_never_overwritten(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    r = runner.invoke(app, ["simulate", "--homes", "6", "--out", str(out), "--no-report"])
    assert r.exit_code == 2 and "holds an earlier run; use --resume" in r.output
    assert (out / "summary.json").read_text() == "{}"
