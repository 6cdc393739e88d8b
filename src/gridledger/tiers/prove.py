"""Merkle proofs that a reading on a HAN chain is covered by the head-end chain.

A :class:`CoverageProof` is a chain of links, one per tier. Each link shows that an item (first the reading, then
an anchor) is a transaction of a block — its Merkle path to the block header's root — and, below the head-end,
that the block's hash is covered by an anchor on the parent chain — its path to the anchor's root. The last link
ends at a head-end block header. :func:`check_proof` recomputes every hash from the reading up; it needs nothing
but the proof and the hash of the head-end block at that height, which the verifier takes from its own copy of
the head-end chain (whose blocks carry quorum certificates). Intermediate headers need no signatures: their hashes
are committed by the anchors above them.

A minute of a READING_BATCH is proven by its batch: the index finds the batch by the minute's id (its reading view's
txid), the proof's item is the whole batch, and the verifier takes the minute from it
(``decode_transaction(proof.reading).readings``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gridledger.chain import Chain
from gridledger.ledger.block import BlockHeader
from gridledger.ledger.encoding import Reader
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds import decode_transaction
from gridledger.ledger.kinds.anchor import Anchor
from gridledger.ledger.kinds.reading_batch import readings_of
from gridledger.ledger.merkle import leaf_hash, merkle_proof, verify_proof
from gridledger.ledger.ruleset import Tier, ruleset_of

Path = list[tuple[bool, bytes]]


class ProofError(Exception):
    """No proof can be built (unknown reading, blocks not yet anchored up to the head-end)."""


@dataclass(frozen=True)
class Link:
    """One tier of a proof: ``item`` (raw transaction) is at ``tx_path`` in the block ``header``; below the
    head-end, the block's hash is at ``anchor_path`` under the root of ``anchor`` (raw) on the parent chain."""

    chain: str
    header: BlockHeader
    item: bytes
    tx_path: Path
    anchor: bytes | None = None
    anchor_path: Path | None = None


@dataclass(frozen=True)
class CoverageProof:
    links: tuple[Link, ...]

    @property
    def reading(self) -> bytes:
        return self.links[0].item

    @property
    def head(self) -> BlockHeader:
        """The head-end block header the proof ends at."""
        return self.links[-1].header

    def to_json(self) -> dict:
        def path(p: Path | None) -> list | None:
            return None if p is None else [{"left": left, "hash": h.hex()} for left, h in p]

        return {
            "links": [
                {
                    "chain": link.chain,
                    "header": link.header.encode().hex(),
                    "item": link.item.hex(),
                    "tx_path": path(link.tx_path),
                    "anchor": None if link.anchor is None else link.anchor.hex(),
                    "anchor_path": path(link.anchor_path),
                }
                for link in self.links
            ]
        }

    @classmethod
    def from_json(cls, data: dict) -> CoverageProof:
        def path(p: list | None) -> Path | None:
            return None if p is None else [(bool(e["left"]), bytes.fromhex(e["hash"])) for e in p]

        links = []
        for e in data["links"]:
            r = Reader(bytes.fromhex(e["header"]))
            header = BlockHeader.read(r)
            r.end("block header")
            anchor = None if e["anchor"] is None else bytes.fromhex(e["anchor"])
            links.append(
                Link(e["chain"], header, bytes.fromhex(e["item"]), path(e["tx_path"]), anchor, path(e["anchor_path"]))
            )
        if not links:
            raise Reject("bad-proof-empty", "the proof has no links")
        return cls(tuple(links))


def check_proof(proof: CoverageProof, head_chain_id: bytes, head_hash: bytes) -> list[str]:
    """Recompute the proof from the reading up; returns one line per step; ``Reject`` at the first mismatch.

    ``head_chain_id``, ``head_hash``: the verifier's head-end chain and the hash of its block at
    ``proof.head.height``.
    """
    if not proof.links:
        raise Reject("bad-proof-empty", "the proof has no links")
    if proof.head.chain_id != head_chain_id:
        raise Reject("bad-proof-head", "the proof does not end on the head-end chain")
    lines = []
    item = proof.links[0].item
    for i, link in enumerate(proof.links):
        h = link.header
        if link.item != item:
            raise Reject("bad-proof-item", f"link {i} proves another transaction than the one below it")
        if not verify_proof(leaf_hash(item), link.tx_path, h.merkle_root):
            raise Reject("bad-proof-tx-path", f"{link.chain}: the transaction is not under block {h.height}'s root")
        lines.append(f"{link.chain}: tx in block {h.height} {h.hash.hex()[:16]}… ({len(link.tx_path)} hashes)")
        last = i == len(proof.links) - 1
        if last:
            break
        if link.anchor is None or link.anchor_path is None:
            raise Reject("bad-proof-anchor", f"{link.chain}: block {h.height} has no anchor above it")
        try:
            anchor = decode_transaction(link.anchor)
        except Reject as e:
            raise Reject("bad-proof-anchor", f"{link.chain}: anchor does not decode: {e.message}") from None
        if not isinstance(anchor, Anchor) or anchor.child != h.chain_id or not anchor.covers(h.height):
            raise Reject("bad-proof-anchor", f"{link.chain}: the anchor does not name block {h.height} of this chain")
        if not verify_proof(leaf_hash(h.hash), link.anchor_path, anchor.root):
            raise Reject("bad-proof-anchor-path", f"{link.chain}: block {h.height}'s hash is not under the anchor root")
        lines.append(
            f"  anchored as block {h.height} of {anchor.first}..{anchor.last} ({len(link.anchor_path)} hashes)"
        )
        item = link.anchor
    if proof.head.hash != head_hash:
        raise Reject("bad-proof-head", f"head-end block {proof.head.height} is not the one in the head-end chain")
    lines.append(f"head-end block {proof.head.height} {proof.head.hash.hex()[:16]}… is in the head-end chain")
    return lines


class Index:
    """Where things are in a set of chains: transactions by txid (and a batch by its minutes' ids), anchors by child
    chain."""

    def __init__(self, chains: Iterable[Chain]) -> None:
        self.chains: dict[bytes, Chain] = {c.chain_id: c for c in chains}
        self.txs: dict[bytes, tuple[bytes, int, int]] = {}
        self.anchors: dict[bytes, list[tuple[bytes, int, int, Anchor]]] = {}
        for cid, chain in self.chains.items():
            for block in chain.blocks(1):
                for i, tx in enumerate(block.transactions):
                    self.txs.setdefault(tx.txid, (cid, block.height, i))
                    for r in readings_of(tx):  # a batch's minutes are found by their own ids too
                        self.txs.setdefault(r.txid, (cid, block.height, i))
                    if isinstance(tx, Anchor):
                        self.anchors.setdefault(tx.child, []).append((cid, block.height, i, tx))

    def name(self, cid: bytes) -> str:
        return self.chains[cid].genesis.chain

    def link(self, cid: bytes, height: int, index: int) -> tuple[BlockHeader, bytes, Path]:
        block = next(self.chains[cid].blocks(height))
        leaves = [leaf_hash(raw) for raw in block.tx_bytes]
        return block.header, block.tx_bytes[index], merkle_proof(leaves, index)

    def anchor_of(self, cid: bytes, height: int) -> tuple[bytes, int, int, Anchor] | None:
        return next((a for a in self.anchors.get(cid, ()) if a[3].covers(height)), None)


def prove(index: Index, txid: bytes) -> CoverageProof:
    """The proof that transaction ``txid`` (a reading on a HAN chain, or anything below the head-end) is covered
    by the head-end chain; ``ProofError`` if it is unknown or not yet anchored all the way up."""
    where = index.txs.get(txid)
    if where is None:
        raise ProofError(f"no transaction {txid.hex()} in these chains")
    cid, height, i = where
    links = []
    while True:
        header, item, path = index.link(cid, height, i)
        chain = index.name(cid)
        genesis = index.chains[cid].genesis
        if ruleset_of(genesis).tier is Tier.HEAD:
            links.append(Link(chain, header, item, path))
            return CoverageProof(tuple(links))
        above = index.anchor_of(cid, height)
        if above is None:
            raise ProofError(f"block {height} of {chain} is not anchored yet")
        parent, p_height, p_index, anchor = above
        hashes = [b.hash for b in _blocks(index.chains[cid], anchor.first, anchor.last)]
        a_path = merkle_proof([leaf_hash(h) for h in hashes], height - anchor.first)
        links.append(Link(chain, header, item, path, anchor.raw, a_path))
        cid, height, i = parent, p_height, p_index


def _blocks(chain: Chain, first: int, last: int):
    for block in chain.blocks(first):
        if block.height > last:
            return
        yield block


def head_hash(head: Chain, height: int) -> bytes:
    """The hash of block ``height`` of the verifier's head-end chain (zero bytes if it has none)."""
    block = next(head.blocks(height), None)
    return block.hash if block is not None and block.height == height else bytes(32)
