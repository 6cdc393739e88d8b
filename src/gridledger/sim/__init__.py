"""Simulations that drive the protocol roles end to end in one process (tests, demos, benchmarks)."""
