"""Shared fixtures: small seeded communities from gridledger.profiles, the same shape the analytics serve."""

from __future__ import annotations

import pandas as pd
import pytest

from gridledger.analytics.data import DayCube, to_cube, validate_readings
from gridledger.profiles import community_readings

ALL = ("consumption_wh", "production_wh", "voltage_v", "current_a", "power_factor")


@pytest.fixture(scope="session")
def community() -> pd.DataFrame:
    """16 meters x 14 days at 15 minutes."""
    return community_readings(16, 14, "15min", seed=3)


@pytest.fixture(scope="session")
def cube(community: pd.DataFrame) -> DayCube:
    return to_cube(validate_readings(community), ALL)


@pytest.fixture(scope="session")
def minute_readings() -> pd.DataFrame:
    """3 meters x 3 days at 1 minute, the paper's sampling."""
    return community_readings(3, 3, "1min", seed=1)
