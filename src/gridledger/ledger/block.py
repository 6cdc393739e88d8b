"""Blocks: a header, the proposer's signature, a quorum certificate, and the transactions.

Header: ``version u8 | chain_id 32 | height u64 | prev_hash 32 | merkle_root 32 | time u64 | proposer 32``.
``time`` is Unix time in whole seconds; the block's slot is ``(time − start_time) // slot_seconds``.
The block hash is SHA-256 of the header; the proposer signs SHA-256("gridledger/block/v1" ‖ hash), and so does
every vote of the quorum certificate (checked by the consensus layer, which decides who may vote).
Encoding: ``header | proposer signature 64 | u16 votes × (pubkey 32, signature 64) | u32 n | n × (u32 len, tx)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from gridledger.ledger.crypto import HASH_BYTES, PUBKEY_BYTES, SIGNATURE_BYTES, KeyPair, sha256
from gridledger.ledger.encoding import Reader, Writer
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds import decode_transaction
from gridledger.ledger.merkle import leaf_hash, merkle_root
from gridledger.ledger.transactions import Transaction

_BLOCK_TAG = b"gridledger/block/v1"
ZERO_HASH = bytes(HASH_BYTES)
#: Most transactions one block may hold.
MAX_BLOCK_TXS = 100_000

#: How far a block's time may be ahead of the validating node's clock, in slot lengths of its chain
#: (``bad-blk-time-future``; checked only where a node passes its clock in, never when a stored chain is replayed).
MAX_FUTURE_SLOTS = 2


@dataclass(frozen=True)
class BlockHeader:
    """A block header; ``time`` is Unix time in whole seconds (not a slot index: a DSO policy's
    ``effective_slot`` is one)."""

    chain_id: bytes
    height: int
    prev_hash: bytes
    merkle_root: bytes
    time: int
    proposer: bytes

    def encode(self) -> bytes:
        w = Writer().u8(1).fixed(self.chain_id, HASH_BYTES, "chain id").u64(self.height, "height")
        w.fixed(self.prev_hash, HASH_BYTES, "previous hash").fixed(self.merkle_root, HASH_BYTES, "merkle root")
        return w.u64(self.time, "time").fixed(self.proposer, PUBKEY_BYTES, "proposer").bytes()

    @classmethod
    def read(cls, r: Reader) -> BlockHeader:
        r.version("block header")
        return cls(
            r.take(HASH_BYTES, "chain id"),
            r.u64("height"),
            r.take(HASH_BYTES, "previous hash"),
            r.take(HASH_BYTES, "merkle root"),
            r.u64("time"),
            r.take(PUBKEY_BYTES, "proposer"),
        )

    @cached_property
    def hash(self) -> bytes:
        return sha256(self.encode())

    def signing_message(self) -> bytes:
        """What the proposer and every voter sign."""
        return sha256(_BLOCK_TAG + self.hash)


@dataclass(frozen=True)
class Vote:
    """One committee member's signature over a block."""

    pubkey: bytes
    signature: bytes


@dataclass(frozen=True)
class Block:
    header: BlockHeader
    signature: bytes
    transactions: tuple[Transaction, ...]
    certificate: tuple[Vote, ...] = ()

    @property
    def height(self) -> int:
        return self.header.height

    @property
    def hash(self) -> bytes:
        return self.header.hash

    @cached_property
    def tx_bytes(self) -> tuple[bytes, ...]:
        return tuple(tx.encode() for tx in self.transactions)

    def encode(self) -> bytes:
        raw = self.__dict__.get("_raw")
        if raw is not None:  # decoded: the bytes it came from (canonical, so the same as re-encoding)
            return raw
        w = Writer().raw(self.header.encode()).fixed(self.signature, SIGNATURE_BYTES, "block signature")
        w.count(len(self.certificate), "votes")
        for v in self.certificate:
            w.fixed(v.pubkey, PUBKEY_BYTES, "voter").fixed(v.signature, SIGNATURE_BYTES, "vote signature")
        w.u32(len(self.transactions), "transaction count")
        for raw in self.tx_bytes:
            w.blob(raw, "transaction")
        return w.bytes()

    @classmethod
    def decode(cls, raw: bytes) -> Block:
        """Decode a block; a malformed transaction is located by its index."""
        r = Reader(raw)
        header = BlockHeader.read(r)
        header.__dict__["hash"] = sha256(r.data[: r.pos])  # the header's canonical bytes, as received
        signature = r.take(SIGNATURE_BYTES, "block signature")
        votes = tuple(
            Vote(r.take(PUBKEY_BYTES, "voter"), r.take(SIGNATURE_BYTES, "vote signature")) for _ in range(r.count())
        )
        n = r.u32("transaction count")
        if n > MAX_BLOCK_TXS:
            raise Reject(
                "bad-blk-length", f"{n} transactions; a block holds at most {MAX_BLOCK_TXS}", height=header.height
            )
        raws = []
        txs = []
        for i in range(n):
            try:
                tx_raw = r.blob("transaction")
                txs.append(decode_transaction(tx_raw))
            except Reject as e:
                raise e.at(tx_index=i, height=header.height) from None
            raws.append(tx_raw)
        r.end("block")
        block = cls(header, signature, tuple(txs), votes)
        block.__dict__["tx_bytes"] = tuple(raws)
        block.__dict__["_raw"] = r.data
        return block

    def compute_merkle_root(self) -> bytes:
        return merkle_root([leaf_hash(raw) for raw in self.tx_bytes])


def make_block(
    chain_id: bytes,
    height: int,
    prev_hash: bytes,
    time: int,
    transactions: tuple[Transaction, ...],
    proposer: KeyPair,
    certificate: tuple[Vote, ...] = (),
) -> Block:
    """Build and sign a block over ``transactions``."""
    raws = tuple(tx.encode() for tx in transactions)
    root = merkle_root([leaf_hash(raw) for raw in raws])
    header = BlockHeader(chain_id, height, prev_hash, root, time, proposer.public)
    block = Block(header, proposer.sign(header.signing_message()), tuple(transactions), certificate)
    block.__dict__["tx_bytes"] = raws
    return block
