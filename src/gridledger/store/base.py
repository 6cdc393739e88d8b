"""The store interface and the SQL shared by the SQLite and PostgreSQL stores.

A store holds the blocks (raw canonical bytes, by height) and the ledger state at the tip in tables
(unspent outputs, issued totals per meter/kind/slot, cumulative FA per meter, nonces, DSO policies).
``commit_block`` writes a block and its state changes in one database transaction: after a crash the store
holds either the block and all its changes or neither. Writers are serialized and the height check runs
inside that transaction, so two writers never both append one height. Driver errors surface as ``StoreError``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from gridledger.ledger.state import StateChanges


class StoreError(Exception):
    """The store cannot do what was asked (wrong height, unreadable file, lost connection, …)."""


#: Table definitions; ``{B}`` is the byte-string type, ``{I}`` the 64-bit integer type, ``{T}`` the options
#: of a table, ``{K}`` those of a table clustered on its primary key (SQLite: ``STRICT``, ``WITHOUT ROWID``).
SCHEMA = [
    "CREATE TABLE IF NOT EXISTS blocks (height {I} PRIMARY KEY, hash {B} NOT NULL, time {I} NOT NULL,"
    " data {B} NOT NULL){T}",
    "CREATE TABLE IF NOT EXISTS utxos (op {B} PRIMARY KEY, output {B} NOT NULL){K}",
    "CREATE TABLE IF NOT EXISTS issued (meter TEXT NOT NULL, kind {I} NOT NULL, slot {I} NOT NULL,"
    " total {I} NOT NULL, PRIMARY KEY (meter, kind, slot)){K}",
    "CREATE TABLE IF NOT EXISTS fa_issued (meter TEXT PRIMARY KEY, total {I} NOT NULL){T}",
    "CREATE TABLE IF NOT EXISTS nonces (meter TEXT PRIMARY KEY, nonce {I} NOT NULL){T}",
    "CREATE TABLE IF NOT EXISTS policies (seq {I} PRIMARY KEY, data {B} NOT NULL){T}",
]

#: The tables, in the order ``dump`` lists them.
TABLES = ("blocks", "utxos", "issued", "fa_issued", "nonces", "policies")

#: Unspent outputs read per round trip when they are streamed.
UTXO_BATCH = 4096

_U64_WRAP = 1 << 64
_I64_MAX = (1 << 63) - 1


def to_i64(value: int) -> int:
    """A u64 consensus field (block time, meter nonce) as the signed 64-bit integer the SQL column holds."""
    return value - _U64_WRAP if value > _I64_MAX else value


def from_i64(value: int) -> int:
    """Inverse of ``to_i64``."""
    return value + _U64_WRAP if value < 0 else value


def _blob(value, what: str) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise StoreError(f"stored {what} is a {type(value).__name__}, not a byte string: the store was altered")


def _int(value, what: str) -> int:
    if type(value) is int:
        return value
    raise StoreError(f"stored {what} is a {type(value).__name__}, not an integer: the store was altered")


class Store(ABC):
    """Blocks and tip state of one chain. Implementations: ``SqliteStore``, ``PostgresStore``."""

    #: SQL parameter placeholder of the driver.
    PARAM = "?"
    #: The driver's exceptions, re-raised as ``StoreError``.
    DB_ERRORS: tuple[type[Exception], ...] = ()

    @abstractmethod
    def _cursor(self): ...

    @abstractmethod
    def _transaction(self, *, write: bool = True):
        """Context manager: one atomic database transaction yielding a cursor.

        ``write=True``: serialized against every other writer of the store. ``write=False``: a read-only
        transaction that sees one consistent snapshot.
        """

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def integrity_problems(self) -> list[str]:
        """What the database's own consistency check finds wrong with its files and indexes (empty: none).

        A corrupted index can hide or invent rows that a table scan does not see, so the whole-chain verifier runs
        this before it replays the blocks.
        """

    def _sql(self, sql: str) -> str:
        return sql if self.PARAM == "?" else sql.replace("?", self.PARAM)

    @contextmanager
    def _driver_errors(self, doing: str):
        try:
            yield
        except self.DB_ERRORS as e:
            raise StoreError(f"{doing}: {' '.join(str(e).split())}") from e

    def _fetch(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._driver_errors("cannot read the store"):
            cur = self._cursor()
            cur.execute(self._sql(sql), args)
            return cur.fetchall()

    # --------------------------------------------------------------- reading
    def tip_height(self) -> int | None:
        """Height of the last committed block, or None for an empty store."""
        rows = self._fetch("SELECT MAX(height) FROM blocks")
        return rows[0][0] if rows and rows[0][0] is not None else None

    def block_bytes(self, height: int) -> bytes:
        rows = self._fetch("SELECT data FROM blocks WHERE height = ?", (height,))
        if not rows:
            raise StoreError(f"no block at height {height}")
        return _blob(rows[0][0], f"block {height}")

    def iter_blocks(self, start: int = 0, batch: int = 256) -> Iterator[tuple[int, bytes]]:
        """(height, raw block) from ``start`` to the tip, in order."""
        for height, _, _, raw in self.iter_block_rows(start, batch):
            yield height, raw

    def iter_block_rows(self, start: int = 0, batch: int = 256) -> Iterator[tuple[int, bytes, int, bytes]]:
        """(height, stored hash, stored time, raw block) from ``start`` to the tip, in order."""
        h = start
        while True:
            rows = self._fetch(
                "SELECT height, hash, time, data FROM blocks WHERE height >= ? ORDER BY height LIMIT ?", (h, batch)
            )
            if not rows:
                return
            for height, block_hash, time, data in rows:
                yield (
                    height,
                    _blob(block_hash, f"hash of block {height}"),
                    from_i64(time),
                    _blob(data, f"block {height}"),
                )
            h = rows[-1][0] + 1

    def snapshot(self) -> dict:
        """The stored tip state in the form of ``LedgerState.snapshot`` (plus ``tip_time``), read at once."""
        with self.streaming_snapshot() as snap:
            return snap | {"utxos": dict(snap["utxos"])}

    @contextmanager
    def streaming_snapshot(self, batch: int = UTXO_BATCH) -> Iterator[dict]:
        """Like ``snapshot``, but ``"utxos"`` is an iterator of (outpoint, output) pairs in increasing outpoint
        order, read ``batch`` rows at a time from the same read transaction (one consistent snapshot).

        Usable only inside the ``with`` block. A verifier compares a million unspent outputs this way without
        holding a second copy of them in memory.
        """
        with self._driver_errors("cannot read the store"), self._transaction(write=False) as cur:

            def rows(sql: str, args: tuple = ()) -> list[tuple]:
                cur.execute(self._sql(sql), args)
                return cur.fetchall()

            def utxos() -> Iterator[tuple[bytes, bytes]]:
                for o, v in self._stream(cur, "SELECT op, output FROM utxos ORDER BY op", batch):
                    yield _blob(o, "outpoint"), _blob(v, "output")

            ((tip,),) = rows("SELECT MAX(height) FROM blocks")
            if tip is None:
                raise StoreError("the store holds no chain")
            ((h, t),) = rows("SELECT hash, time FROM blocks WHERE height = ?", (tip,))
            yield {
                "height": tip,
                "tip_hash": _blob(h, "tip hash"),
                "tip_time": from_i64(_int(t, "tip time")),
                "issued": {
                    (m, _int(k, "issued kind"), _int(s, "issued slot")): _int(v, "issued total")
                    for m, k, s, v in rows("SELECT meter, kind, slot, total FROM issued")
                },
                "fa_issued": {m: _int(v, "FA total") for m, v in rows("SELECT meter, total FROM fa_issued")},
                "nonces": {m: from_i64(_int(v, "nonce")) for m, v in rows("SELECT meter, nonce FROM nonces")},
                "policies": [_blob(d, "policy") for (d,) in rows("SELECT data FROM policies ORDER BY seq")],
                "utxos": utxos(),
            }

    def _stream(self, cur, sql: str, batch: int) -> Iterator[tuple]:
        """The rows of ``sql`` run in the transaction of ``cur``, fetched ``batch`` at a time."""
        cur.execute(self._sql(sql))
        while rows := cur.fetchmany(batch):
            yield from rows

    def policy_rows(self) -> list[tuple[int, bytes]]:
        """(sequence number, encoded policy) of every stored DSO policy, in sequence order."""
        rows = self._fetch("SELECT seq, data FROM policies ORDER BY seq")
        return [(_int(seq, "policy sequence number"), _blob(d, "policy")) for seq, d in rows]

    def dump(self) -> dict[str, list[tuple]]:
        """Every row of every table, sorted, as read in one snapshot (to compare stores byte for byte)."""
        with self._driver_errors("cannot read the store"), self._transaction(write=False) as cur:
            out = {}
            for table in TABLES:
                cur.execute(f"SELECT * FROM {table}")
                out[table] = sorted(
                    tuple(bytes(v) if isinstance(v, bytearray | memoryview) else v for v in row)
                    for row in cur.fetchall()
                )
            return out

    # --------------------------------------------------------------- writing
    def commit_block(
        self,
        height: int,
        block_hash: bytes,
        time: int,
        raw: bytes,
        ch: StateChanges,
        *,
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        """Append block ``height`` with its state changes, atomically. The height must follow the tip.

        ``before_commit()`` runs after every row is written and before the database transaction commits; if it
        raises, the transaction is rolled back (nothing of the block is stored) and its exception propagates. A
        node writes a block while its signatures are still being checked and confirms them here.
        """
        q = self._sql
        with self._driver_errors(f"cannot commit block {height}"), self._transaction() as cur:
            cur.execute("SELECT MAX(height) FROM blocks")
            (tip,) = cur.fetchone()
            expected = 0 if tip is None else tip + 1
            if height != expected:
                raise StoreError(f"cannot commit block {height}: the store's next height is {expected}")
            cur.execute(
                q("INSERT INTO blocks (height, hash, time, data) VALUES (?, ?, ?, ?)"),
                (height, block_hash, to_i64(time), raw),
            )
            if ch.utxo_spent:
                cur.executemany(q("DELETE FROM utxos WHERE op = ?"), [(op,) for op in ch.utxo_spent])
            if ch.utxo_added:
                cur.executemany(q("INSERT INTO utxos (op, output) VALUES (?, ?)"), list(ch.utxo_added.items()))
            if ch.issued:
                cur.executemany(
                    q(
                        "INSERT INTO issued (meter, kind, slot, total) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (meter, kind, slot) DO UPDATE SET total = excluded.total"
                    ),
                    [(m, k, s, v) for (m, k, s), v in ch.issued.items()],
                )
            for table, col, rows in (
                ("fa_issued", "total", list(ch.fa_issued.items())),
                ("nonces", "nonce", [(m, to_i64(n)) for m, n in ch.nonces.items()]),
            ):
                if rows:
                    cur.executemany(
                        q(
                            f"INSERT INTO {table} (meter, {col}) VALUES (?, ?) "
                            f"ON CONFLICT (meter) DO UPDATE SET {col} = excluded.{col}"
                        ),
                        rows,
                    )
            if ch.policies:
                cur.execute("SELECT COUNT(*) FROM policies")
                seq = cur.fetchone()[0]
                cur.executemany(
                    q("INSERT INTO policies (seq, data) VALUES (?, ?)"),
                    [(seq + i, p.encode()) for i, p in enumerate(ch.policies)],
                )
            if before_commit is not None:
                before_commit()
