"""The rule set of a chain, as a value: which transaction kinds are valid, the whole-block checks, the consensus.

A chain's genesis names its rule set by identifier and version (:class:`~gridledger.ledger.kinds.genesis.Genesis`);
every verifier — ``LedgerState``, ``Chain.open``, ``verify_store``, ``gridledger verify`` — looks it up in
:data:`RULESETS`, so a block is judged by the same rules in every process, whatever that process imported.

Known rule sets (version 1 each):

* ``petra`` — PETra on one chain under its coordinator(s) alone (Laszka et al. 2017): genesis, transfers, meter
  issues, DSO policy; no whole-block checks.
* ``han``, ``nan``, ``fan``, ``head`` — the four tiers (AMI areas) of the multi-tier ledger under
  Proof-of-Efficiency (Olivares-Rojas et al. 2023, Fig. 2): every block carries a quorum certificate of its
  committee (:mod:`gridledger.ledger.committee`). Kinds per tier, as the tiers use them: a HAN holds its
  appliances' readings; a NAN runs PETra, holds its meters' readings (one per transaction, or batches of up to
  ``MAX_READING_BATCH`` consecutive minutes under one signature), its HANs' anchors and the PoEf rewards; a
  FAN/WAN and the head-end hold the summaries of the tier below and its anchors. Every tier holds DSO policy
  (enrolment, relayed prices) and alarms.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from gridledger.ledger.committee import check_block_certificate
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds import (
    alarm,
    anchor,
    dso_policy,
    genesis,
    meter_issue,
    reading,
    reading_batch,
    reward,
    transfer,
)
from gridledger.ledger.transactions import KindRules, Transaction, TxKind

if TYPE_CHECKING:
    from gridledger.ledger.block import Block
    from gridledger.ledger.kinds.genesis import Genesis
    from gridledger.ledger.state import LedgerState


class Tier(StrEnum):
    """The four tiers (AMI areas) of the multi-tier ledger, from the home up to the utility."""

    HAN = "han"
    NAN = "nan"
    FAN = "fan"
    HEAD = "head"

    @property
    def parent(self) -> Tier | None:
        """The tier this one anchors into (None for the head-end)."""
        order = list(Tier)
        i = order.index(self)
        return order[i + 1] if i + 1 < len(order) else None


class Consensus(StrEnum):
    """How a block becomes final: its coordinator's signature alone, or with a PoEf quorum certificate."""

    COORDINATOR = "coordinator"
    POEF = "poef"


@dataclass(frozen=True)
class Ruleset:
    """One version of one rule set.

    ``kinds``: the rules of every valid kind; ``block_checks``: whole-block checks ``check(state, block)`` run
    against the parent state on every block but proposals; ``tier``: the chain's tier (None off the multi-tier
    ledger); ``committee_size``: PoEf committee size (0 under coordinator-only consensus);
    ``max_reading_batch``: most minutes one READING_BATCH may hold (0 where that kind is not valid).
    """

    name: str
    version: int
    kinds: Mapping[TxKind, KindRules]
    consensus: Consensus = Consensus.COORDINATOR
    tier: Tier | None = None
    committee_size: int = 0
    block_checks: tuple[Callable[[LedgerState, Block], None], ...] = ()
    max_reading_batch: int = 0

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    def rules_of(self, tx: Transaction) -> KindRules:
        """The rules of ``tx``'s kind, or ``bad-tx-kind-not-in-ruleset`` if this rule set has none."""
        rules = self.kinds.get(getattr(tx, "KIND", None))
        if rules is None or type(tx) is not rules.cls:
            name = getattr(getattr(tx, "KIND", None), "name", type(tx).__name__)
            raise Reject("bad-tx-kind-not-in-ruleset", f"rule set {self} has no {name} transactions")
        return rules

    def check_transaction(self, tx: Transaction) -> None:
        """Context-free checks of ``tx`` on a chain of this rule set (its kind must be one of the set's)."""
        self.rules_of(tx).check(tx)
        tx.encode()  # every field must be encodable (ranges, sizes): raises a bad-encoding-* reject otherwise


def _kinds(*modules) -> dict[TxKind, KindRules]:
    return {m.RULES.kind: m.RULES for m in (genesis, *modules)}


_PETRA = (transfer, meter_issue, dso_policy)
#: Committee size per tier: the largest committee that keeps a NAN of 2,000 meters within a 1 s p99
#: submit-to-commit latency and 128 B per reading on disk (benchmarks/nan_latency.py, reading_bytes.py).
_TIER_KINDS = {
    Tier.HAN: ((dso_policy, reading, alarm), 5),
    Tier.NAN: ((*_PETRA, reading, reading_batch, anchor, alarm, reward), 5),
    Tier.FAN: ((dso_policy, reading, anchor, alarm), 9),
    Tier.HEAD: ((dso_policy, reading, anchor, alarm), 9),
}

#: Most minutes of one meter in one READING_BATCH on a NAN (an hour: a meter's readings reach the chain at most an
#: hour late; benchmarks/reading_bytes.py recommends 15).
MAX_READING_BATCH = 60

#: Every known rule set, by identifier: the newest version this software implements.
RULESETS: dict[str, Ruleset] = {
    "petra": Ruleset("petra", 1, _kinds(*_PETRA)),
    **{
        tier.value: Ruleset(
            tier.value,
            1,
            _kinds(*mods),
            Consensus.POEF,
            tier,
            size,
            block_checks=(check_block_certificate,),
            max_reading_batch=MAX_READING_BATCH if reading_batch in mods else 0,
        )
        for tier, (mods, size) in _TIER_KINDS.items()
    },
}


def tier_ruleset(tier: Tier) -> Ruleset:
    """The rule set of a tier's chains."""
    return RULESETS[tier.value]


def ruleset_of(genesis: Genesis) -> Ruleset:
    """The rule set ``genesis`` names; ``bad-genesis-ruleset`` if it is unknown or newer than this software's."""
    known = RULESETS.get(genesis.ruleset)
    if known is None:
        raise Reject(
            "bad-genesis-ruleset",
            f"chain {genesis.chain!r} names rule set {genesis.ruleset!r} v{genesis.ruleset_version}, "
            f"which this software does not know (known: {', '.join(sorted(RULESETS))})",
        )
    if genesis.ruleset_version != known.version:
        raise Reject(
            "bad-genesis-ruleset",
            f"chain {genesis.chain!r} names rule set {genesis.ruleset} v{genesis.ruleset_version}; "
            f"this software implements {known}",
        )
    return known
