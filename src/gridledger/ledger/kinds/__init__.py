"""Every transaction kind of the core, one module each (Bitcoin tx_check.cpp style: the class and its encoding,
its context-free checks, its contextual checks and state change, with the reason for each rule that is not
obvious): ``genesis``, ``transfer``, ``meter_issue``, ``dso_policy``, ``reading``, ``anchor``, ``alarm``,
``reward``, ``reading_batch``.

Decoding is static over all of them; which kinds are *valid* on a chain is decided by the rule set its genesis
names (:mod:`gridledger.ledger.ruleset`).
"""

from __future__ import annotations

from gridledger.ledger.encoding import Reader
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

#: The rules of every core kind, by kind.
ALL_KINDS: dict[TxKind, KindRules] = {
    r.kind: r
    for r in (
        genesis.RULES,
        transfer.RULES,
        meter_issue.RULES,
        dso_policy.RULES,
        reading.RULES,
        anchor.RULES,
        alarm.RULES,
        reward.RULES,
        reading_batch.RULES,
    )
}


def decode_transaction(raw: bytes) -> Transaction:
    """Decode one transaction of any core kind; malformed, truncated or trailing bytes raise ``Reject``."""
    r = Reader(raw)
    r.version("transaction")
    kind = r.u8("transaction kind")
    rules = ALL_KINDS.get(kind)
    if rules is None:
        raise Reject("bad-tx-kind-unknown", f"unknown transaction kind {kind}")
    tx = rules.cls.read(r)
    r.end("transaction")
    # Cache the body bytes as received (identical to re-encoding, since the encoding is canonical).
    tx.__dict__["body_bytes"] = r.data[: r.body_end]
    tx.__dict__["raw"] = r.data
    return tx


def check_transaction(tx: Transaction) -> None:
    """Run the context-free checks of ``tx``'s kind (any core kind), then make sure it has a canonical encoding.

    A chain accepts only the kinds of its rule set: use ``Ruleset.check_transaction`` for that.
    """
    rules = ALL_KINDS.get(getattr(tx, "KIND", None))
    if rules is None or type(tx) is not rules.cls:
        raise Reject("bad-tx-kind-unknown", f"no rules for transaction kind {type(tx).__name__}")
    rules.check(tx)
    tx.encode()  # every field must be encodable (ranges, sizes): raises a bad-encoding-* reject otherwise
