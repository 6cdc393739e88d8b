"""What the commands put in their reports (no browser needed): the same numbers as their output, the command
line in the footer, and nothing fetched from the network."""

from __future__ import annotations

import json
import re

from plotly.offline import get_plotlyjs

import gridledger


def page(reports, name: str) -> str:
    return reports[name].path.read_text(encoding="utf-8")


def test_the_theft_summary_is_the_commands_json(reports):
    out = json.loads(reports["theft"].output)
    rows = re.findall(r"<tr><td>(detector[^<]*)</td>((?:<td>[^<]*</td>)+)</tr>", page(reports, "theft"))
    cells = {name: re.findall(r"<td>([^<]*)</td>", rest) for name, rest in rows}
    for name, metrics in (("detector", out["without_rl"]), ("detector + RL", out)):
        expected = [f"{metrics[k]:.4f}" for k in ("accuracy", "precision", "recall", "f1", "auc")]
        assert cells[name] == [*expected, str(metrics["n"])]


def test_the_footer_gives_the_command_the_seed_and_the_version(reports):
    theft = page(reports, "theft")
    footer = theft[theft.index("<footer>") :]
    assert re.search(
        r"<code>\S+ theft evaluate --data \S+community\.csv --json --report \S+theft\.html</code>", footer
    )
    assert "(seed 0)" in footer and f"gridledger {gridledger.__version__}" in footer
    market = page(reports, "market")
    footer = market[market.index("<footer>") :]
    assert re.search(
        r"<code>\S+ market simulate --prosumers 6 --rounds 2 --seed 4 --out \S+ --report \S+</code>", footer
    )
    assert "(seed 4)" in footer


def test_the_reports_load_nothing_from_the_network(reports):
    for name in reports:
        ours = page(reports, name).replace(get_plotlyjs(), "")
        assert get_plotlyjs() in page(reports, name)
        assert not re.search(r'(?:src|href)\s*=\s*["\']?(?:https?:)?//', ours), name
        assert "<script src=" not in ours


def test_the_commands_say_where_the_report_is(reports):
    for name in ("forecast", "market"):
        assert f"report: {reports[name].path}" in " ".join(reports[name].output.split())
