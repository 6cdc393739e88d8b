"""The PoEf validation committee of a block and its quorum certificate.

**Committee rule** (published; anyone recomputes it from the chain alone). The committee of block *h* is drawn
from the members authorized at the block's slot (:mod:`.members`), against the state at block *h − 1*:

* if at most ``k`` members are authorized (``k``: the committee size of the chain's rule set), all of them;
* otherwise ``k`` distinct members by sortition weighted by efficiency score (*proof of
  efficiency*): draw *j* = 0, 1, 2, … takes ``r_j = SHA-256("gridledger/committee/v1" ‖ prev_hash ‖ j) mod W``
  (W = the sum of the weights, weight = 1 + score) and picks the member whose cumulative-weight interval holds
  ``r_j``; an already chosen member is skipped. This is sequential weighted sampling without replacement, in
  integers only, seeded by the previous block hash.

**Quorum certificate.** A block of a PoEf chain commits with its proposer's signature (a coordinator listed in
the genesis; checked by the core) and the votes of a strict majority of its committee (``quorum(k) = k // 2 + 1``;
0 for an empty committee, i.e. before the DSO has enrolled anyone). A vote is a committee member's Ed25519
signature over ``header.signing_message()``. The certificate lists the votes by increasing public key and must
hold at least a quorum of them. The check is a whole-block check of every PoEf rule set (:mod:`.ruleset`), so
every verifier — ``Chain.append``, ``verify_store``, ``gridledger verify`` — checks it on every block.

The security trade-off of a committee smaller than the membership is discussed in docs/consensus.md.
"""

from __future__ import annotations

import bisect
import itertools
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from gridledger.ledger import crypto
from gridledger.ledger.errors import Reject
from gridledger.ledger.members import authorized_members, score, scores_version

if TYPE_CHECKING:
    from gridledger.ledger.block import Block, BlockHeader, Vote
    from gridledger.ledger.state import LedgerState

_SEED_TAG = b"gridledger/committee/v1"

def quorum(size: int) -> int:
    """Votes needed from a committee of ``size``: a strict majority (0 for an empty committee)."""
    return size // 2 + 1 if size else 0


@dataclass(frozen=True)
class Committee:
    """The committee of one block: members (index, public key) in draw order, and the votes it needs."""

    members: tuple[tuple[int, bytes], ...]

    @cached_property
    def keys(self) -> frozenset[bytes]:
        return frozenset(k for _, k in self.members)

    @cached_property
    def required(self) -> int:
        return quorum(len(self.keys))

    def __contains__(self, pubkey: object) -> bool:
        return pubkey in self.keys


@dataclass(frozen=True)
class Weights:
    """The members eligible at one slot with their cumulative sortition weights (weight = 1 + score)."""

    members: tuple[tuple[int, bytes], ...]
    cumulative: tuple[int, ...]

    @classmethod
    def of(cls, state: LedgerState, slot: int) -> Weights:
        members = authorized_members(state, slot).keys
        return cls(members, tuple(itertools.accumulate(1 + score(state, m) for m, _ in members)))


def draw(seed: bytes, cumulative: Sequence[int], k: int) -> list[int]:
    """Positions of ``k`` distinct entries drawn with probability ∝ weight (``cumulative``: running sums of the
    weights, all ≥ 1). Deterministic in ``seed``; every position when ``k`` ≥ the number of entries."""
    n = len(cumulative)
    if k >= n:
        return list(range(n))
    total = cumulative[-1]
    chosen: list[int] = []
    seen: set[int] = set()
    j = 0
    while len(chosen) < k:
        r = int.from_bytes(crypto.sha256(_SEED_TAG + seed + j.to_bytes(8, "big")), "big") % total
        j += 1
        i = bisect.bisect_right(cumulative, r)
        if i not in seen:
            seen.add(i)
            chosen.append(i)
    return chosen


_WEIGHTS: weakref.WeakKeyDictionary[LedgerState, tuple[tuple, Weights]] = weakref.WeakKeyDictionary()
_COMMITTEES: weakref.WeakKeyDictionary[LedgerState, tuple[tuple, Committee]] = weakref.WeakKeyDictionary()


def weights(state: LedgerState, slot: int) -> Weights:
    """The sortition weights at ``slot`` (memoized per state object until members or scores change)."""
    version = (id(state.policy), len(state.policy.policies), slot, scores_version(state))
    cached = _WEIGHTS.get(state)
    if cached is None or cached[0] != version:
        cached = (version, Weights.of(state, slot))
        _WEIGHTS[state] = cached
    return cached[1]


def committee_for(state: LedgerState, header: BlockHeader) -> Committee:
    """The committee of the block ``header`` proposes on top of ``state`` (empty off PoEf: committee size 0)."""
    size = state.ruleset.committee_size
    if not size:
        return Committee(())
    slot = state.slot_of(header.time)
    version = (state.height, state.tip_hash, header.prev_hash, slot)
    cached = _COMMITTEES.get(state)
    if cached is not None and cached[0] == version:
        return cached[1]
    table = weights(state, slot)
    picked = draw(header.prev_hash, table.cumulative, size)
    result = Committee(tuple(table.members[i] for i in picked))
    _COMMITTEES[state] = (version, result)
    return result


def check_vote(committee: Committee, header: BlockHeader, vote: Vote) -> None:
    """One vote: from a committee member, with a valid signature over the header."""
    if vote.pubkey not in committee:
        raise Reject("bad-qc-nonmember", f"vote by {vote.pubkey.hex()[:16]}…, who is not on this block's committee")
    if not crypto.verify(vote.pubkey, header.signing_message(), vote.signature):
        raise Reject("bad-qc-signature", f"vote by {vote.pubkey.hex()[:16]}… has an invalid signature")


def check_certificate(committee: Committee, header: BlockHeader, votes: Iterable[Vote]) -> None:
    """A quorum certificate: votes in increasing key order, each valid, at least a quorum of them."""
    votes = tuple(votes)
    last = b""
    for vote in votes:
        if vote.pubkey <= last:
            code = "bad-qc-duplicate" if vote.pubkey == last else "bad-qc-order"
            raise Reject(code, "certificate votes must be listed once each, by increasing public key")
        last = vote.pubkey
        check_vote(committee, header, vote)
    if len(votes) < committee.required:
        raise Reject(
            "bad-qc-insufficient",
            f"{len(votes)} votes; this block's committee of {len(committee.keys)} needs {committee.required}",
        )


def certify(committee: Committee, votes: Iterable[Vote]) -> tuple[Vote, ...]:
    """The certificate stored with a block: a quorum of ``votes`` (already checked), by increasing key."""
    unique = {v.pubkey: v for v in votes}
    return tuple(unique[k] for k in sorted(unique))[: committee.required]


def check_block_certificate(state: LedgerState, block: Block) -> None:
    """The whole-block check of the PoEf rule sets: the block carries a valid quorum certificate of its committee."""
    check_certificate(committee_for(state, block.header), block.header, block.certificate)
