"""Reading order and feeder tables (CSV or Parquet) and writing match tables: the market's file edge.

Every bad row is rejected with a :class:`MarketInputError` that names the file, the row (counted from 1
after the header) and the problem. Integer columns must hold integers (``2.0`` is rejected as well as
``2.5``); Parquet integer columns should therefore have an integer type.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import pandas as pd

from gridledger.market.orders import Feeder, MarketInputError, Order

ORDER_COLUMNS = ("id", "side", "feeder", "start_slot", "end_slot", "power_w", "limit_price")
FEEDER_COLUMNS = ("feeder", "internal_capacity_w", "external_capacity_w")
MATCH_COLUMNS = ("offer_id", "bid_id", "slot", "power_w", "price")
_INTEGER = re.compile(r"[+-]?\d+")
T = TypeVar("T")


def table_format(path: Path) -> str:
    """``csv`` or ``parquet``, by the file's extension (``.csv``, ``.parquet``, ``.pq``)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise MarketInputError(f"{path}: unknown file type {suffix or '(none)'!r}; use .csv or .parquet")


def _cell(value: object) -> str:
    """A cell as text: '' for missing, integers as digits, anything else as written."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def _read(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    """The ``columns`` of every row as text; extra columns are ignored."""
    kind = table_format(path)
    try:
        if kind == "csv":
            header, rows = _read_csv(path)
        else:
            frame = pd.read_parquet(path)
            header, rows = list(frame.columns), list(frame.itertuples(index=False, name=None))
    except FileNotFoundError:
        raise MarketInputError(f"{path}: no such file") from None
    except (OSError, ValueError, UnicodeDecodeError, csv.Error) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MarketInputError(f"{path}: cannot read as {kind}: {reason}") from None
    missing = [c for c in columns if c not in header]
    if missing:
        raise MarketInputError(f"{path}: missing column(s): {', '.join(missing)}")
    at = [header.index(c) for c in columns]
    return [{c: _cell(row[i]) for c, i in zip(columns, at, strict=True)} for row in rows]


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        lines = [line for line in csv.reader(handle) if line]
    if not lines:
        raise ValueError("empty file (no header)")
    header, rows = [h.strip() for h in lines[0]], lines[1:]
    for number, row in enumerate(rows, start=1):
        if len(row) != len(header):
            raise ValueError(f"row {number} has {len(row)} fields, the header {len(header)}")
    return header, rows


class _Row:
    """One table row as text cells; errors raised while reading it name the file and row."""

    def __init__(self, where: str, cells: dict[str, str]) -> None:
        self.where, self.cells = where, cells

    def error(self, problem: str) -> MarketInputError:
        return MarketInputError(f"{self.where}: {problem}")

    def text(self, column: str) -> str:
        if not self.cells[column]:
            raise self.error(f"{column} is missing")
        return self.cells[column]

    def integer(self, column: str) -> int:
        text = self.text(column)
        if not _INTEGER.fullmatch(text):
            raise self.error(f"{column} must be an integer, got {text!r}")
        return int(text)

    def build(self, make: Callable[[], T]) -> T:
        """``make()``, with a domain error re-raised as this row's error."""
        try:
            return make()
        except MarketInputError as exc:
            if str(exc).startswith(self.where):
                raise
            raise self.error(str(exc)) from None


def _rows(path: Path, columns: Sequence[str]) -> list[_Row]:
    return [_Row(f"{path}: row {n}", cells) for n, cells in enumerate(_read(path, columns), start=1)]


def read_orders(path: Path) -> list[Order]:
    """Offers and bids from a CSV or Parquet table with columns :data:`ORDER_COLUMNS`.

    Rejects, naming the row: a missing column or value, an unknown side, a non-integer or out-of-range
    number, ``start_slot >= end_slot``, a negative power, a duplicate id.
    """
    orders: dict[str, Order] = {}
    first: dict[str, str] = {}
    for row in _rows(path, ORDER_COLUMNS):
        order = row.build(
            lambda row=row: Order(
                row.text("id"),
                row.text("side"),
                row.text("feeder"),
                row.integer("start_slot"),
                row.integer("end_slot"),
                row.integer("power_w"),
                row.integer("limit_price"),
            )
        )
        if order.id in orders:
            raise row.error(f"duplicate id {order.id!r} (first in {first[order.id]})")
        orders[order.id], first[order.id] = order, row.where.rsplit(": ", 1)[1]
    return list(orders.values())


def read_feeders(path: Path) -> dict[str, Feeder]:
    """Feeder limits from a CSV or Parquet table with columns :data:`FEEDER_COLUMNS` (W per slot)."""
    feeders: dict[str, Feeder] = {}
    first: dict[str, str] = {}
    for row in _rows(path, FEEDER_COLUMNS):
        name = row.text("feeder")
        feeder = row.build(
            lambda row=row: Feeder(row.integer("internal_capacity_w"), row.integer("external_capacity_w"))
        )
        if name in feeders:
            raise row.error(f"duplicate feeder {name!r} (first in {first[name]})")
        feeders[name], first[name] = feeder, row.where.rsplit(": ", 1)[1]
    return feeders


def check_feeders_known(orders: Sequence[Order], feeders: dict[str, Feeder], orders_path: Path) -> None:
    """Reject the first order whose feeder is not in ``feeders``, naming its row."""
    for number, order in enumerate(orders, start=1):
        if order.feeder not in feeders:
            raise MarketInputError(f"{orders_path}: row {number}: unknown feeder {order.feeder!r}")


def write_matches(path: Path, matches: pd.DataFrame) -> None:
    """Write a match table (columns :data:`MATCH_COLUMNS`) as CSV or Parquet, by the file's extension."""
    kind = table_format(path)
    frame = matches[list(MATCH_COLUMNS)]
    if kind == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
