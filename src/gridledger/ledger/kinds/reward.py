"""REWARD (kind 7): Proof-of-Efficiency rewards, and the published rule that fixes its amounts.

PoEf rewards the users who use energy most efficiently (Olivares-Rojas et al. 2023, §3.3): the DSO pays them from
an incentive budget, so that efficiency lowers their bill. The score is the analytics' PoEf efficiency score
(:mod:`gridledger.analytics.efficiency`): three components in per mille — forecast adherence, power quality and
peak reduction — and their integer mean.

**Rule v2.** Period *p* is day *p* of the chain: the minutes ``[1440 p, 1440 (p + 1))`` after its start. For it,
the DSO publishes, for each scored member i, the three components c_i computed from the member's readings of the
period (and of the 7 days before, the forecast's reference); then

    s_i = (c_i,1 + c_i,2 + c_i,3) // 3          a_i = rate · max(0, s_i − THRESHOLD)

with ``rate`` ≤ ``RATE_CAP`` minor units per score point, one rate per period. Each a_i > 0 is one FA output to
the address of the key the DSO authorized for member i, in member order. A period may be paid in several
transactions (at most 1,024 members each); each member is rewarded at most once per period and periods only
move forward for it.

Every replica re-checks every reward: the score is the rule's from the components (``bad-reward-score-rule``),
the outputs are exactly the rule's (``bad-reward-rule``), the period is over, the member not already paid for
it, the rate the period's. The components are public per-period summaries that the DSO computes from readings
only key holders can open; anyone with the chain's content key (the coordinator, the DSO, an auditor) re-derives
them from the committed readings (:func:`gridledger.analytics.scorecards.audit_reward`). docs/consensus.md weighs this
against disclosing the readings to the committee.

Layout: ``version ‖ kind ‖ period u32 ‖ rate u32 ‖ u16 n ‖ n × (member u16 ‖ adherence u16 ‖ quality u16 ‖
peak u16 ‖ score u16) ‖ u16 m ‖ m × output ‖ DSO signature 64``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, NamedTuple

from gridledger.ledger import crypto
from gridledger.ledger.assets import FA, MAX_IO, AssetKind, Output
from gridledger.ledger.crypto import SIGNATURE_BYTES, KeyPair
from gridledger.ledger.encoding import Reader, Writer
from gridledger.ledger.errors import Reject
from gridledger.ledger.members import MAX_SCORE, REWARDS_KEY, authorized_members, rate_key, reward_key, score_key
from gridledger.ledger.transactions import KindRules, Transaction, TxKind

if TYPE_CHECKING:
    from gridledger.ledger.state import LedgerState

#: Weights of forecast adherence, power quality and peak reduction in the score.
WEIGHTS = (1, 1, 1)
#: Scores at or below this (per mille) earn nothing.
THRESHOLD = 500
#: Largest rate (minor units per score point above the threshold): at most 50,000 per member and period.
RATE_CAP = 100
#: Minutes of one reward period (one day of chain time).
PERIOD_MINUTES = 1_440


def score_of(components: Sequence[int], weights: Sequence[int] = WEIGHTS) -> int:
    """The efficiency score of per-mille components: their integer weighted mean ``Σ w c // Σ w``."""
    return sum(w * c for w, c in zip(weights, components, strict=True)) // sum(weights)


class Scorecard(NamedTuple):
    """One scored member of a reward: its components and score, each per mille."""

    member: int
    forecast_adherence: int
    power_quality: int
    peak_reduction: int
    score: int

    @property
    def components(self) -> tuple[int, int, int]:
        return (self.forecast_adherence, self.power_quality, self.peak_reduction)


def reward_amounts(rate: int, cards: Sequence[Scorecard]) -> list[tuple[int, int]]:
    """(member, amount) for every member the rule pays (amount > 0), in the order of ``cards``."""
    paid = [(c.member, rate * max(0, c.score - THRESHOLD)) for c in cards]
    return [(m, a) for m, a in paid if a > 0]


@dataclass(frozen=True)
class Reward(Transaction):
    KIND: ClassVar[TxKind] = TxKind.REWARD
    period: int
    rate: int
    cards: tuple[Scorecard, ...]
    outputs: tuple[Output, ...]
    signature: bytes = field(default=bytes(SIGNATURE_BYTES), compare=False)

    def write_body(self, w: Writer) -> None:
        w.u32(self.period, "period").u32(self.rate, "rate").count(len(self.cards), "scorecards")
        for card in self.cards:
            w.u16(card.member, "member index")
            for name, value in zip(Scorecard._fields[1:], card[1:], strict=True):
                w.u16(value, name)
        w.count(len(self.outputs), "outputs")
        for out in self.outputs:
            w.raw(out.encode())

    def write_witness(self, w: Writer) -> None:
        w.fixed(self.signature, SIGNATURE_BYTES, "DSO signature")

    @classmethod
    def read(cls, r: Reader) -> Reward:
        period, rate = r.u32("period"), r.u32("rate")
        cards = tuple(
            Scorecard(*(r.u16(name) for name in ("member index", *Scorecard._fields[1:])))
            for _ in range(r.count("scorecards"))
        )
        outputs = Output.read_many(r)
        r.end_body()
        return cls(period, rate, cards, outputs, r.take(SIGNATURE_BYTES, "DSO signature"))


def make_reward(
    state: LedgerState, period: int, rate: int, components: Mapping[int, Sequence[int]], dso: KeyPair
) -> Reward:
    """The DSO's signed reward for ``period``: each member's score from its components, the rule's outputs to the
    members' authorized keys at the tip.

    ``components`` maps member index → (forecast adherence, power quality, peak reduction), per mille, e.g. from
    :func:`gridledger.analytics.scorecards.period_scores`.
    """
    cards = tuple(Scorecard(m, *c, score_of(c)) for m, c in sorted(components.items()))
    tx = Reward(period, rate, cards, _rule_outputs(state, state.slot_of(state.tip_time), rate, cards))
    return Reward(tx.period, tx.rate, tx.cards, tx.outputs, dso.sign(tx.sighash(state.chain_id)))


def _rule_outputs(state: LedgerState, slot: int, rate: int, cards: Sequence[Scorecard]) -> tuple[Output, ...]:
    keys = dict(authorized_members(state, slot).keys)
    for card in cards:
        if card.member not in keys:
            raise Reject("bad-reward-member", f"member {card.member} is not authorized at slot {slot}")
    return tuple(Output(FA(a), crypto.address_of(keys[m])) for m, a in reward_amounts(rate, cards))


def check_reward(tx: Reward) -> None:
    """Context-free: rate within the cap, scorecards in range and following the score rule, members listed once
    in increasing order, FA outputs."""
    if type(tx.rate) is not int or not 0 <= tx.rate <= RATE_CAP:
        raise Reject("bad-reward-rate", f"rate {tx.rate!r} must be 0..{RATE_CAP} minor units per score point")
    if not tx.cards or len(tx.cards) > MAX_IO:
        raise Reject("bad-reward-scores", f"a reward scores 1..{MAX_IO} members")
    last = -1
    for card in tx.cards:
        for name, value in zip(Scorecard._fields[1:], card[1:], strict=True):
            if type(value) is not int or not 0 <= value <= MAX_SCORE:
                raise Reject(
                    "bad-reward-score", f"{name} {value!r} of member {card.member} must be 0..{MAX_SCORE} per mille"
                )
        if type(card.member) is not int or card.member <= last:
            raise Reject("bad-reward-order", "scored members must be listed once each, by increasing index")
        last = card.member
        if card.score != score_of(card.components):
            raise Reject(
                "bad-reward-score-rule",
                f"member {card.member}'s score {card.score} is not the rule's {score_of(card.components)} "
                f"from its components {card.components}",
            )
    for i, out in enumerate(tx.outputs):
        if not isinstance(out, Output) or out.asset.kind != AssetKind.FA:
            raise Reject("bad-reward-rule", f"output {i} is not an FA: rewards pay money only")


def apply_reward(state: LedgerState, tx: Reward, slot: int, _: bool) -> None:
    """Contextual: signed by the DSO, for a period that is over, at the period's rate, each member once per
    period, outputs exactly as the rule gives; commits the scores."""
    if not crypto.verify(state.genesis.dso_pubkey, tx.sighash(state.chain_id), tx.signature):
        raise Reject("bad-reward-signature", "reward is not signed by the DSO")
    end_s = 60 * PERIOD_MINUTES * (tx.period + 1)
    if slot * state.genesis.slot_seconds < end_s:
        raise Reject("bad-reward-early", f"period {tx.period} is not over before the block's slot {slot}")
    rate = state.nonces.get(rate_key(tx.period))
    if rate is not None and rate != tx.rate:
        raise Reject("bad-reward-rate", f"period {tx.period} is rewarded at rate {rate}, not {tx.rate}")
    for card in tx.cards:
        next_period = state.nonces.get(reward_key(card.member), 0)
        if tx.period < next_period:
            raise Reject(
                "bad-reward-period",
                f"member {card.member} was already rewarded for period {next_period - 1} (next is {next_period})",
            )
    if tuple(tx.outputs) != _rule_outputs(state, slot, tx.rate, tx.cards):
        raise Reject("bad-reward-rule", "outputs differ from what the published reward rule gives for these scores")
    state.set_entry(state.nonces, "nonce", rate_key(tx.period), tx.rate)
    state.set_entry(state.nonces, "nonce", REWARDS_KEY, state.nonces.get(REWARDS_KEY, 0) + 1)
    for card in tx.cards:
        state.set_entry(state.nonces, "nonce", reward_key(card.member), tx.period + 1)
        state.set_entry(state.nonces, "nonce", score_key(card.member), card.score)
    state.add_outputs(tx.txid, tx.outputs)


RULES = KindRules(Reward, check_reward, apply_reward)
