"""The multi-tier ledger: HAN, NAN, FAN/WAN and head-end chains, anchored into one another.

The READING, ANCHOR and ALARM kinds these tiers use are core kinds (:mod:`gridledger.ledger.kinds`), valid on a
chain when its rule set lists them (:mod:`gridledger.ledger.ruleset`). Modules: ``hierarchy`` (tier instances run
in one process), ``prove`` (Merkle proofs from a HAN reading up to the head-end), ``audit`` (anchors and replicated
prices across a run's chains). DSO policy replication and fake-price detection, which PoEf validators check, are in
:mod:`gridledger.consensus.policy_sync`; the commands are in :mod:`gridledger.cli.tiers`.
"""
