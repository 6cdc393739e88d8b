"""``--report`` on the commands: a bad path is refused in one line (exit 2) before any work is done."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from gridledger.cli.analytics import forecast_app, theft_app
from gridledger.cli.market import app as market_app

app = typer.Typer()
app.add_typer(theft_app, name="theft")
app.add_typer(forecast_app, name="forecast")
app.add_typer(market_app, name="market")


def run(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize("command", [("theft", "evaluate"), ("forecast", "evaluate")])
def test_analytics_refuse_a_report_that_is_not_html_before_reading_the_data(tmp_path, command):
    result = run(*command, "--data", str(tmp_path / "absent.csv"), "--report", str(tmp_path / "r.txt"))
    assert result.exit_code == 2
    assert "error: --report" in result.output and "give it a .html name" in result.output
    assert "absent.csv" not in result.output and "Traceback" not in result.output


def test_simulate_refuses_a_report_that_is_not_html_before_running_rounds(tmp_path):
    out = tmp_path / "sim"
    result = run("market", "simulate", "--out", str(out), "--report", str(tmp_path / "r.txt"))
    assert result.exit_code == 2 and "give it a .html name" in result.output
    assert not out.exists()


def test_a_report_that_cannot_be_written_is_one_line_and_exit_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run(
        "market",
        "simulate",
        "--prosumers",
        "3",
        "--rounds",
        "1",
        "--out",
        str(tmp_path / "sim"),
        "--report",
        str(blocker / "r.html"),
    )
    assert (
        result.exit_code == 2 and "error: cannot write" in result.output and "Traceback" not in result.output
    )


def test_a_report_path_that_is_a_folder_is_a_usage_error(tmp_path):
    (tmp_path / "r.html").mkdir()
    result = run("theft", "evaluate", "--data", str(tmp_path / "d.csv"), "--report", str(tmp_path / "r.html"))
    assert result.exit_code == 2 and "directory" in result.output


def test_simulate_needs_three_prosumers_for_the_onion_circuits(tmp_path):
    result = run("market", "simulate", "--prosumers", "2", "--out", str(tmp_path / "sim"))
    assert result.exit_code == 2 and "--prosumers" in result.output and not (tmp_path / "sim").exists()
