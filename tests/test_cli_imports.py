"""Starting the command line loads no heavy library: they are imported inside the commands that use them.

``gridledger --help`` must stay fast; one top-level ``import pandas`` (or of a module that imports it) in a module
the CLI loads at start would cost a second. Each check runs in a fresh interpreter, so nothing the test session
already imported hides a regression.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = (
    "sklearn",
    "plotly",
    "pandas",
    "numpy",
    "scipy",
    "highspy",
    "pvlib",
    "demandlib",
    "fastapi",
    "uvicorn",
    "httpx",
    "etcd3gw",
    "paho",
    "psycopg",
    "pyarrow",
    "gridledger.report",
)

PROBE = "import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"


def loaded_after(code: str) -> set[str]:
    """The packages of ``HEAVY`` in ``sys.modules`` after running ``code`` in a new interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(code=code)], capture_output=True, text=True, check=True
    ).stdout
    return {m for name in json.loads(out) for m in HEAVY if name == m or name.startswith(m + ".")}


@pytest.mark.parametrize(
    "code",
    [
        "import gridledger.cli",
        # building every command's --help (click's full command tree) as `gridledger --help` does
        "from typer.main import get_command\nfrom gridledger.cli import app\nget_command(app)",
    ],
)
def test_the_cli_starts_without_heavy_libraries(code: str) -> None:
    heavy = sorted(loaded_after(code))
    assert not heavy, f"importing the CLI loaded {heavy}; import them inside the commands that need them"


def test_the_probe_sees_a_heavy_import() -> None:
    """The check itself works: a module that imports pandas at top level is caught."""
    assert "pandas" in loaded_after("import gridledger.profiles")
