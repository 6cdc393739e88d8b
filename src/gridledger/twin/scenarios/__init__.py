"""Automated attack scenarios: the paper's eight threats to the DT platform (section 4.5) and the five
ledger-level ones (tampered store, unregistered node, flood, coordinator loss, fake price), each one module
that registers itself with ``base.register``."""

from gridledger.twin.scenarios import (
    coordinator_loss,
    ddos,
    energy,
    fake_price,
    fault_tolerance,
    flood,
    hardware,
    leakage,
    sensor,
    sniffing,
    spoofing,
    tampered_store,
    unregistered_node,
)
from gridledger.twin.scenarios.base import RunContext, RunResult, Summary, get, register, scenarios, session, summarize

__all__ = [
    "RunContext",
    "RunResult",
    "Summary",
    "coordinator_loss",
    "ddos",
    "energy",
    "fake_price",
    "fault_tolerance",
    "flood",
    "get",
    "hardware",
    "leakage",
    "register",
    "scenarios",
    "sensor",
    "session",
    "sniffing",
    "spoofing",
    "summarize",
    "tampered_store",
    "unregistered_node",
]
