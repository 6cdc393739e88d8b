"""Merkle trees over transactions (RFC 6962 domain separation, odd nodes promoted) and inclusion proofs."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.ledger.crypto import sha256
from gridledger.ledger.kinds.transfer import Witness
from gridledger.ledger.merkle import EMPTY_ROOT, leaf_hash, merkle_proof, merkle_root, node_hash, verify_proof

if TYPE_CHECKING:
    from conftest import Net

leaf_lists = st.lists(st.binary(max_size=40), min_size=1, max_size=40, unique=True).map(
    lambda xs: [leaf_hash(x) for x in xs]
)


def test_small_trees() -> None:
    a, b, c = (leaf_hash(x) for x in (b"a", b"b", b"c"))
    assert merkle_root([]) == EMPTY_ROOT == bytes(32)
    assert merkle_root([a]) == a
    assert merkle_root([a, b]) == node_hash(a, b) == sha256(b"\x01" + a + b)
    assert merkle_root([a, b, c]) == node_hash(node_hash(a, b), c)  # c is promoted, not paired with itself
    assert leaf_hash(b"a") == sha256(b"\x00a")


def test_no_duplicate_leaf_ambiguity() -> None:
    """CVE-2012-2459: with self-pairing, [a, b, c] and [a, b, c, c] would share a root."""
    a, b, c = (leaf_hash(x) for x in (b"a", b"b", b"c"))
    assert merkle_root([a, b, c]) != merkle_root([a, b, c, c])


def test_a_leaf_never_passes_for_an_inner_node() -> None:
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert leaf_hash(a + b) != node_hash(a, b)
    assert not verify_proof(leaf_hash(a + b), [], merkle_root([a, b]))


@settings(max_examples=150, deadline=None)
@given(leaf_lists, st.data())
def test_every_proof_verifies_and_no_forgery_does(leaves: list[bytes], data: st.DataObject) -> None:
    root = merkle_root(leaves)
    i = data.draw(st.integers(0, len(leaves) - 1))
    proof = merkle_proof(leaves, i)
    assert verify_proof(leaves[i], proof, root)
    assert len(proof) <= max(len(leaves) - 1, 0).bit_length()
    assert not verify_proof(sha256(leaves[i]), proof, root)
    if proof:  # any change to one step of the path (its side or its hash) breaks it
        j = data.draw(st.integers(0, len(proof) - 1))
        left, sibling = proof[j]
        assert not verify_proof(leaves[i], [*proof[:j], (not left, sibling), *proof[j + 1 :]], root)
        assert not verify_proof(leaves[i], [*proof[:j], (left, sha256(sibling)), *proof[j + 1 :]], root)
        assert not verify_proof(leaves[i], proof[:j] + proof[j + 1 :], root)
    if len(leaves) > 1:
        other = data.draw(st.sampled_from([k for k in range(len(leaves)) if k != i]))
        assert not verify_proof(leaves[other], proof, root)


def test_proof_index_out_of_range() -> None:
    with pytest.raises(IndexError):
        merkle_proof([leaf_hash(b"a")], 1)
    with pytest.raises(IndexError):
        merkle_proof([], 0)


def test_block_root_covers_witnesses_but_txid_does_not(net: Net) -> None:
    """Changing a signature leaves the txid alone but changes the block's Merkle root (and so its hash)."""
    tx = net.pay("buyer", net.wallets["buyer"].coins[next(iter(net.wallets["buyer"].coins))].asset)
    other = replace(tx, witnesses=(Witness(tx.witnesses[0].pubkey, bytes(64)),))
    assert other.txid == tx.txid
    a, b = net.next_block(tx), net.next_block(other)
    assert a.compute_merkle_root() != b.compute_merkle_root()
    leaves = [leaf_hash(t.encode()) for t in a.transactions]
    assert verify_proof(leaves[0], merkle_proof(leaves, 0), a.header.merkle_root)
