"""``gridledger store``: copy a chain between stores, and run a throwaway PostgreSQL server to try it on."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gridledger.ledger.errors import Reject
from gridledger.store import StoreError, open_store
from gridledger.store.migrate import copy_chain
from gridledger.store.pgserver import PgServer, PgServerError
from gridledger.store.postgres import redact

app = typer.Typer(
    help="Chain stores: copy a chain into PostgreSQL (or SQLite), run a throwaway local PostgreSQL server.",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)
DATABASE = "gridledger"


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(2)


def _url(where: str, *, existing: bool) -> str:
    """A store URL from a ``postgresql://`` URL, a SQLite file, or a folder holding the demo's store."""
    if "://" in where:
        return where
    p = Path(where)
    if p.is_dir():
        p = p / "chain.sqlite"
    if existing and not p.is_file():
        raise _fail(f"no chain store at {where} (give a SQLite file, a folder with chain.sqlite, or a URL)")
    return str(p)


@app.command()
def copy(
    source: str = typer.Argument(
        ..., help="Store to read: a SQLite file, a folder with chain.sqlite, or a URL."
    ),
    target: str = typer.Argument(
        ..., help="Empty store to write: a postgresql:// URL or a SQLite file (created if missing)."
    ),
) -> None:
    """Copy a chain block by block into an empty store, re-validating every block on the way."""
    try:
        src = open_store(_url(source, existing=True))
    except StoreError as e:
        raise _fail(str(e)) from None
    try:
        dst = open_store(_url(target, existing=False))
    except StoreError as e:
        src.close()
        raise _fail(str(e)) from None
    try:
        total = (src.tip_height() or 0) + 1
        with Progress(
            TextColumn("copying blocks"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as progress:
            task = progress.add_task("copy", total=total)
            state = copy_chain(src, dst, on_block=lambda _: progress.advance(task))
    except Reject as e:
        err.print(f"[bold red]INVALID[/] source {e}; the target holds the blocks before it")
        raise typer.Exit(1) from None
    except StoreError as e:
        raise _fail(str(e)) from None
    finally:
        src.close()
        dst.close()
    console.print(
        f"[green]copied[/]: {state.height + 1} blocks, {len(state.utxos)} unspent outputs, "
        f"tip {state.tip_hash.hex()[:16]}… into {redact(target)}"
    )


@app.command("pg-start")
def pg_start(
    folder: Path = typer.Option(
        None,
        "--dir",
        help="Folder for the new cluster (default: a new one in the temp dir). Must not hold one.",
    ),
    port: int = typer.Option(
        None, "--port", min=1, max=65535, help="TCP port on 127.0.0.1 (default: a free one)."
    ),
) -> None:
    """Start a throwaway PostgreSQL server on 127.0.0.1 (trust auth: for trying, never for real data)."""
    try:
        server = PgServer.start(folder, port=port)
        url = server.create_database(DATABASE)
    except PgServerError as e:
        raise _fail(str(e)) from None
    console.print(f"[green]PostgreSQL running[/] in {server.base}\nstore URL: [bold]{url}[/]")
    console.print(f"stop it with: gridledger store pg-stop --dir {server.base}")


@app.command("pg-stop")
def pg_stop(
    folder: Path = typer.Option(..., "--dir", help="The folder `pg-start` printed."),
    keep: bool = typer.Option(False, "--keep", help="Keep the cluster's folder (default: delete it)."),
) -> None:
    """Stop a server started by `pg-start` and delete its folder."""
    try:
        PgServer.attach(folder).stop(remove=not keep)
    except PgServerError as e:
        raise _fail(str(e)) from None
    console.print(f"[green]stopped[/] the server in {folder}" + ("" if keep else " and deleted it"))
