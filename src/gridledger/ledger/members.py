"""Who takes part in a chain's PoEf consensus: its enrolled members and their efficiency scores.

A chain's tier and whether it runs PoEf come from the rule set its genesis names (:mod:`.ruleset`). This module
and :mod:`.committee` are the deterministic part of PoEf that every verifier needs; the protocol (rounds, votes,
fail-over, plausibility) is :mod:`gridledger.consensus`.

**Members.** The members of a chain are the parties its DSO policy authorizes on it: the appliances of a HAN,
the smart meters of a NAN, the concentrators of a FAN/WAN, the FAN/WAN coordinators at the head-end. A member's
*index* is its enrolment number: the order in which the DSO first authorized its ID on this chain (policies in
commit order, IDs in the order each policy lists them). Readings, rewards and committees name a member by this
index (2 bytes instead of a name of up to 32). Anyone derives it from the chain alone.

**Scores.** A member's efficiency score (per mille, 0..1000: the analytics' PoEf efficiency score,
:mod:`gridledger.analytics.efficiency`) is the last one a reward transaction committed for it
(:mod:`gridledger.ledger.kinds.reward`), or ``DEFAULT_SCORE`` before any.

Per-member counters of the tier and consensus rules (last reading minute, score, next reward period, anchored
heights) live in the core's ``nonces`` table under namespaced keys (``reading:17``, ``score:17``, ``reward:17``,
``anchor:…``), so they are stored, snapshotted, rolled back and re-verified by the core exactly like meter
nonces.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gridledger.ledger.policy import AUTHORIZED

if TYPE_CHECKING:
    from gridledger.ledger.state import LedgerState

#: A member's score (per mille) before any reward transaction has scored it.
DEFAULT_SCORE = 500
MAX_SCORE = 1_000
#: Most members one chain may enrol (a member index is a u16).
MAX_MEMBERS = 0xFFFF


@dataclass(frozen=True)
class Roster:
    """The enrolled member IDs of one chain, by index, and the index of each ID."""

    ids: tuple[str, ...]
    index: dict[str, int]

    def __len__(self) -> int:
        return len(self.ids)


_ROSTERS: weakref.WeakKeyDictionary[LedgerState, tuple[tuple, Roster]] = weakref.WeakKeyDictionary()


def _policy_version(state: LedgerState) -> tuple:
    policies = state.policy.policies
    return (id(state.policy), len(policies), policies[-1].txid if policies else b"")


def roster(state: LedgerState) -> Roster:
    """The chain's roster at the state's tip (memoized per state object until the next policy)."""
    version = _policy_version(state)
    cached = _ROSTERS.get(state)
    if cached is not None and cached[0] == version:
        return cached[1]
    ids: list[str] = []
    index: dict[str, int] = {}
    for policy in state.policy.policies:
        for meter, _ in policy.authorize:
            if meter not in index and len(ids) < MAX_MEMBERS:
                index[meter] = len(ids)
                ids.append(meter)
    result = Roster(tuple(ids), index)
    _ROSTERS[state] = (version, result)
    return result


def member_key(state: LedgerState, member: int, slot: int) -> tuple[str, bytes | None]:
    """(status, public key) of member ``member`` at ``slot``: status is authorized, banned or unknown."""
    ids = roster(state).ids
    if not 0 <= member < len(ids):
        return "unknown", None
    return state.policy.status(ids[member], slot)


def member_of_key(state: LedgerState, pubkey: bytes, slot: int) -> int | None:
    """The index of the member authorized with ``pubkey`` at ``slot``, or None."""
    return authorized_members(state, slot).by_key.get(pubkey)


@dataclass(frozen=True)
class Members:
    """The members authorized at one slot: (index, public key) by index, and the index of each key."""

    keys: tuple[tuple[int, bytes], ...]
    by_key: dict[bytes, int]


_MEMBERS: weakref.WeakKeyDictionary[LedgerState, tuple[tuple, Members]] = weakref.WeakKeyDictionary()


def authorized_members(state: LedgerState, slot: int) -> Members:
    """Every member authorized at ``slot`` (memoized per state object, slot and policy)."""
    version = (*_policy_version(state), slot)
    cached = _MEMBERS.get(state)
    if cached is not None and cached[0] == version:
        return cached[1]
    keys = []
    for member, meter in enumerate(roster(state).ids):
        status, key = state.policy.status(meter, slot)
        if status == AUTHORIZED:
            keys.append((member, key))
    result = Members(tuple(keys), {key: member for member, key in keys})
    _MEMBERS[state] = (version, result)
    return result


def score_key(member: int) -> str:
    return f"score:{member}"


def reward_key(member: int) -> str:
    """State key of the first period member ``member`` may still be rewarded for."""
    return f"reward:{member}"


def rate_key(period: int) -> str:
    """State key of the rate of period ``period``'s rewards, once one is committed."""
    return f"reward-rate:{period}"


#: State key of the number of reward transactions committed; it changes exactly when committed scores change.
REWARDS_KEY = "rewards"


def scores_version(state: LedgerState) -> int:
    """A number that changes whenever the committed scores change."""
    return state.nonces.get(REWARDS_KEY, 0)


def score(state: LedgerState, member: int) -> int:
    """The member's committed efficiency score (per mille)."""
    return state.nonces.get(score_key(member), DEFAULT_SCORE)
