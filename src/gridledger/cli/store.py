"""``gridledger store``: copy a chain between stores, and run a throwaway PostgreSQL server to try it on."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gridledger.cli.common import STORE, console, err, fail, invalid, store_url
from gridledger.ledger.errors import Reject
from gridledger.store import StoreError, open_store

app = typer.Typer(
    help="Chain stores: copy a chain into PostgreSQL (or SQLite), run a throwaway local PostgreSQL server.",
    no_args_is_help=True,
)
DATABASE = "gridledger"


@app.command()
def copy(
    source: str = typer.Argument(..., help=f"{STORE} The chain to read.", show_default=False),
    target: str = typer.Argument(
        ..., help="Empty store to write: a postgresql:// URL or a SQLite file (created if missing).", show_default=False
    ),
) -> None:
    """Copy a chain block by block into an empty store, re-validating every block on the way."""
    from gridledger.chain import copy_chain
    from gridledger.store.postgres import redact

    try:
        src = open_store(store_url(source))
    except StoreError as e:
        raise fail(str(e)) from None
    try:
        dst = open_store(store_url(target, existing=False))
    except StoreError as e:
        src.close()
        raise fail(str(e)) from None
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
        raise invalid(f"source {e}; the target holds the blocks before it") from None
    except StoreError as e:
        raise fail(str(e)) from None
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
    from gridledger.store.pgserver import PgServer, PgServerError

    try:
        server = PgServer.start(folder, port=port)
        url = server.create_database(DATABASE)
    except PgServerError as e:
        raise fail(str(e)) from None
    console.print(f"[green]PostgreSQL running[/] in {server.base}\nstore URL: [bold]{url}[/]")
    console.print(f"stop it with: gridledger store pg-stop --dir {server.base}")


@app.command("pg-stop")
def pg_stop(
    folder: Path = typer.Option(..., "--dir", help="The folder `pg-start` printed."),
    keep: bool = typer.Option(False, "--keep", help="Keep the cluster's folder (default: delete it)."),
) -> None:
    """Stop a server started by `pg-start` and delete its folder."""
    from gridledger.store.pgserver import PgServer, PgServerError

    try:
        PgServer.attach(folder).stop(remove=not keep)
    except PgServerError as e:
        raise fail(str(e)) from None
    console.print(f"[green]stopped[/] the server in {folder}" + ("" if keep else " and deleted it"))
