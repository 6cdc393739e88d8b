"""The ``gridledger`` command: one typer app, each area's commands registered as a sub-app."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="gridledger",
    help="Privacy-preserving transactive energy on a multi-tier Proof-of-Efficiency ledger.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def main() -> None:
    """gridledger: run a neighbourhood energy market on a tamper-evident, privacy-preserving ledger."""
