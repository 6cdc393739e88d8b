"""The store interface and the SQL shared by the SQLite and PostgreSQL stores.

A store holds the blocks (raw canonical bytes, by height) and the ledger state at the tip in tables
(unspent outputs, issued totals per meter/kind/slot, cumulative FA per meter, nonces, DSO policies).
``commit_block`` writes a block and its state changes in one database transaction: after a crash the store
holds either the block and all its changes or neither.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

from gridledger.ledger.state import StateChanges


class StoreError(Exception):
    """The store cannot do what was asked (wrong height, unreadable file, …)."""


SCHEMA = [
    "CREATE TABLE IF NOT EXISTS blocks (height BIGINT PRIMARY KEY, hash {B} NOT NULL, time BIGINT NOT NULL,"
    " data {B} NOT NULL)",
    "CREATE TABLE IF NOT EXISTS utxos (op {B} PRIMARY KEY, output {B} NOT NULL){W}",
    "CREATE TABLE IF NOT EXISTS issued (meter TEXT NOT NULL, kind INTEGER NOT NULL, slot BIGINT NOT NULL,"
    " total BIGINT NOT NULL, PRIMARY KEY (meter, kind, slot)){W}",
    "CREATE TABLE IF NOT EXISTS fa_issued (meter TEXT PRIMARY KEY, total BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS nonces (meter TEXT PRIMARY KEY, nonce BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS policies (seq BIGINT PRIMARY KEY, data {B} NOT NULL)",
]


class Store(ABC):
    """Blocks and tip state of one chain. Implementations: ``SqliteStore``, ``PostgresStore``."""

    #: SQL parameter placeholder of the driver.
    PARAM = "?"

    @abstractmethod
    def _cursor(self): ...

    @abstractmethod
    def _transaction(self):
        """Context manager: one atomic database transaction yielding a cursor."""

    @abstractmethod
    def close(self) -> None: ...

    def _sql(self, sql: str) -> str:
        return sql if self.PARAM == "?" else sql.replace("?", self.PARAM)

    def _fetch(self, sql: str, args: tuple = ()) -> list[tuple]:
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
        return bytes(rows[0][0])

    def iter_blocks(self, start: int = 0, batch: int = 256) -> Iterator[tuple[int, bytes]]:
        """(height, raw block) from ``start`` to the tip, in order."""
        h = start
        while True:
            rows = self._fetch("SELECT height, data FROM blocks WHERE height >= ? ORDER BY height LIMIT ?", (h, batch))
            if not rows:
                return
            for height, data in rows:
                yield height, bytes(data)
            h = rows[-1][0] + 1

    def snapshot(self) -> dict:
        """The stored tip state, in the form of ``LedgerState.snapshot``."""
        tip = self.tip_height()
        if tip is None:
            raise StoreError("the store holds no chain")
        ((h, t),) = self._fetch("SELECT hash, time FROM blocks WHERE height = ?", (tip,))
        return {
            "height": tip,
            "tip_hash": bytes(h),
            "tip_time": t,
            "utxos": {bytes(o): bytes(v) for o, v in self._fetch("SELECT op, output FROM utxos")},
            "issued": {(m, k, s): v for m, k, s, v in self._fetch("SELECT meter, kind, slot, total FROM issued")},
            "fa_issued": dict(self._fetch("SELECT meter, total FROM fa_issued")),
            "nonces": dict(self._fetch("SELECT meter, nonce FROM nonces")),
            "policies": [bytes(d) for (d,) in self._fetch("SELECT data FROM policies ORDER BY seq")],
        }

    # --------------------------------------------------------------- writing
    def commit_block(self, height: int, block_hash: bytes, time: int, raw: bytes, ch: StateChanges) -> None:
        """Append block ``height`` with its state changes, atomically. The height must follow the tip."""
        tip = self.tip_height()
        expected = 0 if tip is None else tip + 1
        if height != expected:
            raise StoreError(f"cannot commit block {height}: the store's next height is {expected}")
        q = self._sql
        with self._transaction() as cur:
            cur.execute(
                q("INSERT INTO blocks (height, hash, time, data) VALUES (?, ?, ?, ?)"), (height, block_hash, time, raw)
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
            for table, col in (("fa_issued", "total"), ("nonces", "nonce")):
                rows = list((ch.fa_issued if table == "fa_issued" else ch.nonces).items())
                if rows:
                    cur.executemany(
                        q(
                            f"INSERT INTO {table} (meter, {col}) VALUES (?, ?) "
                            f"ON CONFLICT (meter) DO UPDATE SET {col} = excluded.{col}"
                        ),
                        rows,
                    )
            if ch.policies:
                cur.execute(q("SELECT COUNT(*) FROM policies"))
                seq = cur.fetchone()[0]
                cur.executemany(
                    q("INSERT INTO policies (seq, data) VALUES (?, ?)"),
                    [(seq + i, p.encode()) for i, p in enumerate(ch.policies)],
                )
