"""Cross-tier checks that no single chain can make: anchors match the child blocks, prices match the tier above.

A parent chain cannot see its children, so the ledger rules only check who anchors and that ranges are contiguous
(:mod:`.anchor`). With every chain at hand, an auditor (``gridledger verify`` of a run folder) also checks that each
anchor's root is the Merkle root of the child's stored block hashes, that every child block up to the last anchor is
covered, and that every price policy below the head-end was committed on its parent first
(:mod:`gridledger.consensus.policy_sync`).
"""

from __future__ import annotations

from collections.abc import Iterable

from gridledger.chain import Chain
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds.anchor import Anchor, anchor_root


def check_anchors(chains: Iterable[Chain]) -> dict[str, int]:
    """Check every anchor against its child's blocks; returns the number of anchored blocks per child chain."""
    by_id = {c.chain_id: c for c in chains}
    hashes = {cid: [b.hash for b in c.blocks(0)] for cid, c in by_id.items()}
    covered: dict[bytes, int] = {}
    for chain in by_id.values():
        for block in chain.blocks(1):
            for i, tx in enumerate(block.transactions):
                if not isinstance(tx, Anchor) or tx.child not in by_id:
                    continue
                child = hashes[tx.child]
                where = f"{chain.genesis.chain} block {block.height} tx {i}"
                if tx.last >= len(child):
                    raise Reject(
                        "bad-audit-anchor",
                        f"{where} anchors {by_id[tx.child].genesis.chain} up to block {tx.last}, "
                        f"which it does not have",
                    )
                if anchor_root(child[tx.first : tx.last + 1]) != tx.root:
                    raise Reject(
                        "bad-audit-anchor",
                        f"{where}: root of blocks {tx.first}..{tx.last} of "
                        f"{by_id[tx.child].genesis.chain} differs from the stored blocks (altered or forked child)",
                    )
                covered[tx.child] = max(covered.get(tx.child, 0), tx.last + 1)
    return {by_id[cid].genesis.chain: n for cid, n in covered.items()}


def check_prices(child: Chain, parent: Chain) -> int:
    """Every price policy on ``child`` is also on ``parent`` (same effective slot and prices); returns how many."""
    theirs = {(p.effective_slot, p.prices) for p in parent.state.policy.policies if p.prices is not None}
    n = 0
    for p in child.state.policy.policies:
        if p.prices is None:
            continue
        if (p.effective_slot, p.prices) not in theirs:
            raise Reject(
                "bad-policy-fake-price",
                f"{child.genesis.chain} holds prices {p.prices} from slot {p.effective_slot} "
                f"that {parent.genesis.chain} lacks",
            )
        n += 1
    return n
