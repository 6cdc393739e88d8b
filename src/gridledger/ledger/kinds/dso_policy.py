"""DSO_POLICY (kind 3): the DSO's policy — authorize and ban meters, set prices and per-meter limits.

Policies take effect from a slot on and form the chain's policy timeline (:mod:`gridledger.ledger.policy`); the
DSO signs them with the key the genesis names, and their nonce strictly increases. The effective slot is at most
the chain's last slot (``MAX_SLOT``).

A ban takes effect from its effective slot, wherever it stands in its block: a block of that slot may not hold an
issue of the banned meter, before the ban (``bad-policy-ban-after-issue``) or after it (``bad-issue-meter-banned``).
A proposer puts the policies of a block first (:func:`gridledger.chain.proposal_order`), so the issue is the one
left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from gridledger.ledger import crypto
from gridledger.ledger.assets import MAX_AMOUNT
from gridledger.ledger.crypto import PUBKEY_BYTES, SIGNATURE_BYTES, KeyPair
from gridledger.ledger.encoding import Reader, Writer, check_name
from gridledger.ledger.errors import Reject
from gridledger.ledger.transactions import KindRules, Transaction, TxKind
from gridledger.ledger.units import MAX_SLOT

if TYPE_CHECKING:
    from gridledger.ledger.state import LedgerState


@dataclass(frozen=True)
class MeterLimits:
    """DSO limits for one meter: MAXEPA and MAXECA (W per slot) and its FA credit (minor units, cumulative)."""

    meter: str
    max_epa_w: int
    max_eca_w: int
    credit_fa: int


@dataclass(frozen=True)
class DsoPolicy(Transaction):
    """The DSO's policy, in force from slot ``effective_slot`` on (``nonce`` strictly increases).

    ``effective_slot`` is a slot index (market intervals since the chain's start), not a Unix time.

    ``prices`` is ``(priceConsumption, priceProduction)`` in minor units per kWh, or ``None`` to keep the prices;
    ``authorize`` maps meter IDs to their public keys; ``limits`` sets MAXEPA/MAXECA/credit; ``ban`` bans meters.
    """

    KIND: ClassVar[TxKind] = TxKind.DSO_POLICY
    nonce: int
    effective_slot: int
    prices: tuple[int, int] | None = None
    authorize: tuple[tuple[str, bytes], ...] = ()
    limits: tuple[MeterLimits, ...] = ()
    ban: tuple[str, ...] = ()
    signature: bytes = field(default=bytes(SIGNATURE_BYTES), compare=False)

    def write_body(self, w: Writer) -> None:
        w.u64(self.nonce, "nonce").u64(self.effective_slot, "effective slot")
        if self.prices is None:
            w.u8(0)
        else:
            w.u8(1).u64(self.prices[0], "priceConsumption").u64(self.prices[1], "priceProduction")
        w.count(len(self.authorize), "authorize")
        for meter, pubkey in self.authorize:
            w.name(meter, "meter id").fixed(pubkey, PUBKEY_BYTES, "meter public key")
        w.count(len(self.limits), "limits")
        for lim in self.limits:
            w.name(lim.meter, "meter id").u64(lim.max_epa_w, "MAXEPA").u64(lim.max_eca_w, "MAXECA")
            w.u64(lim.credit_fa, "FA credit")
        w.count(len(self.ban), "ban")
        for meter in self.ban:
            w.name(meter, "meter id")

    def write_witness(self, w: Writer) -> None:
        w.fixed(self.signature, SIGNATURE_BYTES, "DSO signature")

    @classmethod
    def read(cls, r: Reader) -> DsoPolicy:
        nonce, effective_slot = r.u64("nonce"), r.u64("effective slot")
        flag = r.u8("prices flag")
        if flag not in (0, 1):
            raise Reject("bad-encoding-flag", f"prices flag must be 0 or 1, got {flag}")
        prices = (r.u64("priceConsumption"), r.u64("priceProduction")) if flag else None
        authorize = tuple((r.name("meter id"), r.take(PUBKEY_BYTES, "meter public key")) for _ in range(r.count()))
        limits = tuple(
            MeterLimits(r.name("meter id"), r.u64("MAXEPA"), r.u64("MAXECA"), r.u64("FA credit"))
            for _ in range(r.count())
        )
        ban = tuple(r.name("meter id") for _ in range(r.count()))
        r.end_body()
        return cls(nonce, effective_slot, prices, authorize, limits, ban, r.take(SIGNATURE_BYTES, "DSO signature"))

    def signed(self, chain_id: bytes, key: KeyPair) -> DsoPolicy:
        return DsoPolicy(
            self.nonce,
            self.effective_slot,
            self.prices,
            self.authorize,
            self.limits,
            self.ban,
            key.sign(self.sighash(chain_id)),
        )


def check_dso_policy(tx: DsoPolicy) -> None:
    if isinstance(tx.effective_slot, int) and tx.effective_slot > MAX_SLOT:
        raise Reject(
            "bad-policy-slot", f"effective slot {tx.effective_slot} is beyond the chain's last slot {MAX_SLOT}"
        )
    if tx.prices is not None and (
        len(tx.prices) != 2 or not all(isinstance(p, int) and 0 <= p <= MAX_AMOUNT for p in tx.prices)
    ):
        raise Reject("bad-policy-price", f"prices must be two integers in 0..{MAX_AMOUNT} (minor units per kWh)")
    if not (tx.prices or tx.authorize or tx.limits or tx.ban):
        raise Reject("bad-policy-empty", "policy changes nothing")
    for group, meters in (
        ("authorize", [m for m, _ in tx.authorize]),
        ("limits", [lim.meter for lim in tx.limits]),
        ("ban", list(tx.ban)),
    ):
        for m in meters:
            check_name(m, "meter id")
        if len(set(meters)) != len(meters):
            raise Reject("bad-policy-duplicate-meter", f"a meter appears twice in {group}")
    for meter, pubkey in tx.authorize:
        if not isinstance(pubkey, bytes) or len(pubkey) != PUBKEY_BYTES:
            raise Reject("bad-policy-pubkey", f"public key of meter {meter} must be {PUBKEY_BYTES} bytes")
    if set(tx.ban) & {m for m, _ in tx.authorize}:
        raise Reject("bad-policy-conflict", "a meter is both authorized and banned by one policy")
    for lim in tx.limits:
        for name in ("max_epa_w", "max_eca_w", "credit_fa"):
            v = getattr(lim, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_AMOUNT:
                raise Reject("bad-policy-limit", f"{name} of meter {lim.meter} must be an integer in 0..{MAX_AMOUNT}")


def apply_dso_policy(state: LedgerState, tx: DsoPolicy, slot: int, _: bool) -> None:
    """Contextual: signed by the genesis's DSO key, a fresh nonce, not in force before the current slot."""
    if not crypto.verify(state.genesis.dso_pubkey, tx.sighash(state.chain_id), tx.signature):
        raise Reject("bad-policy-signature", "policy is not signed by the DSO")
    if tx.nonce <= state.policy.nonce:
        raise Reject(
            "bad-policy-nonce", f"policy nonce {tx.nonce} is not above the last {state.policy.nonce} (replay?)"
        )
    if tx.effective_slot < slot:
        raise Reject("bad-policy-stale", f"effective slot {tx.effective_slot} is in the past (current slot {slot})")
    if tx.effective_slot == slot:
        for meter in tx.ban:
            if state.issued_in_block(meter):
                raise Reject(
                    "bad-policy-ban-after-issue",
                    f"meter {meter} is banned from slot {slot}, but an earlier transaction of this block issues for it",
                )
    state.add_policy(tx)


RULES = KindRules(DsoPolicy, check_dso_policy, apply_dso_policy)
