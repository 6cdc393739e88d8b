"""ALARM (kind 6): the transaction that makes sure an anomaly is recorded on the ledger, never silently passed.

The paper's answer to majority attacks and tampering (Olivares-Rojas et al. 2023, §4.2) is an alarm system that
reports abnormal consumption/production transactions for later analysis. An alarm names what it is about
(``subject``: the txid of a reading, of a DSO policy, or another 32-byte identifier), why (``code``), which
detector raised it (``detector``, e.g. ``band`` for the default plausibility check) and who raised it
(``raiser``: a coordinator of the chain, the DSO, or a member authorized on the chain) and at which height of
the chain (``height``: the height of the block being made when the anomaly was seen; a coordinator taking over
names the height it takes over at). It carries no measured value: an alarm about a reading does not reveal the
reading.

The height makes two occurrences of the same anomaly two transactions (every fail-over between the same two
coordinators happens at its own height); the chain refuses an alarm raised for a height it has not reached
(``bad-alarm-height``) and an alarm it committed before (``bad-alarm-replay``: the state records each committed
alarm's txid under ``alarm:<txid hex>``), so an old alarm resubmitted by anyone is never committed twice.

Layout: ``version ‖ kind ‖ code u8 ‖ subject 32 ‖ height u64 ‖ detector name ‖ raiser pubkey 32  ‖  signature 64``.

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
    height: int
    detector: str
    raiser: bytes
    signature: bytes = field(default=bytes(SIGNATURE_BYTES), compare=False)

    def write_body(self, w: Writer) -> None:
        w.u8(self.code, "alarm code").fixed(self.subject, HASH_BYTES, "alarm subject").u64(self.height, "alarm height")
        w.name(self.detector, "detector").fixed(self.raiser, PUBKEY_BYTES, "raiser public key")

    def write_witness(self, w: Writer) -> None:
        w.fixed(self.signature, SIGNATURE_BYTES, "alarm signature")

    @classmethod
    def read(cls, r: Reader) -> Alarm:
        code, subject, height = r.u8("alarm code"), r.take(HASH_BYTES, "alarm subject"), r.u64("alarm height")
        detector, raiser = r.name("detector"), r.take(PUBKEY_BYTES, "raiser public key")
        r.end_body()
        return cls(code, subject, height, detector, raiser, r.take(SIGNATURE_BYTES, "alarm signature"))


def raise_alarm(
    chain_id: bytes, code: AlarmCode, subject: bytes, height: int, detector: str, key: KeyPair
) -> Alarm:
    """A signed alarm about ``subject`` raised by ``key`` at ``height`` of chain ``chain_id``."""
    tx = Alarm(int(code), subject, height, detector, key.public)
    return Alarm(tx.code, subject, height, detector, key.public, key.sign(tx.sighash(chain_id)))


def alarm_key(txid: bytes) -> str:
    """State key recording that alarm ``txid`` is committed."""
    return f"alarm:{txid.hex()}"


def check_alarm(tx: Alarm) -> None:
    """Context-free: a known code and a valid detector name."""
    if tx.code not in _CODES:
        raise Reject("bad-alarm-code", f"unknown alarm code {tx.code!r}")
    check_name(tx.detector, "detector")


def apply_alarm(state: LedgerState, tx: Alarm, slot: int, _: bool) -> None:
    """Contextual: raised and signed by a coordinator, the DSO or a member authorized at this slot, for a height
    the chain has reached, and never committed before."""
    if tx.height > state.height + 1:
        raise Reject(
            "bad-alarm-height", f"alarm raised for height {tx.height}; the chain is making block {state.height + 1}"
        )
    if state.nonces.get(alarm_key(tx.txid)):
        raise Reject("bad-alarm-replay", "this alarm is already committed (replay)")
    g = state.genesis
    if tx.raiser not in g.proposers and tx.raiser != g.dso_pubkey and member_of_key(state, tx.raiser, slot) is None:
        raise Reject("bad-alarm-raiser", "alarm raised by a key that is no coordinator, DSO or member of this chain")
    if not crypto.verify(tx.raiser, tx.sighash(state.chain_id), tx.signature):
        raise Reject("bad-alarm-signature", "alarm signature is invalid")
    state.set_entry(state.nonces, "nonce", alarm_key(tx.txid), 1)


RULES = KindRules(Alarm, check_alarm, apply_alarm)
