"""Automated attack scenarios: the paper's eight threats to the DT platform (section 4.5), each one module
that registers itself. More scenarios (the ledger-level ones) are added with ``base.register``."""

from gridledger.twin.attacks import ddos, energy, fault_tolerance, hardware, leakage, sensor, sniffing, spoofing
from gridledger.twin.attacks.base import RunContext, RunResult, Summary, get, register, scenarios, summarize

__all__ = [
    "RunContext",
    "RunResult",
    "Summary",
    "ddos",
    "energy",
    "fault_tolerance",
    "get",
    "hardware",
    "leakage",
    "register",
    "scenarios",
    "sensor",
    "sniffing",
    "spoofing",
    "summarize",
]
