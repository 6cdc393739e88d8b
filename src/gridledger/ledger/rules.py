"""Context-free transaction checks: everything that can be decided from the transaction alone.

Each rule is one check that raises ``Reject`` with a short, stable code. Checks that need the chain's state
(spent outputs, the DSO policy in force, issued totals) live in ``state``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from gridledger.ledger.assets import MAX_AMOUNT, Asset, AssetKind, Output, check_asset
from gridledger.ledger.crypto import ADDRESS_BYTES, PUBKEY_BYTES
from gridledger.ledger.encoding import check_name
from gridledger.ledger.errors import Reject
from gridledger.ledger.transactions import DsoPolicy, Genesis, MeterIssue, Transaction, Transfer

#: At most this many inputs and outputs per transaction (bounds validation work per byte).
MAX_IO = 1024


def check_outputs(outputs: tuple[Output, ...], what: str = "output") -> None:
    """Every output holds a valid asset and a 20-byte owner; per-kind totals stay within ``MAX_AMOUNT``."""
    if not outputs:
        raise Reject("bad-txns-vout-empty", "transaction has no outputs")
    if len(outputs) > MAX_IO:
        raise Reject("bad-txns-too-many", f"{len(outputs)} outputs; at most {MAX_IO}")
    totals: dict[int, int] = defaultdict(int)
    for i, out in enumerate(outputs):
        if not isinstance(out, Output):
            raise Reject("bad-asset-type", f"{what} {i} is not an output")
        check_asset(out.asset, f"{what} {i}")
        if not isinstance(out.owner, bytes) or len(out.owner) != ADDRESS_BYTES:
            raise Reject("bad-txns-owner", f"{what} {i} owner must be a {ADDRESS_BYTES}-byte address")
        totals[out.asset.kind] += out.asset.amount
        # Sums bounded like Bitcoin's MAX_MONEY check (CVE-2010-5139: an overflowing sum minted coins).
        if totals[out.asset.kind] > MAX_AMOUNT:
            raise Reject(
                "bad-txns-outputs-toolarge",
                f"total {AssetKind(out.asset.kind).name} amount of the outputs exceeds {MAX_AMOUNT}",
            )


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


def check_meter_issue(tx: MeterIssue) -> None:
    check_name(tx.meter, "meter id")
    check_outputs(tx.outputs)


def check_dso_policy(tx: DsoPolicy) -> None:
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


def check_genesis(tx: Genesis) -> None:
    check_name(tx.chain, "chain name")
    if not 1 <= tx.slot_seconds <= 86_400:
        raise Reject("bad-genesis-params", "slot_seconds must be 1..86400")
    if not tx.proposers:
        raise Reject("bad-genesis-params", "at least one proposer (coordinator) is required")
    if tx.max_issue_slots < 1:
        raise Reject("bad-genesis-params", "max_issue_slots must be at least 1")


_CHECKS = {Transfer: check_transfer, MeterIssue: check_meter_issue, DsoPolicy: check_dso_policy, Genesis: check_genesis}


def register_check(cls: type, check) -> None:
    """Register the context-free check of a later transaction kind."""
    _CHECKS[cls] = check


def check_transaction(tx: Transaction) -> None:
    """Run the context-free checks of ``tx``'s kind, then make sure it has a canonical encoding."""
    check = _CHECKS.get(type(tx))
    if check is None:
        raise Reject("bad-tx-kind-unknown", f"no rules for transaction kind {type(tx).__name__}")
    check(tx)
    tx.encode()  # every field must be encodable (ranges, sizes): raises a bad-encoding-* reject otherwise


def check_conservation(inputs: Iterable[Asset], outputs: Iterable[Asset]) -> None:
    """PETra's conservation rule, per asset kind.

    For EPA and ECA: for every slot t, the summed power of the outputs covering t equals that of the inputs
    covering t (so assets may be merged and split in power and in time). For FA: the sums are equal.
    Implemented as a sweep over interval boundaries: the difference of the two step functions must be zero
    everywhere, i.e. every prefix sum of the boundary deltas is zero.
    """
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
