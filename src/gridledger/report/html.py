"""Self-contained offline HTML reports: a title, a short summary table, plotly figures (and sections of
tables or text between them) and a footer.

A report opens in any browser with no network: the plotly.js bundle is inlined into the file, or written once
beside it as ``plotly-<version>.min.js`` and shared by every report in that folder; nothing else is fetched.
The output is deterministic (figure ids are numbered, no time stamp), so the same report gives the same bytes.
The footer says how the report was made: the command, the seed and the gridledger version.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs, get_plotlyjs_version

from .provenance import Provenance

BUNDLES = ("inline", "beside")
SUFFIXES = (".html", ".htm")
PLOTLY_PRELUDE = 'window.PlotlyConfig = {MathJaxConfig: "local"};'  # as plotly's own offline pages
PLOT_CONFIG = {"displaylogo": False, "responsive": True}
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; margin-bottom: .4rem; }
h2 { font-size: 1.15rem; margin: 2rem 0 .3rem; }
p.note { margin: .2rem 0; color: #444; }
table.summary { border-collapse: collapse; margin: 1rem 0; font-variant-numeric: tabular-nums; }
table.summary th, table.summary td { border: 1px solid #ccc; padding: .25rem .6rem; text-align: right; }
table.summary th:first-child, table.summary td:first-child { text-align: left; }
table.summary thead th { background: #f2f2f2; }
table.summary caption { caption-side: bottom; text-align: left; color: #444; padding-top: .3rem; }
p.caption { color: #444; margin: .2rem 0 1rem; }
footer { margin-top: 2.5rem; border-top: 1px solid #ccc; padding-top: .6rem; color: #555; font-size: .9rem; }
code { background: #f4f4f4; padding: 0 .2rem; }
"""


@dataclass(frozen=True)
class Table:
    """A small table of formatted cells: ``columns`` headers, ``rows`` as long, a ``caption`` under it."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(
                    f"a summary row has {len(row)} cells for {len(self.columns)} columns: {row!r}"
                )


@dataclass(frozen=True)
class Figure:
    """One plot with its heading and a caption that says what it shows and how to read it."""

    title: str
    plot: go.Figure
    caption: str = ""

    @property
    def drawn_traces(self) -> int:
        """Traces drawn when the page opens (hidden and legend-only traces excluded)."""
        return sum(t.visible in (None, True) for t in self.plot.data)


@dataclass(frozen=True)
class Section:
    """A heading with paragraphs of ``text`` and ``tables`` under it (no plot): analytics tables, or a note
    saying why a part of the report is absent."""

    title: str
    text: tuple[str, ...] = ()
    tables: tuple[Table, ...] = ()


@dataclass(frozen=True)
class Report:
    """A report: ``title``, one-line ``notes`` under it, a ``summary`` table, ``figures`` (and sections, in page
    order), ``provenance``."""

    title: str
    summary: Table
    figures: tuple[Figure | Section, ...]
    provenance: Provenance
    notes: tuple[str, ...] = ()


def check_report_path(path: Path) -> Path:
    """The path a report may be written to, or a ``ValueError`` saying why not (to check before long work)."""
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"--report {path}: the report is an HTML file; give it a .html name")
    if path.is_dir():
        raise ValueError(f"--report {path}: is a directory; give a file name ending in .html")
    return path


def _table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>\n" for row in table.rows
    )
    caption = f"<caption>{html.escape(table.caption)}</caption>" if table.caption else ""
    return f'<table class="summary">{caption}<thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>'


def _figure(number: int, figure: Figure) -> str:
    plot = figure.plot
    if plot.layout.margin.t is None and plot.layout.title.text is None:  # the heading is the page's <h2>
        plot = go.Figure(plot).update_layout(margin={"t": 40})
    div = pio.to_html(
        plot,
        full_html=False,
        include_plotlyjs=False,
        div_id=f"figure-{number}",
        config=PLOT_CONFIG,
        validate=True,
    )
    caption = f'<p class="caption">{html.escape(figure.caption)}</p>' if figure.caption else ""
    return (
        f'<section class="figure" data-traces="{figure.drawn_traces}">\n'
        f"<h2>{html.escape(figure.title)}</h2>\n{div}\n{caption}\n</section>"
    )


def _section(section: Section) -> str:
    text = "".join(f'<p class="note">{html.escape(t)}</p>\n' for t in section.text)
    tables = "\n".join(_table(t) for t in section.tables)
    return f'<section class="tables">\n<h2>{html.escape(section.title)}</h2>\n{text}{tables}\n</section>'


def _footer(provenance: Provenance, bundle: str) -> str:
    seed = "no random draws" if provenance.seed is None else f"seed {provenance.seed}"
    how = "inlined in this file" if bundle == "inline" else "in the file beside this one"
    return (
        f"<footer>Made by <code>{html.escape(provenance.command)}</code> ({seed}) with gridledger "
        f"{html.escape(provenance.version)}; plots by plotly.js {get_plotlyjs_version()}, {how}. "
        "The page needs no network.</footer>"
    )


def render(report: Report, bundle: str = "inline") -> str:
    """The report as one HTML page; ``bundle`` says where plotly.js is (``inline`` or ``beside``)."""
    if bundle not in BUNDLES:
        raise ValueError(f"bundle must be one of {', '.join(BUNDLES)}, not {bundle!r}")
    script = (
        f'<script type="text/javascript">{PLOTLY_PRELUDE}\n{get_plotlyjs()}</script>'
        if bundle == "inline"
        else f'<script src="{bundle_name()}"></script>'
    )
    notes = "".join(f'<p class="note">{html.escape(n)}</p>\n' for n in report.notes)
    parts, number = [], 0
    for part in report.figures:
        if isinstance(part, Figure):
            number += 1
            parts.append(_figure(number, part))
        else:
            parts.append(_section(part))
    figures = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(report.title)}</title>\n<style>{STYLE}</style>\n{script}\n</head>\n<body>\n"
        f"<h1>{html.escape(report.title)}</h1>\n{notes}{_table(report.summary)}\n{figures}\n"
        f"{_footer(report.provenance, bundle)}\n</body>\n</html>\n"
    )


def bundle_name() -> str:
    """File name of the plotly.js bundle written beside reports (versioned, so reports never mix versions)."""
    return f"plotly-{get_plotlyjs_version()}.min.js"


def write_report(report: Report, path: Path, bundle: str = "inline") -> Path:
    """Write ``report`` to ``path`` (parent folders created); with ``beside``, plotly.js once next to it."""
    check_report_path(path)
    page = render(report, bundle)
    path.parent.mkdir(parents=True, exist_ok=True)
    if bundle == "beside":
        js = path.parent / bundle_name()
        if not js.exists():
            js.write_text(get_plotlyjs(), encoding="utf-8")
    path.write_text(page, encoding="utf-8")
    return path
