"""Bad store input: unreadable files, unreachable or lost servers, values of the wrong type.

Each is refused with a ``StoreError`` whose message names the cause (never a driver traceback), and the CLI
turns it into a one-line error with exit code 2.
"""

from __future__ import annotations

import random
import sqlite3

import psycopg
import pytest
from typer.testing import CliRunner

from gridledger.chain import verify_store
from gridledger.cli import app
from gridledger.ledger.errors import Reject
from gridledger.ledger.state import StateChanges
from gridledger.store import StoreError, open_store
from gridledger.store.base import SCHEMA, from_i64, to_i64
from gridledger.store.postgres import PostgresStore, redact
from gridledger.store.sqlite import SqliteStore
from workload import Workload


def test_a_file_that_is_not_a_database(tmp_path):
    path = tmp_path / "notes.sqlite"
    path.write_text("these are not the blocks you are looking for\n" * 100)
    with pytest.raises(StoreError, match=r"cannot open SQLite store .*notes\.sqlite: file is not a database"):
        SqliteStore(path)
    res = CliRunner().invoke(app, ["verify", str(path)])
    assert res.exit_code == 2
    assert "file is not a database" in " ".join(res.output.split())
    assert "Traceback" not in " ".join(res.output.split())


def test_a_directory_is_not_a_store(tmp_path):
    with pytest.raises(StoreError, match="cannot open SQLite store"):
        SqliteStore(tmp_path)


def test_open_store_routes_urls(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'a.sqlite'}")
    assert isinstance(store, SqliteStore)
    assert store.path == tmp_path / "a.sqlite"
    store.close()


def test_sqlite_tables_refuse_values_of_the_wrong_type(tmp_path):
    store = SqliteStore(tmp_path / "c.sqlite")
    Workload.start(store, random.Random(1)).step()
    db = sqlite3.connect(tmp_path / "c.sqlite", isolation_level=None)
    with pytest.raises(sqlite3.IntegrityError, match="cannot store TEXT value in BLOB column"):
        db.execute("UPDATE utxos SET output = 'text'")
    with pytest.raises(sqlite3.IntegrityError, match="cannot store TEXT value in INTEGER column"):
        db.execute("UPDATE nonces SET nonce = 'many'")
    verify_store(store)


def test_a_loosely_typed_store_with_a_wrong_value_is_a_store_error(tmp_path):
    """Tables made without STRICT (by hand, or by another tool) may hold text where bytes belong."""
    path = tmp_path / "loose.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    for stmt in SCHEMA:
        db.execute(stmt.format(B="BLOB", I="INTEGER", T="", K=" WITHOUT ROWID"))
    store = SqliteStore(path)
    Workload.start(store, random.Random(1)).step()
    db.execute("UPDATE utxos SET output = 'text' WHERE op = (SELECT MIN(op) FROM utxos)")
    with pytest.raises(StoreError, match="stored output is a str, not a byte string: the store was altered"):
        store.snapshot()
    db.execute("UPDATE blocks SET data = 'text' WHERE height = 1")
    with pytest.raises(StoreError, match="stored block 1 is a str"):
        verify_store(store)
    res = CliRunner().invoke(app, ["verify", str(path)])
    assert res.exit_code == 2
    assert "stored block 1 is a str" in " ".join(res.output.split())


@pytest.mark.parametrize("value", [0, 1, 2**62, 2**63 - 1, 2**63, 2**64 - 1])
def test_u64_to_i64_round_trip(value):
    assert -(2**63) <= to_i64(value) < 2**63
    assert from_i64(to_i64(value)) == value


def test_an_unreachable_server_names_the_url_without_its_password():
    url = "postgresql://alice:s3cret@127.0.0.1:1/chain"
    with pytest.raises(StoreError) as e:
        PostgresStore(url)
    msg = str(e.value)
    assert msg.startswith("cannot open PostgreSQL store postgresql://alice:***@127.0.0.1:1/chain: ")
    assert "s3cret" not in msg
    assert "\n" not in msg
    res = CliRunner().invoke(app, ["verify", url])
    assert res.exit_code == 2
    assert "s3cret" not in " ".join(res.output.split())


def test_a_malformed_postgres_url():
    with pytest.raises(StoreError, match="cannot open PostgreSQL store"):
        PostgresStore("postgresql://127.0.0.1:5432/db?no_such_option=1")


def test_redact_keeps_urls_without_password():
    assert redact("postgresql://bob@h:5/d") == "postgresql://bob@h:5/d"
    assert redact("postgresql://bob:pw@h:5/d?x=1") == "postgresql://bob:***@h:5/d?x=1"


@pytest.mark.postgres
def test_a_lost_server_connection_is_a_store_error(pg_schema_url):
    url = pg_schema_url()
    store = PostgresStore(url)
    Workload.start(store, random.Random(1))
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("SELECT pg_terminate_backend(%s)", (store.db.info.backend_pid,))
    with pytest.raises(StoreError, match="cannot read the store: .*terminat"):
        store.tip_height()
    with pytest.raises(StoreError, match="cannot commit block 2"):
        store.commit_block(2, bytes(32), 0, b"", StateChanges())
    store.close()
    again = PostgresStore(url)
    assert verify_store(again).height == 1
    again.close()


@pytest.mark.postgres
def test_a_read_only_role_can_verify_but_not_write(pg_schema_url):
    url = pg_schema_url()
    store = PostgresStore(url)
    Workload.start(store, random.Random(1)).step()
    schema = url.rsplit("%3D", 1)[1]
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("DROP ROLE IF EXISTS auditor")
        db.execute("CREATE ROLE auditor LOGIN")
        db.execute(f"GRANT USAGE ON SCHEMA {schema} TO auditor")
        db.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO auditor")
    auditor = PostgresStore(url.replace("postgres@", "auditor@"))
    try:
        assert verify_store(auditor).height == 2
        with pytest.raises(StoreError, match="cannot commit block 3: .*permission denied"):
            auditor.commit_block(3, bytes(32), 0, b"", StateChanges())
    finally:
        auditor.close()
        store.close()
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM auditor")
            db.execute(f"REVOKE ALL ON SCHEMA {schema} FROM auditor")
            db.execute("DROP ROLE auditor")


def test_a_corrupted_index_fails_verify_though_every_table_scan_reads_fine(tmp_path):
    """One byte of the nonces table's primary-key index changed in the file: the rows read the same by a table scan,
    so only the database's own integrity check (``PRAGMA integrity_check``) sees it."""
    path = tmp_path / "c.sqlite"
    store = SqliteStore(path)
    work = Workload.start(store, random.Random(1))
    for _ in range(4):
        work.step()
    store.close()  # the last connection checkpoints the WAL into the file
    db = sqlite3.connect(path)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_autoindex_nonces_1'").fetchone()
    db.close()
    data = bytearray(path.read_bytes())
    page = slice((root - 1) * page_size, root * page_size)
    at = page.start + bytes(data[page]).rindex(b"WM")
    data[at + 2] ^= 0x40  # 'WM1' -> 'WMq' in the index only
    path.write_bytes(bytes(data))
    store = SqliteStore(path)
    assert store.snapshot()["nonces"] == work.chain.state.nonces  # a table scan does not notice
    with pytest.raises(Reject) as e:
        verify_store(store)
    assert e.value.code == "bad-store-integrity"
    assert "sqlite_autoindex_nonces_1" in str(e.value)
    res = CliRunner().invoke(app, ["verify", str(path)])
    assert res.exit_code == 1
    assert "INVALID" in res.output
    store.close()


def test_postgres_verify_runs_amcheck_when_installed_and_says_so_when_not(pg_schema_url, caplog):
    store = PostgresStore(pg_schema_url())
    Workload.start(store, random.Random(1)).step()
    with caplog.at_level("WARNING", logger="gridledger.store"):
        verify_store(store)
    assert "amcheck is not installed" in caplog.text
    caplog.clear()
    store.db.execute("CREATE EXTENSION amcheck")  # into the test's own schema, dropped with it
    try:
        with caplog.at_level("WARNING", logger="gridledger.store"):
            verify_store(store)
            assert store.integrity_problems() == []
        assert caplog.text == ""
    finally:
        store.db.execute("DROP EXTENSION amcheck")
        store.close()
