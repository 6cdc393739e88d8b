"""The report of ``gridledger simulate``: one offline page on a whole community run, read from its run folder.

Everything comes from the files the run wrote (``summary.json``, its Parquet tables, ``chains/tiers.json`` and the
chain stores for the anchor delays); the report decides nothing the run decided, it sums, checks and plots. Tables
other parts of the run may write (the DSO's microgrid controller's ``control``, the analytics' ``theft_scores``,
``pq_events``, ``forecast_errors``) and the injected attacks (``summary["attacks"]``) get their section when present
and a one-line note otherwise. Units: energy in Wh per slot (kWh in the headline), money in minor units, time as the
community's local wall-clock time at the start of a slot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gridledger.analytics.metrics import forecast_errors
from gridledger.ledger.block import Block
from gridledger.ledger.kinds.anchor import Anchor
from gridledger.store import StoreError
from gridledger.store.sqlite import SqliteStore

from .html import Figure, Report, Section, Table, write_report
from .market_report import BID, CLEARED, OFFER
from .provenance import Provenance

REPORT_FILE = "report.html"
#: The tables every run writes (``<name>.parquet``).
REQUIRED = (
    "households",
    "readings",
    "forecasts",
    "orders",
    "trades",
    "bills",
    "dso_feeder_slots",
    "dso_meter_periods",
    "alarms",
    "rewards",
    "blocks",
)
#: Tables other parts of the run may add, each rendered only when present.
OPTIONAL = ("control", "theft_scores", "pq_events", "forecast_errors")
TIERS = ("han", "nan", "fan", "head")
TIER_COLOURS = {"han": "#8c564b", "nan": "#1f77b4", "fan": "#ff7f0e", "head": "#2ca02c"}
GAIN, LOSS = "#2ca02c", "#d62728"
TOP_ROWS = 20  # longest list of meter-days or events a table shows


class RunFolderError(ValueError):
    """The folder is not a finished community run (the message names the missing or bad file)."""


@dataclass(frozen=True)
class Run:
    """A finished community run as its folder holds it."""

    out: Path
    summary: dict
    tables: dict[str, pd.DataFrame]
    chains: list[dict]

    @property
    def slot_seconds(self) -> int:
        return int(self.summary["slot_seconds"])

    def times(self, slots) -> list[str]:
        """Local wall-clock time of the start of each slot (``YYYY-MM-DD HH:MM``)."""
        start = pd.Timestamp(self.summary["start"])
        stamps = start + pd.to_timedelta(np.asarray(slots, dtype=np.int64) * self.slot_seconds, unit="s")
        return stamps.strftime("%Y-%m-%d %H:%M").tolist()

    def span(self) -> list[str]:
        """The run's time range: the start of its first slot to the end of its last."""
        return self.times([0, int(self.summary["slots"])])

    def optional(self, name: str) -> pd.DataFrame | None:
        return self.tables.get(name)


def load_run(out_dir: Path) -> Run:
    """Read a run folder; a missing or unreadable file is a :class:`RunFolderError` naming it."""
    out = Path(out_dir)

    def need(path: Path):
        if not path.is_file():
            raise RunFolderError(f"{path}: missing; is {out} the output folder of a finished `gridledger simulate`?")
        return path

    try:
        summary = json.loads(need(out / "summary.json").read_text(encoding="utf-8"))
        chains = json.loads(need(out / "chains" / "tiers.json").read_text(encoding="utf-8"))["chains"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise RunFolderError(f"{out}: summary.json or chains/tiers.json is not a run's: {e}") from None
    tables = {}
    for name in (*REQUIRED, *OPTIONAL):
        path = out / f"{name}.parquet"
        if name in OPTIONAL and not path.exists():
            continue
        try:
            tables[name] = pd.read_parquet(need(path))
        except (OSError, ValueError) as e:
            raise RunFolderError(f"{path}: cannot be read: {e}") from None
    return Run(out, summary, tables, chains)


# ------------------------------------------------------------------------------------------ formatting
def _int(value) -> str:
    return f"{int(value):,}"


def _kwh(wh) -> str:
    return f"{wh / 1000:,.1f} kWh"


def _money(minor) -> str:
    return f"{int(minor):,} minor units"


def _signed(value: int) -> str:
    return f"{value:+,}".replace("-", "−")


def _change(bill: int, baseline: int) -> str:
    diff = bill - baseline
    share = f", {100 * diff / baseline:+.1f} %".replace("-", "−") if baseline else ""
    return f"{_money(bill)} vs {_money(baseline)} without the market ({_signed(diff)}{share})"


def _count(n: int, word: str) -> str:
    return f"{int(n):,} {word}" if n == 1 else f"{int(n):,} {word}s"


def _slot_minutes(run: Run) -> str:
    return f"{run.slot_seconds // 60} min"


# ------------------------------------------------------------------------------------------ headline
def _headline(run: Run) -> Table:
    s = run.summary
    attacks = s.get("attacks") or []
    detected = sum(bool(a.get("detected")) for a in attacks)
    rows = (
        ("community", str(s["community"])),
        ("homes", f"{_int(s['homes'])} on {_count(s['feeders'], 'feeder')}"),
        (
            "slots",
            f"{_int(s['slots'])} of {_slot_minutes(run)} ({_count(s['days'], 'day')} from {run.times([0])[0]})",
        ),
        ("blocks", f"{_int(s['blocks'])} on {len(run.chains)} chains"),
        ("trades", _int(s["trades"])),
        ("energy traded", _kwh(s["energy_traded_wh"])),
        ("total bill", _change(int(s["total_bill_minor"]), int(s["baseline_bill_minor"]))),
        ("alarms", _int(s["alarms"])),
        ("rewards paid", _money(s["rewards_minor"])),
        ("attacks", f"{len(attacks)} injected, {detected} detected" if attacks else "none injected"),
        (
            "wall time",
            f"{s['wall_s']:.1f} s ({s.get('home_slots_per_s', 0):,.0f} home-slots/s, "
            f"peak {s.get('peak_rss_mib', 0):,.0f} MiB)",
        ),
    )
    return Table(("", "value"), rows, "From summary.json.")


# ------------------------------------------------------------------------------------------ energy
def _energy(run: Run) -> Figure:
    h = run.tables["households"].groupby("slot").sum(numeric_only=True).sort_index()
    x = run.times(h.index)
    fig = go.Figure()
    for column, name, style in (
        ("load_wh", "load", {"color": "#7f7f7f"}),
        ("pv_wh", "PV", {"color": "#ffbf00"}),
        ("battery_charge_wh", "battery charge", {"color": "#9467bd", "dash": "dot"}),
        ("battery_discharge_wh", "battery discharge", {"color": "#17becf", "dash": "dot"}),
        ("net_wh", "net (import + / export −)", {"color": "#000", "width": 3}),
    ):
        fig.add_trace(go.Scatter(x=x, y=h[column].tolist(), mode="lines", name=name, line=style))
    fig.add_hline(y=0, line={"color": "#bbb", "width": 1})
    fig.update_layout(height=420, yaxis={"title": f"Wh per {_slot_minutes(run)} slot"}, hovermode="x unified")
    return Figure(
        "Community load, PV, battery and net energy per slot",
        fig,
        "Sums over every home, as its devices measured them (households.parquet). Net is what the meters see: "
        "load + battery charge − PV − battery discharge; below zero the community exports.",
    )


# ------------------------------------------------------------------------------------------ market
def _market(run: Run) -> Figure | Section:
    trades, orders = run.tables["trades"], run.tables["orders"]
    if trades.empty:
        return Section(
            "Trades and clearing prices per slot",
            (f"No trade was committed in this run ({len(orders)} orders reached the bid store).",),
        )
    L = run.slot_seconds
    slots = np.arange(int(run.summary["slots"]))
    x = run.times(slots)
    fig = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06,
        row_heights=[0.28, 0.36, 0.36],
        subplot_titles=("orders the bid store saw", "energy traded (Wh)", "clearing prices (minor units per kWh)"),
    )
    for side, colour in (("offer", OFFER), ("bid", BID)):
        counts = orders[orders["side"] == side].groupby("slot").size().reindex(slots, fill_value=0)
        fig.add_trace(go.Bar(x=x, y=counts.tolist(), name=f"{side}s", marker={"color": colour}), row=1, col=1)
    wh = trades.assign(wh=trades["power_w"] * L / 3600)
    for feeder in sorted(wh["feeder"].unique()):
        per = wh[wh["feeder"] == feeder].groupby("slot")["wh"].sum().reindex(slots, fill_value=0)
        fig.add_trace(go.Bar(x=x, y=per.round(1).tolist(), name=f"traded on {feeder}"), row=2, col=1)
    by = wh.groupby("slot")
    price = pd.DataFrame(
        {"low": by["price"].min(), "high": by["price"].max(), "mean": by.apply(_weighted_price, include_groups=False)}
    ).reindex(slots)
    fig.add_trace(
        go.Scatter(
            x=x,
            y=price["mean"].round(1).tolist(),
            mode="markers+lines",
            name="clearing price (volume-weighted)",
            line={"color": CLEARED},
            error_y={
                "type": "data",
                "symmetric": False,
                "array": (price["high"] - price["mean"]).round(1).tolist(),
                "arrayminus": (price["mean"] - price["low"]).round(1).tolist(),
                "color": "#999",
            },
        ),
        row=3,
        col=1,
    )
    tariff = run.summary["prices_per_kwh"]
    for key, name in (("consumption", "DSO consumption price"), ("production", "DSO production price")):
        fig.add_hline(
            y=tariff[key],
            line={"dash": "dash", "color": "#777"},
            annotation_text=f"{name} {tariff[key]}",
            row=3,
            col=1,
        )
    fig.update_layout(height=720, barmode="stack", hovermode="x unified")
    return Figure(
        "Trades and clearing prices per slot",
        fig,
        f"Per delivery slot: the anonymous offers and bids the bid store received (orders.parquet), the energy of "
        f"the committed trades on each feeder's NAN chain ({len(trades)} matches, trades.parquet) and their "
        "prices (the bar spans the lowest to the highest). Between the DSO's two prices both sides gain.",
    )


def _weighted_price(g: pd.DataFrame) -> float:
    return float(np.average(g["price"], weights=g["power_w"]))


# ------------------------------------------------------------------------------------------ bills
def _bill_totals(run: Run) -> pd.DataFrame:
    bills = run.tables["bills"]
    per = bills.groupby(["meter", "feeder"], as_index=False)[["amount", "baseline_amount"]].sum()
    return per.assign(gain=per["baseline_amount"] - per["amount"]).sort_values("meter", ignore_index=True)


def _bills(run: Run) -> tuple[Figure, Section]:
    per = _bill_totals(run)
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=("bill with the market and without it", "gain: bill without the market − bill with it"),
    )
    meters = per["meter"].tolist()
    fig.add_trace(go.Bar(x=meters, y=per["amount"].tolist(), name="bill", marker={"color": "#1f77b4"}), row=1, col=1)
    fig.add_trace(
        go.Bar(x=meters, y=per["baseline_amount"].tolist(), name="without the market", marker={"color": "#c7c7c7"}),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Bar(
            x=meters,
            y=per["gain"].tolist(),
            name="gain",
            marker={"color": [GAIN if g >= 0 else LOSS for g in per["gain"]]},
            showlegend=False,
        ),
        row=2,
        col=1,
    )
    fig.update_xaxes(type="category", title="meter", row=2, col=1)
    fig.update_yaxes(title="minor units", row=1, col=1)
    fig.update_yaxes(title="minor units", row=2, col=1)
    fig.update_layout(height=600, barmode="group")
    figure = Figure(
        "Bills per home vs the no-market baseline",
        fig,
        "Each home's bill over the run (bills.parquet: the extraction-aware rule at the prices in force) beside "
        "what the same measured energy would have cost at the DSO's tariff without the market. Green: the home "
        "gained; red: it paid more (a prosumer that sold below its forecast, for example).",
    )
    groups = (("gained", per["gain"] > 0), ("paid more", per["gain"] < 0), ("unchanged", per["gain"] == 0))
    rows = tuple(
        (
            name,
            _int(mask.sum()),
            _signed(int(per.loc[mask, "gain"].sum())),
            ", ".join(per.loc[mask].sort_values("gain", key=abs, ascending=False)["meter"].head(5)) or "–",
        )
        for name, mask in groups
    )
    table = Table(
        ("homes", "count", "total gain (minor units)", "largest (up to 5)"),
        rows,
        f"Over all homes: {_change(int(per['amount'].sum()), int(per['baseline_amount'].sum()))}.",
    )
    return figure, Section("Who gained, who lost", (), (table,))


# ------------------------------------------------------------------------------------------ DSO
def _dso_holds(run: Run) -> Figure:
    feeders, periods = run.tables["dso_feeder_slots"], run.tables["dso_meter_periods"]
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.66, 0.34],
        horizontal_spacing=0.08,
        subplot_titles=("per feeder per slot: import (+) and export (−), Wh", "per meter per billing period"),
    )
    for feeder in sorted(feeders["feeder"].unique()):
        f = feeders[feeders["feeder"] == feeder].sort_values("slot")
        x = run.times(f["slot"])
        fig.add_trace(go.Scatter(x=x, y=f["import_wh"].tolist(), mode="lines", name=f"{feeder} import"), 1, 1)
        fig.add_trace(go.Scatter(x=x, y=(-f["export_wh"]).tolist(), mode="lines", name=f"{feeder} export"), 1, 1)
    for period in sorted(periods["period"].unique()):
        p = periods[periods["period"] == period].sort_values("meter")
        fig.add_trace(
            go.Bar(
                x=p["amount"].tolist(),
                y=p["meter"].tolist(),
                orientation="h",
                name=f"bill, period {period}",
                customdata=(p["energy_ws"] / 3600).round(0).tolist(),
                hovertemplate="%{y}: %{x} minor units for %{customdata} Wh<extra></extra>",
            ),
            1,
            2,
        )
    fig.update_yaxes(type="category", autorange="reversed", row=1, col=2)
    fig.update_xaxes(title="minor units", row=1, col=2)
    fig.update_layout(height=max(420, 18 * periods["meter"].nunique() + 160))
    return Figure(
        "What the DSO holds",
        fig,
        "All the DSO view holds: each feeder's imported and exported energy per slot, for grid safety "
        "(dso_feeder_slots.parquet), and per meter one energy total and one bill per billing period "
        "(dso_meter_periods.parquet). No per-meter value per slot, no order, no trade.",
    )


def _dso_cannot_see(run: Run) -> Figure:
    h = run.tables["households"].pivot(index="meter", columns="slot", values="net_wh").sort_index()
    limit = float(np.abs(h.to_numpy()).max()) or 1.0
    fig = go.Figure(
        go.Heatmap(
            z=h.to_numpy().tolist(),
            x=run.times(h.columns),
            y=h.index.tolist(),
            colorscale="RdBu_r",
            zmid=0,
            zmin=-limit,
            zmax=limit,
            colorbar={"title": {"text": "Wh"}},
            hovertemplate="%{y}, %{x}: %{z} Wh<extra></extra>",
        )
    )
    fig.update_layout(height=max(360, 16 * len(h) + 160), yaxis={"type": "category", "autorange": "reversed"})
    return Figure(
        "What the DSO cannot see: each home's net energy per slot",
        fig,
        "Each meter's net energy per slot (import red, export blue): it stays with the meter and its HAN chain, "
        "and with the orders and trades on the NAN chain (anonymous, no meter named) it is what the DSO view "
        "leaves out. Compare the feeder sums above: they are all the DSO gets per slot.",
    )


def _dso_table(run: Run) -> Section:
    t = run.tables
    readings = t["readings"]
    sums = readings.groupby(["feeder", "slot"])[["consumption_wh", "production_wh"]].sum()
    dso = t["dso_feeder_slots"].set_index(["feeder", "slot"]).sort_index()
    feeders_agree = bool(
        np.array_equal(sums.sort_index().to_numpy(), dso[["import_wh", "export_wh"]].to_numpy())
        and sums.index.equals(dso.index)
    )
    billed = t["bills"].groupby("meter")["amount"].sum().sort_index()
    periods = t["dso_meter_periods"].groupby("meter")["amount"].sum().sort_index()
    bills_agree = bool(billed.index.equals(periods.index) and np.array_equal(billed.to_numpy(), periods.to_numpy()))
    rows = (
        ("DSO view", "dso_feeder_slots", "feeder × slot: import, export (Wh)", _int(len(t["dso_feeder_slots"]))),
        ("DSO view", "dso_meter_periods", "meter × billing period: energy, bill", _int(len(t["dso_meter_periods"]))),
        ("meters only", "readings", "meter × slot: energy, voltage, current, power factor", _int(len(readings))),
        ("meters only", "households", "meter × slot: load, PV, battery, net (Wh)", _int(len(t["households"]))),
        ("meters only", "forecasts", "meter × slot: the edge forecast of the next slot", _int(len(t["forecasts"]))),
        ("meters only", "bills", "meter × slot: the bill of each slot", _int(len(t["bills"]))),
        ("NAN chain, anonymous", "orders", "order × slot: side, power, limit price", _int(len(t["orders"]))),
        ("NAN chain, anonymous", "trades", "match × slot: offer, bid, power, price", _int(len(t["trades"]))),
    )
    return Section(
        "The DSO's view beside what it cannot see",
        (
            "Feeder totals of the DSO view equal the sums of their meters' readings in every slot: "
            + ("yes." if feeders_agree else "NO, they differ."),
            "Each meter's billing-period bills equal the sum of its slot bills: "
            + ("yes." if bills_agree else "NO, they differ."),
        ),
        (Table(("who holds it", "table", "one row per", "rows"), rows),),
    )


# ------------------------------------------------------------------------------------------ controller
def _control(run: Run) -> list[Figure | Section]:
    """The DSO's microgrid controller per feeder: its control signals and the prices in force (``control``)."""
    c = run.optional("control")
    title = "The DSO's microgrid controller"
    if c is None:
        return [_absent(title, "control", "record of the microgrid controller")]
    if c.empty:
        return [Section(title, ("The controller's predictions stayed in every feeder's band: no signal, no reprice.",))]
    base = run.summary["prices_per_kwh"]
    end = int(run.summary["slots"])
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.1,
        subplot_titles=("prices in force (minor units per kWh)", "predicted net import at each signal (W)"),
    )
    rows = []
    for feeder in sorted(c["feeder"].unique()):
        f = c[c["feeder"] == feeder].sort_values("slot")
        steps = f[f["prices_from_slot"] >= 0]
        for key, dash in (("consumption", "solid"), ("production", "dot")):
            slots = [0, *steps["prices_from_slot"], end]
            prices = [base[key], *steps[f"{key}_per_kwh"], (steps[f"{key}_per_kwh"].tolist() or [base[key]])[-1]]
            fig.add_trace(
                go.Scatter(
                    x=run.times(slots),
                    y=[int(p) for p in prices],
                    mode="lines",
                    line={"shape": "hv", "dash": dash},
                    name=f"{feeder} {key}",
                ),
                row=1,
                col=1,
            )
        signals = f[f["signal"] != ""]
        for action, marker in (("shed", "triangle-down"), ("add", "triangle-up")):
            a = signals[signals["signal"] == action]
            if a.empty:
                continue
            fig.add_trace(
                go.Scatter(
                    x=run.times(a["slot"]),
                    y=a["predicted_w"].tolist(),
                    mode="markers",
                    name=f"{feeder}: {action} load",
                    marker={"symbol": marker, "size": 10},
                    customdata=a["amount_w"].tolist(),
                    hovertemplate="%{x}: predicted %{y} W, " + action + " %{customdata} W<extra></extra>",
                ),
                row=2,
                col=1,
            )
        rows.append(
            (
                str(feeder),
                _int((signals["signal"] == "shed").sum()),
                _int((signals["signal"] == "add").sum()),
                _int(len(steps)),
            )
        )
    fig.update_layout(height=560)
    return [
        Figure(
            "The DSO's microgrid controller: signals and prices in force",
            fig,
            "After each round the DSO's controller of a feeder predicts the feeder's net import from the DSO "
            "view and the anonymous book (control.parquet); out of its band it signals load to shed or add and "
            "reprices the feeder through the tiers, back to the tariff once the prediction is in the band again.",
        ),
        Section(title, (), (Table(("feeder", "shed signals", "add signals", "price changes"), tuple(rows)),)),
    ]


# ------------------------------------------------------------------------------------------ PoEf
def _tiers_of(blocks: pd.DataFrame) -> list[str]:
    present = set(blocks["tier"])
    return [t for t in TIERS if t in present] + sorted(present - set(TIERS))


def anchor_delays(run: Run) -> pd.DataFrame | None:
    """Each anchored block's delay: the chain time (s) from its commit to the parent block holding its anchor.

    Read from the coordinator's SQLite store of every chain (``chains/tiers.json``); None when a store is not a
    file of the folder (a run on PostgreSQL, for example). Columns: ``chain``, ``tier`` (the child's), ``height``,
    ``delay_s``.
    """
    stores = {}
    for chain in run.chains:
        names = [n for n in chain.get("stores", ()) if n.endswith(".coordinator.sqlite")] or chain.get("stores", [])
        path = run.out / "chains" / names[0] if names else None
        if path is None or not path.is_file():
            return None
        stores[chain["name"]] = path
    times: dict[str, dict[int, int]] = {}
    anchored: dict[bytes, list[tuple[int, int, int]]] = {}  # child chain id -> (first, last, parent time)
    try:
        for chain in run.chains:
            store = SqliteStore(stores[chain["name"]], durable=False)
            try:
                times[chain["name"]] = {}
                for height, _, time, raw in store.iter_block_rows():
                    times[chain["name"]][height] = time
                    if any(c.get("parent") == chain["name"] for c in run.chains):
                        for tx in Block.decode(raw).transactions:
                            if isinstance(tx, Anchor):
                                anchored.setdefault(tx.child, []).append((tx.first, tx.last, time))
            finally:
                store.close()
    except StoreError:
        return None
    rows = []
    for chain in run.chains:
        own = times[chain["name"]]
        for first, last, time in anchored.get(bytes.fromhex(chain["chain_id"]), ()):
            rows += [(chain["name"], chain["tier"], h, time - own[h]) for h in range(first, last + 1) if h in own]
    return pd.DataFrame(rows, columns=["chain", "tier", "height", "delay_s"])


def _poef(run: Run) -> tuple[Figure, Figure, Section]:
    blocks = run.tables["blocks"]
    tiers = _tiers_of(blocks)
    slots = np.arange(int(run.summary["slots"]) + 1)
    x = run.times(slots)
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=("blocks committed per slot", "transactions per block (mean over the slot's blocks)"),
    )
    for tier in tiers:
        b = blocks[blocks["tier"] == tier].groupby("slot")
        colour = TIER_COLOURS.get(tier)
        fig.add_trace(
            go.Bar(x=x, y=b.size().reindex(slots, fill_value=0).tolist(), name=tier, marker={"color": colour},
                   legendgroup=tier),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=b["transactions"].mean().reindex(slots).round(1).tolist(),
                mode="lines+markers",
                name=f"{tier} transactions",
                line={"color": colour},
                legendgroup=tier,
                showlegend=False,
            ),
            row=2,
            col=1,
        )
    fig.update_layout(height=560, barmode="stack")
    activity = Figure(
        "PoEf blocks per slot, by tier",
        fig,
        "Blocks committed on the HAN, NAN, FAN/WAN and head-end chains in each slot (blocks.parquet), and how "
        "full they were. HAN chains commit every few slots, the NAN chains every slot (readings and the market).",
    )
    votes = go.Figure()
    for tier in tiers:
        counts = blocks.loc[blocks["tier"] == tier, "votes"].value_counts().sort_index()
        votes.add_trace(
            go.Bar(x=counts.index.tolist(), y=counts.tolist(), name=tier, marker={"color": TIER_COLOURS.get(tier)})
        )
    votes.update_layout(
        height=380, barmode="group", xaxis={"title": "committee votes on the block", "dtick": 1},
        yaxis={"title": "blocks"},
    )
    committee = Figure(
        "Committee votes per block",
        votes,
        "How many committee members' valid votes each committed block carried (its quorum certificate), by tier.",
    )
    chains = pd.Series([c["tier"] for c in run.chains]).value_counts()
    delays = anchor_delays(run)
    rows = []
    for tier in tiers:
        b = blocks[blocks["tier"] == tier]
        d = None if delays is None else delays.loc[delays["tier"] == tier, "delay_s"] / 60
        rows.append(
            (
                tier,
                _int(chains.get(tier, 0)),
                _int(len(b)),
                _int(b["transactions"].sum()),
                f"{b['transactions'].mean():.1f}",
                _int(b["transactions"].max()),
                f"{b['votes'].min()}–{b['votes'].max()} (mean {b['votes'].mean():.1f})",
                "–" if d is None or d.empty else f"{d.mean():,.0f} / {d.max():,.0f} min",
            )
        )
    columns = ("tier", "chains", "blocks", "transactions", "per block (mean)", "per block (max)", "votes per block")
    table = Table(
        (*columns, "anchored after (mean / max)"),
        tuple(rows),
        "Blocks the run's PoEf rounds committed (blocks.parquet); summary.json counts every block of every "
        f"chain including genesis and anchor-settling rounds ({_int(run.summary['blocks'])}). Anchored after: "
        "the chain time from a block's commit to the parent block holding its anchor (read from the chain "
        "stores; the head-end has no parent). A slot's readings and trades are committed in that slot's own "
        "round; the run records no wall-clock time per round.",
    )
    text = () if delays is not None else ("The chain stores are not SQLite files of this folder: no anchor delays.",)
    return activity, committee, Section("PoEf statistics", text, (table,))


# ------------------------------------------------------------------------------------------ alarms, attacks
def _attack_label(a: dict) -> str:
    return f"{a['kind']}@{a['target']}"


def _attack_slots(run: Run, a: dict) -> tuple[int, int]:
    """An attack's first and last slot: it covers ``[from_slot, to_slot)`` (without them, the whole run)."""
    first, end = a.get("from_slot"), a.get("to_slot")
    return (0 if first is None else int(first)), (int(run.summary["slots"]) if end is None else int(end)) - 1


def _timeline(run: Run) -> list[Figure | Section]:
    alarms, attacks = run.tables["alarms"], run.summary.get("attacks") or []
    if alarms.empty and not attacks:
        return [Section("Alarms and attacks", ("No alarm was raised and no attack was injected in this run.",))]
    L = run.slot_seconds
    fig = go.Figure()
    if not alarms.empty:
        fig.add_trace(
            go.Scatter(
                x=run.times(alarms["slot"]),
                y=[f"alarm on {c}" for c in alarms["chain"]],
                mode="markers",
                name="ALARM transaction",
                marker={"symbol": "triangle-up", "color": LOSS, "size": 10},
                customdata=[f"code {c}, detector {d}, block {h}" for c, d, h in
                            zip(alarms["code"], alarms["detector"], alarms["height"], strict=True)],
                hovertemplate="%{y} at %{x}: %{customdata}<extra></extra>",
            )
        )
    shown: set = set()  # detection mechanisms already in the legend
    for a in attacks:
        label = f"attack {_attack_label(a)}"
        first, last = _attack_slots(run, a)
        fig.add_trace(
            go.Scatter(
                x=run.times([first, last + 1]),
                y=[label, label],
                mode="lines+markers",
                name=label,
                line={"color": "#7f7f7f", "width": 8},
                showlegend=False,
            )
        )
        if a.get("detected") and a.get("detection_delay_s") is not None:
            start = pd.Timestamp(run.summary["start"]) + pd.Timedelta(
                seconds=first * L + float(a["detection_delay_s"])
            )
            fig.add_trace(
                go.Scatter(
                    x=[start.strftime("%Y-%m-%d %H:%M:%S")],
                    y=[label],
                    mode="markers",
                    name=f"detected: {a.get('mechanism') or 'unnamed mechanism'}",
                    legendgroup=str(a.get("mechanism")),
                    showlegend=a.get("mechanism") not in shown,
                    marker={"symbol": "x", "color": LOSS, "size": 14},
                )
            )
            shown.add(a.get("mechanism"))
    lanes = alarms["chain"].nunique() + len(attacks)
    fig.update_layout(height=max(300, 40 * lanes + 160), yaxis={"type": "category"}, xaxis={"range": run.span()})
    parts: list[Figure | Section] = [
        Figure(
            "Alarms and attacks on a timeline",
            fig,
            "ALARM transactions committed on any chain (alarms.parquet) and each injected attack from the start of "
            "its first slot to the end of its last; a cross marks when it was detected (its delay counted from the "
            "attack's start) and by which mechanism.",
        )
    ]
    if attacks:
        rows = tuple(
            (
                str(a["kind"]),
                str(a["target"]),
                "–".join(map(str, _attack_slots(run, a))),
                "yes" if a.get("detected") else "no",
                "–" if a.get("detection_delay_s") is None else f"{float(a['detection_delay_s']):,.0f} s",
                str(a.get("mechanism") or "–"),
                _int(a.get("victim_cost_minor", 0)),
            )
            for a in attacks
        )
        columns = ("attack", "target", "slots", "detected", "after", "by", "victims' cost (minor units)")
        parts.append(Section("Attacks", (), (Table(columns, rows, "From summary.json."),)))
    else:
        parts.append(Section("Attacks", ("No attack was injected in this run.",)))
    return parts


# ------------------------------------------------------------------------------------------ analytics
def _forecasts(run: Run) -> tuple[Figure, Section]:
    f = run.tables["forecasts"]
    community = f.groupby("slot")[["forecast_wh", "actual_wh"]].sum().sort_index()
    x = run.times(community.index)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=community["actual_wh"].tolist(), mode="lines", name="actual net",
                             line={"color": "#000"}))
    fig.add_trace(go.Scatter(x=x, y=community["forecast_wh"].tolist(), mode="lines", name="forecast net",
                             line={"color": "#ff7f0e", "dash": "dash"}))
    fig.update_layout(height=380, yaxis={"title": "Wh per slot"}, hovermode="x unified")
    figure = Figure(
        "Edge forecasts of the next slot: community sum",
        fig,
        "Each prosumer forecasts its own next-slot net energy from its meter's history and bids or offers by it "
        "(forecasts.parquet); summed over the community here.",
    )
    rows = []
    for name, frame in (("every meter", f), ("community sum", community)):
        e = forecast_errors(frame["actual_wh"].to_numpy(), frame["forecast_wh"].to_numpy())
        rows.append((name, _int(e["n"]), f"{e['mae']:.1f}", f"{e['nrmse']:.3f}"))
    table = Table(
        ("next-slot net energy", "points", "MAE (Wh)", "NRMSE"),
        tuple(rows),
        "NRMSE is the RMSE over the mean |actual| (gridledger.analytics.metrics).",
    )
    return figure, Section("Edge forecast errors", (), (table,))


def _rewards(run: Run) -> Section:
    r = run.tables["rewards"]
    if r.empty:
        return Section(
            "PoEf rewards",
            ("No reward was paid: rewards are paid once a day for the day before, from the second day on.",),
        )
    by = r.groupby("period")
    rows = tuple(
        (
            str(period),
            _int(g["meter"].nunique()),
            _int((g["amount"] > 0).sum()),
            f"{g['score'].mean():.1f}",
            _int(g["amount"].sum()),
        )
        for period, g in by
    )
    table = Table(("period (day)", "meters scored", "meters paid", "mean score", "paid (minor units)"), rows,
                  "From rewards.parquet: the DSO's reward transactions on each NAN chain.")
    return Section("PoEf rewards", (), (table,))


def _absent(title: str, name: str, what: str) -> Section:
    return Section(title, (f"{name}.parquet is not in this run folder: no {what}.",))


def _theft(run: Run) -> list[Figure | Section]:
    t = run.optional("theft_scores")
    if t is None:
        return [_absent("Energy-theft scores", "theft_scores", "theft scores per meter-day")]
    z = t.pivot_table(index="meter", columns="day", values="score", aggfunc="max").sort_index()
    flagged = t[t["flagged"].astype(bool)].sort_values(["score", "meter"], ascending=[False, True])
    fig = go.Figure(
        go.Heatmap(
            z=z.to_numpy().round(3).tolist(),
            x=[str(d) for d in z.columns],
            y=z.index.tolist(),
            colorscale="Reds",
            zmin=0,
            colorbar={"title": {"text": "score"}},
            hovertemplate="%{y}, day %{x}: %{z}<extra></extra>",
        )
    )
    fig.update_layout(
        height=max(320, 16 * len(z) + 160),
        xaxis={"title": "day", "type": "category"},
        yaxis={"type": "category", "autorange": "reversed"},
    )
    rows = tuple(
        (str(r.meter), str(r.feeder), str(r.day), f"{r.score:.3f}") for r in flagged.head(TOP_ROWS).itertuples()
    )
    text = (f"{len(flagged)} of {len(t)} meter-days flagged" + (f"; the {TOP_ROWS} highest:" if len(flagged) >
                                                                  TOP_ROWS else "."),)
    return [
        Figure("Energy-theft scores per meter-day", fig,
               "The theft detector's score of each meter-day of the run's own readings (theft_scores.parquet)."),
        Section("Flagged meter-days", text, (Table(("meter", "feeder", "day", "score"), rows),) if rows else ()),
    ]


def _power_quality(run: Run) -> list[Figure | Section]:
    e = run.optional("pq_events")
    if e is None:
        return [_absent("Power-quality events", "pq_events", "power-quality events")]
    if e.empty:
        return [Section("Power-quality events", ("pq_events.parquet holds no event.",))]
    fig = go.Figure()
    for kind in sorted(e["kind"].unique()):
        k = e[e["kind"] == kind]
        fig.add_trace(
            go.Scatter(
                x=run.times(k["slot"]),
                y=k["meter"].tolist(),
                mode="markers",
                name=str(kind),
                customdata=np.stack([k["value"], k["predicted"]], axis=1).round(2).tolist(),
                hovertemplate="%{y} at %{x}: %{customdata[0]} (predicted %{customdata[1]})<extra></extra>",
            )
        )
    fig.update_layout(
        height=max(320, 16 * e["meter"].nunique() + 160),
        xaxis={"range": run.span()},
        yaxis={"type": "category", "autorange": "reversed"},
    )
    by = e.groupby("kind")
    rows = tuple(
        (
            str(kind),
            _int(len(g)),
            _int(g["meter"].nunique()),
            f"{(g['value'] - g['predicted']).abs().mean():.2f}",
        )
        for kind, g in by
    )
    return [
        Figure("Power-quality events on a timeline", fig,
               "Each event the power-quality prediction raised on a meter (pq_events.parquet)."),
        Section("Power-quality events per kind", (),
                (Table(("kind", "events", "meters", "mean |value − predicted|"), rows),)),
    ]


def _forecast_tables(run: Run) -> Section:
    e = run.optional("forecast_errors")
    if e is None:
        return _absent("Forecast errors per tier", "forecast_errors", "forecast errors per tier")
    e = e.sort_values(["tier", "chain", "model", "horizon_slots"], key=_tier_order)
    rows = tuple(
        (str(r.tier), str(r.chain), str(r.model), str(r.horizon_slots), f"{r.mae_wh:.1f}", f"{r.nrmse:.3f}",
         _int(r.n))
        for r in e.itertuples()
    )
    columns = ("tier", "chain", "model", "horizon (slots)", "MAE (Wh)", "NRMSE", "points")
    return Section("Forecast errors per tier", (), (Table(columns, rows, "From forecast_errors.parquet."),))


def _tier_order(column: pd.Series) -> pd.Series:
    if column.name != "tier":
        return column
    return column.map(lambda t: TIERS.index(t) if t in TIERS else len(TIERS))


# ------------------------------------------------------------------------------------------ the page
def _command(run: Run) -> str:
    """The command that made the run, as far as its folder tells: a generated community's file says how."""
    community = run.out / "community.toml"
    first = community.read_text(encoding="utf-8").split("\n", 1)[0] if community.is_file() else ""
    prefix = "# generated: "
    how = first[len(prefix):] if first.startswith(prefix) else "COMMUNITY.toml"
    return f"gridledger simulate {how} --out {run.out}"


def community_report(out_dir: Path, provenance: Provenance | None = None) -> Path:
    """Write ``out_dir/report.html`` for the community run in ``out_dir`` and return its path.

    ``provenance`` is the footer; by default the command is rebuilt from the run folder and the seed is the
    community's (summary.json). A folder that is not a finished run raises :class:`RunFolderError`.
    """
    run = load_run(Path(out_dir))
    s = run.summary
    provenance = provenance or Provenance(_command(run), int(s["seed"]))
    figures: list[Figure | Section] = [_energy(run), _market(run), *_bills(run)]
    figures += [_dso_holds(run), _dso_cannot_see(run), _dso_table(run), *_control(run), *_poef(run)]
    figures += _timeline(run)
    figures += [*_forecasts(run), _rewards(run), *_theft(run), *_power_quality(run), _forecast_tables(run)]
    tariff = s["prices_per_kwh"]
    notes = (
        f"{s['homes']} homes on {_count(s['feeders'], 'feeder')}, {_count(s['days'], 'day')} of "
        f"{_slot_minutes(run)} slots from {run.times([0])[0]} (local time). The DSO's tariff: "
        f"{tariff['consumption']} minor units per kWh bought from the grid, {tariff['production']} per kWh sold to it.",
        f"Check the chains of this run with: gridledger verify {run.out}",
    )
    report = Report(f"Community run: {s['community']}", _headline(run), tuple(figures), provenance, notes)
    return write_report(report, run.out / REPORT_FILE)
