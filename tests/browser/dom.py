"""What a rendered report's DOM holds, figure by figure (plotly.js's SVG as Chromium serialises it).

plotly.js draws each trace as a ``<g class="trace …">`` group (scatter, bars and histograms, boxes) or, for a
heat map, a ``<g class="hm">`` holding an ``<image>``, or for a table a ``<g class="table">`` holding ``<text>``
cells; the data itself are ``<path d="M…">``, that image or those cells.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class FigureDom:
    """One ``<section class="figure">``: its heading, the trace count it declares, what was drawn."""

    expected_traces: int
    heading: str = ""
    main_svgs: int = 0
    traces: list[bool] = field(default_factory=list)  # per drawn trace: does it hold any drawn data?


class _Walker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, str | None]] = []
        self.figures: list[FigureDom] = []

    def _inside(self, role: str) -> bool:
        return any(r == role for _, r in self.stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = a.get("class", "").split()
        role = None
        if tag == "section" and "figure" in classes:
            self.figures.append(FigureDom(int(a["data-traces"])))
            role = "figure"
        elif self._inside("figure"):
            fig = self.figures[-1]
            if tag == "h2":
                role = "heading"
            elif tag == "svg" and "main-svg" in classes:
                fig.main_svgs += 1
            elif tag == "g" and (classes[:1] in (["trace"], ["table"]) or classes == ["hm"]):
                fig.traces.append(False)
                role = "trace"
            elif self._inside("trace") and (
                tag in ("image", "text") or (tag == "path" and a.get("d", "").startswith("M"))
            ):
                fig.traces[-1] = True
        if tag not in VOID:
            self.stack.append((tag, role))

    def handle_endtag(self, tag: str) -> None:
        while self.stack and self.stack.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1][1] == "heading":
            self.figures[-1].heading += data


def figures(dom: str) -> list[FigureDom]:
    """Every report figure of a rendered page, in order."""
    walker = _Walker()
    walker.feed(dom)
    walker.close()
    return walker.figures
