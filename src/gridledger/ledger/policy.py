"""The DSO policy timeline: which meters are authorized or banned, their limits, and the prices, at any slot.

The policy in force at slot t is given by the latest policy whose ``effective_slot`` ≤ t; policies with equal
slots are ordered by the order in which they were committed. Each element (a meter's status, a meter's limits,
the prices) has its own timeline, so a policy that only bans one meter leaves the prices in force.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gridledger.ledger.kinds.dso_policy import DsoPolicy, MeterLimits

#: Status of a meter at a slot.
UNKNOWN, AUTHORIZED, BANNED = "unknown", "authorized", "banned"


@dataclass
class _Timeline:
    """Values keyed by (effective slot, commit sequence), looked up by slot."""

    keys: list[tuple[int, int]] = field(default_factory=list)
    values: list[object] = field(default_factory=list)

    def add(self, time: int, seq: int, value: object) -> None:
        i = bisect.bisect_right(self.keys, (time, seq))
        self.keys.insert(i, (time, seq))
        self.values.insert(i, value)

    def at(self, slot: int) -> object | None:
        i = bisect.bisect_right(self.keys, (slot, float("inf")))
        return self.values[i - 1] if i else None


@dataclass
class PolicyTimeline:
    """All committed DSO policies, queryable by slot. ``policies`` keeps them in commit order."""

    policies: list[DsoPolicy] = field(default_factory=list)
    _status: dict[str, _Timeline] = field(default_factory=dict)
    _limits: dict[str, _Timeline] = field(default_factory=dict)
    _prices: _Timeline = field(default_factory=_Timeline)

    @property
    def nonce(self) -> int:
        """Nonce of the last committed policy (0 before any)."""
        return self.policies[-1].nonce if self.policies else 0

    def add(self, policy: DsoPolicy) -> None:
        seq = len(self.policies)
        self.policies.append(policy)
        t = policy.effective_slot
        for meter, pubkey in policy.authorize:
            self._status.setdefault(meter, _Timeline()).add(t, seq, pubkey)
        for meter in policy.ban:
            self._status.setdefault(meter, _Timeline()).add(t, seq, None)
        for lim in policy.limits:
            self._limits.setdefault(lim.meter, _Timeline()).add(t, seq, lim)
        if policy.prices is not None:
            self._prices.add(t, seq, policy.prices)

    def pop(self) -> None:
        """Undo the last ``add`` (used when a block is rolled back)."""
        policies = self.policies[:-1]
        self.__init__()
        for p in policies:
            self.add(p)

    def status(self, meter: str, slot: int) -> tuple[str, bytes | None]:
        """(status, public key) of ``meter`` at ``slot``."""
        tl = self._status.get(meter)
        if tl is None or not tl.keys or tl.keys[0][0] > slot:
            return UNKNOWN, None
        key = tl.at(slot)
        return (BANNED, None) if key is None else (AUTHORIZED, key)

    def limits(self, meter: str, slot: int) -> MeterLimits | None:
        tl = self._limits.get(meter)
        return None if tl is None else tl.at(slot)

    def prices(self, slot: int) -> tuple[int, int] | None:
        """(priceConsumption, priceProduction) in minor units per kWh at ``slot``, or None before any."""
        return self._prices.at(slot)
