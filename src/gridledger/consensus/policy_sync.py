"""DSO policy replication down the tiers, and fake-price detection (the paper's fake-price scenario, Fig. 13).

The DSO publishes a price on the head-end chain; it is replicated down every tier: FAN/WAN, NAN, HAN (steps 1–4
of Olivares-Rojas et al. 2023, Fig. 13). "The nodes always compare their price with their coordinators' and
discard fake prices" (§4.1). Here:

* **Replication.** A DSO signature is bound to one chain (the sighash covers the chain id) and DSO nonces count
  per chain, so the DSO signs one copy of a price per chain (:func:`replicate`): the same *price signal* — the
  prices and the slot they take effect — on every tier. A coordinator submits its chain's copy once the signal
  is committed on the parent chain.
* **Validators compare with the tier above.** A policy that sets prices may enter a chain below the head-end only if
  the same signal is already committed on the parent chain — the chain the coordinator answers to. Otherwise the
  committee votes no with ``bad-policy-fake-price`` (:func:`check_replicated`). A price that
  appears at one tier only — injected with a stolen DSO key, or by a compromised coordinator — never commits;
  to fake a price one must fake it at every tier up to the head-end (step 5).
* **Nodes compare what they see.** :func:`check_price_signal` compares a price a node receives (from its own chain
  or off the chain, e.g. a price message on the meter's network) with the price in force on its coordinator's
  chain at that slot; a mismatch is rejected and is cause for an alarm.

Chain-local policies (authorizations, limits, bans of one chain's members) carry no prices and are not replicated.
All chains of one hierarchy share the DSO's clock (``start_time`` and ``slot_seconds``), so a slot means the same
interval on every tier.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds.dso_policy import DsoPolicy
from gridledger.ledger.state import LedgerState
from gridledger.ledger.transactions import Transaction
from gridledger.petra.dso import DSO

PriceSignal = tuple[int, tuple[int, int]]


def signal_of(policy: DsoPolicy) -> PriceSignal | None:
    """(effective slot, (priceConsumption, priceProduction)) of a price policy; None for a chain-local one."""
    return None if policy.prices is None else (policy.effective_slot, tuple(policy.prices))


class ParentView(Protocol):
    """What a node knows of its coordinator's chain (the tier above)."""

    def price_signals(self) -> frozenset[PriceSignal]:
        """The price signals committed there."""
        ...

    def prices(self, slot: int) -> tuple[int, int] | None:
        """Prices in force there at ``slot``."""
        ...


class StateView:
    """A :class:`ParentView` over a ledger state (a replica of the parent chain)."""

    def __init__(self, state_of) -> None:
        self._state_of = state_of
        self._cache: tuple[int, frozenset[PriceSignal]] = (-1, frozenset())

    @property
    def state(self) -> LedgerState:
        return self._state_of()

    def price_signals(self) -> frozenset[PriceSignal]:
        policies = self.state.policy.policies
        if self._cache[0] != len(policies):
            self._cache = (len(policies), frozenset(filter(None, map(signal_of, policies))))
        return self._cache[1]

    def prices(self, slot: int) -> tuple[int, int] | None:
        return self.state.policy.prices(slot)


def replicate(prices: tuple[int, int], slot: int, dsos: Iterable[DSO]) -> dict[bytes, DsoPolicy]:
    """The DSO's signed copy of one price signal for each chain (``dsos``: the DSO's signer of each chain)."""
    return {dso.chain_id: dso.policy(slot, prices=prices) for dso in dsos}


def check_replicated(tx: Transaction, parent: ParentView | None) -> None:
    """A price policy below the head-end must already be committed on the parent chain (else: a fake price)."""
    if parent is None or not isinstance(tx, DsoPolicy) or tx.prices is None:
        return
    if signal_of(tx) not in parent.price_signals():
        raise Reject(
            "bad-policy-fake-price",
            f"prices {tx.prices[0]}/{tx.prices[1]} per kWh from slot {tx.effective_slot} are not committed on the "
            "coordinator's tier above",
        )


def check_price_signal(prices: tuple[int, int] | None, slot: int, parent: ParentView) -> None:
    """A price seen at ``slot`` (consumption, production; minor units per kWh) must be the coordinator's."""
    theirs = parent.prices(slot)
    if prices != theirs:
        raise Reject(
            "bad-policy-fake-price", f"price {prices} at slot {slot} differs from the coordinator's tier ({theirs})"
        )
