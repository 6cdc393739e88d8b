"""``gridledger node`` and ``gridledger cluster up|down|status``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from gridledger.node.config import ROLES, ConfigError, NodeConfig

console = Console()
cluster_app = typer.Typer(help="Start and stop a local multi-process network on loopback.", no_args_is_help=True)


def node(
    role: str = typer.Option(..., "--role", help=f"The node's role: {', '.join(ROLES)}."),
    config: Path = typer.Option(..., "--config", help="The node's TOML configuration (see docs/network.md)."),
) -> None:
    """Run one node: verify its store, follow (or lead) its chain through the orderer, serve the HTTP API."""
    from gridledger.node.run import run_node

    try:
        cfg = NodeConfig.load(config)
    except ConfigError as e:
        console.print(f"[bold red]error:[/] {e}")
        raise typer.Exit(2) from None
    if cfg.role != role:
        console.print(f"[bold red]error:[/] --role {role} but {config} says role = {cfg.role!r}")
        raise typer.Exit(2)
    run_node(cfg)


@cluster_app.command("up")
def cluster_up(
    meters: int = typer.Option(4, "--meters", min=1, max=200, help="Number of smart-meter nodes."),
    concentrators: int = typer.Option(
        1, "--concentrators", min=1, max=20, help="Number of NANs (one concentrator each)."
    ),
    folder: Path = typer.Option(Path("cluster"), "--dir", help="Folder for configs, stores, logs and cluster.json."),
) -> None:
    """Start a 3-member etcd cluster and one process per node; print where each API is."""
    from gridledger.node.cluster import up

    try:
        with console.status(f"starting etcd and {meters + 2 * concentrators} nodes …"):
            state = up(folder, meters, concentrators)
    except (FileExistsError, TimeoutError, RuntimeError) as e:
        console.print(f"[bold red]error:[/] {e}")
        raise typer.Exit(2) from None
    table = Table(title=f"gridledger cluster in {folder}")
    for col in ("node", "role", "chain", "API", "pid"):
        table.add_column(col)
    for n in state["nodes"]:
        table.add_row(n["id"], n["role"], n["chain"], n["url"], str(n["pid"]))
    console.print(table)
    console.print(f"etcd: {', '.join(m['url'] for m in state['etcd'])}")
    console.print(f"stop it with: [bold]gridledger cluster down --dir {folder}[/]")


@cluster_app.command("down")
def cluster_down(folder: Path = typer.Option(Path("cluster"), "--dir", help="The cluster's folder.")) -> None:
    """Stop every process of the cluster cleanly (nodes, then etcd)."""
    from gridledger.node.cluster import down

    try:
        n = down(folder)
    except FileNotFoundError as e:
        console.print(f"[bold red]error:[/] {e}")
        raise typer.Exit(2) from None
    console.print(f"stopped {n} processes")


@cluster_app.command("status")
def cluster_status(folder: Path = typer.Option(Path("cluster"), "--dir", help="The cluster's folder.")) -> None:
    """Ask every node for its height and tip (as the operator)."""
    from gridledger.ledger.crypto import KeyPair
    from gridledger.node.client import NodeClient

    path = folder / "cluster.json"
    if not path.exists():
        console.print(f"[bold red]error:[/] no cluster in {folder}")
        raise typer.Exit(2)
    state = json.loads(path.read_text())
    key = KeyPair(bytes.fromhex((folder / "keys" / "operator.seed").read_text()))
    table = Table()
    for col in ("node", "chain", "height", "tip", "leading"):
        table.add_column(col)
    for n in state["nodes"]:
        client = NodeClient(n["url"], "operator", key, timeout=2)
        try:
            s = client.status()
            table.add_row(n["id"], n["chain"], str(s["height"]), s["tip"][:16], "yes" if s["leading"] else "")
        except Exception as e:  # noqa: BLE001 - a down node is reported, not fatal
            table.add_row(n["id"], n["chain"], "down", type(e).__name__, "")
        finally:
            client.close()
    console.print(table)
