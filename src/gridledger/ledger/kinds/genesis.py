"""GENESIS (kind 0): the parameters of a chain, the only transaction of its block 0.

The genesis names the chain's rule set (identifier and version, :mod:`gridledger.ledger.ruleset`): which kinds are
valid on the chain, its whole-block checks and its consensus. Every verifier takes the rules from there, never
from what its process happens to have imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from gridledger.ledger.crypto import PUBKEY_BYTES
from gridledger.ledger.encoding import Reader, Writer, check_name
from gridledger.ledger.errors import Reject
from gridledger.ledger.transactions import KindRules, Transaction, TxKind

if TYPE_CHECKING:
    from gridledger.ledger.state import LedgerState


@dataclass(frozen=True)
class Genesis(Transaction):
    """Chain parameters, the only transaction of block 0.

    ``slot_seconds``: market interval length (s); ``start_time``: Unix time (s) of slot 0; ``dso_pubkey``: the key
    that signs DSO policy; ``proposers``: public keys allowed to propose blocks (the coordinators);
    ``max_issue_slots``: longest interval one meter issue may cover; ``ruleset``, ``ruleset_version``: the rule
    set the chain runs (``petra``: coordinator-only PETra; ``han``, ``nan``, ``fan``, ``head``: the PoEf tiers).
    """

    KIND: ClassVar[TxKind] = TxKind.GENESIS
    chain: str
    slot_seconds: int
    start_time: int
    dso_pubkey: bytes
    proposers: tuple[bytes, ...]
    max_issue_slots: int = 7 * 96
    ruleset: str = "petra"
    ruleset_version: int = 1

    def write_body(self, w: Writer) -> None:
        w.name(self.chain, "chain name").u32(self.slot_seconds, "slot_seconds").u64(self.start_time, "start_time")
        w.fixed(self.dso_pubkey, PUBKEY_BYTES, "DSO public key").count(len(self.proposers), "proposers")
        for p in self.proposers:
            w.fixed(p, PUBKEY_BYTES, "proposer public key")
        w.u32(self.max_issue_slots, "max_issue_slots")
        w.name(self.ruleset, "rule set").u16(self.ruleset_version, "rule set version")

    def write_witness(self, w: Writer) -> None:
        pass

    @classmethod
    def read(cls, r: Reader) -> Genesis:
        chain, slot_seconds, start_time = r.name("chain name"), r.u32("slot_seconds"), r.u64("start_time")
        dso = r.take(PUBKEY_BYTES, "DSO public key")
        proposers = tuple(r.take(PUBKEY_BYTES, "proposer public key") for _ in range(r.count("proposers")))
        max_issue_slots = r.u32("max_issue_slots")
        ruleset, version = r.name("rule set"), r.u16("rule set version")
        genesis = cls(chain, slot_seconds, start_time, dso, proposers, max_issue_slots, ruleset, version)
        r.end_body()
        return genesis

    @property
    def chain_id(self) -> bytes:
        """A chain is named by its genesis transaction id."""
        return self.txid


def check_genesis(tx: Genesis) -> None:
    check_name(tx.chain, "chain name")
    check_name(tx.ruleset, "rule set")
    if not 1 <= tx.slot_seconds <= 86_400:
        raise Reject("bad-genesis-params", "slot_seconds must be 1..86400")
    if not tx.proposers:
        raise Reject("bad-genesis-params", "at least one proposer (coordinator) is required")
    if tx.max_issue_slots < 1:
        raise Reject("bad-genesis-params", "max_issue_slots must be at least 1")


def apply_genesis(state: LedgerState, tx: Genesis, slot: int, _: bool) -> None:
    # A second genesis could re-parameterise a running chain (new DSO key, new proposers): block 0 only.
    raise Reject("bad-genesis-misplaced", "a genesis transaction may only appear in block 0")


RULES = KindRules(Genesis, check_genesis, apply_genesis)
