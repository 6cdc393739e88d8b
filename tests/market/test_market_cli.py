"""``gridledger market clear``: files in, matches out, welfare printed; bad input is one line and exit 2."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from gridledger.cli.market import app

runner = CliRunner()
ORDERS = (
    "id,side,feeder,start_slot,end_slot,power_w,limit_price\ns1,offer,A,0,2,1000,10\nb1,bid,A,0,1,600,20\n"
    "b2,bid,B,1,2,800,30\n"
)
FEEDERS = "feeder,internal_capacity_w,external_capacity_w\nA,500,300\nB,1000,1000\n"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "orders.csv").write_text(ORDERS)
    (tmp_path / "feeders.csv").write_text(FEEDERS)
    return tmp_path


def test_clear_writes_matches_and_prints_the_welfare(files):
    result = runner.invoke(app, ["clear", "--bids", str(files / "orders.csv"), "--out", str(files / "m.csv")])
    assert result.exit_code == 0, result.output
    assert "welfare = 5.500 minor units" in result.output  # (600 W x 10 + 800 W x 20) per kWh x 0.25 h
    matches = pd.read_csv(files / "m.csv")
    assert matches.to_dict("list") == {
        "offer_id": ["s1", "s1"],
        "bid_id": ["b1", "b2"],
        "slot": [0, 1],
        "power_w": [600, 800],
        "price": [15, 20],
    }


@pytest.mark.parametrize("mechanism", ["lp", "auction"])
def test_feeder_limits_and_parquet_output(files, mechanism):
    result = runner.invoke(
        app,
        [
            "clear",
            "--bids",
            str(files / "orders.csv"),
            "--feeders",
            str(files / "feeders.csv"),
            "--mechanism",
            mechanism,
            "--out",
            str(files / "m.parquet"),
            "--slot-seconds",
            "3600",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "welfare = 11.000 minor units" in result.output  # 500 W inside A, 300 W out of A; 1 h slots
    assert pd.read_parquet(files / "m.parquet")["power_w"].tolist() == [500, 300]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bids", "{d}/nope.csv"], "nope.csv: no such file"),
        (["--bids", "{d}/bad.csv"], "bad.csv: row 1: order 'x': side must be 'offer' or 'bid', got 'buy'"),
        (["--bids", "{d}/orders.csv", "--feeders", "{d}/few.csv"], "orders.csv: row 3: unknown feeder 'B'"),
        (["--bids", "{d}/orders.csv", "--out", "{d}/m.xlsx"], "unknown file type '.xlsx'"),
        (["--bids", "{d}/orders.csv", "--out", "{d}/no/such/dir/m.csv"], "cannot write"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(files, args, message):
    (files / "bad.csv").write_text(
        "id,side,feeder,start_slot,end_slot,power_w,limit_price\nx,buy,A,0,1,1,1\n"
    )
    (files / "few.csv").write_text("feeder,internal_capacity_w,external_capacity_w\nA,1,1\n")
    argv = ["clear", *(a.format(d=files) for a in args)]
    if "--out" not in argv:
        argv += ["--out", str(files / "m.csv")]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1


def test_bad_option_values_are_rejected(files):
    result = runner.invoke(
        app,
        [
            "clear",
            "--bids",
            str(files / "orders.csv"),
            "--out",
            str(files / "m.csv"),
            "--mechanism",
            "vickrey",
        ],
    )
    assert result.exit_code == 2 and "vickrey" in result.output
