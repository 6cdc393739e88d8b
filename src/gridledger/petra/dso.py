"""The distribution system operator: authorizes and bans meters, sets prices and limits (signed DSO policy)."""

from __future__ import annotations

from dataclasses import dataclass, field

from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.dso_policy import DsoPolicy, MeterLimits


@dataclass
class DSO:
    """Builds signed ``DsoPolicy`` transactions with increasing nonces for one chain."""

    key: KeyPair
    chain_id: bytes
    nonce: int = 0
    meters: dict[str, bytes] = field(default_factory=dict)

    def policy(
        self,
        effective_slot: int,
        *,
        prices: tuple[int, int] | None = None,
        authorize: dict[str, bytes] | None = None,
        limits: list[MeterLimits] | None = None,
        ban: list[str] | None = None,
    ) -> DsoPolicy:
        """A signed policy in force from slot ``effective_slot``; prices in minor units per kWh, limits in W and
        minor units."""
        self.nonce += 1
        auth = tuple(sorted((authorize or {}).items()))
        self.meters.update(dict(auth))
        tx = DsoPolicy(self.nonce, effective_slot, prices, auth, tuple(limits or ()), tuple(ban or ()))
        return tx.signed(self.chain_id, self.key)
