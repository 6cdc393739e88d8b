"""TRANSFER (kind 1): spends outputs and creates outputs — trades, mixing, deposits, proofs of control.

Every input is unlocked by one witness (a public key and its signature over the transaction's sighash), and the
transfer conserves every asset kind slot by slot (PETra's conservation rule).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from gridledger.ledger import crypto
from gridledger.ledger.assets import MAX_IO, OUTPOINT_BYTES, Asset, AssetKind, Output, check_outputs, split_outpoint
from gridledger.ledger.crypto import PUBKEY_BYTES, SIGNATURE_BYTES, KeyPair
from gridledger.ledger.encoding import Reader, Writer
from gridledger.ledger.errors import Reject
from gridledger.ledger.transactions import KindRules, Transaction, TxKind, write_outputs

if TYPE_CHECKING:
    from gridledger.ledger.state import LedgerState


@dataclass(frozen=True)
class Witness:
    """The public key and signature that unlock one input."""

    pubkey: bytes
    signature: bytes


@dataclass(frozen=True)
class Transfer(Transaction):
    """Spends outpoints (each unlocked by a witness) and creates outputs; conserves every asset kind per slot."""

    KIND: ClassVar[TxKind] = TxKind.TRANSFER
    inputs: tuple[bytes, ...]
    outputs: tuple[Output, ...]
    witnesses: tuple[Witness, ...] = field(default=(), compare=False)

    def write_body(self, w: Writer) -> None:
        w.count(len(self.inputs), "inputs")
        for op in self.inputs:
            w.fixed(op, OUTPOINT_BYTES, "input outpoint")
        write_outputs(w, self.outputs, "outputs")

    def write_witness(self, w: Writer) -> None:
        w.count(len(self.witnesses), "witnesses")
        for wit in self.witnesses:
            w.fixed(wit.pubkey, PUBKEY_BYTES, "witness public key").fixed(wit.signature, SIGNATURE_BYTES, "signature")

    @classmethod
    def read(cls, r: Reader) -> Transfer:
        inputs = tuple(r.take_many(r.count("inputs"), OUTPOINT_BYTES, "input outpoint"))
        outputs = Output.read_many(r)
        r.end_body()
        witnesses = tuple(
            [
                Witness(w[:PUBKEY_BYTES], w[PUBKEY_BYTES:])
                for w in r.take_many(r.count("witnesses"), PUBKEY_BYTES + SIGNATURE_BYTES, "witness")
            ]
        )
        return cls(inputs, outputs, witnesses)

    def signed(self, chain_id: bytes, keys: dict[bytes, KeyPair], partial: bool = False) -> Transfer:
        """Fill in the witnesses of the inputs whose keys are given (``keys``: outpoint → owner key pair).

        Witnesses already present are kept, so several owners can sign one transfer in turn (an atomic trade).
        With ``partial`` an input without a key keeps an empty witness slot to be filled later.
        """
        msg = self.sighash(chain_id)
        current = list(self.witnesses) + [None] * (len(self.inputs) - len(self.witnesses))
        for i, op in enumerate(self.inputs):
            key = keys.get(op)
            if key is not None:
                current[i] = Witness(key.public, key.sign(msg))
            elif current[i] is None or not current[i].pubkey.strip(b"\0"):
                if not partial:
                    raise ValueError(f"no key to sign input {i}")
                current[i] = Witness(bytes(PUBKEY_BYTES), bytes(SIGNATURE_BYTES))
        return Transfer(self.inputs, self.outputs, tuple(current))


def check_transfer(tx: Transfer) -> None:
    if not tx.inputs:
        raise Reject("bad-txns-vin-empty", "transfer has no inputs")
    if len(tx.inputs) > MAX_IO:
        raise Reject("bad-txns-too-many", f"{len(tx.inputs)} inputs; at most {MAX_IO}")
    if len(set(tx.inputs)) != len(tx.inputs):
        raise Reject("bad-txns-inputs-duplicate", "transfer spends the same outpoint twice")
    check_outputs(tx.outputs)
    if len(tx.witnesses) != len(tx.inputs):
        raise Reject(
            "bad-txns-witness-count",
            f"{len(tx.witnesses)} witnesses for {len(tx.inputs)} inputs (one signature per input)",
        )


def check_conservation(inputs: Iterable[Asset], outputs: Iterable[Asset]) -> None:
    """PETra's conservation rule, per asset kind.

    For EPA and ECA: for every slot t, the summed power of the outputs covering t equals that of the inputs
    covering t (so assets may be merged and split in power and in time). For FA: the sums are equal.
    Implemented as a sweep over interval boundaries: the difference of the two step functions must be zero
    everywhere, i.e. every prefix sum of the boundary deltas is zero.
    """
    inputs = inputs if type(inputs) is list else list(inputs)
    outputs = outputs if type(outputs) is list else list(outputs)
    # FA only (payments, the common case): the two sums alone decide. Any other asset takes the sweep below.
    fa_kind, diff = AssetKind.FA, 0
    for a in inputs:
        if a.kind is not fa_kind:
            break
        diff += a.amount
    else:
        for a in outputs:
            if a.kind is not fa_kind:
                break
            diff -= a.amount
        else:
            if diff:
                raise Reject("bad-txns-fa-conservation", f"FA outputs differ from FA inputs by {-diff} minor units")
            return
    deltas: dict[AssetKind, dict[int, int]] = {AssetKind.EPA: defaultdict(int), AssetKind.ECA: defaultdict(int)}
    fa = 0
    for sign, assets in ((1, inputs), (-1, outputs)):
        for a in assets:
            if a.kind == AssetKind.FA:
                fa += sign * a.amount
            else:
                d = deltas[a.kind]
                d[a.start] += sign * a.amount
                d[a.end] -= sign * a.amount
    if fa:
        raise Reject("bad-txns-fa-conservation", f"FA outputs differ from FA inputs by {-fa} minor units")
    for kind, d in deltas.items():
        level = 0
        for slot in sorted(d):
            level += d[slot]
            if level:
                raise Reject(
                    f"bad-txns-{kind.name.lower()}-conservation",
                    f"{kind.name} power of outputs differs from inputs by {-level} W from slot {slot} on",
                )


def _fmt_op(op: bytes) -> str:
    txid, index = split_outpoint(op)
    return f"{txid.hex()[:16]}…:{index}"


def apply_transfer(state: LedgerState, tx: Transfer, slot: int, signatures_checked: bool) -> None:
    """Contextual: every input unspent and owned by the key of its witness, each asset kind conserved."""
    spent = []
    if not signatures_checked:
        msg = tx.sighash(state.chain_id)
    for j, (op, wit) in enumerate(zip(tx.inputs, tx.witnesses, strict=True)):
        raw = state.utxos.get(op)
        if raw is None:
            if state.spent_in_block(op):
                raise Reject(
                    "bad-blk-double-spend",
                    f"input {j} ({_fmt_op(op)}) was spent by an earlier transaction of this block",
                )
            raise Reject("bad-txns-inputs-missingorspent", f"input {j} ({_fmt_op(op)}) is unknown or already spent")
        out = Output.decode(raw)
        if crypto.address_of(wit.pubkey) != out.owner:
            raise Reject("bad-txns-wrong-owner", f"input {j} is not owned by the key that signs it")
        if not signatures_checked and not crypto.verify(wit.pubkey, msg, wit.signature):
            raise Reject("bad-txns-signature", f"signature of input {j} is invalid")
        spent.append((op, raw, out.asset))
    check_conservation([a for _, _, a in spent], [o.asset for o in tx.outputs])
    for op, raw, _ in spent:
        state.spend(op, raw)
    state.add_outputs(tx.txid, tx.outputs)


RULES = KindRules(Transfer, check_transfer, apply_transfer)
