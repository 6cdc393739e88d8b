"""`gridledger simulate --store postgresql://...`: every chain copy of a run (a backup coordinator's too) in its own
PostgreSQL schema, verified and audited from there; two runs share a database; a killed run resumes there; a bad or
unreachable server is one clear error before anything is written.

Runs against a real throwaway PostgreSQL server (skipped only when the server binaries are not installed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from gridledger.cli import app
from gridledger.profiles.community import community_toml, generate_community
from gridledger.store.pgserver import PgServer, free_port
from tests import requires

pytestmark = pytest.mark.postgres
runner = CliRunner()
DATABASE = "gridledger_runs"


@pytest.fixture(scope="module")
def pg_url():
    """A database on a throwaway PostgreSQL server, for this module (as tests/store/conftest.py starts one)."""
    requires.postgres()
    server = PgServer.start()
    try:
        yield server.create_database(DATABASE)
    finally:
        server.stop()


def schemas(url: str) -> set[str]:
    with psycopg.connect(url) as db:
        return {r[0] for r in db.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'gl%'")}


def simulate(*args: str):
    return runner.invoke(app, ["simulate", "--homes", "6", "--days", "1", "--seed", "4", "--no-report", *args])


def test_a_run_in_postgresql_verifies_from_there(pg_url, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    r = simulate("--store", pg_url, "--out", str(first))
    assert r.exit_code == 0, r.output
    assert not list((first / "chains").glob("*.sqlite"))  # no chain in the folder: all in PostgreSQL
    manifest = json.loads((first / "chains" / "tiers.json").read_text())
    locations = [s for c in manifest["chains"] for s in c["stores"]]
    nans = sum(c["tier"] == "nan" for c in manifest["chains"])
    assert len(manifest["chains"]) == 6 + nans + 2  # HAN per home, NAN per feeder, FAN/WAN, head-end
    assert len(locations) == 2 * len(manifest["chains"]) and all(s.startswith(pg_url) for s in locations)
    made = schemas(pg_url)
    assert len(made) == len(locations) and all(f"search_path%3D{s}" in " ".join(locations) for s in made)
    v = runner.invoke(app, ["verify", str(first)])
    assert v.exit_code == 0, v.output
    a = runner.invoke(app, ["audit", str(first)])
    assert a.exit_code == 0 and "audit passed" in a.output, a.output

    r = simulate("--store", pg_url, "--out", str(second))  # a second run into the same database: its own schemas
    assert r.exit_code == 0, r.output
    assert len(schemas(pg_url)) == 2 * len(made)
    assert runner.invoke(app, ["verify", str(second)]).exit_code == 0

    # verify reads the blocks from PostgreSQL: flip a byte of one there and the run no longer verifies
    nan = next(c for c in manifest["chains"] if c["tier"] == "nan")
    with psycopg.connect(nan["stores"][1], autocommit=True) as db:
        data = db.execute("SELECT data FROM blocks WHERE height = 3").fetchone()[0]
        db.execute("UPDATE blocks SET data = %s WHERE height = 3", (data[:-1] + bytes([data[-1] ^ 1]),))
    assert runner.invoke(app, ["verify", str(first)]).exit_code == 1
    assert runner.invoke(app, ["audit", str(first)]).exit_code == 1
    assert runner.invoke(app, ["verify", str(second)]).exit_code == 0


def test_a_backup_coordinators_copy_is_in_postgresql_too(pg_url, tmp_path):
    out = tmp_path / "run"
    r = simulate("--store", pg_url, "--out", str(out), "--attack", "coordinator-loss@F1:20-40")
    assert r.exit_code == 0, r.output
    chains = json.loads((out / "chains" / "tiers.json").read_text())["chains"]
    nan = next(c for c in chains if c["name"] == "nan:DC-F1")
    assert len(nan["stores"]) == 3 and all(s.startswith(pg_url) for s in nan["stores"])  # primary, backup, members
    with psycopg.connect(nan["stores"][1]) as db:  # the backup's copy holds the blocks it committed in charge
        (height,) = db.execute("SELECT max(height) FROM blocks").fetchone()
    assert height > 40
    assert runner.invoke(app, ["verify", str(out)]).exit_code == 0
    r = simulate("--store", pg_url, "--out", str(tmp_path / "tamper"), "--attack", "tamper@F1:5-10")
    assert r.exit_code == 2 and "tamper" in r.output and not (tmp_path / "tamper").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"postgresql://postgres@127.0.0.1:{free_port()}/db", "--store postgresql://postgres@127.0.0.1"),
        ("mysql://host/db", "not a postgresql:// URL"),
    ],
)
def test_a_bad_store_is_one_clear_error_before_anything_is_written(tmp_path, url, message):
    out = tmp_path / "run"
    r = simulate("--store", url, "--out", str(out))
    assert r.exit_code == 2 and message in r.output, r.output
    assert "Traceback" not in r.output
    assert not out.exists()


def test_a_missing_database_is_named(pg_url, tmp_path):
    url = pg_url.rsplit("/", 1)[0] + "/no_such_db"
    r = simulate("--store", url, "--out", str(tmp_path / "run"))
    assert r.exit_code == 2 and "no_such_db" in r.output, r.output
    assert not (tmp_path / "run").exists()


SCRIPT = """
import os, signal, sys
from gridledger.profiles.community import load_community
from gridledger.sim.run import run_community
from tests import requires
def progress(done, total):
    if done == int(sys.argv[4]):
        os.kill(os.getpid(), signal.SIGKILL)
run_community(load_community(sys.argv[1]), sys.argv[2], store=sys.argv[3], progress=progress)
"""


def test_a_killed_run_in_postgresql_resumes(pg_url, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "community.toml").write_text(community_toml(generate_community(6, 1, seed=5, feeders=1)))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    command = [sys.executable, "-c", SCRIPT, str(out / "community.toml"), str(out), pg_url, "50"]
    proc = subprocess.run(command, env=env, timeout=600)
    assert proc.returncode == -signal.SIGKILL
    assert runner.invoke(app, ["verify", str(out)]).exit_code == 0  # the chains it left, in PostgreSQL
    other = pg_url.rsplit("/", 1)[0] + "/postgres"
    r = runner.invoke(app, ["simulate", "--resume", "--out", str(out), "--store", other, "--no-report"])
    assert r.exit_code == 2 and "the interrupted run" in r.output and "used" in r.output
    r = runner.invoke(app, ["simulate", "--resume", "--out", str(out), "--store", pg_url, "--no-report"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "summary.json").read_text())["slots"] == 96
    assert runner.invoke(app, ["verify", str(out)]).exit_code == 0
    assert runner.invoke(app, ["audit", str(out)]).exit_code == 0
