"""The multi-tier ledger: HAN, NAN, FAN/WAN and head-end chains, anchored into one another.

Modules: ``readings`` (the READING kind: signed, AES-GCM-encrypted readings), ``anchor`` (the ANCHOR kind),
``alarm`` (the ALARM kind), ``policy_sync`` (DSO policy replication, fake-price detection), ``hierarchy`` (tier
instances run in one process), ``prove`` (Merkle proofs from a HAN reading up to the head-end); the commands are in
``gridledger.cli.tiers``.
Importing the package registers the READING, ANCHOR and ALARM kinds (and, through ``gridledger.consensus``,
the REWARD kind and the quorum-certificate check) with the core.
"""

from gridledger.tiers import alarm, anchor, readings  # noqa: F401  (registration with the core)
