"""``gridledger audit DIR``: a third party's check of a community run folder (:mod:`gridledger.sim.audit`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from gridledger.cli.common import console, err, fail


def audit(
    path: Path = typer.Argument(
        ...,
        help="A run folder made by `gridledger simulate` (chains/tiers.json, tables, summary.json).",
        show_default=False,
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON (ok, checked, findings)."),
) -> None:
    """Re-derive a community run from its chains: verify every chain, recompute every bill and reward, check every
    table and total (exit 0: all agree; 1: the list of disagreements; 2: not a run folder)."""
    from gridledger.sim.audit import NotARun, audit_run

    columns = (TextColumn("auditing {task.description:<6}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, TimeRemainingColumn(), console=err, transient=True, disable=as_json) as bar:
            tasks: dict[str, int] = {}

            def progress(what: str, done: int, total: int) -> None:
                if what not in tasks:
                    tasks[what] = bar.add_task(what, total=total)
                bar.update(tasks[what], completed=done, total=total)

            result = audit_run(path, progress)
    except NotARun as e:
        raise fail(str(e)) from None
    if as_json:
        json.dump({"run": str(path), **result.to_json()}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        checked = ", ".join(f"{n} {what}" for what, n in result.checked.items())
        console.print(f"checked: {checked}", highlight=False)
        for finding in result.findings:
            console.print(f"[red]DISAGREES[/] {finding}", highlight=False, markup=True, soft_wrap=True)
        if result.ok:
            console.print(f"[green]audit passed[/]: {path} agrees with its chains")
        else:
            console.print(f"[bold red]audit failed[/]: {len(result.findings)} disagreements in {path}")
    if not result.ok:
        raise typer.Exit(1)
