"""Offline HTML reports with plotly figures for the analytics and the market (docs/analytics.md, privacy.md).

:mod:`.html` is the generic builder (title, summary table, figures, provenance footer); :mod:`.theft`,
:mod:`.forecast` and :mod:`.market` turn each command's result objects into a :class:`Report`.
"""

from .html import Figure, Report, Table, check_report_path, render, write_report
from .provenance import Provenance, invocation

__all__ = [
    "Figure",
    "Provenance",
    "Report",
    "Table",
    "check_report_path",
    "invocation",
    "render",
    "write_report",
]
