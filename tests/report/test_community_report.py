"""The report of a community run: every section there, its numbers the run folder's own, the optional
analytics and attacks rendered when (and only when) their inputs are present, the same bytes every time."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

import gridledger
from gridledger.profiles.community import generate_community
from gridledger.report import Provenance
from gridledger.report.community_report import REPORT_FILE, RunFolderError, anchor_delays, community_report, load_run
from gridledger.sim.run import run_community
from gridledger.store.sqlite import SqliteStore

HEADINGS = [
    "Community load, PV, battery and net energy per slot",
    "Trades and clearing prices per slot",
    "Bills per home vs the no-market baseline",
    "Who gained, who lost",
    "What the DSO holds",
    "What the DSO cannot see: each home's net energy per slot",
    "The DSO's view beside what it cannot see",
    "The DSO's microgrid controller",
    "PoEf blocks per slot, by tier",
    "Committee votes per block",
    "PoEf statistics",
]
ATTACKS = [
    {
        "kind": "theft-h2",
        "target": "MI002",
        "from_slot": 40,
        "to_slot": 60,
        "detected": True,
        "detection_delay_s": 1800.0,
        "mechanism": "theft detector",
        "victim_cost_minor": 37,
    },
    {
        "kind": "flood",
        "target": "F1",
        "from_slot": 10,
        "to_slot": 12,
        "detected": False,
        "detection_delay_s": None,
        "mechanism": None,
        "victim_cost_minor": 0,
    },
    {
        "kind": "theft-h5",
        "target": "MI003",
        "from_slot": None,
        "to_slot": None,
        "detected": True,
        "detection_delay_s": 86_000.0,
        "mechanism": "theft detector",
        "victim_cost_minor": 5,
    },
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished run of 6 homes x 1 day on one feeder, without its report."""
    out = tmp_path_factory.mktemp("run") / "out"
    run_community(generate_community(6, 1, 3, feeders=1), out)
    return out


@pytest.fixture(scope="module")
def page(run_dir):
    return community_report(run_dir).read_text(encoding="utf-8")


def enrich(out: Path) -> None:
    """Add to the run folder ``out`` every optional input other parts of the run may write, and one alarm."""
    summary = json.loads((out / "summary.json").read_text())
    summary["attacks"] = ATTACKS
    (out / "summary.json").write_text(json.dumps(summary))
    pd.DataFrame(
        {
            "meter": ["MI001", "MI002", "MI003", "MI002"],
            "feeder": ["F1"] * 4,
            "day": [0, 0, 0, 1],
            "score": [0.1, 0.93, 0.2, 0.71],
            "flagged": [False, True, False, True],
        }
    ).to_parquet(out / "theft_scores.parquet")
    pd.DataFrame(
        {
            "meter": ["MI004", "MI004", "MI005"],
            "feeder": ["F1"] * 3,
            "slot": [20, 21, 50],
            "kind": ["sag", "sag", "low power factor"],
            "value": [112.5, 113.0, 0.71],
            "predicted": [126.0, 126.5, 0.9],
        }
    ).to_parquet(out / "pq_events.parquet")
    pd.DataFrame(
        {
            "tier": ["nan", "han", "fan"],
            "chain": ["nan:DC-F1", "han:MI001", "fan:FAN-0"],
            "model": ["gbr", "persistence", "gbr"],
            "horizon_slots": [1, 1, 96],
            "mae_wh": [41.25, 12.5, 310.0],
            "nrmse": [0.1834, 0.25, 0.0912],
            "n": [95, 95, 1],
        }
    ).to_parquet(out / "forecast_errors.parquet")
    pd.DataFrame(
        [("F1", 1, "MI001", 900, 800, 700, 810, 3100), ("F1", 1, "MI002", 300, 200, 100, 210, 0)],
        columns=["feeder", "period", "meter", "forecast_adherence", "power_quality", "peak_reduction", "score",
                 "amount"],
    ).to_parquet(out / "rewards.parquet")
    pd.DataFrame(
        [
            ("F1", 30, 9000, "shed", 1500, 33, 150, 75),
            ("F1", 31, 8000, "shed", 500, -1, -1, -1),
            ("F1", 40, 100, "", 0, 43, 120, 60),
        ],
        columns=["feeder", "slot", "predicted_w", "signal", "amount_w", "prices_from_slot", "consumption_per_kwh",
                 "production_per_kwh"],
    ).to_parquet(out / "control.parquet")
    pd.DataFrame(
        [("nan:DC-F1", 30, 2, 29, 3, "ab" * 20, 1)],
        columns=["chain", "height", "tx_index", "slot", "code", "subject", "detector"],
    ).to_parquet(out / "alarms.parquet")


@pytest.fixture(scope="module")
def enriched(run_dir, tmp_path_factory):
    """A copy of the run with every optional input and one alarm, and its report."""
    out = tmp_path_factory.mktemp("enriched") / "out"
    shutil.copytree(run_dir, out)
    (out / REPORT_FILE).unlink(missing_ok=True)
    enrich(out)
    return out, community_report(out).read_text(encoding="utf-8")


def headings(page: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'<section class="\w+"[^>]*>\n<h2>([^<]*)</h2>', page)]


def plots(page: str) -> dict[str, dict]:
    """Each figure's plotly data and layout, by its heading."""
    decoder = json.JSONDecoder()
    out = {}
    for m in re.finditer(r'<section class="figure"[^>]*>\n<h2>([^<]*)</h2>', page):
        start = re.compile(r'Plotly\.newPlot\(\s*"figure-\d+",\s*').search(page, m.end())
        data, end = decoder.raw_decode(page, start.end())
        layout, _ = decoder.raw_decode(page, re.compile(r",\s*").match(page, end).end())
        out[html.unescape(m.group(1))] = {"data": data, "layout": layout}
    return out


def rows(page: str, first_cell: str) -> list[list[str]]:
    """The cells of every table row that starts with ``first_cell``."""
    found = re.findall(rf"<tr><td>{re.escape(html.escape(first_cell))}</td>((?:<td>[^<]*</td>)*)</tr>", page)
    return [[html.unescape(c) for c in re.findall(r"<td>([^<]*)</td>", r)] for r in found]


def section(page: str, heading: str) -> str:
    """The HTML of the section headed ``heading``."""
    start = page.index(f"<h2>{html.escape(heading)}</h2>")
    return page[start : page.index("</section>", start)]


def trace(fig: dict, name: str) -> dict:
    (t,) = [t for t in fig["data"] if t.get("name") == name]
    return t


def test_the_report_is_written_in_the_run_folder_with_every_section(run_dir, page):
    assert (run_dir / REPORT_FILE).is_file()
    controller = "The DSO's microgrid controller: signals and prices in force"  # only when it signalled
    assert [h for h in headings(page) if h != controller][: len(HEADINGS)] == HEADINGS
    assert "No alarm was raised and no attack was injected in this run." in page
    for name in ("control", "theft_scores", "pq_events", "forecast_errors"):
        assert (f"{name}.parquet is not in this run folder" in page) is not (run_dir / f"{name}.parquet").exists()
    assert "No reward was paid" in page  # one day: rewards start after the second day


def test_figures_are_numbered_in_order_across_the_sections_between_them(page):
    ids = re.findall(r'<div id="(figure-\d+)"', page)
    assert ids == [f"figure-{i}" for i in range(1, len(plots(page)) + 1)]


def test_the_same_run_gives_the_same_bytes(run_dir, page):
    assert community_report(run_dir).read_text(encoding="utf-8") == page


def test_the_headline_is_the_runs_summary(run_dir, page):
    s = json.loads((run_dir / "summary.json").read_text())
    assert rows(page, "homes") == [[f"{s['homes']} on 1 feeder"]]
    assert rows(page, "trades") == [[f"{s['trades']:,}"]]
    assert rows(page, "energy traded") == [[f"{s['energy_traded_wh'] / 1000:,.1f} kWh"]]
    (bill,) = rows(page, "total bill")
    assert bill[0].startswith(f"{s['total_bill_minor']:,} minor units vs {s['baseline_bill_minor']:,} minor units")
    chains = json.loads((run_dir / "chains/tiers.json").read_text())["chains"]
    assert rows(page, "blocks") == [[f"{s['blocks']:,} on {len(chains)} chains"]]
    assert rows(page, "attacks") == [["none injected"]]


def test_the_energy_figure_sums_the_households(run_dir, page):
    fig = plots(page)["Community load, PV, battery and net energy per slot"]
    h = pd.read_parquet(run_dir / "households.parquet").groupby("slot").sum(numeric_only=True)
    assert trace(fig, "net (import + / export −)")["y"] == h["net_wh"].tolist()
    assert trace(fig, "PV")["y"] == h["pv_wh"].tolist()
    assert trace(fig, "load")["x"][:2] == ["2024-04-11 00:00", "2024-04-11 00:15"]


def test_the_market_figure_holds_every_order_and_the_traded_energy(run_dir, page):
    fig = plots(page)["Trades and clearing prices per slot"]
    orders = pd.read_parquet(run_dir / "orders.parquet")
    assert sum(trace(fig, "offers")["y"]) == (orders["side"] == "offer").sum()
    assert sum(trace(fig, "bids")["y"]) == (orders["side"] == "bid").sum()
    s = json.loads((run_dir / "summary.json").read_text())
    assert sum(trace(fig, "traded on F1")["y"]) == pytest.approx(s["energy_traded_wh"], abs=0.5)
    prices = pd.read_parquet(run_dir / "trades.parquet")["price"]
    cleared = [p for p in trace(fig, "clearing price (volume-weighted)")["y"] if p is not None]
    assert cleared and prices.min() <= min(cleared) and max(cleared) <= prices.max()


def test_the_bills_figure_is_each_homes_bill_and_baseline(run_dir, page):
    fig = plots(page)["Bills per home vs the no-market baseline"]
    per = pd.read_parquet(run_dir / "bills.parquet").groupby("meter")[["amount", "baseline_amount"]].sum()
    assert trace(fig, "bill")["x"] == per.index.tolist()
    assert trace(fig, "bill")["y"] == per["amount"].tolist()
    assert trace(fig, "without the market")["y"] == per["baseline_amount"].tolist()
    assert trace(fig, "gain")["y"] == (per["baseline_amount"] - per["amount"]).tolist()
    gained = int((per["baseline_amount"] > per["amount"]).sum())
    assert rows(page, "gained")[0][0] == str(gained)


def test_the_dso_figures_show_what_it_holds_and_what_it_does_not(run_dir, page):
    figs = plots(page)
    dso = pd.read_parquet(run_dir / "dso_feeder_slots.parquet")
    held = figs["What the DSO holds"]
    assert trace(held, "F1 import")["y"] == dso["import_wh"].tolist()
    periods = pd.read_parquet(run_dir / "dso_meter_periods.parquet")
    assert trace(held, "bill, period 0")["x"] == periods.sort_values("meter")["amount"].tolist()
    (heat,) = figs["What the DSO cannot see: each home's net energy per slot"]["data"]
    h = pd.read_parquet(run_dir / "households.parquet")
    assert heat["z"] == h.pivot(index="meter", columns="slot", values="net_wh").to_numpy().tolist()
    counts = {r[0]: r[2] for r in rows(page, "DSO view") + rows(page, "meters only")}
    assert counts["dso_feeder_slots"] == f"{len(dso):,}"
    assert counts["readings"] == f"{len(pd.read_parquet(run_dir / 'readings.parquet')):,}"
    assert "equal the sums of their meters' readings in every slot: yes." in html.unescape(page)
    assert "equal the sum of its slot bills: yes." in page


def test_the_dso_checks_see_a_view_that_disagrees_with_the_meters(run_dir, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(run_dir, out)
    dso = pd.read_parquet(out / "dso_feeder_slots.parquet")
    dso.loc[5, "import_wh"] += 1
    dso.to_parquet(out / "dso_feeder_slots.parquet")
    page = community_report(out).read_text(encoding="utf-8")
    assert "readings in every slot: NO, they differ." in page
    assert "equal the sum of its slot bills: yes." in page


def test_the_poef_statistics_count_the_blocks_per_tier(run_dir, page):
    blocks = pd.read_parquet(run_dir / "blocks.parquet")
    chains = json.loads((run_dir / "chains/tiers.json").read_text())["chains"]
    stats = section(page, "PoEf statistics")
    for tier in ("han", "nan", "fan", "head"):
        b = blocks[blocks["tier"] == tier]
        (row,) = rows(stats, tier)
        assert row[:3] == [str(sum(c["tier"] == tier for c in chains)), f"{len(b):,}", f"{b['transactions'].sum():,}"]
    fig = plots(page)["PoEf blocks per slot, by tier"]
    assert sum(trace(fig, "nan")["y"]) == (blocks["tier"] == "nan").sum()
    votes = plots(page)["Committee votes per block"]
    assert sum(sum(t["y"]) for t in votes["data"]) == len(blocks)


def test_every_block_below_the_head_end_is_anchored_once_and_its_delay_shown(run_dir, page):
    run = load_run(run_dir)
    delays = anchor_delays(run)
    for chain in run.chains:
        mine = delays[delays["chain"] == chain["name"]]
        if chain["parent"] is None:
            assert mine.empty
            continue
        store = SqliteStore(run_dir / "chains" / chain["stores"][0])
        try:
            assert sorted(mine["height"]) == list(range(store.tip_height() + 1)), chain["name"]
        finally:
            store.close()
    assert (delays["delay_s"] > 0).all()
    stats = section(page, "PoEf statistics")
    for tier in ("han", "nan", "fan"):
        minutes = delays.loc[delays["tier"] == tier, "delay_s"] / 60
        assert rows(stats, tier)[0][-1] == f"{minutes.mean():,.0f} / {minutes.max():,.0f} min"
    assert rows(stats, "head")[0][-1] == "–"


def test_without_the_chain_stores_the_report_says_there_are_no_anchor_delays(run_dir, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(run_dir, out, ignore=shutil.ignore_patterns("*.sqlite"))
    page = community_report(out).read_text(encoding="utf-8")
    assert "The chain stores are not SQLite files of this folder: no anchor delays." in page
    assert rows(section(page, "PoEf statistics"), "nan")[0][-1] == "–"


def test_the_forecast_errors_are_the_runs_own(run_dir, page):
    f = pd.read_parquet(run_dir / "forecasts.parquet")
    (row,) = rows(page, "every meter")
    assert row[0] == f"{len(f):,}"
    assert row[1] == f"{(f['forecast_wh'] - f['actual_wh']).abs().mean():.1f}"


def test_optional_inputs_get_their_sections(enriched):
    out, page = enriched
    names = headings(page)
    for heading in (
        "The DSO's microgrid controller: signals and prices in force",
        "Alarms and attacks on a timeline",
        "Attacks",
        "Energy-theft scores per meter-day",
        "Flagged meter-days",
        "Power-quality events on a timeline",
        "Power-quality events per kind",
        "Forecast errors per tier",
    ):
        assert heading in names
    assert "is not in this run folder" not in page
    assert rows(section(page, "PoEf rewards"), "1") == [["2", "1", "510.0", "3,100"]]
    assert rows(page, "attacks") == [["3 injected, 2 detected"]]
    assert rows(page, "theft-h2") == [["MI002", "40–59", "yes", "1,800 s", "theft detector", "37"]]
    assert rows(page, "flood") == [["F1", "10–11", "no", "–", "–", "0"]]
    assert rows(page, "theft-h5") == [["MI003", "0–95", "yes", "86,000 s", "theft detector", "5"]]  # the whole run
    assert "2 of 4 meter-days flagged." in page
    assert rows(page, "MI002") == [["F1", "0", "0.930"], ["F1", "1", "0.710"]]
    assert rows(page, "sag") == [["2", "1", "13.50"]]
    errors = section(page, "Forecast errors per tier")  # in tier order han, nan, fan, whatever the file's order
    assert re.findall(r"<tr><td>(\w+)</td>", errors) == ["han", "nan", "fan"]
    assert rows(errors, "nan") == [["nan:DC-F1", "gbr", "1", "41.2", "0.183", "95"]]
    figs = plots(page)
    control = figs["The DSO's microgrid controller: signals and prices in force"]
    assert trace(control, "F1 consumption")["y"] == [120, 150, 120, 120]
    assert trace(control, "F1 production")["x"] == ["2024-04-11 00:00", "2024-04-11 08:15", "2024-04-11 10:45",
                                                    "2024-04-12 00:00"]
    assert trace(control, "F1: shed load")["y"] == [9000, 8000]
    assert rows(section(page, "The DSO's microgrid controller"), "F1") == [["2", "0", "2"]]
    figs = plots(page)
    timeline = figs["Alarms and attacks on a timeline"]
    assert trace(timeline, "ALARM transaction")["x"] == ["2024-04-11 07:15"]
    detected = [t for t in timeline["data"] if t["name"] == "detected: theft detector"]
    assert [t["x"] for t in detected] == [["2024-04-11 10:30:00"], ["2024-04-11 23:53:20"]]
    assert [t["showlegend"] for t in detected] == [True, False]
    (heat,) = figs["Energy-theft scores per meter-day"]["data"]
    assert heat["y"] == ["MI001", "MI002", "MI003"] and heat["z"][1] == [0.93, 0.71]


def test_the_footer_gives_the_command_the_seed_and_the_version(run_dir, page, tmp_path):
    footer = page[page.index("<footer>") :]
    assert f"<code>gridledger simulate COMMUNITY.toml --out {run_dir}</code> (seed 3)" in footer
    assert f"gridledger {gridledger.__version__}" in footer
    out = tmp_path / "gen"
    shutil.copytree(run_dir, out)
    (out / "community.toml").write_text("# generated: --homes 6 --days 1 --seed 3\n[community]\n")
    footer = community_report(out).read_text(encoding="utf-8").split("<footer>")[1]
    assert f"<code>gridledger simulate --homes 6 --days 1 --seed 3 --out {out}</code>" in footer
    given = community_report(out, Provenance("gridledger simulate x.toml --out y", 9)).read_text(encoding="utf-8")
    assert "<code>gridledger simulate x.toml --out y</code> (seed 9)" in given


def test_a_folder_that_is_not_a_finished_run_is_named(run_dir, tmp_path):
    with pytest.raises(RunFolderError, match=r"summary\.json: missing"):
        community_report(tmp_path)
    out = tmp_path / "out"
    shutil.copytree(run_dir, out)
    (out / REPORT_FILE).unlink(missing_ok=True)
    (out / "bills.parquet").unlink()
    with pytest.raises(RunFolderError, match=r"bills\.parquet: missing"):
        community_report(out)
    assert not (out / REPORT_FILE).exists()
