"""Store test fixtures: one throwaway PostgreSQL server per test run, a schema per test, and ``backend``.

``backend`` runs a test once on SQLite and once on PostgreSQL (marked ``postgres``). The PostgreSQL server is
started only when a PostgreSQL test runs, and skipped only when the server binaries are not installed.
The chain workload the store tests drive is the benchmark's (``benchmarks/workload.py``): its folder goes on
``sys.path`` here, so ``import workload`` works in these tests and in the processes they start.
"""

from __future__ import annotations

import sqlite3
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from tests import requires

from gridledger.store import Store, open_store
from gridledger.store.pgserver import PgServer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

TEST_DATABASE = "gridledger_tests"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server on loopback for the whole run, stopped (and its folder removed) at the end."""
    requires.postgres()
    server = PgServer.start()
    try:
        server.create_database(TEST_DATABASE)
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_schema_url(pg_server: PgServer) -> Iterator[Callable[[], str]]:
    """A factory of URLs, each to a fresh empty schema of the test database; all dropped after the test."""
    made = []

    def new() -> str:
        schema = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(pg_server.url(TEST_DATABASE), autocommit=True) as db:
            db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        made.append(schema)
        return f"{pg_server.url(TEST_DATABASE)}?options=-csearch_path%3D{schema}"

    yield new
    with psycopg.connect(pg_server.url(TEST_DATABASE), autocommit=True) as db:
        for schema in made:
            db.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@dataclass
class Backend:
    """One store location of one kind; ``open`` gives store objects (closed after the test), ``raw`` runs SQL
    on a connection of its own, as someone with access to the database (not through the store) would."""

    kind: str
    url: str
    opened: list[Store] = field(default_factory=list)

    def open(self) -> Store:
        store = open_store(self.url)
        self.opened.append(store)
        return store

    def raw(self, statement: str, args: tuple = ()) -> list[tuple]:
        if self.kind == "sqlite":
            db = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
            try:
                return db.execute(statement, args).fetchall()
            finally:
                db.close()
        with psycopg.connect(self.url, autocommit=True) as db:
            cur = db.execute(statement.replace("?", "%s"), args)
            return cur.fetchall() if cur.description else []

    def close(self) -> None:
        for store in self.opened:
            store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request, tmp_path: Path) -> Iterator[Backend]:
    """An empty store location: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        b = Backend("sqlite", f"sqlite:///{tmp_path / 'chain.sqlite'}")
    else:
        b = Backend("postgres", request.getfixturevalue("pg_schema_url")())
    yield b
    b.close()
