"""Source ``profiles``: gridledger's own synthetic community (:func:`gridledger.profiles.community_readings`).

demandlib's BDEW H0 standard profile per home, with the home's own scale, time shift, appliance events and
noise; consumption only (PV export is left out of theft detection).
"""

from __future__ import annotations

import pandas as pd

from gridledger.profiles import community_readings

from . import COLUMNS, check_request


def read(meters: int = 30, days: int = 45, step: str = "1min", seed: int = 0) -> pd.DataFrame:
    """``meters`` homes over ``days`` days from 2024-01-01, in the common frame (naive local time)."""
    check_request(meters, days, step)
    frame = community_readings(meters, days, step, seed=seed, pv_share=0.0)
    frame = frame.loc[:, list(COLUMNS)].copy()
    frame["meter_id"] = "profiles-" + frame["meter_id"].astype(str)
    frame["timestamp"] = frame["timestamp"].dt.tz_localize(None)
    return frame.reset_index(drop=True)
