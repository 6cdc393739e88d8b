"""Readings of a ``gridledger simulate`` output folder, in the long format the analytics commands read.

A run folder holds ``readings.parquet`` (one row per meter per slot, in the ledger's integer units: ``meter``,
``feeder``, ``slot``, ``consumption_wh``, ``production_wh``, ``voltage_dv`` (0.1 V), ``current_ca`` (0.01 A),
``power_factor_pm`` (per mille, negative when leading)) and ``summary.json`` (``slot_seconds``, ``start``).
These are the readings the meters signed and committed on their NAN chains.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..data import DataError, Readings, load_readings, validate_readings

READINGS = "readings.parquet"
SUMMARY = "summary.json"
COLUMNS = ("meter", "slot", "consumption_wh", "production_wh", "voltage_dv", "current_ca", "power_factor_pm")


def is_run_folder(path: str | Path) -> bool:
    """True if ``path`` is a folder with a run's ``readings.parquet``."""
    return (Path(path) / READINGS).is_file()


def _summary(folder: Path) -> tuple[int, pd.Timestamp]:
    path = folder / SUMMARY
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        return int(summary["slot_seconds"]), pd.Timestamp(summary["start"])
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (not a complete `gridledger simulate` output folder)") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: needs slot_seconds and start ({type(exc).__name__}: {exc})") from None


def read_simulate(folder: str | Path) -> pd.DataFrame:
    """The run's readings as ``meter_id, timestamp, consumption_wh, production_wh, voltage_v, current_a,
    power_factor`` (Wh per slot, V, A, |power factor|); ``timestamp`` is the start of the slot in the
    community's local time (``start`` of ``summary.json`` plus ``slot * slot_seconds``).

    Raises
    ------
    DataError
        If the folder is not a run folder or a file lacks a column.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    path = folder / READINGS
    if not path.is_file():
        raise DataError(f"{folder}: no {READINGS} (not a `gridledger simulate` output folder)")
    slot_s, start = _summary(folder)
    try:
        raw = pd.read_parquet(path)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot be read as parquet: {exc}") from None
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    if len(raw) == 0:
        raise DataError(f"{path}: no readings (the run wrote none)")
    stamps = start + pd.to_timedelta(raw["slot"].to_numpy(dtype=np.int64) * slot_s, unit="s")
    return pd.DataFrame(
        {
            "meter_id": raw["meter"].astype(str).to_numpy(),
            "timestamp": stamps,
            "consumption_wh": raw["consumption_wh"].to_numpy(dtype=float),
            "production_wh": raw["production_wh"].to_numpy(dtype=float),
            "voltage_v": raw["voltage_dv"].to_numpy(dtype=float) / 10,
            "current_a": raw["current_ca"].to_numpy(dtype=float) / 100,
            "power_factor": np.abs(raw["power_factor_pm"].to_numpy(dtype=float)) / 1000,
        }
    )


def community_readings(community) -> tuple[pd.DataFrame, dict[str, str]]:
    """What the meters of an honest ``gridledger simulate`` run of ``community`` (a
    :class:`gridledger.profiles.community.Community`) measure and sign, without running the chains: the
    households' device models (:func:`gridledger.devices.household.simulate_households`), their import and export
    per minute summed per slot and rounded to whole Wh as the run does — ``meter_id, timestamp, consumption_wh,
    production_wh`` (timestamps naive local time). Also each meter's equipment: ``"none"``, ``"pv"`` or
    ``"pv+battery"``.
    """
    from gridledger.devices.household import simulate_households

    h = simulate_households(community)
    n, minutes = h.net_w.shape
    per = community.slot_seconds // 60

    def per_slot(w: np.ndarray) -> np.ndarray:
        return np.rint(w.reshape(n, -1, per).sum(axis=2) / 60).ravel()

    slots = minutes // per
    frame = pd.DataFrame(
        {
            "meter_id": np.repeat(np.asarray(h.home_ids, dtype=object), slots),
            "timestamp": np.tile(h.index[::per].tz_localize(None).to_numpy(), n),
            "consumption_wh": per_slot(np.maximum(h.net_w, 0)),
            "production_wh": per_slot(np.maximum(-h.net_w, 0)),
        }
    )
    homes = {home.id: home for home in community.homes}
    kit = {m: "none" if homes[m].pv_kw == 0 else "pv+battery" if homes[m].battery_wh else "pv" for m in h.home_ids}
    return frame, kit


def load_input(path: str | Path) -> Readings:
    """Validated readings of a readings file (.csv/.parquet) or of a ``gridledger simulate`` output folder."""
    path = Path(path)
    if not path.is_dir():
        return load_readings(path)
    frame = read_simulate(path)
    try:
        return validate_readings(frame)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
