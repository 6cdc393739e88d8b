"""The three reports made by the commands as a user runs them, and each page rendered in headless Chromium.

``reports`` runs ``theft evaluate``, ``forecast evaluate`` and ``market simulate`` with ``--report`` on a
small seeded community (6 meters x 12 days at 15 min; 6 prosumers x 2 rounds). ``rendered`` opens every
report in its own headless Chromium, all at once, and is skipped only when ``/usr/bin/chromium`` is absent.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import plotly.graph_objects as go
import pytest
import typer
from typer.testing import CliRunner

from gridledger.cli.analytics import forecast_app, theft_app
from gridledger.cli.market import app as market_app
from gridledger.profiles import community_readings
from gridledger.report import Figure, Provenance, Report, Table, write_report

from .chromium import CHROMIUM, Rendered, render

app = typer.Typer()
app.add_typer(theft_app, name="theft")
app.add_typer(forecast_app, name="forecast")
app.add_typer(market_app, name="market")


@dataclass(frozen=True)
class Made:
    """A report and the command's own output (stdout) beside it."""

    path: Path
    output: str


def run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="session")
def readings(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "community.csv"
    frame = community_readings(6, 12, "15min", seed=5)
    frame[["meter_id", "timestamp", "consumption_wh", "production_wh"]].to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def reports(tmp_path_factory, readings) -> dict[str, Made]:
    out = tmp_path_factory.mktemp("reports")
    theft, forecast, market = out / "theft.html", out / "forecast.html", out / "market.html"
    made = {
        "theft": Made(
            theft, run("theft", "evaluate", "--data", str(readings), "--json", "--report", str(theft))
        ),
        "forecast": Made(
            forecast, run("forecast", "evaluate", "--data", str(readings), "--report", str(forecast))
        ),
        "market": Made(
            market,
            run(
                "market",
                "simulate",
                "--prosumers",
                "6",
                "--rounds",
                "2",
                "--seed",
                "4",
                "--out",
                str(out / "sim"),
                "--report",
                str(market),
            ),
        ),
    }
    json.loads(made["theft"].output)  # --json still prints one JSON object with --report
    return made


@pytest.fixture(scope="session")
def beside(tmp_path_factory) -> dict[str, Path]:
    """A one-figure report with plotly.js written beside it, and the same page where that file is missing."""
    report = Report(
        "beside",
        Table(("a",), (("1",),)),
        (Figure("line", go.Figure(go.Scatter(x=[0, 1, 2], y=[1, 3, 2]))),),
        Provenance("test"),
    )
    with_js = write_report(report, tmp_path_factory.mktemp("with-js") / "report.html", bundle="beside")
    without_js = tmp_path_factory.mktemp("without-js") / "report.html"
    shutil.copy(with_js, without_js)
    return {"with plotly.js": with_js, "without plotly.js": without_js}


@pytest.fixture(scope="session")
def rendered(tmp_path_factory, reports, beside) -> dict[str, Rendered]:
    """Every page of ``reports`` and ``beside``, by name, as headless Chromium rendered it."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"headless Chromium is not installed ({CHROMIUM} is absent; `./dev services` installs it)"
        )
    pages = {name: m.path for name, m in reports.items()} | beside
    done = render(list(pages.values()), tmp_path_factory.mktemp("chromium"))
    return {name: done[path] for name, path in pages.items()}
