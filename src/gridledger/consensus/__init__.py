"""Proof-of-Efficiency (PoEf) consensus of the multi-tier ledger (Olivares-Rojas et al. 2023).

The deterministic rules every verifier needs — enrolled members and scores, the committee draw, the quorum
certificate check, the REWARD kind — are core (:mod:`gridledger.ledger.members`, :mod:`gridledger.ledger.committee`,
:mod:`gridledger.ledger.kinds.reward`); this package is the protocol. Modules: ``plausibility`` (the analytics
plug-in point, the default robust-window check and the band check), ``poef`` (coordinator and validator
roles, disclosures, one round), ``failover`` (backup coordinator hand-over).
"""
