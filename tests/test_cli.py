"""The ``gridledger`` command's ledger verbs, run in-process with typer's CliRunner.

``demo`` prints the blocks and bills and leaves a chain that ``verify`` accepts (exit 0); ``inspect`` prints
JSON; a missing or altered store is a one-line error (exit 2) or an INVALID verdict (exit 1), never a
traceback.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import NamedTuple

import pytest
from typer.testing import CliRunner

from gridledger.cli import app

runner = CliRunner()


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


class DemoRun(NamedTuple):
    path: Path
    stdout: str


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    out = tmp_path_factory.mktemp("cli") / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return DemoRun(out, result.stdout)


@pytest.fixture
def demo_dir(demo_run: DemoRun) -> Path:
    return demo_run.path


def test_demo_prints_blocks_and_bills(demo_run: DemoRun) -> None:
    out = flat(demo_run.stdout)
    assert "Blocks committed" in out and "Bills" in out
    for step in ("genesis", "DSO authorizes MI1 and MI2", "trade", "deposits"):
        assert step in out
    assert "MI1" in out and "MI2" in out and "MISMATCH" not in out
    assert "chain verified: 5 blocks" in out
    assert (demo_run.path / "chain.sqlite").is_file()


def test_verify_accepts_the_demo_chain(demo_dir: Path) -> None:
    for target in (demo_dir, demo_dir / "chain.sqlite", f"sqlite:///{demo_dir / 'chain.sqlite'}"):
        result = runner.invoke(app, ["verify", str(target)])
        assert result.exit_code == 0, result.output
        assert flat(result.stdout).startswith("valid: 5 blocks, tip ")


def test_inspect_prints_valid_json(demo_dir: Path) -> None:
    result = runner.invoke(app, ["inspect", str(demo_dir)])
    assert result.exit_code == 0, result.output
    blocks = json.loads(result.stdout)
    assert [b["height"] for b in blocks] == [0, 1, 2, 3, 4]
    assert [b["prev_hash"] for b in blocks[1:]] == [b["hash"] for b in blocks[:-1]]
    assert blocks[0]["transactions"][0]["kind"] == "genesis"
    assert {t["kind"] for b in blocks[1:] for t in b["transactions"]} == {
        "dso_policy",
        "meter_issue",
        "transfer",
    }
    one = runner.invoke(app, ["inspect", str(demo_dir), "--height", "3"])
    assert one.exit_code == 0 and json.loads(one.stdout) == blocks[3]
    trade = blocks[3]["transactions"][0]
    assert all(set(i) == {"txid", "index"} for i in trade["inputs"])


@pytest.mark.parametrize("verb", ["verify", "inspect"])
def test_missing_store_is_a_clear_error(verb: str, tmp_path: Path) -> None:
    result = runner.invoke(app, [verb, str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "no chain store at" in flat(result.stderr) and "nowhere" in flat(result.stderr)
    assert "Traceback" not in result.output


def test_inspect_of_a_missing_height_is_a_clear_error(demo_dir: Path) -> None:
    result = runner.invoke(app, ["inspect", str(demo_dir), "--height", "99"])
    assert result.exit_code == 2 and "no block at height 99" in flat(result.stderr)


def test_demo_refuses_to_overwrite_a_chain(demo_dir: Path) -> None:
    result = runner.invoke(app, ["demo", "--out", str(demo_dir)])
    assert result.exit_code == 2 and "already holds a chain" in flat(result.stderr)


def test_verify_reports_an_altered_store(demo_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "chain.sqlite"
    src = sqlite3.connect(demo_dir / "chain.sqlite")
    dst = sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    dst.execute("DELETE FROM utxos WHERE op = (SELECT MIN(op) FROM utxos)")
    dst.commit()
    dst.close()
    result = runner.invoke(app, ["verify", str(copy)])
    assert result.exit_code == 1
    assert "INVALID" in result.stderr and "bad-chain-state" in flat(result.stderr)
    assert "Traceback" not in result.output


def test_help_lists_the_ledger_verbs() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for verb in ("demo", "verify", "inspect"):
        assert verb in result.stdout


def commands(group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    """Every leaf command of the click tree under ``group``: (its path, the command)."""
    found = []
    for name, cmd in group.commands.items():
        sub = (*path, name)
        found += commands(cmd, sub) if hasattr(cmd, "commands") else [(sub, cmd)]
    return found


def test_every_command_is_registered_once_and_documented() -> None:
    from typer.main import get_command

    leaves = commands(get_command(app))
    paths = {}
    for path, cmd in leaves:
        assert cmd.help, f"gridledger {' '.join(path)} has no help text"
        for param in cmd.params:
            if param.param_type_name == "option" and param.name != "help":
                assert param.help, f"gridledger {' '.join(path)} {param.opts[0]} has no help text"
        function = getattr(cmd.callback, "__wrapped__", cmd.callback)  # typer wraps the registered function
        paths.setdefault(function, []).append(" ".join(path))
    twice = {names[0]: names for names in paths.values() if len(names) > 1}
    assert not twice, f"commands registered under two names: {twice}"
    assert ("prove",) in [p for p, _ in leaves] and ("tiers", "verify") not in [p for p, _ in leaves]
