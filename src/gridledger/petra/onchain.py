"""What a committed PETra transfer is, read from the chain alone: a trade, a mix, a deposit, or something else.

One rule for every reader of a chain (the third party's audit, a node's dashboard); pure, no I/O:

* a **deposit** pays only meters' one-time deposit addresses (:func:`gridledger.petra.settlement.deposit`). Whoever
  holds those addresses (a meter; the audit, given each meter's list) names them; a reader without them (any node,
  the DSO) takes a transfer that pays one single address as a deposit: a deposit pays one fresh address of the
  meter, while a trade pays both parties and a mix one address per participant;
* a **trade** hands out both EPA (to the bid) and ECA (to the offer) other than to deposit addresses;
* a **mix** (CoinShuffle) pays one denomination, the same asset, to several addresses;
* anything else (a split, a payment) is **other**.

The energy a trade delivers (:func:`traded_ws`) follows PETra's trade layout (:func:`.settlement.build_trades`, or an
atomic trade of wallet legs with the seller's first): the matched EPA comes first, paid to the buyer; what follows
(remainders, the ECA and the payment) goes to other addresses.
"""

from __future__ import annotations

from collections.abc import Container
from enum import StrEnum

from gridledger.ledger.assets import AssetKind
from gridledger.ledger.kinds.transfer import Transfer


class Move(StrEnum):
    """What a transfer does in PETra's cycle."""

    TRADE = "trade"
    MIX = "mix"
    DEPOSIT = "deposit"
    OTHER = "other"


def classify(tx: Transfer, deposit_addresses: Container[bytes] | None = None) -> Move:
    """What ``tx`` is; ``deposit_addresses``: the meters' deposit addresses if known (else the one-address rule)."""
    if deposit_addresses is None:
        rest = tx.outputs if len({o.owner for o in tx.outputs}) > 1 else ()
    else:
        rest = tuple(o for o in tx.outputs if o.owner not in deposit_addresses)
    if not tx.outputs:
        return Move.OTHER
    if not rest:
        return Move.DEPOSIT
    if {AssetKind.EPA, AssetKind.ECA} <= {o.asset.kind for o in rest}:
        return Move.TRADE
    if len({o.asset for o in rest}) == 1 and len({o.owner for o in rest}) > 1:
        return Move.MIX
    return Move.OTHER


def traded_ws(tx: Transfer, slot_seconds: int) -> int:
    """Energy (W·s) trade ``tx`` delivers: its EPA paid to the owner of its first EPA output, the buyer."""
    epa = [o for o in tx.outputs if o.asset.kind == AssetKind.EPA]
    if not epa:
        return 0
    buyer = epa[0].owner
    return sum(o.asset.energy_ws(slot_seconds) for o in epa if o.owner == buyer)
