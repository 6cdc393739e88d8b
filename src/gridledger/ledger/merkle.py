"""Merkle trees over transactions, and inclusion proofs.

Leaves are SHA-256(0x00 ‖ encoded transaction); inner nodes are SHA-256(0x01 ‖ left ‖ right) (RFC 6962 style
domain separation, so a leaf can never pass for a node). An odd node at the end of a level is promoted
unchanged rather than paired with itself, which avoids Bitcoin's duplicate-leaf ambiguity (CVE-2012-2459).
The root of an empty list is 32 zero bytes.
"""

from __future__ import annotations

from gridledger.ledger.crypto import HASH_BYTES, sha256

EMPTY_ROOT = bytes(HASH_BYTES)


def leaf_hash(data: bytes) -> bytes:
    return sha256(b"\x00" + data)


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


def merkle_root(leaves: list[bytes]) -> bytes:
    """Root over already-hashed leaves."""
    if not leaves:
        return EMPTY_ROOT
    level = leaves
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def merkle_proof(leaves: list[bytes], index: int) -> list[tuple[bool, bytes]]:
    """The path from leaf ``index`` to the root: (sibling is on the left, sibling hash) per level."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} out of range 0..{len(leaves) - 1}")
    path: list[tuple[bool, bytes]] = []
    level, i = leaves, index
    while len(level) > 1:
        sibling = i ^ 1
        if sibling < len(level):
            path.append((sibling < i, level[sibling]))
        nxt = [node_hash(level[j], level[j + 1]) for j in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level, i = nxt, i // 2
    return path


def verify_proof(leaf: bytes, path: list[tuple[bool, bytes]], root: bytes) -> bool:
    """True iff ``path`` leads from the hashed ``leaf`` to ``root``."""
    h = leaf
    for left, sibling in path:
        h = node_hash(sibling, h) if left else node_hash(h, sibling)
    return h == root
