"""``gridledger profiles``: the commands work, write what they say, and fail with one line and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from gridledger.cli.profiles import app
from gridledger.profiles import COLUMNS

EXAMPLE = Path(__file__).parents[2] / "examples" / "community.toml"
runner = CliRunner()


def test_readings_writes_the_long_format(tmp_path):
    out = tmp_path / "readings.parquet"
    result = runner.invoke(app, ["readings", "--meters", "3", "--days", "1", "--freq", "15min", "--out", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert tuple(frame.columns) == COLUMNS and len(frame) == 3 * 96
    assert "meter readings" in result.output


def test_community_validates_lists_and_writes_csv(tmp_path):
    out = tmp_path / "community.csv"
    result = runner.invoke(app, ["community", str(EXAMPLE), "--freq", "1h", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "MI010" in result.output and "feeder F2" in result.output
    assert len(pd.read_csv(out)) == 10 * 7 * 24


@pytest.mark.parametrize("command", [["load", "--days", "1"], ["pv", "--days", "1"], ["list"]])
def test_load_pv_and_list_print_their_figures(command, tmp_path):
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    assert "H25" in result.output if command == ["list"] else "energy" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["load", "--profile", "X1"], "unknown BDEW profile 'X1'"),
        (["load", "--freq", "7min"], "divides a day"),
        (["pv", "--start", "someday"], "is not a date"),
        (["readings", "--out", "x.xlsx"], "must end in .parquet or .csv"),
        (["readings", "--pv-share", "2"], "--pv-share"),
        (["community", "missing.toml"], "cannot read the file"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(args, message, tmp_path):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_a_bad_community_file_names_the_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE.read_text().replace('profile = "G0"', 'profile = "G9"'))
    result = runner.invoke(app, ["community", str(bad)])
    assert result.exit_code == 2
    assert "homes[8] (id \"MI009\"): key 'profile'" in result.output
