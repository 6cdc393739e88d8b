"""ALARM (kind 6): the transaction that makes sure an anomaly is recorded on the ledger, never silently passed.

The paper's answer to majority attacks and tampering (Olivares-Rojas et al. 2023, §4.2) is an alarm system that
reports abnormal consumption/production transactions for later analysis. An alarm names what it is about
(``subject``: the txid of a reading, of a DSO policy, or another 32-byte identifier), why (``code``), which
detector raised it (``detector``, e.g. ``band`` for the default plausibility check) and who raised it
(``raiser``: a coordinator of the chain, the DSO, or a member authorized on the chain). It carries no measured
value: an alarm about a reading does not reveal the reading.

Layout: ``version ‖ kind ‖ code u8 ‖ subject 32 ‖ detector name ‖ raiser pubkey 32  ‖  signature 64``.

When the coordinator's plausibility check flags a reading it adds an alarm about it to the same block; the
committee checks the alarm is there or votes no (:mod:`gridledger.consensus.poef`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, ClassVar

from gridledger.ledger import crypto
from gridledger.ledger.crypto import HASH_BYTES, PUBKEY_BYTES, SIGNATURE_BYTES, KeyPair
from gridledger.ledger.encoding import Reader, Writer, check_name
from gridledger.ledger.errors import Reject
from gridledger.ledger.members import member_of_key
from gridledger.ledger.transactions import KindRules, Transaction, TxKind

if TYPE_CHECKING:
    from gridledger.ledger.state import LedgerState


class AlarmCode(IntEnum):
    """Why an alarm was raised; values are part of the encoding."""

    IMPLAUSIBLE_READING = 1  # the analytics plausibility check flagged a reading
    FAKE_PRICE = 2  # a price differs from the one the coordinator's tier holds
    COORDINATOR_DOWN = 3  # a backup coordinator took over
    TAMPERING = 4  # a device or its digital twin reports tampering


_CODES = {int(c) for c in AlarmCode}


@dataclass(frozen=True)
class Alarm(Transaction):
    KIND: ClassVar[TxKind] = TxKind.ALARM
    code: int
    subject: bytes
    detector: str
    raiser: bytes
    signature: bytes = field(default=bytes(SIGNATURE_BYTES), compare=False)

    def write_body(self, w: Writer) -> None:
        w.u8(self.code, "alarm code").fixed(self.subject, HASH_BYTES, "alarm subject")
        w.name(self.detector, "detector").fixed(self.raiser, PUBKEY_BYTES, "raiser public key")

    def write_witness(self, w: Writer) -> None:
        w.fixed(self.signature, SIGNATURE_BYTES, "alarm signature")

    @classmethod
    def read(cls, r: Reader) -> Alarm:
        code, subject = r.u8("alarm code"), r.take(HASH_BYTES, "alarm subject")
        detector, raiser = r.name("detector"), r.take(PUBKEY_BYTES, "raiser public key")
        r.end_body()
        return cls(code, subject, detector, raiser, r.take(SIGNATURE_BYTES, "alarm signature"))


def raise_alarm(chain_id: bytes, code: AlarmCode, subject: bytes, detector: str, key: KeyPair) -> Alarm:
    """A signed alarm about ``subject`` raised by ``key`` on chain ``chain_id``."""
    tx = Alarm(int(code), subject, detector, key.public)
    return Alarm(tx.code, subject, detector, key.public, key.sign(tx.sighash(chain_id)))


def check_alarm(tx: Alarm) -> None:
    """Context-free: a known code and a valid detector name."""
    if tx.code not in _CODES:
        raise Reject("bad-alarm-code", f"unknown alarm code {tx.code!r}")
    check_name(tx.detector, "detector")


def apply_alarm(state: LedgerState, tx: Alarm, slot: int, _: bool) -> None:
    """Contextual: raised and signed by a coordinator, the DSO or a member authorized at this slot."""
    g = state.genesis
    if tx.raiser not in g.proposers and tx.raiser != g.dso_pubkey and member_of_key(state, tx.raiser, slot) is None:
        raise Reject("bad-alarm-raiser", "alarm raised by a key that is no coordinator, DSO or member of this chain")
    if not crypto.verify(tx.raiser, tx.sighash(state.chain_id), tx.signature):
        raise Reject("bad-alarm-signature", "alarm signature is invalid")


RULES = KindRules(Alarm, check_alarm, apply_alarm)
