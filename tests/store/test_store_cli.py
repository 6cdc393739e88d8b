"""``gridledger store``: copy a chain between stores (re-validated), start and stop a throwaway PostgreSQL."""

from __future__ import annotations

import random
import re

import pytest
from typer.testing import CliRunner

from gridledger.chain import copy_chain, verify_store
from gridledger.cli.store import app
from gridledger.store import open_store
from gridledger.store.pgserver import PgServer, PgServerError
from workload import Workload

runner = CliRunner()


def flat(result) -> str:
    return " ".join(result.output.split())


@pytest.fixture
def sqlite_chain(tmp_path):
    path = tmp_path / "source.sqlite"
    store = open_store(str(path))
    work = Workload.start(store, random.Random(5), txs_per_block=3, outputs_per_tx=4, policy_every=2)
    for _ in range(5):
        work.step()
    store.close()
    return path


def test_copy_into_any_backend_gives_identical_tables(sqlite_chain, backend):
    res = runner.invoke(app, ["copy", str(sqlite_chain), backend.url])
    assert res.exit_code == 0, res.output
    assert "copied: 7 blocks" in flat(res)
    source, target = open_store(str(sqlite_chain)), backend.open()
    assert target.dump() == source.dump()
    assert verify_store(target).snapshot() == verify_store(source).snapshot()
    source.close()


def test_copy_refuses_a_target_that_holds_a_chain(sqlite_chain, tmp_path):
    target = tmp_path / "target.sqlite"
    assert runner.invoke(app, ["copy", str(sqlite_chain), str(target)]).exit_code == 0
    before = target.read_bytes()
    res = runner.invoke(app, ["copy", str(sqlite_chain), str(target)])
    assert res.exit_code == 2
    assert "error: the target store already holds a chain" in flat(res)
    assert target.read_bytes() == before


def test_copy_of_a_missing_or_empty_source(tmp_path):
    res = runner.invoke(app, ["copy", str(tmp_path / "nothing.sqlite"), str(tmp_path / "t.sqlite")])
    assert res.exit_code == 2
    assert "no chain store at" in flat(res)
    open_store(str(tmp_path / "empty.sqlite")).close()
    res = runner.invoke(app, ["copy", str(tmp_path / "empty.sqlite"), str(tmp_path / "t.sqlite")])
    assert res.exit_code == 2
    assert "the source store holds no chain" in flat(res)


def test_copy_stops_at_an_invalid_source_block(sqlite_chain, tmp_path):
    store = open_store(str(sqlite_chain))
    raw = bytearray(store.block_bytes(4))
    raw[-1] ^= 1
    store.db.execute("UPDATE blocks SET data = ? WHERE height = 4", (bytes(raw),))
    store.close()
    target = tmp_path / "t.sqlite"
    res = runner.invoke(app, ["copy", str(sqlite_chain), str(target)])
    assert res.exit_code == 1
    assert "INVALID source block 4" in flat(res)
    copied = open_store(str(target))
    assert copied.tip_height() == 3
    assert verify_store(copied).height == 3
    copied.close()


def test_copy_chain_reports_each_block(sqlite_chain, tmp_path):
    seen = []
    source, target = open_store(str(sqlite_chain)), open_store(str(tmp_path / "t.sqlite"))
    state = copy_chain(source, target, on_block=seen.append)
    assert seen == list(range(7))
    assert state.height == 6
    source.close()
    target.close()


@pytest.mark.postgres
def test_pg_start_and_stop(pg_server):
    """A second throwaway server from the CLI; a folder that holds a cluster (the tests' own) is refused."""
    with pytest.raises(PgServerError, match="already holds a cluster"):
        PgServer.start(pg_server.base)
    res = runner.invoke(app, ["pg-start"])
    assert res.exit_code == 0, res.output
    url = re.search(r"store URL: (\S+)", flat(res)).group(1)
    folder = re.search(r"pg-stop --dir (\S+)", flat(res)).group(1)
    try:
        store = open_store(url)
        Workload.start(store, random.Random(1)).step()
        assert verify_store(store).height == 2
        store.close()
    finally:
        stop = runner.invoke(app, ["pg-stop", "--dir", folder])
    assert stop.exit_code == 0, stop.output
    assert "stopped" in flat(stop)
    res = runner.invoke(app, ["pg-stop", "--dir", folder])
    assert res.exit_code == 2
    assert "no cluster in" in flat(res)
