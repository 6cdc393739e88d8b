"""Fixtures: a small NAN chain under PoEf, in memory, with real keys, readings, votes and certificates.

``nan`` has seven enrolled meters (so the committee of five is a real draw), a primary and a backup concentrator;
its clock stands at the enrolment block (helpers in ``support``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gridledger.tiers.hierarchy import TierChain, build_neighbourhood

from .support import METERS


@pytest.fixture
def nan() -> Iterator[TierChain]:
    node = build_neighbourhood(METERS, backup=True)
    yield node
    node.close()
