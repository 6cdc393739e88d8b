"""Meter readings from outside: load, validate, repair what is safe to repair, and reshape.

The long format is the one of :func:`gridledger.profiles.community_readings`: one row per meter per step, with
``meter_id``, ``timestamp`` and ``consumption_wh`` required, and ``production_wh``, ``voltage_v``,
``current_a``, ``power_factor`` and ``label`` (1 on every row of a tampered meter-day) optional.
Energy columns are the energy of the step in Wh.

Every problem is either rejected with a :class:`DataError` that names the column, the row and the value, or
repaired by a documented rule and listed in :attr:`Readings.repairs` (never silently):

* exact duplicate rows are dropped; rows that share ``(meter_id, timestamp)`` but differ are rejected;
* a meter-day with at most ``max_gap_fraction`` of its steps missing (absent rows or empty cells) is filled
  by linear interpolation inside the day; a meter-day with more missing is dropped (so are incomplete
  first and last days);
* timestamps with mixed UTC offsets are converted to UTC (meter-days are then UTC days).

Reading and writing files (:func:`read_table`, :func:`write_table`) is the only I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

REQUIRED = ("meter_id", "timestamp", "consumption_wh")
ENERGY = ("consumption_wh", "production_wh")
OPTIONAL = ("production_wh", "voltage_v", "current_a", "power_factor", "label")
ALLOWED = REQUIRED + OPTIONAL
DAY_S = 86_400
MIN_STEP_S = 60


class DataError(ValueError):
    """A readings file or frame cannot be used as it is; the message says exactly why and where."""


@dataclass(frozen=True)
class Readings:
    """Validated long-format readings.

    Attributes
    ----------
    frame : sorted by ``(meter_id, timestamp)``; ``timestamp`` as given (tz-aware if the input was).
    step_s : the regular resolution in seconds (60 to 86 400).
    repairs : one line per documented repair that was applied.
    """

    frame: pd.DataFrame
    step_s: int
    repairs: tuple[str, ...] = ()

    @property
    def meters(self) -> list[str]:
        return sorted(self.frame["meter_id"].unique().tolist())


@dataclass(frozen=True)
class DayCube:
    """Readings as a cube ``values[column][meter, day, slot]`` (NaN where a meter-day is missing or dropped).

    Attributes
    ----------
    meters : meter ids, the first axis.
    days : local dates (midnight), the second axis.
    step_s : slot length in seconds; ``slots = 86 400 / step_s`` is the third axis.
    values : column name -> float array ``(n_meters, n_days, slots)``.
    labels : int array ``(n_meters, n_days)``: 0 honest, 1 tampered, -1 unknown or missing.
    repairs : documented repairs applied while building the cube.
    """

    meters: list[str]
    days: pd.DatetimeIndex
    step_s: int
    values: dict[str, np.ndarray]
    labels: np.ndarray
    repairs: tuple[str, ...] = field(default=())

    @property
    def slots(self) -> int:
        return DAY_S // self.step_s

    @property
    def valid(self) -> np.ndarray:
        """Boolean ``(n_meters, n_days)``: the meter-day has complete consumption data."""
        return np.isfinite(self.values["consumption_wh"]).all(axis=2)

    def coarsen(self, step_s: int) -> DayCube:
        """Sum energy to a coarser slot length that is a whole multiple of this one (Wh per new slot)."""
        check_step(step_s)
        if step_s % self.step_s:
            raise DataError(
                f"cannot aggregate {describe_step(self.step_s)} data to {describe_step(step_s)}: "
                "the new step must be a whole multiple of the old one"
            )
        k = step_s // self.step_s
        values = {
            name: v.reshape(v.shape[0], v.shape[1], -1, k).sum(axis=3) for name, v in self.values.items()
        }
        return DayCube(self.meters, self.days, step_s, values, self.labels, self.repairs)

    def select(self, meters: list[int] | np.ndarray) -> DayCube:
        """The sub-cube of the meters at the given positions."""
        idx = np.asarray(meters, dtype=int)
        return DayCube(
            [self.meters[i] for i in idx],
            self.days,
            self.step_s,
            {name: v[idx] for name, v in self.values.items()},
            self.labels[idx],
            self.repairs,
        )


def describe_step(step_s: int) -> str:
    """``'15 min'``, ``'1 h'``, ``'1 day'``: a step for people."""
    if step_s % DAY_S == 0:
        return f"{step_s // DAY_S} day"
    if step_s % 3600 == 0:
        return f"{step_s // 3600} h"
    if step_s % 60 == 0:
        return f"{step_s // 60} min"
    return f"{step_s} s"


def check_step(step_s: int) -> None:
    """Accept steps from 1 minute to 1 day that tile an hour (1..60 min) or a day (whole hours)."""
    if step_s < MIN_STEP_S:
        raise DataError(
            f"resolution {describe_step(step_s)} is finer than 1 minute; aggregate the file first"
        )
    if step_s > DAY_S:
        raise DataError(f"resolution {describe_step(step_s)} is coarser than 1 day")
    if 3600 % step_s and (step_s % 3600 or DAY_S % step_s):
        raise DataError(
            f"resolution {describe_step(step_s)} is not supported: it must divide an hour "
            "(1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60 min) or be whole hours that divide a day"
        )


def coarser_step(step_s: int, target_s: int) -> int:
    """The smallest supported multiple of ``step_s`` that is at least ``target_s`` seconds."""
    k = max(1, -(-target_s // step_s))
    while DAY_S % (k * step_s) or (3600 % (k * step_s) and (k * step_s) % 3600):
        k += 1
    return k * step_s


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file (by extension) as it is, with a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path, dtype={"meter_id": str})
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read as {suffix[1:]}: {exc}") from exc
    raise DataError(f"{path}: unknown file type {suffix!r}; use .csv or .parquet")


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a CSV or Parquet file (by extension)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    else:
        raise DataError(f"{path}: unknown file type {suffix!r}; use .csv or .parquet")


def load_readings(path: str | Path) -> Readings:
    """Read and validate a readings file: :func:`read_table` then :func:`validate_readings`."""
    frame = read_table(path)
    try:
        return validate_readings(frame)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None


def _first(frame: pd.DataFrame, mask: np.ndarray | pd.Series, column: str) -> str:
    """Describe the rows a mask selects: their count and the first one (data row, 1-based, in file order)."""
    mask = np.asarray(mask, dtype=bool)
    i = int(np.flatnonzero(mask)[0])
    row = frame.iloc[i]
    meter = f", meter {row['meter_id']}" if "meter_id" in frame.columns else ""
    value = row[column]
    shown = str(value) if isinstance(value, pd.Timestamp) else repr(getattr(value, "item", lambda: value)())
    return f"{int(mask.sum())} row(s); first at data row {frame.index[i] + 1}{meter}: {shown}"


def _parse_timestamps(raw: pd.Series, repairs: list[str]) -> pd.Series:
    if pd.api.types.is_numeric_dtype(raw) or pd.api.types.is_bool_dtype(raw):
        raise DataError(
            "timestamp must be ISO 8601 text or a datetime column, not numbers (epoch units are ambiguous)"
        )
    if isinstance(raw.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(raw):
        return raw
    text = raw.astype("string")
    if text.isna().any():
        raise DataError(
            f"timestamp is empty in {_first(raw.to_frame('timestamp'), text.isna(), 'timestamp')}"
        )
    try:
        return pd.to_datetime(text, format="ISO8601")
    except (ValueError, TypeError) as exc:
        try:
            parsed = pd.to_datetime(text, format="ISO8601", utc=True)
        except (ValueError, TypeError):
            bad = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True).isna()
            if bad.any():
                raise DataError(
                    f"timestamp is not a date-time in {_first(raw.to_frame('timestamp'), bad, 'timestamp')}"
                ) from None
            raise DataError(f"timestamp cannot be parsed: {exc}") from None
        repairs.append("timestamps carry mixed UTC offsets: converted to UTC (meter-days are UTC days)")
        return parsed


def validate_readings(frame: pd.DataFrame) -> Readings:
    """Check a long-format readings frame and return it typed, sorted, de-duplicated, with its resolution.

    Raises
    ------
    DataError
        For missing or unknown columns, empty or non-numeric cells where a value is required, negative or
        non-finite energy, power factor outside [0, 1], labels other than 0/1, conflicting duplicates,
        timestamps off the regular grid, and unsupported or mixed resolutions.
    """
    repairs: list[str] = []
    if len(frame) == 0:
        raise DataError("no readings (the table is empty)")
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise DataError(
            f"missing required column(s) {', '.join(missing)}; got {', '.join(map(str, frame.columns))}"
        )
    unknown = [str(c) for c in frame.columns if c not in ALLOWED]
    if unknown:
        raise DataError(f"unknown column(s) {', '.join(unknown)}; allowed: {', '.join(ALLOWED)}")
    df = frame.reset_index(drop=True).copy()

    codes, uniques = pd.factorize(df["meter_id"], use_na_sentinel=True)
    names = pd.Index(uniques).astype(str).str.strip().to_numpy(dtype=object)
    empty_id = (codes < 0) | (names[np.maximum(codes, 0)] == "")
    if empty_id.any():
        raise DataError(f"meter_id is empty in {_first(df, empty_id, 'meter_id')}")
    df["meter_id"] = names[codes].astype(str)
    df["timestamp"] = _parse_timestamps(df["timestamp"], repairs)

    for col in [c for c in ALLOWED[2:] if c in df.columns]:
        raw = df[col]
        if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
            df[col] = raw.astype(float)
        else:
            numeric = pd.to_numeric(raw, errors="coerce")
            bad = numeric.isna() & raw.notna() & (raw.astype("string").str.strip() != "")
            if bad.any():
                raise DataError(f"{col} is not a number in {_first(df, bad, col)}")
            df[col] = numeric.astype(float)
        values = df[col].to_numpy()
        if np.isinf(values).any():
            raise DataError(f"{col} is infinite in {_first(df, np.isinf(values), col)}")
        if col in ENERGY and (values < 0).any():
            raise DataError(
                f"{col} is negative (energy per step must be >= 0 Wh) in {_first(df, values < 0, col)}"
            )
        if col == "power_factor" and ((values < 0) | (values > 1)).any():
            raise DataError(
                f"power_factor is outside [0, 1] in {_first(df, (values < 0) | (values > 1), col)}"
            )
        if col == "voltage_v" and (values < 0).any():
            raise DataError(f"voltage_v is negative in {_first(df, values < 0, col)}")
    if "label" in df.columns:
        lab = df["label"].to_numpy()
        bad = ~np.isin(lab, (0.0, 1.0))
        if bad.any():
            raise DataError(f"label must be 0 or 1 on every row, but is not in {_first(df, bad, 'label')}")
        df["label"] = lab.astype(np.int8)

    df = df.sort_values(["meter_id", "timestamp"], kind="stable")
    key = df.duplicated(["meter_id", "timestamp"], keep=False)
    if key.any():
        exact = df.duplicated(keep="first")
        conflicting = df[key].drop_duplicates().duplicated(["meter_id", "timestamp"], keep=False)
        if conflicting.any():
            row = df[key].drop_duplicates()[conflicting].iloc[0]
            raise DataError(
                f"{int(conflicting.sum())} conflicting duplicate readings: meter {row['meter_id']} "
                f"has different values at {row['timestamp']}"
            )
        repairs.append(f"dropped {int(exact.sum())} exact duplicate row(s)")
        df = df[~exact]

    step = _resolution(df)
    return Readings(df.reset_index(drop=True), step, tuple(repairs))


def _resolution(df: pd.DataFrame) -> int:
    """The common step of all meters, s; every timestamp must sit on that grid from local midnight."""
    ts = df["timestamp"]
    wall = ts.dt.tz_localize(None) if isinstance(ts.dtype, pd.DatetimeTZDtype) else ts
    ns = wall.to_numpy().astype("datetime64[ns]").astype(np.int64)
    same = df["meter_id"].to_numpy()[1:] == df["meter_id"].to_numpy()[:-1]
    diffs_s = (np.diff(ns)[same] // 1_000_000_000).astype(np.int64)
    diffs_s = diffs_s[diffs_s > 0]
    if diffs_s.size == 0:
        raise DataError("cannot infer the resolution: every meter has a single reading")
    values, counts = np.unique(diffs_s, return_counts=True)
    step = int(values[np.argmax(counts)])
    check_step(step)
    offset_s = (ns // 1_000_000_000) % DAY_S
    off_grid = (offset_s % step != 0) | (ns % 1_000_000_000 != 0)
    if off_grid.any():
        raise DataError(
            f"irregular timestamps: not on the {describe_step(step)} grid from midnight, "
            f"{_first(df, off_grid, 'timestamp')}"
        )
    per_meter = pd.Series(np.r_[0, np.diff(ns) // 1_000_000_000], index=df.index)[np.r_[False, same]]
    meter_of = df["meter_id"][np.r_[False, same]]
    meter_step = per_meter.groupby(meter_of.to_numpy()).agg(lambda s: s.mode().min() if len(s) else step)
    odd = meter_step[meter_step != step]
    if len(odd):
        raise DataError(
            f"mixed resolutions: the file's step is {describe_step(step)} but meter {odd.index[0]} "
            f"reports every {describe_step(int(odd.iloc[0]))}; one file must have one resolution"
        )
    return step


def to_cube(
    readings: Readings, columns: tuple[str, ...] = ("consumption_wh",), max_gap_fraction: float = 0.1
) -> DayCube:
    """Reshape readings to a :class:`DayCube`, filling short gaps and dropping incomplete meter-days.

    Parameters
    ----------
    readings : validated readings.
    columns : value columns to carry (must be present).
    max_gap_fraction : a meter-day with at most this fraction of missing steps is filled by linear
        interpolation within the day; one with more is dropped (NaN) and reported in ``repairs``.

    Raises
    ------
    DataError
        If a column is absent, or a label differs between steps of the same meter-day.
    """
    df = readings.frame
    absent = [c for c in columns if c not in df.columns]
    if absent:
        raise DataError(f"column(s) {', '.join(absent)} needed here but absent from the readings")
    step = readings.step_s
    slots = DAY_S // step
    ts = df["timestamp"]
    wall = ts.dt.tz_localize(None) if isinstance(ts.dtype, pd.DatetimeTZDtype) else ts
    day = wall.dt.normalize()
    slot = ((wall - day).dt.total_seconds().to_numpy() // step).astype(np.int64)
    meter_codes, meters = pd.factorize(df["meter_id"], sort=True)
    days = pd.DatetimeIndex(np.sort(day.unique()))
    day_codes = days.get_indexer(day)
    n_m, n_d = len(meters), len(days)
    flat = (meter_codes * n_d + day_codes) * slots + slot
    repairs = list(readings.repairs)

    # Repeated wall-clock slots only come from a daylight-saving fall-back hour: their energy is summed.
    values: dict[str, np.ndarray] = {}
    for col in columns:
        v = df[col].to_numpy(dtype=float)
        acc = np.zeros(n_m * n_d * slots)
        seen = np.zeros(n_m * n_d * slots, dtype=bool)
        ok = np.isfinite(v)
        if col in ENERGY:
            np.add.at(acc, flat[ok], v[ok])
        else:  # intensive quantities (V, A, pf): keep the last reading of the slot
            acc[flat[ok]] = v[ok]
        seen[flat[ok]] = True
        acc[~seen] = np.nan
        values[col] = acc.reshape(n_m, n_d, slots)

    cons = values["consumption_wh"]
    present = np.isfinite(cons).any(axis=2)
    missing_frac = np.isnan(cons).sum(axis=2) / slots
    fill = present & (missing_frac > 0) & (missing_frac <= max_gap_fraction)
    drop = present & (missing_frac > max_gap_fraction)
    for col, arr in values.items():
        for m, d in zip(*np.nonzero(fill), strict=True):
            row = arr[m, d]
            good = np.isfinite(row)
            if good.any():
                arr[m, d] = np.interp(np.arange(slots), np.flatnonzero(good), row[good])
        arr[drop] = np.nan
        if col != "consumption_wh":
            arr[~np.isfinite(cons)] = np.nan
    if fill.any():
        repairs.append(
            f"filled gaps by linear interpolation in {int(fill.sum())} meter-day(s) "
            f"(at most {max_gap_fraction:.0%} of their steps missing)"
        )
    if drop.any():
        m, d = (int(i[0]) for i in np.nonzero(drop))
        repairs.append(
            f"dropped {int(drop.sum())} incomplete meter-day(s) with more than {max_gap_fraction:.0%} of "
            f"their steps missing (first: meter {meters[m]} on {days[d].date()})"
        )
    span = np.cumsum(present, axis=1) * np.cumsum(present[:, ::-1], axis=1)[:, ::-1] > 0
    absent = span & ~present
    if absent.any():
        m, d = (int(i[0]) for i in np.nonzero(absent))
        repairs.append(
            f"{int(absent.sum())} whole meter-day(s) have no readings and are left out "
            f"(first: meter {meters[m]} on {days[d].date()})"
        )

    labels = np.full((n_m, n_d), -1, dtype=np.int8)
    if "label" in df.columns:
        md = meter_codes * n_d + day_codes
        lab = df["label"].to_numpy()
        lo = np.full(n_m * n_d, 2)
        hi = np.full(n_m * n_d, -1)
        np.minimum.at(lo, md, lab)
        np.maximum.at(hi, md, lab)
        mixed = (hi >= 0) & (lo != hi)
        if mixed.any():
            i = int(np.flatnonzero(mixed)[0])
            raise DataError(
                f"label differs within meter-day: meter {meters[i // n_d]} on {days[i % n_d].date()} "
                "(labels are per meter-day: 1 on every row of a tampered day)"
            )
        labels = np.where(hi >= 0, hi, -1).astype(np.int8).reshape(n_m, n_d)
        labels[~np.isfinite(cons).all(axis=2)] = -1
    return DayCube(list(meters), days, step, values, labels, tuple(repairs))
