"""Proof-of-Efficiency (PoEf) consensus of the multi-tier ledger (Olivares-Rojas et al. 2023).

Modules: ``members`` (tiers, enrolled members, efficiency scores), ``committee`` (per-block committee sortition,
quorum certificates; registered with the core so every verifier checks them), ``plausibility`` (the analytics
plug-in point, the default robust-window check and the band check), ``poef`` (coordinator and validator
roles, disclosures, one round), ``failover`` (backup coordinator hand-over), ``rewards`` (the REWARD kind and its
published rule).
Importing the package registers the certificate check and the REWARD kind with the core.
"""

from gridledger.consensus import committee, rewards  # noqa: F401  (registration with the core)
