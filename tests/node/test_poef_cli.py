"""``gridledger cluster up`` runs PoEf by default; ``cluster reading`` submits a meter's signed reading and
``cluster readings`` shows it to entitled parties only — one line and exit code 2 for everything refused."""

from __future__ import annotations

import json
import time

import pytest
from tests import requires
from typer.testing import CliRunner

from gridledger.cli.node import cluster_app
from gridledger.node import cluster

pytestmark = pytest.mark.slow
runner = CliRunner()


def cli(*args: str):
    return runner.invoke(cluster_app, list(args), env={"COLUMNS": "200"})


def test_cluster_commands_end_to_end(tmp_path):
    requires.etcd()
    folder = str(tmp_path / "net")
    up = cli("up", "--meters", "2", "--dir", folder)
    assert up.exit_code == 0, up.output
    try:
        assert "(poef)" in up.output
        state = json.loads((tmp_path / "net" / cluster.STATE_FILE).read_text())
        assert state["consensus"] == "poef" and {n["id"]: n.get("member") for n in state["nodes"]} == {
            "DC1": None,
            "DC1-backup": None,
            "MI1": 0,
            "MI2": 1,
        }
        sent = cli("reading", "--meter", "MI1", "--minute", "0", "--consumption", "123", "--dir", folder)
        assert sent.exit_code == 0 and "txid" in sent.output, sent.output
        deadline = time.monotonic() + 90  # generous: CI machines are shared
        while "123" not in (shown := cli("readings", "--meter", "MI1", "--dir", folder)).output:
            assert time.monotonic() < deadline, shown.output
            time.sleep(0.2)
        assert shown.exit_code == 0 and "served by DC1 to operator as dso" in shown.output
        assert "total: 123 Wh consumed, 0 Wh produced" in shown.output
        assert cli("readings", "--meter", "MI1", "--as", "MI1", "--dir", folder).exit_code == 0
        refused = cli("readings", "--meter", "MI1", "--as", "MI2", "--dir", folder)
        assert refused.exit_code == 2
        assert "refused (403): node MI2 may not read the readings of meter MI1" in refused.output
        not_here = cli("readings", "--meter", "MI1", "--as", "MI1", "--via", "MI2", "--dir", folder)
        assert not_here.exit_code == 2 and "refused (404)" in not_here.output
        for bad, message in [
            (("reading", "--meter", "DC1", "--minute", "1", "--consumption", "1"), "not a meter of a PoEf chain"),
            (("reading", "--meter", "MI1", "--minute", "1", "--consumption", "-5"), "Invalid value"),
            (("readings", "--meter", "MI1", "--as", "nobody"), "no node 'nobody'"),
            (("readings", "--meter", "MI9"), "no meter 'MI9' is enrolled"),
        ]:
            result = cli(*bad, "--dir", folder)
            assert result.exit_code == 2 and message in result.output, result.output
    finally:
        assert cli("down", "--dir", folder).exit_code == 0
