"""ANCHOR (kind 5): the transaction by which every tier anchors its blocks into the tier above.

An anchor on a parent chain commits to the blocks ``first..last`` of one child chain by the Merkle root over their
hashes (leaves ``SHA-256(0x00 ‖ block hash)``). Each child block is anchored exactly once, in order: the first
anchor of a child starts at its genesis block and carries the child's genesis transaction, from which the parent
learns the child's coordinators; every later anchor starts where the last one ended and must be signed by one of
those coordinators. The signer must also be a member the DSO authorized on the parent chain (a concentrator on
its FAN/WAN chain, a FAN/WAN coordinator at the head-end), and the child's tier must be the one just below.

Because a block hash covers the block's Merkle root, an anchor covers every transaction of the anchored blocks:
a reading on a HAN chain is linked to the head-end chain by a chain of Merkle proofs (:mod:`.prove`).

Layout: ``version ‖ kind ‖ child chain id 32 ‖ first u64 ‖ last u64 ‖ root 32 ‖ u32 n ‖ child genesis (n bytes;
only when first = 0) ‖ signer pubkey 32  ‖  signature 64``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from gridledger.ledger import crypto, kinds
from gridledger.ledger.crypto import HASH_BYTES, PUBKEY_BYTES, SIGNATURE_BYTES, KeyPair
from gridledger.ledger.encoding import Reader, Writer
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.ledger.members import member_of_key
from gridledger.ledger.merkle import leaf_hash, merkle_root
from gridledger.ledger.transactions import KindRules, Transaction, TxKind

if TYPE_CHECKING:
    from gridledger.ledger.state import LedgerState

#: Most blocks one anchor may cover (bounds the work of building and checking its root).
MAX_ANCHOR_BLOCKS = 100_000


@dataclass(frozen=True)
class Anchor(Transaction):
    KIND: ClassVar[TxKind] = TxKind.ANCHOR
    child: bytes
    first: int
    last: int
    root: bytes
    genesis: bytes
    signer: bytes
    signature: bytes = field(default=bytes(SIGNATURE_BYTES), compare=False)

    def write_body(self, w: Writer) -> None:
        w.fixed(self.child, HASH_BYTES, "child chain id").u64(self.first, "first height").u64(self.last, "last height")
        w.fixed(self.root, HASH_BYTES, "anchor root").blob(self.genesis, "child genesis")
        w.fixed(self.signer, PUBKEY_BYTES, "anchor signer")

    def write_witness(self, w: Writer) -> None:
        w.fixed(self.signature, SIGNATURE_BYTES, "anchor signature")

    @classmethod
    def read(cls, r: Reader) -> Anchor:
        child, first, last = r.take(HASH_BYTES, "child chain id"), r.u64("first height"), r.u64("last height")
        root, genesis = r.take(HASH_BYTES, "anchor root"), r.blob("child genesis")
        signer = r.take(PUBKEY_BYTES, "anchor signer")
        r.end_body()
        return cls(child, first, last, root, genesis, signer, r.take(SIGNATURE_BYTES, "anchor signature"))

    def covers(self, height: int) -> bool:
        return self.first <= height <= self.last

    def child_genesis(self) -> Genesis:
        """The child's genesis transaction carried by a first anchor."""
        try:
            tx = kinds.decode_transaction(self.genesis)
        except Reject as e:
            raise Reject("bad-anchor-genesis", f"child genesis does not decode: {e.message}") from None
        if not isinstance(tx, Genesis):
            raise Reject("bad-anchor-genesis", "the child genesis field holds another kind of transaction")
        return tx


def anchor_root(block_hashes: Sequence[bytes]) -> bytes:
    """The Merkle root an anchor stores over consecutive block hashes."""
    return merkle_root([leaf_hash(h) for h in block_hashes])


def make_anchor(
    parent_chain_id: bytes,
    child_chain_id: bytes,
    first: int,
    block_hashes: Sequence[bytes],
    key: KeyPair,
    child_genesis: Genesis | None = None,
) -> Anchor:
    """A signed anchor of the child blocks ``first .. first + len(block_hashes) − 1`` (genesis needed iff first = 0)."""
    raw_genesis = child_genesis.encode() if first == 0 and child_genesis is not None else b""
    tx = Anchor(
        child_chain_id, first, first + len(block_hashes) - 1, anchor_root(block_hashes), raw_genesis, key.public
    )
    return Anchor(tx.child, tx.first, tx.last, tx.root, tx.genesis, tx.signer, key.sign(tx.sighash(parent_chain_id)))


def check_anchor(tx: Anchor) -> None:
    """Context-free: a non-empty, bounded range; the child genesis exactly on a first anchor, naming the child."""
    if tx.last < tx.first:
        raise Reject("bad-anchor-range", f"anchor range {tx.first}..{tx.last} is empty")
    if tx.last - tx.first >= MAX_ANCHOR_BLOCKS:
        raise Reject("bad-anchor-range", f"anchor covers {tx.last - tx.first + 1} blocks; at most {MAX_ANCHOR_BLOCKS}")
    if (tx.first == 0) != bool(tx.genesis):
        raise Reject(
            "bad-anchor-genesis", "the first anchor of a chain (from height 0) and only it carries its genesis"
        )
    if tx.genesis:
        genesis = tx.child_genesis()
        kinds.check_transaction(genesis)
        if genesis.chain_id != tx.child:
            raise Reject("bad-anchor-genesis", "the carried genesis is not the anchored chain's")
        if tx.signer not in genesis.proposers:
            raise Reject("bad-anchor-signer", "the first anchor is not signed by a coordinator of the child chain")


def next_height_key(child: bytes) -> str:
    """State key of the next child height the parent expects an anchor to start at."""
    return f"anchor:{child.hex()}"


def coordinator_key(child: bytes, pubkey: bytes) -> str:
    """State key marking ``pubkey`` as a coordinator of the child chain (learned from its genesis)."""
    return f"anchor-coordinator:{child.hex()}:{pubkey.hex()}"


def apply_anchor(state: LedgerState, tx: Anchor, slot: int, _: bool) -> None:
    """Contextual: contiguous ranges per child, signed by a child coordinator who is a member here."""
    if tx.child == state.chain_id:
        raise Reject("bad-anchor-self", "a chain cannot anchor itself")
    if member_of_key(state, tx.signer, slot) is None:
        raise Reject("bad-anchor-signer-unknown", "the anchor signer is not a member authorized on this chain")
    expected = state.nonces.get(next_height_key(tx.child), 0)
    if tx.first != expected:
        code = "bad-anchor-gap" if tx.first > expected else "bad-anchor-overlap"
        raise Reject(code, f"anchor starts at child height {tx.first}; the next unanchored height is {expected}")
    if tx.genesis:
        genesis = tx.child_genesis()
        # imported here: the rule set table lists this kind, so it is complete only once this module is
        from gridledger.ledger.ruleset import ruleset_of

        here = state.ruleset.tier
        # The child's rule set must be known here: an unknown one (bad-genesis-ruleset) has no tier to check.
        there = ruleset_of(genesis).tier
        if here is None or there is None or there.parent != here:
            raise Reject("bad-anchor-tier", f"a {there} chain does not anchor into a {here} chain")
    elif not state.nonces.get(coordinator_key(tx.child, tx.signer)):
        raise Reject("bad-anchor-signer", "the anchor is not signed by a coordinator of the child chain")
    if not crypto.verify(tx.signer, tx.sighash(state.chain_id), tx.signature):
        raise Reject("bad-anchor-signature", "anchor signature is invalid")
    if tx.genesis:
        for pubkey in genesis.proposers:
            state.set_entry(state.nonces, "nonce", coordinator_key(tx.child, pubkey), 1)
    state.set_entry(state.nonces, "nonce", next_height_key(tx.child), tx.last + 1)


RULES = KindRules(Anchor, check_anchor, apply_anchor)
