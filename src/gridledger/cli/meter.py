"""``gridledger meter init|run|status`` (the meter daemon) and ``gridledger tx status`` (where a transaction is)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from gridledger.cli.common import console, fail

app = typer.Typer(
    help="The meter daemon: SmartPi measurements from MQTT, signed and encrypted, to the meter's NAN node.",
    no_args_is_help=True,
)
tx_app = typer.Typer(help="Transactions on a node: where one is.", no_args_is_help=True)
CONFIG = typer.Option(..., "--config", help="The meter daemon's TOML configuration (see docs/network.md).")


def _load(config: Path):
    from gridledger.meter.daemon import MeterConfig, MeterConfigError

    try:
        return MeterConfig.load(config)
    except MeterConfigError as e:
        raise fail(escape(str(e))) from None


@app.command("init")
def init(
    cluster: Path = typer.Option(..., "--cluster", help="A PoEf cluster folder (from `gridledger cluster up`)."),
    meter: str = typer.Option(..., "--meter", help="The cluster's meter to read (e.g. MI1)."),
    out: Path = typer.Option(Path("."), "--out", help="Folder for the configuration, key files and outbox."),
    broker_host: str = typer.Option("127.0.0.1", "--broker-host", help="The MQTT broker's host."),
    broker_port: int = typer.Option(1883, "--broker-port", min=1, max=65535, help="The MQTT broker's port."),
    topic: str = typer.Option("", "--topic", help="The topic the meter board publishes on (default: per meter)."),
    batch_minutes: int = typer.Option(
        1,
        "--batch-minutes",
        help="Minutes per transaction: 1 sends a READING a minute; N > 1 one READING_BATCH per N minutes (at most "
        "the chain's rule set's cap; each minute reaches the chain up to N - 1 minutes later).",
    ),
) -> None:
    """Write ``METER.meter.toml`` and the meter's key files (mode 0600) for a meter of a local cluster."""
    from gridledger.meter.daemon import MeterConfigError, write_config

    try:
        path = write_config(cluster, meter, out, broker_host, broker_port, topic or None, batch_minutes)
    except MeterConfigError as e:
        raise fail(escape(str(e))) from None
    console.print(f"wrote {path} (run it with: gridledger meter run --config {path})")


@app.command("run")
def run(config: Path = CONFIG, verbose: bool = typer.Option(False, "--verbose", help="Log every step.")) -> None:
    """Run the meter daemon until interrupted: measurements → readings → the node, through a durable outbox."""
    import logging

    from gridledger.meter.daemon import MeterDaemon

    cfg = _load(config)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    console.print(f"meter {cfg.meter_id}: {cfg.broker_host}:{cfg.broker_port} {cfg.topic} → {cfg.node}")
    MeterDaemon(cfg).run()


@app.command("status")
def status(config: Path = CONFIG) -> None:
    """The outbox of a meter daemon: minutes held for a batch, minutes and transactions by status, measurements
    dropped and readings rejected by reason, partial batches flushed by why."""
    from gridledger.meter.outbox import Outbox

    cfg = _load(config)
    if not cfg.outbox.exists():
        raise fail(f"no outbox at {cfg.outbox} (the daemon has not run yet)")
    outbox = Outbox(cfg.outbox)
    try:
        counts, txs, last, held = outbox.counts(), outbox.transactions(), outbox.last_minute(), outbox.held()
    finally:
        outbox.close()
    batch = f"batches of {cfg.batch_minutes} minutes" if cfg.batch_minutes > 1 else "a READING a minute"
    table = Table(title=f"meter {cfg.meter_id}: {batch} (last minute signed: {last})")
    table.add_column("what")
    table.add_column("minutes / count", justify="right")
    table.add_column("transactions", justify="right")
    for name, n in counts.items():
        if name == "held":
            span = f"minutes {held[0][0]}..{held[-1][0]}" if held else ""
            table.add_row("held (not signed yet)", str(n), span)
        else:
            table.add_row(name, str(n), str(txs[name]) if name in txs else "")
    console.print(table)


@tx_app.command("status")
def tx_status(
    txid: str = typer.Argument(..., help="The transaction id (64 hex characters)."),
    node: str = typer.Option(..., "--node", envvar="GRIDLEDGER_NODE", help="The node API to ask."),
    key: Path = typer.Option(
        ..., "--key", envvar="GRIDLEDGER_KEY", help="Key file of a node registered there (hex seed, mode 0600)."
    ),
    as_id: str = typer.Option("operator", "--id", help="The id under which that key is registered."),
    ca: Path | None = typer.Option(
        None, "--ca", envvar="GRIDLEDGER_CA", help="The CA certificate an https node is verified against."
    ),
) -> None:
    """Say whether a transaction is pending, committed at height h, rejected (with the code) or unknown."""
    from gridledger.client import ApiError, KeyFileError, NodeClient, NodeUnreachable, load_key

    try:
        raw = bytes.fromhex(txid)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise fail(f"TXID {txid!r}: a transaction id is 64 hex characters")
    try:
        signer = load_key(key)
    except KeyFileError as e:
        raise fail(f"--key: {e}") from None
    try:
        client = NodeClient(node, as_id, signer, ca=ca)
    except ValueError as e:
        raise fail(f"--ca: {e}") from None
    with client:
        try:
            st = client.tx_status(raw)
        except NodeUnreachable as e:
            if e.tls:
                raise fail(f"--node {node}: {e}") from None
            raise fail(f"--node {node}: the node did not answer (is it running, is the URL right?)") from None
        except ApiError as e:
            raise fail(f"--node {node} refused: {e.code}: {e.message}") from None
    if st["status"] == "committed":
        console.print(f"committed at height {st['height']}")
    elif st["status"] == "rejected":
        console.print(f"rejected: {st['code']}: {st['message']}")
        raise typer.Exit(1)
    elif st["status"] == "unknown":
        console.print(f"unknown: node {node} has not seen {txid} queued (or another coordinator refused it)")
        raise typer.Exit(1)
    else:
        console.print("pending")
