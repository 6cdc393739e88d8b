"""Proof-of-Efficiency rewards: the REWARD transaction kind (kind 7) and the published rule that fixes its amounts.

PoEf rewards the users who use energy most efficiently (Olivares-Rojas et al. 2023, §3.3): the DSO pays them from
an incentive pool, so that efficiency lowers their bill. The analytics issue supplies the efficiency scores (power
quality, forecast adherence); this module fixes how scores become money and makes sure nobody mints outside it.

**Rule v1** (a documented placeholder until the analytics issue fixes the economics). For one period, with pool
P ≤ ``POOL_CAP`` minor units and scores s_i in basis points (0..10 000), member i earns

    a_i = floor(P · e_i / Σ_j e_j),   e_i = max(0, s_i − THRESHOLD)

(nothing if no one is above the threshold; the rounding remainder is not minted). Each a_i > 0 is one FA output to
the address of the key the DSO authorized for member i, in member order.

A reward transaction lists the period, the pool, every scored member's score and the outputs, and is signed by
the DSO. It is valid only if the outputs are exactly those the rule gives (``bad-reward-rule``), the pool is within
the cap, the period follows the last rewarded one, and every scored member is authorized. The scores it commits
become the members' efficiency scores, which weight the committee sortition (:mod:`.committee`).

Layout: ``version ‖ kind ‖ period u32 ‖ pool u64 ‖ u16 n ‖ n × (member u16 ‖ score u16) ‖ u16 m ‖ m × output
‖ DSO signature 64``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from gridledger.consensus.members import MAX_SCORE, PERIOD_KEY, authorized_members, score_key
from gridledger.ledger import crypto
from gridledger.ledger.assets import FA, AssetKind, Output
from gridledger.ledger.crypto import SIGNATURE_BYTES, KeyPair
from gridledger.ledger.encoding import Reader, Writer
from gridledger.ledger.errors import Reject
from gridledger.ledger.rules import MAX_IO, register_check
from gridledger.ledger.state import LedgerState, register_handler
from gridledger.ledger.transactions import Transaction, TxKind, register_kind

#: Scores at or below this (basis points) earn nothing.
THRESHOLD = 5_000
#: Largest pool of one period (minor units).
POOL_CAP = 1_000_000


def reward_amounts(pool: int, scores: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """(member, amount) for every member the rule pays (amount > 0), in the order of ``scores``."""
    excess = [(m, max(0, s - THRESHOLD)) for m, s in scores]
    total = sum(e for _, e in excess)
    if not total:
        return []
    paid = [(m, pool * e // total) for m, e in excess]
    return [(m, a) for m, a in paid if a > 0]


@register_kind
@dataclass(frozen=True)
class Reward(Transaction):
    KIND: ClassVar[TxKind] = TxKind.REWARD
    period: int
    pool: int
    scores: tuple[tuple[int, int], ...]
    outputs: tuple[Output, ...]
    signature: bytes = field(default=bytes(SIGNATURE_BYTES), compare=False)

    def write_body(self, w: Writer) -> None:
        w.u32(self.period, "period").u64(self.pool, "pool").count(len(self.scores), "scores")
        for member, s in self.scores:
            w.u16(member, "member index").u16(s, "score")
        w.count(len(self.outputs), "outputs")
        for out in self.outputs:
            w.raw(out.encode())

    def write_witness(self, w: Writer) -> None:
        w.fixed(self.signature, SIGNATURE_BYTES, "DSO signature")

    @classmethod
    def read(cls, r: Reader) -> Reward:
        period, pool = r.u32("period"), r.u64("pool")
        scores = tuple((r.u16("member index"), r.u16("score")) for _ in range(r.count("scores")))
        outputs = Output.read_many(r)
        r.end_body()
        return cls(period, pool, scores, outputs, r.take(SIGNATURE_BYTES, "DSO signature"))


def make_reward(state: LedgerState, period: int, pool: int, scores: dict[int, int], dso: KeyPair) -> Reward:
    """The DSO's signed reward for ``period``: the rule's outputs to the members' authorized keys at the tip."""
    ordered = tuple(sorted(scores.items()))
    tx = Reward(period, pool, ordered, _rule_outputs(state, state.slot_of(state.tip_time), pool, ordered))
    return Reward(tx.period, tx.pool, tx.scores, tx.outputs, dso.sign(tx.sighash(state.chain_id)))


def _rule_outputs(state: LedgerState, slot: int, pool: int, scores: Sequence[tuple[int, int]]) -> tuple[Output, ...]:
    keys = dict(authorized_members(state, slot).keys)
    for member, _ in scores:
        if member not in keys:
            raise Reject("bad-reward-member", f"member {member} is not authorized at slot {slot}")
    return tuple(Output(FA(a), crypto.address_of(keys[m])) for m, a in reward_amounts(pool, scores))


def check_reward(tx: Reward) -> None:
    """Context-free: pool within the cap, scores in range, members listed once in increasing order, FA outputs."""
    if type(tx.pool) is not int or not 0 <= tx.pool <= POOL_CAP:
        raise Reject("bad-reward-pool", f"pool {tx.pool!r} must be 0..{POOL_CAP} minor units")
    if not tx.scores or len(tx.scores) > MAX_IO:
        raise Reject("bad-reward-scores", f"a reward scores 1..{MAX_IO} members")
    last = -1
    for member, s in tx.scores:
        if type(s) is not int or not 0 <= s <= MAX_SCORE:
            raise Reject("bad-reward-score", f"score {s!r} of member {member} must be 0..{MAX_SCORE} basis points")
        if type(member) is not int or member <= last:
            raise Reject("bad-reward-order", "scored members must be listed once each, by increasing index")
        last = member
    for i, out in enumerate(tx.outputs):
        if not isinstance(out, Output) or out.asset.kind != AssetKind.FA:
            raise Reject("bad-reward-rule", f"output {i} is not an FA: rewards pay money only")


def apply_reward(state: LedgerState, tx: Reward, slot: int, _: bool) -> None:
    """Contextual: signed by the DSO, for the next period, outputs exactly as the rule gives; commits the scores."""
    if not crypto.verify(state.genesis.dso_pubkey, tx.sighash(state.chain_id), tx.signature):
        raise Reject("bad-reward-signature", "reward is not signed by the DSO")
    expected_period = state.nonces.get(PERIOD_KEY, 0)
    if tx.period < expected_period:
        raise Reject("bad-reward-period", f"period {tx.period} was already rewarded (next is {expected_period})")
    if tuple(tx.outputs) != _rule_outputs(state, slot, tx.pool, tx.scores):
        raise Reject("bad-reward-rule", "outputs differ from what the published reward rule gives for these scores")
    state._set(state.nonces, "nonce", PERIOD_KEY, tx.period + 1)
    for member, s in tx.scores:
        state._set(state.nonces, "nonce", score_key(member), s)
    state._add_outputs(tx.txid, tx.outputs)


register_check(Reward, check_reward)
register_handler(TxKind.REWARD, apply_reward)
