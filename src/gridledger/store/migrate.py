"""Copy a chain from one store into another (e.g. the embedded SQLite file into PostgreSQL), re-validating it.

Every source block is decoded and applied to a fresh ``LedgerState`` (all the ledger rules, as a node that
receives it would) and committed to the target with the state changes it produced, one transaction per block:
the target holds a chain that verifies, with state tables computed by this node rather than copied.
"""

from __future__ import annotations

from collections.abc import Callable

from gridledger.chain import replay
from gridledger.ledger.state import LedgerState
from gridledger.store.base import Store, StoreError


def copy_chain(source: Store, target: Store, on_block: Callable[[int], None] | None = None) -> LedgerState:
    """Copy every block of ``source`` into the empty ``target``; return the ledger state at the tip.

    Raises ``StoreError`` if the target already holds a chain or the source holds none, and a located
    ``Reject`` at the first invalid source block (the target then holds the valid blocks before it).
    ``on_block(height)`` is called after each block is committed.
    """
    if source.tip_height() is None:
        raise StoreError("the source store holds no chain")
    if target.tip_height() is not None:
        raise StoreError("the target store already holds a chain; copy into an empty one")
    state = None
    for block, after, ch in replay(source):
        target.commit_block(block.height, block.hash, block.header.time, block.encode(), ch)
        state = after
        if on_block is not None:
            on_block(block.height)
    return state
