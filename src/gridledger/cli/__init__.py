"""The ``gridledger`` command: one typer app; each command group lives in its own module of this package.

Importing this package must stay fast (``gridledger --help`` in a fraction of a second): the modules here import
only typer, rich and light parts of gridledger at module level; numerical, plotting, web and database libraries
are imported inside the commands that use them (``tests/test_cli_imports.py`` checks this).
"""

from __future__ import annotations

import typer

from gridledger.cli import analytics, audit, dso, ledger, market, meter, node, profiles, simulate, store, tiers, twin

app = typer.Typer(
    name="gridledger",
    help="Privacy-preserving transactive energy (PETra) on a multi-tier Proof-of-Efficiency ledger.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)

app.command()(simulate.simulate)
app.command()(ledger.demo)
app.command()(ledger.verify)
app.command()(audit.audit)
app.command()(ledger.inspect)
app.command()(tiers.prove)
app.command()(node.node)
app.add_typer(node.cluster_app, name="cluster")
app.add_typer(dso.app, name="dso")
app.add_typer(meter.app, name="meter")
app.add_typer(meter.tx_app, name="tx")
app.add_typer(store.app, name="store")
app.add_typer(market.app, name="market")
app.add_typer(tiers.app, name="tiers")
app.add_typer(profiles.app, name="profiles")
app.add_typer(twin.app, name="attack")
app.add_typer(analytics.theft_app, name="theft")
app.add_typer(analytics.forecast_app, name="forecast")
app.add_typer(analytics.pq_app, name="pq")
app.command()(analytics.efficiency)
