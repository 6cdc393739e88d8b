"""gridledger: privacy-preserving transactive energy (PETra) on a multi-tier Proof-of-Efficiency ledger."""

__version__ = "0.1.0"
