"""What an honest node does about a block a colluding committee majority certified but the ledger rules refuse.

A certificate is necessary, not sufficient: every replica re-runs every ledger rule, so a block that breaks one is
refused whatever its votes (:meth:`~gridledger.consensus.poef.Replica.commit` records the refusal). Two things
follow from a refusal, so that the attack does not stay inside the captured chain:

* **The tier above refuses the anchor.** A member of the parent chain that replicates the child (a concentrator on
  its FAN/WAN, a meter on its NAN) votes no on an anchor whose root differs from the blocks it holds, or that covers
  a height where it refused a certified block (:func:`check_anchor_replicated`: ``bad-poef-anchor-mismatch``,
  ``bad-poef-anchor-refused``).
* **The DSO is told.** The node raises a TAMPERING alarm about each refused block on the parent chain, where the
  captured coordinator cannot censor it (:func:`refusal_alarms`); the DSO reads the parent's alarms.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds.alarm import Alarm, AlarmCode, raise_alarm
from gridledger.ledger.kinds.anchor import Anchor, anchor_root
from gridledger.ledger.transactions import Transaction

if TYPE_CHECKING:
    from gridledger.consensus.poef import Replica

#: The detector name of alarms about certified blocks a replica refused.
REFUSED_DETECTOR = "replica"


def check_anchor_replicated(tx: Transaction, children: Mapping[bytes, Replica]) -> None:
    """An anchor of a child chain this node replicates must name exactly the blocks its replica holds there, and
    must not cover a height where the replica refused a certified block; other transactions pass."""
    if not isinstance(tx, Anchor) or tx.child not in children:
        return
    child = children[tx.child]
    refused = sorted(h for h in child.refused if tx.first <= h <= tx.last and h > child.height)
    if refused:
        h = refused[0]
        raise Reject(
            "bad-poef-anchor-refused",
            f"the anchor covers child block {h}, which this node refused: {child.refused[h][1]}",
        )
    if child.height >= tx.last:
        hashes = [b.hash for _, b in zip(range(tx.first, tx.last + 1), child.chain.blocks(tx.first), strict=False)]
        if anchor_root(hashes) != tx.root:
            raise Reject(
                "bad-poef-anchor-mismatch",
                f"the anchor of child blocks {tx.first}..{tx.last} differs from this node's copy of the child chain",
            )


def refusal_alarms(replica: Replica, parent_chain_id: bytes, parent_height: int, key: KeyPair) -> list[Alarm]:
    """A signed TAMPERING alarm for the parent chain about each certified block ``replica`` refused and has not
    reported yet (subject: the refused block's hash), raised by ``key`` (a member of the parent chain)."""
    out = []
    for height in sorted(replica.refused):
        block_hash, _ = replica.refused[height]
        if block_hash in replica.reported:
            continue
        replica.reported.add(block_hash)
        out.append(
            raise_alarm(parent_chain_id, AlarmCode.TAMPERING, block_hash, parent_height + 1, REFUSED_DETECTOR, key)
        )
    return out
