"""``gridledger market``: clear a file of offers and bids outside any ledger."""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn

from gridledger.market.clearing import SLOT_S, clear
from gridledger.market.orders import MarketInputError
from gridledger.market.tables import (
    check_feeders_known,
    read_feeders,
    read_orders,
    table_format,
    write_matches,
)

app = typer.Typer(
    help="Forward energy market: clear offers and bids (double auction or welfare-maximizing LP).",
    no_args_is_help=True,
)
_out = Console()
_err = Console(stderr=True)


@app.callback()
def market() -> None:
    """Forward energy market: clear offers and bids (double auction or welfare-maximizing LP)."""


class Mechanism(StrEnum):
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
        SLOT_S,
        "--slot-seconds",
        min=1,
        help="Slot length in seconds; only used to state the welfare in money.",
    ),
) -> None:
    """Clear the offers and bids in --bids, write the matches to --out and print the welfare."""
    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=_err, transient=True) as bar:
            table_format(out)
            task = bar.add_task(f"reading {bids}")
            orders = read_orders(bids)
            limits = read_feeders(feeders) if feeders is not None else None
            if limits is not None:
                check_feeders_known(orders, limits, bids)
            bar.update(task, description=f"clearing {len(orders)} orders ({mechanism})")
            started = time.perf_counter()
            result = clear(orders, limits, mechanism.value, slot_seconds)
            seconds = time.perf_counter() - started
            bar.update(task, description=f"writing {out}")
            write_matches(out, result.table())
    except MarketInputError as exc:
        _err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        _err.print(
            f"[red]error:[/red] cannot write {out}: {exc.strerror or exc}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(2) from None
    _out.print(
        f"{mechanism}: {len(orders)} orders, {len(result.power_w)} matches, "
        f"{float(result.energy_wh) / 1000:.3f} kWh traded, cleared in {seconds:.3f} s -> {out}",
        highlight=False,
        soft_wrap=True,
    )
    _out.print(
        f"welfare = {float(result.welfare):.3f} minor units (surplus {result.surplus} minor/kWh x W x slot)",
        highlight=False,
        soft_wrap=True,
    )
