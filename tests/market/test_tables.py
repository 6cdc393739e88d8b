"""Order and feeder files (CSV, Parquet): a table of bad files, each rejected naming the row and problem."""

from __future__ import annotations

import pandas as pd
import pytest

from gridledger.market import Feeder, MarketInputError, Order, Side
from gridledger.market.tables import check_feeders_known, read_feeders, read_orders, write_matches

HEADER = "id,side,feeder,start_slot,end_slot,power_w,limit_price"
GOOD_ROWS = ["s1,offer,A,0,4,1000,12", "b1,bid,B,2,6,500,-3"]


def write_csv(tmp_path, lines, name="orders.csv"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_good_csv_reads_as_orders(tmp_path):
    orders = read_orders(write_csv(tmp_path, [HEADER, *GOOD_ROWS]))
    assert orders == [Order("s1", Side.OFFER, "A", 0, 4, 1000, 12), Order("b1", Side.BID, "B", 2, 6, 500, -3)]


def test_a_parquet_file_reads_the_same(tmp_path):
    frame = pd.read_csv(write_csv(tmp_path, [HEADER, *GOOD_ROWS]))
    frame.to_parquet(tmp_path / "orders.parquet")
    assert read_orders(tmp_path / "orders.parquet") == read_orders(tmp_path / "orders.csv")


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            ["id,side,feeder,start_slot,end_slot,power_w", "s1,offer,A,0,4,1000"],
            "missing column(s): limit_price",
        ),
        (
            [HEADER, GOOD_ROWS[0], "b1,sell,B,2,6,500,3"],
            "row 2: order 'b1': side must be 'offer' or 'bid', got 'sell'",
        ),
        ([HEADER, "b1,bid,B,6,6,500,3"], "row 1: order 'b1': start_slot (6) must be < end_slot (6)"),
        ([HEADER, "b1,bid,B,7,6,500,3"], "row 1: order 'b1': start_slot (7) must be < end_slot (6)"),
        (
            [HEADER, GOOD_ROWS[0], "b1,bid,B,2,6,-500,3"],
            "row 2: order 'b1': power_w must be in [0, 1000000000]",
        ),
        ([HEADER, "b1,bid,B,2,6,2.5,3"], "row 1: power_w must be an integer, got '2.5'"),
        ([HEADER, "b1,bid,B,2,6,500,3.0"], "row 1: limit_price must be an integer, got '3.0'"),
        ([HEADER, "b1,bid,B,two,6,500,3"], "row 1: start_slot must be an integer, got 'two'"),
        ([HEADER, "b1,bid,B,2,6,,3"], "row 1: power_w is missing"),
        ([HEADER, ",bid,B,2,6,5,3"], "row 1: id is missing"),
        ([HEADER, "b1,bid,,2,6,5,3"], "row 1: feeder is missing"),
        ([HEADER, *GOOD_ROWS, "s1,bid,B,2,6,500,3"], "row 3: duplicate id 's1' (first in row 1)"),
        ([HEADER, "b1,bid,B,-1,6,500,3"], "row 1: order 'b1': start_slot must be in"),
        ([HEADER, 'b1,bid,B,2,6,500,3,"extra"'], "cannot read as csv: row 1 has 8 fields, the header 7"),
        ([], "cannot read as csv: empty file"),
    ],
)
def test_bad_order_files_are_rejected_naming_the_row(tmp_path, lines, message):
    path = write_csv(tmp_path, lines)
    with pytest.raises(MarketInputError) as info:
        read_orders(path)
    assert str(info.value).startswith(str(path))
    assert message in str(info.value)


def test_parquet_float_and_null_cells_are_rejected(tmp_path):
    frame = pd.DataFrame(
        {
            "id": ["a", "b"],
            "side": ["offer", "bid"],
            "feeder": ["A", "A"],
            "start_slot": [0, 0],
            "end_slot": [1, 1],
            "power_w": [5.0, None],
            "limit_price": [1, 2],
        }
    )
    frame.to_parquet(tmp_path / "o.parquet")
    with pytest.raises(MarketInputError, match=r"row 1: power_w must be an integer, got '5.0'"):
        read_orders(tmp_path / "o.parquet")
    frame["power_w"] = pd.array([5, None], dtype="Int64")
    frame.to_parquet(tmp_path / "o.parquet")
    with pytest.raises(MarketInputError, match="row 2: power_w is missing"):
        read_orders(tmp_path / "o.parquet")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("orders.txt", "x", "unknown file type '.txt'; use .csv or .parquet"),
        ("orders.parquet", "not parquet", "cannot read as parquet"),
        ("missing.csv", None, "no such file"),
    ],
)
def test_unreadable_files_are_rejected(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(MarketInputError, match=message):
        read_orders(path)


def test_feeders_file_and_unknown_feeders(tmp_path):
    path = write_csv(tmp_path, ["feeder,internal_capacity_w,external_capacity_w", "A,100,50"], "feeders.csv")
    feeders = read_feeders(path)
    assert feeders == {"A": Feeder(100, 50)}
    orders = read_orders(write_csv(tmp_path, [HEADER, *GOOD_ROWS]))
    with pytest.raises(MarketInputError, match=r"orders.csv: row 2: unknown feeder 'B'"):
        check_feeders_known(orders, feeders, tmp_path / "orders.csv")


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["feeder,internal_capacity_w", "A,1"], "missing column(s): external_capacity_w"),
        (
            ["feeder,internal_capacity_w,external_capacity_w", "A,1,-2"],
            "row 1: feeder: external_capacity_w must be",
        ),
        (
            ["feeder,internal_capacity_w,external_capacity_w", "A,1,x"],
            "row 1: external_capacity_w must be an integer",
        ),
        (["feeder,internal_capacity_w,external_capacity_w", "A,1,2", "A,3,4"], "row 2: duplicate feeder 'A'"),
    ],
)
def test_bad_feeder_files_are_rejected(tmp_path, lines, message):
    with pytest.raises(MarketInputError) as info:
        read_feeders(write_csv(tmp_path, lines, "feeders.csv"))
    assert message in str(info.value)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_matches_round_trip(tmp_path, suffix):
    frame = pd.DataFrame({"offer_id": ["s"], "bid_id": ["b"], "slot": [3], "power_w": [10], "price": [7]})
    write_matches(tmp_path / f"m{suffix}", frame)
    back = (
        pd.read_csv(tmp_path / f"m{suffix}") if suffix == ".csv" else pd.read_parquet(tmp_path / f"m{suffix}")
    )
    assert back.to_dict("list") == frame.to_dict("list")
