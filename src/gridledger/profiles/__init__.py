"""Household load and PV profiles, community readings and the community file.

The contract the analytics and the digital twin code against::

    household_load(index, annual_kwh, profile="H0", seed=0) -> pd.Series   # W
    pv_power(index, peak_kw, location=MORELIA, seed=0, variability=0.3) -> pd.Series   # W, >= 0
    community_readings(n_meters, days, freq="1min", start="2024-01-01", seed=0, pv_share=0.5) -> pd.DataFrame
    load_community(path) -> Community
    generate_community(homes, days=7, seed=0) -> Community; community_toml(community) -> str
"""

from gridledger.profiles.community import (
    Community,
    CommunityError,
    DsoLimits,
    Feeder,
    Home,
    Prices,
    community_toml,
    generate_community,
    load_community,
    parse_community,
)
from gridledger.profiles.load import PROFILES, LoadNoise, household_load
from gridledger.profiles.meter_readings import COLUMNS, MeterSpec, community_readings
from gridledger.profiles.pv import MORELIA, PVArray, pv_power, synthetic_weather

__all__ = [
    "COLUMNS",
    "MORELIA",
    "PROFILES",
    "Community",
    "CommunityError",
    "DsoLimits",
    "Feeder",
    "Home",
    "LoadNoise",
    "MeterSpec",
    "PVArray",
    "Prices",
    "community_readings",
    "community_toml",
    "generate_community",
    "household_load",
    "load_community",
    "parse_community",
    "pv_power",
    "synthetic_weather",
]
