"""``gridledger demo | verify | inspect``: make a chain, re-validate a stored chain, print its blocks."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import typer
from rich.table import Table

from gridledger.cli.common import STORE, console, fail, invalid, store_url
from gridledger.ledger.errors import Reject
from gridledger.store import StoreError, open_store


def demo(
    out: Path = typer.Option(
        None, "--out", help="New folder for the demo's SQLite chain store (default: a new ./demo-TIMESTAMP)."
    ),
) -> None:
    """Run one PETra market interval end to end in one process and verify the chain it made."""
    from gridledger.chain import verify_store
    from gridledger.demo import START_TIME, run_demo

    out = out or Path(f"demo-{datetime.now():%Y%m%d-%H%M%S}")
    if (out / "chain.sqlite").exists():
        raise fail(f"{out} already holds a chain; choose another --out")
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


def verify(
    path: str = typer.Argument(
        ...,
        help=f"{STORE} Or a run folder of several chains: made by `gridledger simulate` (chains/tiers.json) or "
        "`gridledger tiers simulate` (tiers.json).",
        show_default=False,
    ),
) -> None:
    """Re-validate a stored chain: replay every block and compare the stored state (exit 0 valid, 1 invalid).

    For a run folder of several chains: every chain (rules and quorum certificates), every anchor in a parent
    and every price a parent replicated.
    """
    from gridledger.chain import verify_store
    from gridledger.cli.tiers import MANIFEST, verify_run

    run = Path(path)
    if (run / "chains" / MANIFEST).is_file():  # the output folder of `gridledger simulate`
        run = run / "chains"
    if (run / MANIFEST).is_file():
        verify_run(run)
        return
    try:
        store = open_store(store_url(path))
    except StoreError as e:
        raise fail(str(e)) from None
    try:
        state = verify_store(store)
    except Reject as e:
        if e.code == "bad-genesis-ruleset":  # not invalid: this software cannot judge the chain
            raise fail(f"cannot verify: {e.message}") from None
        raise invalid(str(e)) from None
    except StoreError as e:
        raise fail(str(e)) from None
    finally:
        store.close()
    console.print(
        f"[green]valid[/]: {state.height + 1} blocks, tip {state.tip_hash.hex()}, {len(state.utxos)} unspent outputs"
    )


def inspect(
    path: str = typer.Argument(..., help=STORE, show_default=False),
    height: int = typer.Option(None, "--height", min=0, help="Print only the block at this height."),
) -> None:
    """Print the stored blocks and their transactions as JSON."""
    from gridledger.jsonview import block_json
    from gridledger.ledger.block import Block

    try:
        store = open_store(store_url(path))
        try:
            raws = [store.block_bytes(height)] if height is not None else [raw for _, raw in store.iter_blocks()]
        finally:
            store.close()
        blocks = [block_json(Block.decode(raw)) for raw in raws]
    except (StoreError, Reject) as e:
        raise fail(str(e)) from None
    json.dump(blocks if height is None else blocks[0], sys.stdout, indent=2)
    sys.stdout.write("\n")
