"""The generic report builder: deterministic, escaped, self-contained pages and where plotly.js goes."""

from __future__ import annotations

import re

import plotly.graph_objects as go
import pytest
from plotly.offline import get_plotlyjs, get_plotlyjs_version

from gridledger.report import Figure, Provenance, Report, Table, check_report_path, render, write_report
from gridledger.report.html import bundle_name


def make(title: str = "T", seed: int | None = 7, cells: tuple[str, ...] = ("x", "1")) -> Report:
    line = go.Scatter(x=[0, 1], y=[1, 2], name="drawn")
    hidden = go.Scatter(x=[0, 1], y=[2, 1], name="hidden", visible="legendonly")
    return Report(
        title,
        Table(("name", "value"), (cells,), "a caption"),
        (
            Figure("first", go.Figure([line, hidden]), "what it shows"),
            Figure("second", go.Figure(go.Bar(y=[1]))),
        ),
        Provenance("gridledger theft evaluate --data d.csv", seed, "9.9.9"),
        ("a note",),
    )


def test_the_same_report_gives_the_same_bytes():
    assert render(make()) == render(make())


def test_the_page_has_title_notes_summary_figures_and_footer_in_order():
    page = render(make())
    marks = [
        "<h1>T</h1>",
        "a note",
        "<caption>a caption</caption>",
        'id="figure-1"',
        'id="figure-2"',
        "<footer>",
    ]
    positions = [page.index(m) for m in marks]
    assert positions == sorted(positions)
    footer = page[page.index("<footer>") :]
    assert "gridledger theft evaluate --data d.csv" in footer and "seed 7" in footer and "9.9.9" in footer
    assert f"plotly.js {get_plotlyjs_version()}" in footer


def test_the_footer_says_when_there_were_no_random_draws():
    assert "no random draws" in render(make(seed=None))


def test_text_is_escaped():
    page = render(make(title="<script>x()</script>", cells=("a<b", "&")))
    assert "<script>x()</script>" not in page
    assert "&lt;script&gt;x()&lt;/script&gt;" in page and "<td>a&lt;b</td><td>&amp;</td>" in page


def test_data_in_figures_cannot_close_the_script():
    hostile = go.Figure(go.Box(y=[1], text=["</script><script>alert(1)</script>"], name="</script>"))
    page = render(Report("t", Table(("a",), ()), (Figure("f", hostile),), Provenance("c")))
    assert "</script><script>alert(1)" not in page


def test_each_figure_declares_the_traces_it_draws():
    assert re.findall(r'data-traces="(\d+)"', render(make())) == [
        "1",
        "1",
    ]  # the legend-only trace is not drawn
    assert (
        Figure(
            "f", go.Figure([go.Bar(y=[1]), go.Bar(y=[2], visible=False), go.Bar(y=[3], visible=True)])
        ).drawn_traces
        == 2
    )


def test_a_figure_gets_a_compact_top_margin_unless_it_sets_its_own():
    plain, own = go.Figure(go.Bar(y=[1])), go.Figure(go.Bar(y=[1]), layout={"margin": {"t": 90}})
    page = render(Report("t", Table(("a",), ()), (Figure("p", plain), Figure("o", own)), Provenance("c")))
    assert '"margin":{"t":40}' in page and '"margin":{"t":90}' in page
    assert plain.layout.margin.t is None  # the caller's figure is left alone


def test_summary_rows_must_fit_the_columns():
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        Table(("a", "b", "c"), (("1", "2"),))


def test_inline_pages_need_no_other_file_and_no_network(tmp_path):
    path = write_report(make(), tmp_path / "r.html")
    page = path.read_text(encoding="utf-8")
    assert list(tmp_path.iterdir()) == [path]
    assert get_plotlyjs() in page and "<script src=" not in page
    ours = page.replace(get_plotlyjs(), "")  # plotly.js itself holds links (its logo), never followed on load
    assert not re.search(r'(?:src|href)\s*=\s*["\']?(?:https?:)?//', ours)


def test_beside_writes_plotly_js_once_for_every_report_in_the_folder(tmp_path):
    first = write_report(make(), tmp_path / "a.html", bundle="beside")
    js = tmp_path / bundle_name()
    assert f'<script src="{bundle_name()}"></script>' in first.read_text(encoding="utf-8")
    assert js.stat().st_size > 1_000_000
    js.write_text("kept")  # a second report in the same folder reuses the bundle as it is
    write_report(make(), tmp_path / "b.html", bundle="beside")
    assert js.read_text() == "kept" and len(list(tmp_path.iterdir())) == 3


def test_write_report_creates_missing_folders(tmp_path):
    assert write_report(make(), tmp_path / "new" / "deeper" / "r.html").is_file()


def test_an_unknown_bundle_is_refused():
    with pytest.raises(ValueError, match="bundle must be one of inline, beside"):
        render(make(), bundle="cdn")


@pytest.mark.parametrize("name", ["report.txt", "report", "report.html.gz"])
def test_a_report_must_be_an_html_file(tmp_path, name):
    with pytest.raises(ValueError, match="give it a .html name"):
        check_report_path(tmp_path / name)


def test_a_report_path_must_not_be_a_folder(tmp_path):
    (tmp_path / "r.html").mkdir()
    with pytest.raises(ValueError, match="is a directory"):
        check_report_path(tmp_path / "r.html")
    assert check_report_path(tmp_path / "R.HTM") == tmp_path / "R.HTM"
