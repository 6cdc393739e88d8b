"""``gridledger market``: clear a file of offers and bids outside any ledger; simulate private market rounds."""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn

from gridledger.cli.common import console, err, fail

app = typer.Typer(no_args_is_help=True)


@app.callback()
def market() -> None:
    """Forward energy market: clear offers and bids (double auction or welfare-maximizing LP); private rounds."""


class Mechanism(StrEnum):
    """The clearing mechanisms of :func:`gridledger.market.clearing.clear`."""

    auction = "auction"
    lp = "lp"


@app.command("clear")
def clear_command(
    bids: Path = typer.Option(
        ...,
        "--bids",
        help="CSV or Parquet of offers and bids: id, side (offer|bid), feeder, start_slot, "
        "end_slot, power_w (W per slot), limit_price (minor units per kWh).",
        show_default=False,
    ),
    feeders: Path | None = typer.Option(
        None,
        "--feeders",
        help="CSV or Parquet of feeder limits: feeder, internal_capacity_w, "
        "external_capacity_w (W per slot). Without it, no feeder limits apply.",
        show_default=False,
    ),
    mechanism: Mechanism = typer.Option(
        Mechanism.lp,
        "--mechanism",
        help="lp: welfare-optimal under the feeder limits (TRANSAX on HiGHS); "
        "auction: per-slot double auction, greedy under feeder limits.",
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        help="Where to write the matches (offer_id, bid_id, slot, power_w, price) as .csv or .parquet.",
        show_default=False,
    ),
    slot_seconds: int = typer.Option(
        None,
        "--slot-seconds",
        min=1,
        help="Slot length in seconds (default: the market's 15-minute slot); only used to state the welfare in money.",
        show_default=False,
    ),
) -> None:
    """Clear the offers and bids in --bids, write the matches to --out and print the welfare."""
    from gridledger.ledger.units import DEFAULT_SLOT_SECONDS
    from gridledger.market.clearing import clear
    from gridledger.market.orders import MarketInputError
    from gridledger.market.tables import check_feeders_known, read_feeders, read_orders, table_format, write_matches

    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=err, transient=True) as bar:
            table_format(out)
            task = bar.add_task(f"reading {bids}")
            orders = read_orders(bids)
            limits = read_feeders(feeders) if feeders is not None else None
            if limits is not None:
                check_feeders_known(orders, limits, bids)
            bar.update(task, description=f"clearing {len(orders)} orders ({mechanism})")
            started = time.perf_counter()
            result = clear(orders, limits, mechanism.value, slot_seconds or DEFAULT_SLOT_SECONDS)
            seconds = time.perf_counter() - started
            bar.update(task, description=f"writing {out}")
            write_matches(out, result.table())
    except MarketInputError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot write {out}: {exc.strerror or exc}") from None
    console.print(
        f"{mechanism}: {len(orders)} orders, {len(result.power_w)} matches, "
        f"{float(result.energy_wh) / 1000:.3f} kWh traded, cleared in {seconds:.3f} s -> {out}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"welfare = {float(result.welfare):.3f} minor units (surplus {result.surplus} minor/kWh x W x slot)",
        highlight=False,
        soft_wrap=True,
    )


@app.command("simulate")
def simulate(
    ctx: typer.Context,
    prosumers: int = typer.Option(
        10, "--prosumers", min=3, max=200, help="Prosumers (meters MI1…); at least 3, the onion relays."
    ),
    rounds: int = typer.Option(3, "--rounds", min=1, max=100, help="Market rounds (one slot each)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of who sells and buys, and at what limit price."),
    out: Path = typer.Option(
        Path("market-sim"), "--out", help="Folder for the chain store (chain.sqlite); check it with gridledger verify."
    ),
    report: Path | None = typer.Option(
        None,
        "--report",
        dir_okay=False,
        help="Also write an HTML report with plots (rounds, prices, the DSO's view) to this .html file; "
        "self-contained, opens offline.",
    ),
) -> None:
    """Run private market rounds: extract, CoinShuffle, onion-routed anonymous orders, clearing, trades, deposits."""
    import asyncio

    from rich.table import Table

    from gridledger.report import Provenance, check_report_path, invocation, write_report
    from gridledger.report.market_report import market_report
    from gridledger.sim.market_rounds import run_rounds

    path = out / "chain.sqlite"
    if path.exists():
        raise fail(f"{path} already exists; choose another --out")
    try:
        if report is not None:
            check_report_path(report)
    except ValueError as exc:
        raise fail(str(exc)) from None
    out.mkdir(parents=True, exist_ok=True)
    table = Table(title=f"{prosumers} prosumers, private market rounds", title_justify="left")
    for col in ("slot", "mixes", "orders", "trades committed", "deposits", "close → committed"):
        table.add_column(col, justify="right")
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=err, transient=True) as progress:
        task = progress.add_task(f"round 1 of {rounds}", total=rounds)

        def on_round(r) -> None:
            table.add_row(
                str(r.slot),
                str(len(r.mixes)),
                str(len(r.orders)),
                f"{r.committed_trades}/{len(r.trades)}",
                str(r.deposits),
                f"{r.close_to_commit_s:.2f} s",
            )
            progress.update(task, advance=1, description=f"round {min(len(table.rows) + 1, rounds)} of {rounds}")

        g = asyncio.run(run_rounds(path, prosumers, rounds, seed, on_round))
    console.print(table)
    view = g.dso_view
    console.print(
        f"DSO view: {len(view.energy_ws)} per-slot energy totals and {len(view.period_bills)} period bill totals; "
        "no trade, order or address in it"
    )
    console.print(f"chain: {path} ({len(g.blocks) + 1} blocks)   check it with: [bold]gridledger verify {out}[/]")
    if report is not None:
        slot = f"one {g.slot_seconds // 60} min slot"
        notes = (f"{prosumers} prosumers, {rounds} rounds of {slot}, units of {g.unit_w} W; chain {path}.",)
        try:
            write_report(market_report(g, Provenance(invocation(ctx), seed), notes), report)
        except OSError as exc:
            raise fail(f"cannot write {report}: {exc.strerror or exc}") from None
        console.print(f"report: {report}")
