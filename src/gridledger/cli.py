"""The ``gridledger`` command: one typer app, each area's commands registered as a sub-app."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from gridledger.ledger.errors import Reject
from gridledger.store import StoreError, open_store

app = typer.Typer(
    name="gridledger",
    help="Privacy-preserving transactive energy (PETra) on a multi-tier Proof-of-Efficiency ledger.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)
console = Console()


def _register_subcommands() -> None:
    """Each area's commands live with their code; they are registered here."""
    from gridledger.analytics.cli import forecast_app, theft_app
    from gridledger.market.cli import app as market_app
    from gridledger.node.cli import cluster_app, node
    from gridledger.profiles.cli import app as profiles_app
    from gridledger.store.cli import app as store_app
    from gridledger.tiers.cli import app as tiers_app
    from gridledger.tiers.cli import prove as tiers_prove
    from gridledger.twin.cli import app as attack_app

    app.command("node")(node)
    app.add_typer(cluster_app, name="cluster")
    app.add_typer(profiles_app, name="profiles")
    app.add_typer(attack_app, name="attack")
    app.add_typer(store_app, name="store")
    app.add_typer(market_app, name="market")
    app.add_typer(tiers_app, name="tiers")
    app.command("prove")(tiers_prove)
    app.add_typer(theft_app, name="theft")
    app.add_typer(forecast_app, name="forecast")


_register_subcommands()
err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(2)


def _store_url(path: str) -> str:
    """A store URL from a PostgreSQL URL, a SQLite file, or a directory holding the demo's chain.sqlite."""
    if "://" in path:
        return path
    p = Path(path)
    if p.is_dir():
        p = p / "chain.sqlite"
    if not p.is_file():
        raise _fail(
            f"no chain store at {path} (give a SQLite file, a folder with chain.sqlite, or a postgresql:// URL)"
        )
    return str(p)


@app.command()
def demo(
    out: Path = typer.Option(
        None, "--out", help="Folder for the demo's SQLite chain store (default: a new ./demo-TIMESTAMP)."
    ),
) -> None:
    """Run one PETra market interval end to end in one process and verify the chain it made."""
    from gridledger.chain import verify_store
    from gridledger.demo import START_TIME, run_demo

    out = out or Path(f"demo-{datetime.now():%Y%m%d-%H%M%S}")
    if (out / "chain.sqlite").exists():
        raise _fail(f"{out} already holds a chain; choose another --out")
    result = run_demo(out)
    table = Table(title="Blocks committed", title_justify="left")
    for col in ("height", "hash", "txs", "what happened"):
        table.add_column(col)
    table.add_row("0", result.blocks[0].hash.hex()[:16], "1", "genesis: chain parameters, DSO key, coordinator")
    for block, step in zip(result.blocks[1:], result.steps, strict=True):
        table.add_row(str(block.height), block.hash.hex()[:16], str(len(block.transactions)), step)
    console.print(table)
    bills = Table(title="Bills (centavos; energy in Wh; negative = credit to the prosumer)", title_justify="left")
    for col in (
        "meter",
        "slot",
        "measured Wh",
        "settled E Wh",
        "energy charge",
        "FA issued",
        "FA deposited",
        "bill",
        "ECA audit",
    ):
        bills.add_column(col, justify="right")
    for meter, rows in result.bills.items():
        for b in rows:
            bills.add_row(
                meter,
                str(b.slot),
                f"{b.measured_ws / 3600:g}",
                f"{b.energy_wh:g}",
                str(b.energy_charge),
                str(b.fa_issued),
                str(b.fa_deposited),
                f"[bold]{b.amount}[/]",
                "ok" if b.eca_audit_ok else "MISMATCH",
            )
        bills.add_row(
            meter, "total", "", "", "", "", "", f"[bold]{sum(b.amount for b in rows)}[/]", "", end_section=True
        )
    console.print(bills)
    store = open_store(str(result.path))
    try:
        state = verify_store(store)
    finally:
        store.close()
    console.print(
        f"[green]chain verified[/]: {state.height + 1} blocks, {len(state.utxos)} unspent outputs "
        f"(slot start {datetime.utcfromtimestamp(START_TIME):%Y-%m-%d %H:%M} UTC)\n"
        f"store: {result.path}   check it again with: [bold]gridledger verify {out}[/]"
    )


@app.command()
def verify(
    path: str = typer.Argument(
        ..., help="Chain store: a SQLite file, a folder with chain.sqlite, or a postgresql:// URL."
    ),
) -> None:
    """Re-validate every block of a stored chain and compare the stored state with the replay (exit 0 only if valid)."""
    from gridledger.chain import verify_store

    try:
        store = open_store(_store_url(path))
    except StoreError as e:
        raise _fail(str(e)) from None
    try:
        state = verify_store(store)
    except Reject as e:
        if e.code == "bad-genesis-ruleset":  # not invalid: this software cannot judge the chain
            raise _fail(f"cannot verify: {e.message}") from None
        err.print(f"[bold red]INVALID[/] {e}")
        raise typer.Exit(1) from None
    except StoreError as e:
        raise _fail(str(e)) from None
    finally:
        store.close()
    console.print(
        f"[green]valid[/]: {state.height + 1} blocks, tip {state.tip_hash.hex()}, {len(state.utxos)} unspent outputs"
    )


@app.command()
def inspect(
    path: str = typer.Argument(
        ..., help="Chain store: a SQLite file, a folder with chain.sqlite, or a postgresql:// URL."
    ),
    height: int = typer.Option(None, "--height", help="Only this block."),
) -> None:
    """Print the stored blocks and their transactions as JSON."""
    from gridledger.jsonview import block_json
    from gridledger.ledger.block import Block

    try:
        store = open_store(_store_url(path))
        try:
            raws = [store.block_bytes(height)] if height is not None else [raw for _, raw in store.iter_blocks()]
        finally:
            store.close()
        blocks = [block_json(Block.decode(raw)) for raw in raws]
    except (StoreError, Reject) as e:
        raise _fail(str(e)) from None
    json.dump(blocks if height is None else blocks[0], sys.stdout, indent=2)
    sys.stdout.write("\n")
