"""Transactions: one shared envelope, one class per kind.

Envelope: ``version u8 | kind u8 | body | witness``. The transaction id is SHA-256 over ``version | kind | body``
(the witness — signatures — is excluded, as in Bitcoin's segregated witness; the ``wtxid`` covers the witness
too), and every signature signs
SHA-256(``"gridledger/sighash/v1" | chain_id | txid``), which binds it to one chain of one tier.
The Merkle leaf of a transaction in a block covers the whole encoding, witness included.

Every kind is one module of :mod:`gridledger.ledger.kinds` (its class, its context-free checks, its contextual
checks and state change); :mod:`gridledger.ledger.kinds` also decodes every kind. Which kinds are *valid* on a
chain is its rule set's choice (:mod:`gridledger.ledger.ruleset`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar

from gridledger.ledger.assets import Output
from gridledger.ledger.crypto import sha256
from gridledger.ledger.encoding import FORMAT_VERSION, Reader, Writer

if TYPE_CHECKING:
    from gridledger.ledger.state import LedgerState

_SIGHASH_TAG = b"gridledger/sighash/v1"


class TxKind(IntEnum):
    """Transaction kinds; values are part of the encoding and never reused."""

    GENESIS = 0
    TRANSFER = 1
    METER_ISSUE = 2
    DSO_POLICY = 3
    READING = 4
    ANCHOR = 5
    ALARM = 6
    REWARD = 7
    READING_BATCH = 8


def sighash(chain_id: bytes, txid: bytes) -> bytes:
    """The 32-byte message every signature of transaction ``txid`` on chain ``chain_id`` signs."""
    return sha256(_SIGHASH_TAG + chain_id + txid)


class Transaction:
    """Base of all kinds: subclasses define ``KIND``, ``write_body``, ``write_witness`` and ``read``."""

    KIND: ClassVar[TxKind]

    def write_body(self, w: Writer) -> None:
        raise NotImplementedError

    def write_witness(self, w: Writer) -> None:
        raise NotImplementedError

    @classmethod
    def read(cls, r: Reader) -> Transaction:
        """Read body then witness; call ``r.end_body()`` between the two."""
        raise NotImplementedError

    @cached_property
    def body_bytes(self) -> bytes:
        w = Writer().u8(FORMAT_VERSION).u8(self.KIND)
        self.write_body(w)
        return w.bytes()

    @cached_property
    def txid(self) -> bytes:
        return sha256(self.body_bytes)

    @cached_property
    def wtxid(self) -> bytes:
        """SHA-256 of the whole encoding, witness included: two copies of a transaction with different signatures
        share a txid but not a wtxid (mempools key their copies by it)."""
        return sha256(self.raw)

    @cached_property
    def raw(self) -> bytes:
        """The canonical encoding (computed once: transactions are immutable)."""
        w = Writer().raw(self.body_bytes)
        self.write_witness(w)
        return w.bytes()

    def encode(self) -> bytes:
        return self.raw

    def sighash(self, chain_id: bytes) -> bytes:
        return sighash(chain_id, self.txid)


@dataclass(frozen=True)
class KindRules:
    """The rules of one transaction kind, as a rule set lists them (one module per kind in ``ledger.kinds``).

    ``check(tx)``: the context-free checks (the transaction alone); ``apply(state, tx, slot, signatures_checked)``:
    the contextual checks against the ledger state at ``slot``, then the state change (the caller rolls back on
    ``Reject``).
    """

    cls: type[Transaction]
    check: Callable[[Transaction], None]
    apply: Callable[[LedgerState, Transaction, int, bool], None]

    @property
    def kind(self) -> TxKind:
        return self.cls.KIND


def write_outputs(w: Writer, outputs: tuple[Output, ...], what: str) -> None:
    """Write a counted list of outputs (the layout every kind that creates outputs shares)."""
    w.count(len(outputs), what)
    for o in outputs:
        w.raw(o.encode())
