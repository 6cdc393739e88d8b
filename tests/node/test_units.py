"""The systemd units ``cluster plan`` writes are units systemd itself accepts.

``systemd-analyze verify`` (Debian's ``systemd`` package; it needs no running systemd) parses each generated unit as
systemd would load it: unknown keys, values it cannot parse and an ``ExecStart`` binary that does not exist are
reported. systemd only warns and carries on without such a line (a unit without its ``Restart=`` still starts), so a
unit passes here only if ``verify`` prints nothing at all. The plan's ``[install]`` paths point at this machine's
Python, etcd and mosquitto so that the commands exist.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests import requires
from tests.node.test_deploy import DEPLOYMENT
from typer.testing import CliRunner

from gridledger.cli import app
from gridledger.node.deploy import UNIT_DIR
from gridledger.node.etcd import etcd_binary
from gridledger.twin.mqtt import mosquitto_binary

runner = CliRunner()


def _verify(unit: Path) -> str:
    """What ``systemd-analyze verify`` says of ``unit`` (empty: systemd loads every line of it)."""
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    return (done.stdout + done.stderr).strip() or ("" if done.returncode == 0 else f"exit {done.returncode}")


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: apt-get install systemd (./dev services does it)")
    requires.etcd()
    requires.mosquitto()
    text = DEPLOYMENT.replace('host = "home1" }', 'host = "home1", daemon = "home1" }')
    text += f'\n[install]\npython = "{sys.executable}"\netcd = "{etcd_binary()}"\nmosquitto = "{mosquitto_binary()}"\n'
    (tmp_path / "deployment.toml").write_text(text)
    r = runner.invoke(app, ["cluster", "plan", str(tmp_path / "deployment.toml"), "--out", str(tmp_path / "plan")])
    assert r.exit_code == 0, r.output
    return tmp_path / "plan"


def test_every_generated_unit_loads_in_systemd_without_a_warning(plan):
    units = sorted(plan.glob(f"*/{UNIT_DIR}/*.service"))
    names = {u.name for u in units}
    # every kind of process the plan runs: etcd members, the broker, concentrators, a meter's node, a meter daemon
    kinds = ("etcd-etcd-dc1", "mosquitto", "DC1", "DC1-backup", "MI1", "meter-MI1")
    assert {f"gridledger-{k}.service" for k in kinds} <= names
    said = {u.relative_to(plan).as_posix(): _verify(u) for u in units}
    assert {u: s for u, s in said.items() if s} == {}


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        (("Restart=on-failure", "Restartt=on-failure"), "Unknown key 'Restartt'"),
        (("RestartSec=2", "RestartSec=two"), "Failed to parse sec value"),
    ],
)
def test_the_check_catches_what_systemd_would_ignore(plan, tmp_path, edit, said):
    """The check itself: a unit with a line systemd skips is reported, though ``verify`` exits 0 for it."""
    unit = plan / "dc1" / UNIT_DIR / "gridledger-DC1.service"
    broken = tmp_path / unit.name
    broken.write_text(unit.read_text().replace(*edit))
    assert said in _verify(broken)
