"""Chain stores (the edge): blocks plus the ledger state tables, each block committed atomically with its changes.

``open_store(url)`` opens ``sqlite:///path`` (or a bare path; the embedded default) or ``postgresql://...``.
"""

from __future__ import annotations

from gridledger.store.base import Store, StoreError


def open_store(url: str) -> Store:
    """Open the store named by ``url``: a SQLite path / ``sqlite:///path``, or a ``postgresql://`` URL."""
    if url.startswith(("postgresql://", "postgres://")):
        from gridledger.store.postgres import PostgresStore

        return PostgresStore(url)
    from gridledger.store.sqlite import SqliteStore

    return SqliteStore(url.removeprefix("sqlite:///").removeprefix("sqlite://"))


__all__ = ["Store", "StoreError", "open_store"]
