"""Coordinator fail-over: a backup coordinator takes over when the primary stops, and no transaction is lost.

The coordinator is PoEf's most exposed role (Olivares-Rojas et al. 2023, §4.3: under a DoS on the FAN/WAN
coordinator "the coordinator role passes to the second coordinator, only with a delay in confirmation"). Every
chain lists a primary and at least one backup coordinator, each with its own key, in its genesis ``proposers``.
The hand-over has three parts, all free of networking so that the node API can reuse them with etcd leases:

* :class:`Lease` decides who coordinates: the current coordinator while its heartbeat is fresh, else the first
  live one in ``proposers`` order. It is sticky (a recovered primary does not snatch the role back), as an etcd
  lease-based election is.
* :func:`take_over`: before proposing anything, the new coordinator asks the committee which block each voted for
  at the next height, and adopts it if any did — a block that may already hold a quorum is finished, never
  replaced by a conflicting one (validators vote once per height). It raises a COORDINATOR_DOWN alarm.
* :class:`Submitter`: clients keep what they submitted until they see it committed and resubmit the rest, by
  txid (idempotent), to the new coordinator. Committed transactions are in every replica; pending ones come back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gridledger.consensus.poef import Coordinator, Validator
from gridledger.ledger.block import Block
from gridledger.ledger.kinds.alarm import AlarmCode, raise_alarm
from gridledger.ledger.transactions import Transaction


@dataclass
class Lease:
    """Who coordinates a chain now.

    ``order``: the coordinators' public keys in the genesis ``proposers`` order; ``timeout_s``: how long a
    coordinator stays in charge after its last heartbeat (s).
    """

    order: tuple[bytes, ...]
    timeout_s: float
    last_seen: dict[bytes, float] = field(default_factory=dict)
    holder: bytes | None = None

    def heartbeat(self, pubkey: bytes, now: float) -> None:
        """Coordinator ``pubkey`` is alive at time ``now`` (s)."""
        if pubkey not in self.order:
            raise ValueError("heartbeat from a key that is not a coordinator of this chain")
        self.last_seen[pubkey] = now

    def alive(self, pubkey: bytes, now: float) -> bool:
        seen = self.last_seen.get(pubkey)
        return seen is not None and now - seen <= self.timeout_s

    def active(self, now: float) -> bytes | None:
        """The coordinator in charge at ``now``, or None if none is alive."""
        if self.holder is None or not self.alive(self.holder, now):
            self.holder = next((k for k in self.order if self.alive(k, now)), None)
        return self.holder


def take_over(coordinator: Coordinator, validators: Iterable[Validator], previous: bytes | None = None) -> Block | None:
    """Hand the chain to ``coordinator``; returns the previous coordinator's block it adopted, if any.

    ``coordinator``'s replica must be caught up with the committed chain first (``Replica.catch_up``).
    ``previous``: the public key of the coordinator that stopped, named in a COORDINATOR_DOWN alarm.
    """
    height = coordinator.chain.height + 1
    tally: dict[bytes, list] = {}
    for validator in validators:
        voted = validator.last_vote(height)
        if voted is not None:
            entry = tally.setdefault(voted[0].hash, [voted[0], 0])
            entry[1] += 1
    if previous is not None:
        coordinator.submit(
            raise_alarm(
                coordinator.chain.chain_id, AlarmCode.COORDINATOR_DOWN, previous, height, "failover", coordinator.key
            )
        )
    if not tally:
        coordinator.abandon()
        return None
    block = max(tally.values(), key=lambda e: (e[1], e[0].hash))[0]
    coordinator.adopt(block)
    return block


@dataclass
class Submitter:
    """A client's submissions: kept until seen committed, resubmitted by txid to whichever coordinator is active."""

    pending: dict[bytes, Transaction] = field(default_factory=dict)

    def submit(self, tx: Transaction, coordinator: Coordinator) -> bytes:
        self.pending[tx.txid] = tx
        return coordinator.submit(tx)

    def observe(self, block: Block) -> None:
        """Forget what ``block`` committed."""
        for tx in block.transactions:
            self.pending.pop(tx.txid, None)

    def resubmit(self, coordinator: Coordinator) -> list[bytes]:
        """Submit every still-pending transaction to ``coordinator`` (idempotent by txid)."""
        return [coordinator.submit(tx) for tx in self.pending.values()]
