"""The report of ``gridledger simulate`` as a user gets it, rendered in headless Chromium with the network closed:
every figure drawn with all its traces, no page error, the key numbers on the page; and the same for a run folder
that also holds every optional analytics input and injected attacks."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest
from plotly.offline import get_plotlyjs
from typer.testing import CliRunner

from gridledger.cli import app
from gridledger.report.community_report import REPORT_FILE, community_report

from .chromium import CHROMIUM, WINDOW, render
from .dom import figures
from .png import png_stats

pytestmark = pytest.mark.browser
PAGES = ("plain", "enriched")
MIN_VARYING, MIN_ENTROPY = 0.01, 0.1  # as test_render.py: a blank page scores 0 / 0


def _enrich(out: Path) -> None:
    """The optional inputs of tests/report/test_community_report.py, written into ``out``."""
    path = Path(__file__).parents[1] / "report" / "test_community_report.py"
    spec = importlib.util.spec_from_file_location("community_report_inputs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.enrich(out)


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict:
    """``gridledger simulate`` of 6 homes x 1 day with its default report, and an enriched copy's report."""
    base = tmp_path_factory.mktemp("simulate")
    out = base / "run"
    result = CliRunner().invoke(
        app, ["simulate", "--homes", "6", "--days", "1", "--seed", "3", "--out", str(out)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    enriched = base / "enriched"
    shutil.copytree(out, enriched)
    (enriched / REPORT_FILE).unlink()
    _enrich(enriched)
    return {
        "output": result.stdout,
        "summary": json.loads((out / "summary.json").read_text()),
        "plain": out / REPORT_FILE,
        "enriched": community_report(enriched),
    }


@pytest.fixture(scope="module")
def rendered(made, tmp_path_factory) -> dict:
    if not CHROMIUM.exists():
        pytest.skip(f"headless Chromium is not installed ({CHROMIUM} is absent; `./dev services` installs it)")
    done = render([made[name] for name in PAGES], tmp_path_factory.mktemp("chromium"))
    return {name: done[made[name]] for name in PAGES}


def test_the_command_writes_the_report_and_says_where(made):
    assert made["plain"].is_file()
    assert f"report: {made['plain']}" in " ".join(made["output"].split())


@pytest.mark.parametrize("name", PAGES)
def test_every_figure_is_drawn_with_all_its_traces(made, rendered, name):
    declared = len(re.findall(r'<section class="figure"', made[name].read_text(encoding="utf-8")))
    drawn = figures(rendered[name].dom)
    assert declared >= 7 and len(drawn) == declared
    for fig in drawn:
        assert fig.main_svgs >= 1, f"{fig.heading}: plotly drew no SVG"
        assert len(fig.traces) == fig.expected_traces, f"{fig.heading}: {len(fig.traces)} traces drawn"
        assert all(fig.traces), f"{fig.heading}: a trace was drawn without data"


@pytest.mark.parametrize("name", PAGES)
def test_the_page_logs_no_error(rendered, name):
    assert not [m for m in rendered[name].console if "rror" in m or "Uncaught" in m], rendered[name].console


@pytest.mark.parametrize("name", PAGES)
def test_the_screenshot_is_not_blank(rendered, name):
    stats = png_stats(rendered[name].screenshot)
    assert (stats.width, stats.height) == WINDOW
    assert stats.varying >= MIN_VARYING and stats.entropy >= MIN_ENTROPY, stats


@pytest.mark.parametrize("name", PAGES)
def test_the_page_loads_nothing_from_the_network(made, name):
    page = made[name].read_text(encoding="utf-8")
    assert get_plotlyjs() in page
    ours = page.replace(get_plotlyjs(), "")
    assert not re.search(r'(?:src|href)\s*=\s*["\']?(?:https?:)?//', ours)
    assert "<script src=" not in ours


def test_the_key_numbers_are_on_the_rendered_page(made, rendered):
    s, dom = made["summary"], rendered["plain"].dom
    assert f"<td>trades</td><td>{s['trades']:,}</td>" in dom
    assert f"<td>energy traded</td><td>{s['energy_traded_wh'] / 1000:,.1f} kWh</td>" in dom
    assert f"{s['total_bill_minor']:,} minor units vs {s['baseline_bill_minor']:,} minor units" in dom
    # drawn by plotly.js (an annotation of the price plot): the scripts ran
    assert f"DSO consumption price {s['prices_per_kwh']['consumption']}" in dom
    assert "--homes 6 --days 1 --seed 3 --out" in dom[dom.index("<footer>") :]


def test_the_optional_sections_are_drawn(rendered):
    headings = [f.heading for f in figures(rendered["enriched"].dom)]
    for heading in (
        "The DSO's microgrid controller: signals and prices in force",
        "Alarms and attacks on a timeline",
        "Energy-theft scores per meter-day",
        "Power-quality events on a timeline",
    ):
        assert heading in headings
    assert "<td>theft-h2</td><td>MI002</td>" in rendered["enriched"].dom
