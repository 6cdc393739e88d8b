"""Each report really renders in headless Chromium: every figure drawn with all its traces, no page error,
a screenshot that is not blank — with the network closed, so nothing was fetched."""

from __future__ import annotations

import re

import pytest

from .chromium import WINDOW
from .dom import figures
from .png import png_stats

pytestmark = pytest.mark.browser
REPORTS = ("theft", "forecast", "market")
# Thresholds from the screenshots: a blank page scores 0.0000 / 0.00, a page of one heading and one line of
# text 0.0004 / 0.007 bits, the three reports 0.025-0.045 / 0.36-0.60 bits.
MIN_VARYING, MIN_ENTROPY = 0.01, 0.1


@pytest.mark.parametrize("name", REPORTS)
def test_every_figure_is_drawn_with_all_its_traces(rendered, reports, name):
    declared = len(re.findall(r'<section class="figure"', reports[name].path.read_text(encoding="utf-8")))
    drawn = figures(rendered[name].dom)
    assert declared and len(drawn) == declared
    for fig in drawn:
        assert fig.main_svgs >= 1, f"{fig.heading}: plotly drew no SVG"
        assert len(fig.traces) == fig.expected_traces, f"{fig.heading}: {len(fig.traces)} traces drawn"
        assert all(fig.traces), f"{fig.heading}: a trace was drawn without data"


@pytest.mark.parametrize("name", REPORTS)
def test_the_page_logs_no_error(rendered, name):
    assert not [m for m in rendered[name].console if "rror" in m or "Uncaught" in m], rendered[name].console


@pytest.mark.parametrize("name", REPORTS)
def test_the_screenshot_is_not_blank(rendered, name):
    stats = png_stats(rendered[name].screenshot)
    assert (stats.width, stats.height) == WINDOW
    assert stats.varying >= MIN_VARYING and stats.entropy >= MIN_ENTROPY, stats


def test_the_theft_report_shows_each_plot_the_brief_asks_for(rendered):
    headings = [f.heading for f in figures(rendered["theft"].dom)]
    assert headings == [
        "ROC curve",
        "Score distributions, honest vs tampered meter-days",
        "Confusion matrix (Table 6 form), without and with RL",
        "Per meter (Table 5 form)",
        "Detection rate per attack (Jokar h1–h6)",
    ]


def test_the_forecast_report_has_three_plots_per_forecast(rendered):
    headings = [f.heading for f in figures(rendered["forecast"].dom)]
    forecasts = [f"{c} {h}" for c in ("consumption_wh", "production_wh") for h in ("next-slot", "day-ahead")]
    assert headings == [
        f"{f}: {plot}"
        for f in forecasts
        for plot in (
            "neighbourhood actual vs forecast",
            "error per method against the baselines",
            "per-meter NRMSE",
        )
    ]


def test_the_market_report_sets_the_dso_view_beside_what_it_cannot_see(rendered):
    headings = [f.heading for f in figures(rendered["market"].dom)]
    assert headings == [
        "Orders and trades per round",
        "Limit prices and clearing prices",
        "Close of the round to committed deposits",
        "What the DSO sees",
        "What the DSO cannot see: who traded with whom",
    ]


def test_a_report_renders_from_plotly_js_beside_it(rendered):
    (fig,) = figures(rendered["with plotly.js"].dom)
    assert fig.main_svgs >= 1 and fig.traces == [True]
    assert not rendered["with plotly.js"].console
    drawn, control = (png_stats(rendered[n].screenshot) for n in ("with plotly.js", "without plotly.js"))
    assert drawn.varying > 2 * control.varying, (drawn, control)


def test_these_checks_fail_on_a_page_whose_plots_did_not_render(rendered):
    """Negative control: the same page without its plotly.js draws nothing, and the checks above see it."""
    page = rendered["without plotly.js"]
    (fig,) = figures(page.dom)
    assert fig.main_svgs == 0 and fig.traces == []
    assert any("Plotly is not defined" in m for m in page.console)
    stats = png_stats(page.screenshot)
    assert stats.varying < MIN_VARYING or stats.entropy < MIN_ENTROPY, stats
