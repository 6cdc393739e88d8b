"""The report of ``gridledger market simulate``: orders, trades, prices, settlement time per round; the DSO.

Built from the finished :class:`gridledger.sim.market_rounds.Microgrid`: its round reports, the bid store's
records (every accepted anonymous order), the DSO's view and the simulation's ground truth of which meter
posted which order. The last two are set side by side: what the DSO receives (per meter and slot the energy to
settle, and bill totals per billing period; PETra, Laszka et al. 2017) and what no party of the protocol holds
(who traded with whom), which only the simulation knows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gridledger.ledger.units import WS_PER_KWH
from gridledger.market.orders import Match, Side
from gridledger.sim.market_rounds import Microgrid, RoundReport

from .html import Figure, Report, Table
from .provenance import Provenance

OFFER, BID, CLEARED = "#1f77b4", "#d62728", "#2ca02c"


@dataclass(frozen=True)
class RoundFacts:
    """One round as the report shows it: limit prices (minor units per kWh) and the committed matches."""

    report: RoundReport
    offer_limits: tuple[int, ...]
    bid_limits: tuple[int, ...]
    committed: tuple[Match, ...]
    committed_trades: tuple[tuple[str, str, int], ...]  # (offer id, bid id, W summed over its matches' slots)


def round_facts(g: Microgrid) -> list[RoundFacts]:
    """The per-round facts of a microgrid that has run rounds (``g.reports``), from its own records."""
    posted = {p.order_id: p.order for p in g.operator.store.history}
    facts = []
    for r in g.reports:
        orders = [posted[oid] for oid in r.orders]
        on_chain = {tx.txid for b in r.blocks if b is not None for tx in b.transactions}
        trades = [tr for tr in r.trades if tr.tx.txid in on_chain]
        facts.append(
            RoundFacts(
                r,
                tuple(o.limit_price for o in orders if o.side is Side.OFFER),
                tuple(o.limit_price for o in orders if o.side is Side.BID),
                tuple(m for tr in trades for m in tr.matches),
                tuple((tr.offer_id, tr.bid_id, sum(m.power_w for m in tr.matches)) for tr in trades),
            )
        )
    return facts


def _kwh(power_w: int, slot_seconds: int) -> float:
    return power_w * slot_seconds / WS_PER_KWH


def _summary(facts: list[RoundFacts], slot_seconds: int) -> Table:
    def prices(f: RoundFacts) -> str:
        p = sorted({m.price for m in f.committed})
        return "–" if not p else str(p[0]) if len(p) == 1 else f"{p[0]}–{p[-1]}"

    rows = tuple(
        (
            str(f.report.slot),
            str(len(f.report.mixes)),
            str(len(f.offer_limits)),
            str(len(f.bid_limits)),
            f"{f.report.committed_trades}/{len(f.report.trades)}",
            f"{_kwh(sum(m.power_w for m in f.committed), slot_seconds):.3f}",
            prices(f),
            f"{f.report.close_to_commit_s:.2f}",
        )
        for f in facts
    )
    columns = (
        "slot",
        "mixes",
        "offers",
        "bids",
        "trades committed",
        "energy traded (kWh)",
        "clearing prices (minor/kWh)",
        "close → committed (s)",
    )
    return Table(columns, rows, "One row per market round (one slot each).")


def _activity(facts: list[RoundFacts]) -> Figure:
    slots = [f.report.slot for f in facts]
    fig = go.Figure()
    for name, values, color in (
        ("offers", [len(f.offer_limits) for f in facts], OFFER),
        ("bids", [len(f.bid_limits) for f in facts], BID),
        ("trades built", [len(f.report.trades) for f in facts], "#98df8a"),
        ("trades committed", [f.report.committed_trades for f in facts], CLEARED),
    ):
        fig.add_trace(go.Bar(x=slots, y=values, name=name, marker={"color": color}))
    fig.update_layout(
        barmode="group", height=380, xaxis={"title": "slot traded", "dtick": 1}, yaxis={"title": "count"}
    )
    return Figure(
        "Orders and trades per round",
        fig,
        "Anonymous orders posted to the bid store (one per mixed unit), the atomic trades the clearing "
        "built, and those both parties signed and the chain committed.",
    )


def _prices(facts: list[RoundFacts], prices: tuple[int, int]) -> Figure:
    fig = go.Figure()
    for name, pick, shift, symbol, color in (
        ("offer limit prices", lambda f: f.offer_limits, -0.2, "triangle-down", OFFER),
        ("bid limit prices", lambda f: f.bid_limits, 0.2, "triangle-up", BID),
    ):
        xs = [f.report.slot + shift for f in facts for _ in pick(f)]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=[p for f in facts for p in pick(f)],
                mode="markers",
                name=name,
                marker={"symbol": symbol, "color": color, "size": 9, "opacity": 0.6},
            )
        )
    matches = [m for f in facts for m in f.committed]
    fig.add_trace(
        go.Scatter(
            x=[m.slot for m in matches],
            y=[m.price for m in matches],
            mode="markers",
            name="clearing price of a committed match",
            marker={"symbol": "diamond", "color": CLEARED, "size": 13, "line": {"width": 1, "color": "#000"}},
            customdata=[m.power_w for m in matches],
            hovertemplate="slot %{x}: %{customdata} W at %{y} minor units/kWh<extra></extra>",
        )
    )
    for price, name in zip(prices, ("DSO priceConsumption", "DSO priceProduction"), strict=True):
        fig.add_hline(y=price, line={"dash": "dash", "color": "#777"}, annotation_text=f"{name} {price}")
    fig.update_layout(
        height=430, xaxis={"title": "slot traded", "dtick": 1}, yaxis={"title": "minor money units per kWh"}
    )
    return Figure(
        "Limit prices and clearing prices",
        fig,
        "Each offer's and bid's limit price (offers left, bids right of their slot) and the price of every "
        "committed match. Between the DSO's two prices both sides gain by trading locally.",
    )


def _settlement(facts: list[RoundFacts]) -> Figure:
    fig = go.Figure(
        go.Bar(
            x=[f.report.slot for f in facts],
            y=[f.report.close_to_commit_s for f in facts],
            marker={"color": "#9467bd"},
            name="close → committed",
            text=[f"{f.report.close_to_commit_s:.2f} s" for f in facts],
            textposition="outside",
        )
    )
    fig.update_layout(height=360, xaxis={"title": "slot traded", "dtick": 1}, yaxis={"title": "seconds"})
    return Figure(
        "Close of the round to committed deposits",
        fig,
        "Wall-clock time from the bid store's clearing to the block that holds the round's last deposit: "
        "trades built, verified and signed by both parties over their onion circuits, committed, then every "
        "asset deposited back to its meter. It varies with the machine's load.",
    )


def _dso_view(g: Microgrid) -> Figure:
    meters = list(g.prosumers)
    view = g.dso_view
    slots = sorted({s for _, s in view.energy_ws})
    periods = sorted({p for _, p in view.period_bills})
    wh = np.array([[view.energy_ws.get((m, s), np.nan) / 3600 for s in slots] for m in meters])
    fig = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        column_widths=[0.72, 0.28],
        horizontal_spacing=0.04,
        subplot_titles=("energy to settle per slot (Wh)", "bill total per billing period"),
    )
    limit = float(np.nanmax(np.abs(wh))) if np.isfinite(wh).any() else 0.0
    fig.add_trace(
        go.Heatmap(
            z=wh,
            x=[str(s) for s in slots],
            y=meters,
            colorscale="RdBu_r",
            zmid=0,
            zmin=-limit or -1,
            zmax=limit or 1,
            colorbar={
                "title": {"text": "Wh", "side": "right"},
                "orientation": "h",
                "x": 0.36,
                "y": 0,
                "yref": "container",
                "yanchor": "bottom",
                "len": 0.6,
                "thickness": 14,
            },
            hovertemplate="meter %{y}, slot %{x}: %{z:.1f} Wh<extra></extra>",
            xgap=1,
            ygap=1,
        ),
        row=1,
        col=1,
    )
    for p in periods:
        fig.add_trace(
            go.Bar(
                x=[view.period_bills.get((m, p), 0) for m in meters],
                y=meters,
                orientation="h",
                name=f"period {p}",
                hovertemplate="meter %{y}: %{x} minor units<extra>period " + str(p) + "</extra>",
            ),
            row=1,
            col=2,
        )
    fig.update_xaxes(title="slot", type="category", row=1, col=1)
    fig.update_xaxes(title="minor money units", row=1, col=2)
    fig.update_yaxes(autorange="reversed", type="category", row=1, col=1)
    fig.update_layout(
        height=max(380, 26 * len(meters) + 200), showlegend=len(periods) > 1, margin={"t": 40, "b": 120}
    )
    return Figure(
        "What the DSO sees",
        fig,
        "This is all the DSO receives: per meter and slot the energy it settles with the grid (import red, "
        "export blue; a prosumer whose units were all traded settles 0, since its trade is netted out) and "
        "one bill total per billing period. No order, address, price agreed between prosumers, trade or "
        "counterparty is in it.",
    )


def _hidden(g: Microgrid, facts: list[RoundFacts]) -> Figure:
    meters = list(g.prosumers)
    index = {m: i for i, m in enumerate(meters)}
    kwh = np.zeros((len(meters), len(meters)))
    for f in facts:
        for offer, bid, power in f.committed_trades:
            kwh[index[g.truth[offer]], index[g.truth[bid]]] += _kwh(power, g.slot_seconds)
    fig = go.Figure(
        go.Heatmap(
            z=np.where(kwh > 0, kwh, np.nan),
            x=meters,
            y=meters,
            colorscale=[[0.0, "#c7e9c0"], [1.0, "#00441b"]],
            zmin=0,
            zmax=float(kwh.max()) or 1.0,
            colorbar={"title": "kWh"},
            hovertemplate="%{y} sold %{z:.3f} kWh to %{x}<extra></extra>",
            xgap=1,
            ygap=1,
        )
    )
    fig.update_layout(
        height=max(360, 24 * len(meters) + 160),
        xaxis={"title": "buyer's meter", "type": "category"},
        yaxis={"title": "seller's meter", "type": "category", "autorange": "reversed"},
    )
    return Figure(
        "What the DSO cannot see: who traded with whom",
        fig,
        "Energy sold from each seller's meter to each buyer's meter over all rounds, from the simulation's "
        "own record of which meter posted which order. No party of the protocol holds this: orders are "
        "anonymous (mixed assets, onion-routed posts, one-time addresses), and the DSO sees only the "
        "totals above.",
    )


def market_report(g: Microgrid, provenance: Provenance, notes: tuple[str, ...] = ()) -> Report:
    """The report of a microgrid after :func:`gridledger.sim.market_rounds.run_rounds`."""
    facts = round_facts(g)
    figures = (
        _activity(facts),
        _prices(facts, g.prices),
        _settlement(facts),
        _dso_view(g),
        _hidden(g, facts),
    )
    return Report(
        "Private market rounds (PETra)", _summary(facts, g.slot_seconds), figures, provenance, notes
    )
