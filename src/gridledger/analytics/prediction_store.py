"""Prediction stores of the edge (meter) and fog (concentrator) levels, as Tables 3 and 4 of the paper.

Olivares-Rojas et al. (2023), §4.2: "two more data repositories in the MI and CD store the predictions and
the difference between the consumption/production data". Each level keeps its own SQLite file (stdlib
``sqlite3``):

* a **meter** store (Table 3): ``timestamp, horizon, consumption_pred_wh, consumption_delta_wh,
  production_pred_wh, production_delta_wh``;
* a **concentrator** store (Table 4): the same with ``sm_id`` (the meter, or the neighbourhood id for its
  total).

``delta = observed − predicted`` (Wh), NULL until the observation arrives. Timestamps are ISO 8601 text of the
start of the predicted step. A prediction can be written once per key; re-writing it is an error (predictions
are records, not state), while deltas can be filled in later.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

LEVELS = ("meter", "concentrator")
VALUES = ("consumption_pred_wh", "consumption_delta_wh", "production_pred_wh", "production_delta_wh")


class StoreError(ValueError):
    """A write the store refuses (wrong level, duplicate prediction, bad row)."""


class PredictionStore:
    """One level's prediction store in a SQLite file (``":memory:"`` for a throw-away one).

    Parameters
    ----------
    path : the database file; created with its table if absent.
    level : ``"meter"`` (Table 3) or ``"concentrator"`` (Table 4).
    """

    def __init__(self, path: str | Path, level: str):
        if level not in LEVELS:
            raise StoreError(f"unknown level {level!r}; choose one of {', '.join(LEVELS)}")
        self.level = level
        self.key = ("timestamp", "sm_id", "horizon") if level == "concentrator" else ("timestamp", "horizon")
        self._db = sqlite3.connect(str(path))
        key_cols = ", ".join(f"{k} TEXT NOT NULL" for k in self.key)
        value_cols = ", ".join(f"{v} REAL" for v in VALUES)
        with self._db:
            primary = ", ".join(self.key)
            self._db.execute(
                f"CREATE TABLE IF NOT EXISTS predictions ({key_cols}, {value_cols}, PRIMARY KEY ({primary}))"
            )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> PredictionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(self, rows: pd.DataFrame) -> int:
        """Insert predictions (and deltas, if known): columns ``self.key`` plus any of :data:`VALUES`.

        Raises
        ------
        StoreError
            On missing key columns, unknown columns, or a prediction already stored for a key.
        """
        missing = [k for k in self.key if k not in rows.columns]
        unknown = [c for c in rows.columns if c not in self.key and c not in VALUES]
        if missing or unknown:
            raise StoreError(
                f"{self.level} store rows: missing {missing or 'nothing'}, unknown {unknown or 'nothing'}"
            )
        frame = rows.copy()
        frame["timestamp"] = [pd.Timestamp(t).isoformat() for t in frame["timestamp"]]
        cols = [*self.key, *[v for v in VALUES if v in frame.columns]]
        data = [
            tuple(
                None if pd.isna(x) else (float(x) if c in VALUES else str(x))
                for c, x in zip(cols, row, strict=True)
            )
            for row in frame[cols].itertuples(index=False, name=None)
        ]
        try:
            with self._db:
                self._db.executemany(
                    f"INSERT INTO predictions ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", data
                )
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"a prediction is already stored for one of these keys ({exc})") from None
        return len(data)

    def observe(self, rows: Iterable[dict]) -> int:
        """Fill in deltas: rows with the key and ``consumption_delta_wh`` and/or ``production_delta_wh``."""
        n = 0
        with self._db:
            for row in rows:
                key = [
                    pd.Timestamp(row["timestamp"]).isoformat() if k == "timestamp" else str(row[k])
                    for k in self.key
                ]
                for col in ("consumption_delta_wh", "production_delta_wh"):
                    if col in row:
                        where = " AND ".join(f"{k} = ?" for k in self.key)
                        cur = self._db.execute(
                            f"UPDATE predictions SET {col} = ? WHERE {where}", [float(row[col]), *key]
                        )
                        if cur.rowcount == 0:
                            raise StoreError(
                                f"no stored prediction for {dict(zip(self.key, key, strict=True))}"
                            )
                n += 1
        return n

    def table(self) -> pd.DataFrame:
        """Everything stored, ordered by key, as a DataFrame."""
        return pd.read_sql_query(f"SELECT * FROM predictions ORDER BY {', '.join(self.key)}", self._db)
