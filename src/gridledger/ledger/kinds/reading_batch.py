"""READING_BATCH (kind 8): ``m`` consecutive minutes of one member's readings under one signature.

A READING (:mod:`.reading`) spends 64 of its 93 bytes on the member's Ed25519 signature. A batch shares the
signature, the envelope, the member and the first minute among ``m`` consecutive minutes of one member; every
minute keeps its own flags, ciphertext and GCM tag, sealed exactly as the READING of that minute would be (its
own per-reading key and nonce from (chain, member, minute), the same associated data), so each minute still
opens alone with its own disclosed key. Layout (columnar: all flags, then all ciphertexts)::

    version u8 ‖ kind u8 ‖ member u16 ‖ first minute u32 ‖ count u8 ‖ flags u8 × count
    ‖ (ciphertext ‖ GCM tag 16) × count  ‖  signature 64

73 + 21·m bytes for ``m`` plain minutes (each 1 flags + 4 energies + 16 tag), against 93·m as READINGs. Minute
``i`` (0-based) of the batch is minute ``first + i``. The *reading view* of that minute (:attr:`ReadingBatch.readings`)
is the unsigned READING ``(member, first + i, flags_i, sealed_i)``: the GCM associated data is the chain id and that
view's clear header, so a view opens with :func:`.reading.open_reading` and the chain's ``key_of``, and its txid
names the minute (the PoEf disclosure and an implausible-reading alarm refer to it). The batch's own txid and
signature cover all minutes; its Merkle leaf commits to every ciphertext.

Rules: those of a READING for every minute, through the same code (:func:`.reading.admit_minutes`, checked for
the whole run ``first..first + m − 1`` at once: the member is authorized and not banned at the block's slot, the
signature is the member's, the last minute ends by the end of the slot, the first follows the member's previous
reading), and the count is at most the rule set's ``max_reading_batch`` (``bad-reading-batch-count``). Decoding
is strict: a zero count (``bad-reading-batch-empty``), a minute past u32 (``bad-reading-batch-minute``), unknown
flags (``bad-reading-flags``), short columns (``bad-reading-length``, ``bad-encoding-truncated``) and trailing
bytes (``bad-encoding-trailing``) are refused. A meter that batches ``m`` minutes delivers a reading up to ``m``
minutes later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar

from gridledger.ledger.crypto import SIGNATURE_BYTES, KeyPair
from gridledger.ledger.encoding import Reader, Writer
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds.reading import (
    Reading,
    ReadingDevice,
    ReadingError,
    ReadingValues,
    admit_minutes,
    check_reading,
    sealed_size,
)
from gridledger.ledger.transactions import KindRules, Transaction, TxKind

if TYPE_CHECKING:
    from gridledger.ledger.state import LedgerState

#: Largest minute a reading can name (u32).
MAX_MINUTE = 0xFFFF_FFFF


@dataclass(frozen=True)
class ReadingBatch(Transaction):
    """Member ``member``'s signed readings of minutes ``first_minute .. first_minute + len(flags) − 1``."""

    KIND: ClassVar[TxKind] = TxKind.READING_BATCH
    member: int
    first_minute: int
    flags: tuple[int, ...]
    sealed: tuple[bytes, ...]
    signature: bytes = field(default=bytes(SIGNATURE_BYTES), compare=False)

    @property
    def count(self) -> int:
        """Minutes in the batch."""
        return len(self.flags)

    @property
    def last_minute(self) -> int:
        return self.first_minute + self.count - 1

    @cached_property
    def readings(self) -> tuple[Reading, ...]:
        """The unsigned reading view of each minute (opens with its own key: see the module docstring)."""
        return tuple(
            Reading(self.member, self.first_minute + i, f, s)
            for i, (f, s) in enumerate(zip(self.flags, self.sealed, strict=True))
        )

    def write_body(self, w: Writer) -> None:
        w.u16(self.member, "member index").u32(self.first_minute, "first minute")
        w.u8(self.count, "reading batch count")
        for f in self.flags:
            w.u8(f, "reading flags")
        for f, s in zip(self.flags, self.sealed, strict=True):
            w.fixed(s, sealed_size(f), "reading ciphertext")

    def write_witness(self, w: Writer) -> None:
        w.fixed(self.signature, SIGNATURE_BYTES, "reading signature")

    @classmethod
    def read(cls, r: Reader) -> ReadingBatch:
        member, first, count = r.u16("member index"), r.u32("first minute"), r.u8("reading batch count")
        flags = tuple(r.take(count, "reading batch flags"))
        sealed = tuple(r.take(sealed_size(f), "reading ciphertext") for f in flags)
        r.end_body()
        tx = cls(member, first, flags, sealed, r.take(SIGNATURE_BYTES, "reading signature"))
        check_reading_batch(tx)
        return tx

    def signed(self, chain_id: bytes, key: KeyPair) -> ReadingBatch:
        return ReadingBatch(self.member, self.first_minute, self.flags, self.sealed, key.sign(self.sighash(chain_id)))


def batch_of(readings: Sequence[Reading]) -> ReadingBatch:
    """The unsigned batch of unsigned readings of one member's consecutive minutes (``ReadingError`` if not)."""
    if not readings:
        raise ReadingError("a batch holds at least one reading")
    first = readings[0]
    for i, r in enumerate(readings):
        if r.member != first.member or r.minute != first.minute + i:
            raise ReadingError(f"reading {i} is not member {first.member}'s minute {first.minute + i}")
    return ReadingBatch(first.member, first.minute, tuple(r.flags for r in readings), tuple(r.sealed for r in readings))


def readings_of(tx: Transaction) -> tuple[Reading, ...]:
    """The readings a transaction carries: a READING itself, a batch's reading views, none for other kinds."""
    if isinstance(tx, Reading):
        return (tx,)
    if isinstance(tx, ReadingBatch):
        return tx.readings
    return ()


@dataclass
class BatchingDevice(ReadingDevice):
    """A reading device that reports ``batch_minutes`` consecutive minutes in one READING_BATCH (one signature).

    :meth:`report` holds each minute's values and returns the transactions to submit: a batch once
    ``batch_minutes`` consecutive minutes are held, or earlier what is held when a minute is skipped; a run of one
    minute goes out as a plain READING. With ``batch_minutes`` = 1 every minute is a READING at once. Each minute is
    sealed when its batch goes out, under its own key (the device never seals a minute twice).
    """

    batch_minutes: int = 1
    held: list[tuple[int, ReadingValues]] = field(default_factory=list, repr=False)

    def report(self, minute: int, values: ReadingValues) -> list[Transaction]:
        """Record the values of the interval ending with ``minute``; returns what is ready to submit. Values out of
        a reading's range are refused here (``ReadingError``), not when their batch is sealed."""
        values.check()
        last = self.held[-1][0] if self.held else self.last_minute
        if minute <= last:
            raise ReadingError(f"minute {minute} is not after this device's last reading ({last})")
        out = self.flush() if self.held and minute != last + 1 else []
        self.held.append((minute, values))
        if len(self.held) >= self.batch_minutes:
            out += self.flush()
        return out

    def flush(self) -> list[Transaction]:
        """Seal and sign what is held, in batches of at most ``batch_minutes`` (more can be held when the device
        was restored with a smaller ``batch_minutes`` than it held minutes for); nothing held: nothing to submit."""
        held, self.held = self.held, []
        n = max(1, self.batch_minutes)
        parts = [held[k : k + n] for k in range(0, len(held), n)]
        return [self.reading(*p[0]) if len(p) == 1 else self.batch(p[0][0], [v for _, v in p]) for p in parts]

    def batch(self, first_minute: int, values: Sequence[ReadingValues]) -> ReadingBatch:
        """The signed batch of ``values`` for minutes ``first_minute``, ``first_minute + 1``, …"""
        views = [self.seal_minute(first_minute + i, v) for i, v in enumerate(values)]
        return batch_of(views).signed(self.chain_id, self.key)


# ------------------------------------------------------------------ rules
def check_reading_batch(tx: ReadingBatch) -> None:
    """Context-free: at least one minute, minutes within u32, and every minute's reading checks."""
    if not isinstance(tx.flags, tuple) or not tx.flags:
        raise Reject("bad-reading-batch-empty", "a reading batch holds at least one minute")
    if not isinstance(tx.sealed, tuple) or len(tx.sealed) != len(tx.flags):
        n = len(tx.sealed) if isinstance(tx.sealed, tuple) else type(tx.sealed).__name__
        raise Reject("bad-reading-length", f"ciphertexts ({n}) are not one tuple entry per minute ({len(tx.flags)})")
    if type(tx.first_minute) is int and tx.last_minute > MAX_MINUTE:
        raise Reject("bad-reading-batch-minute", f"minutes {tx.first_minute}..{tx.last_minute} pass u32")
    for view in tx.readings:
        check_reading(view)


def apply_reading_batch(state: LedgerState, tx: ReadingBatch, slot: int, _: bool) -> None:
    """Contextual: at most the rule set's ``max_reading_batch`` minutes, then a reading's rules for each minute."""
    most = state.ruleset.max_reading_batch
    if tx.count > most:
        raise Reject(
            "bad-reading-batch-count", f"{tx.count} minutes in one batch; rule set {state.ruleset} allows {most}"
        )
    admit_minutes(state, tx, tx.member, tx.first_minute, tx.last_minute, slot)


RULES = KindRules(ReadingBatch, check_reading_batch, apply_reading_batch)
