"""The footer's command line: what the user typed, rebuilt from the command's context."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer
from typer.testing import CliRunner

from gridledger.report import invocation


class Mode(StrEnum):
    fast = "fast"
    slow = "slow"


app = typer.Typer()
seen: list[str] = []


@app.command("go")
def go(
    ctx: typer.Context,
    target: str = typer.Argument(...),
    data: Path = typer.Option(Path("default.csv"), "--data", "-d"),
    seed: int = typer.Option(0, "--seed"),
    mode: Mode = typer.Option(Mode.fast, "--mode"),
    verbose: bool = typer.Option(False, "--verbose/--quiet"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    seen.append(invocation(ctx))


@app.command("other")
def other() -> None:  # a second command, so that "go" is a subcommand as in gridledger
    pass


def line(*args: str) -> str:
    seen.clear()
    result = CliRunner().invoke(app, list(args), prog_name="gridledger")
    assert result.exit_code == 0, result.output
    return seen[0]


def test_only_what_was_given_is_repeated_with_long_option_names():
    assert (
        line("go", "x", "-d", "my data.csv", "--mode", "slow")
        == "gridledger go x --data 'my data.csv' --mode slow"
    )


def test_defaults_given_explicitly_are_kept_and_flags_are_named_as_set():
    assert line("go", "x", "--seed", "0", "--quiet", "--json") == "gridledger go x --seed 0 --quiet --json"
    assert line("go", "x", "--verbose") == "gridledger go x --verbose"
