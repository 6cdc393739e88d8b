"""PostgreSQL store (psycopg 3): the store of real deployments, as in Olivares-Rojas et al. 2023.

The same tables and SQL as the SQLite store (``store/base.py``), with ``BYTEA`` byte strings and ``BIGINT``
integers. Each block is one PostgreSQL transaction: the server makes it durable at ``COMMIT`` (its WAL) and
rolls back any transaction whose client disappears, so a crash of the node leaves the whole block or nothing.
Writers lock the ``blocks`` table (``SHARE ROW EXCLUSIVE``: readers are never blocked) for the length of the
transaction; snapshots are read in one ``REPEATABLE READ`` read-only transaction.

``integrity_problems`` uses the ``amcheck`` extension (``verify_heapam`` on every table, ``bt_index_check`` with
``heapallindexed`` on every index) when it is installed in the database and the role may run it; otherwise it logs
that the files and indexes were not checked (PostgreSQL has no built-in equivalent of SQLite's integrity check).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg

from gridledger.store.base import SCHEMA, TABLES, Store, StoreError

#: Key of the advisory lock that serializes schema creation by concurrent openers ("gridledg" in ASCII).
SCHEMA_LOCK = int.from_bytes(b"gridledg", "big") >> 1
CONNECT_TIMEOUT_S = 10

log = logging.getLogger("gridledger.store")


def redact(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{netloc}"))


class PostgresStore(Store):
    PARAM = "%s"
    DB_ERRORS = (psycopg.Error,)

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.db = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.Error as e:
            raise StoreError(
                f"cannot open PostgreSQL store {redact(url)}: {' '.join(str(e).split())}"
            ) from None
        try:
            with self.db.transaction(), self.db.cursor() as cur:
                # Only create missing tables: a role with read rights alone can still open and verify a store.
                cur.execute("SELECT " + ", ".join(f"to_regclass('{t}') IS NULL" for t in TABLES))
                if any(cur.fetchone()):
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                    for stmt in SCHEMA:
                        cur.execute(stmt.format(B="BYTEA", I="BIGINT", T="", K=""))
        except psycopg.Error as e:
            self.db.close()
            raise StoreError(
                f"cannot create the tables in {redact(url)}: {' '.join(str(e).split())}"
            ) from None

    def _cursor(self):
        return self.db.cursor()

    @contextmanager
    def _transaction(self, *, write: bool = True):
        with self.db.transaction(), self.db.cursor() as cur:
            if write:
                cur.execute("LOCK TABLE blocks IN SHARE ROW EXCLUSIVE MODE")
            else:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield cur

    def _stream(self, cur, sql: str, batch: int):
        """A server-side cursor: psycopg's client-side cursor would hold the whole result in memory."""
        with self.db.cursor(name="gridledger_stream") as server:
            server.itersize = batch
            server.execute(sql)
            yield from server

    def integrity_problems(self) -> list[str]:
        found = self._fetch(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
            " WHERE e.extname = 'amcheck'"
        )
        if not found:
            log.warning("%s: amcheck is not installed: tables and indexes not checked", redact(self.url))
            return []
        fn = f'"{found[0][0]}"'
        checks = []  # (what, SQL yielding (page, message) rows of corruption, relation)
        for table in TABLES:
            checks.append((f"table {table}", f"SELECT blkno, msg FROM {fn}.verify_heapam(%s::regclass)", table))
            for (index,) in self._fetch(
                "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = to_regclass(%s)", (table,)
            ):
                # raises on a corrupted index; heapallindexed: every table row must be found in the index
                checks.append((f"index {index}", f"SELECT 0, NULL FROM {fn}.bt_index_check(%s::regclass, true)", index))
        problems = []
        for what, sql, relation in checks:
            try:
                rows = self.db.execute(sql, (relation,)).fetchall()
            except psycopg.errors.InsufficientPrivilege as e:
                log.warning("%s: amcheck refused (%s): tables and indexes not checked", redact(self.url), e)
                return []
            except psycopg.Error as e:
                problems.append(f"{what}: {' '.join(str(e).split())}")
                continue
            problems += [f"{what}: {msg} (page {page})" for page, msg in rows if msg is not None]
        return problems

    def close(self) -> None:
        self.db.close()
