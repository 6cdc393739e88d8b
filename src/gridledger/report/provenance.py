"""How a report was made: the command line as given, the seed and the gridledger version (the footer)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import typer

import gridledger


@dataclass(frozen=True)
class Provenance:
    """The command line, the seed of the report's random draws (None: it has none) and the version."""

    command: str
    seed: int | None = None
    version: str = gridledger.__version__


def invocation(ctx: typer.Context) -> str:
    """The command line of ``ctx`` as the user gave it: the command path and the parameters set on it.

    Parameters left at their defaults are not repeated (the footer's version pins what the defaults were).
    """
    parts = ctx.command_path.split()
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if source is None or source.name != "COMMANDLINE":
            continue
        value = ctx.params[param.name]
        if param.param_type_name == "argument":
            parts.append(str(value))
        elif getattr(param, "is_flag", False):
            parts.append(max(param.opts if value else param.secondary_opts or param.opts, key=len))
        else:
            parts += [max(param.opts, key=len), str(value)]
    return shlex.join(parts)
