"""What every command group shares: the output consoles, the one-line error, and where a chain store is."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console()
err = Console(stderr=True, soft_wrap=True)  # errors stay one line, never wrapped


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr; the exit (code 2) to raise: ``raise fail(...) from None``."""
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(2)


def invalid(message: str) -> typer.Exit:
    """Print ``INVALID message`` on stderr; the exit (code 1: the data was read and is not valid) to raise."""
    err.print(f"[bold red]INVALID[/] {message}", highlight=False)
    return typer.Exit(1)


def store_url(where: str, *, existing: bool = True) -> str:
    """A store URL from a ``postgresql://`` URL, a SQLite file, or a folder holding ``chain.sqlite``."""
    if "://" in where:
        return where
    p = Path(where)
    if p.is_dir():
        p = p / "chain.sqlite"
    if existing and not p.is_file():
        raise fail(f"no chain store at {where} ({STORE[0].lower()}{STORE[1:-1]})")
    return str(p)


STORE = "Chain store: a SQLite file, a folder with chain.sqlite, or a postgresql:// URL."
