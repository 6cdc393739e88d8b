"""The multi-tier ledger: HAN, NAN, FAN/WAN and head-end chains, anchored into one another.

The READING, ANCHOR and ALARM kinds these tiers use are core kinds (:mod:`gridledger.ledger.kinds`), valid on a
chain when its rule set lists them (:mod:`gridledger.ledger.ruleset`). Modules: ``policy_sync`` (DSO policy
replication, fake-price detection), ``hierarchy`` (tier instances run in one process), ``prove`` (Merkle proofs
from a HAN reading up to the head-end); the commands are in ``gridledger.cli.tiers``.
"""
