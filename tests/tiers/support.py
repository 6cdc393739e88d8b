"""Helpers of the tier tests."""

from __future__ import annotations

from gridledger.ledger.transactions import Transaction
from gridledger.tiers.hierarchy import TierChain


def outcome(node: TierChain, tx: Transaction, time: int) -> str:
    """Submit ``tx`` and run a round: 'ok' if it was committed, else the reject code it got."""
    node.coordinator.submit(tx)
    result = node.round(time)
    if result.committed is not None and tx in result.committed.transactions:
        return "ok"
    return node.coordinator.rejected[tx.txid].code
