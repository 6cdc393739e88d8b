"""METER_ISSUE (kind 2): a smart meter creates EPA, ECA and FA assets for its prosumer.

The DSO bounds what a meter may issue: only while it is authorized, at most MAXEPA/MAXECA W per slot (summed
over every issue covering the slot) and FA up to its credit, cumulatively.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from gridledger.ledger import crypto
from gridledger.ledger.assets import AssetKind, Output, check_outputs
from gridledger.ledger.crypto import SIGNATURE_BYTES, KeyPair
from gridledger.ledger.encoding import Reader, Writer, check_name
from gridledger.ledger.errors import Reject
from gridledger.ledger.policy import AUTHORIZED, BANNED
from gridledger.ledger.transactions import KindRules, Transaction, TxKind, write_outputs

if TYPE_CHECKING:
    from gridledger.ledger.state import LedgerState


@dataclass(frozen=True)
class MeterIssue(Transaction):
    """A smart meter creates assets for its prosumer (``nonce`` strictly increases per meter)."""

    KIND: ClassVar[TxKind] = TxKind.METER_ISSUE
    meter: str
    nonce: int
    outputs: tuple[Output, ...]
    signature: bytes = field(default=bytes(SIGNATURE_BYTES), compare=False)

    def write_body(self, w: Writer) -> None:
        w.name(self.meter, "meter id").u64(self.nonce, "nonce")
        write_outputs(w, self.outputs, "outputs")

    def write_witness(self, w: Writer) -> None:
        w.fixed(self.signature, SIGNATURE_BYTES, "meter signature")

    @classmethod
    def read(cls, r: Reader) -> MeterIssue:
        meter, nonce, outputs = r.name("meter id"), r.u64("nonce"), Output.read_many(r)
        r.end_body()
        return cls(meter, nonce, outputs, r.take(SIGNATURE_BYTES, "meter signature"))

    def signed(self, chain_id: bytes, key: KeyPair) -> MeterIssue:
        return MeterIssue(self.meter, self.nonce, self.outputs, key.sign(self.sighash(chain_id)))


def check_meter_issue(tx: MeterIssue) -> None:
    check_name(tx.meter, "meter id")
    check_outputs(tx.outputs)


def apply_meter_issue(state: LedgerState, tx: MeterIssue, slot: int, _: bool) -> None:
    status, pubkey = state.policy.status(tx.meter, slot)
    if status == BANNED:
        raise Reject("bad-issue-meter-banned", f"meter {tx.meter} is banned at slot {slot}")
    if status != AUTHORIZED:
        raise Reject("bad-issue-meter-unknown", f"meter {tx.meter} is not authorized at slot {slot}")
    if not crypto.verify(pubkey, tx.sighash(state.chain_id), tx.signature):
        raise Reject("bad-issue-signature", f"signature is not meter {tx.meter}'s")
    last = state.nonces.get(tx.meter, 0)
    if tx.nonce <= last:
        raise Reject(
            "bad-issue-nonce", f"nonce {tx.nonce} of meter {tx.meter} is not above its last {last} (replay?)"
        )
    state.set_entry(state.nonces, "nonce", tx.meter, tx.nonce)
    state.note_issue(tx.meter)
    max_slots = state.genesis.max_issue_slots
    for i, out in enumerate(tx.outputs):
        a = out.asset
        if a.kind == AssetKind.FA:
            lim = state.policy.limits(tx.meter, slot)
            credit = lim.credit_fa if lim else 0
            total = state.fa_issued.get(tx.meter, 0) + a.amount
            if total > credit:
                raise Reject(
                    "bad-issue-insolvent",
                    f"meter {tx.meter} would issue {total} FA in all, beyond its credit {credit}",
                )
            state.set_entry(state.fa_issued, "fa", tx.meter, total)
            continue
        if a.start < slot:
            raise Reject(
                "bad-issue-past-interval", f"output {i} starts at slot {a.start}, before the current slot {slot}"
            )
        if a.end - a.start > max_slots:
            raise Reject(
                "bad-issue-interval-too-long", f"output {i} covers {a.end - a.start} slots; at most {max_slots}"
            )
        for t in range(a.start, a.end):
            lim = state.policy.limits(tx.meter, t)
            cap = (lim.max_epa_w if a.kind == AssetKind.EPA else lim.max_eca_w) if lim else 0
            key = (tx.meter, int(a.kind), t)
            total = state.issued.get(key, 0) + a.amount
            if total > cap:
                raise Reject(
                    "bad-issue-over-limit",
                    f"meter {tx.meter} would have {total} W of {a.kind.name} at slot {t}, "
                    f"above MAX{a.kind.name} {cap} W",
                )
            state.set_entry(state.issued, "issued", key, total)
    state.add_outputs(tx.txid, tx.outputs)


RULES = KindRules(MeterIssue, check_meter_issue, apply_meter_issue)
