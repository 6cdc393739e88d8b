"""Two runs of one community and seed give the same market outcome: the same trades and, meter by meter, the same
bills, although the market's keys, order ids and mixes are random (the bid store's tie-break among equal orders
is their arrival order, and in a run the prosumers post in the seed's order)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from gridledger.profiles.community import generate_community
from gridledger.sim.run import run_community


def sorted_table(out: Path, name: str, columns: list[str]) -> pd.DataFrame:
    return pd.read_parquet(out / f"{name}.parquet")[columns].sort_values(columns, ignore_index=True)


def test_one_seed_gives_the_same_trades_and_bills(tmp_path):
    community = generate_community(12, 1, 5, feeders=1)
    runs = (tmp_path / "a", tmp_path / "b")
    for out in runs:
        run_community(community, out)
    bills = [sorted_table(out, "bills", ["meter", "slot", "energy_ws", "amount", "fa_deposited"]) for out in runs]
    assert bills[0]["amount"].abs().sum() > 0
    pd.testing.assert_frame_equal(*bills)
    trades = [sorted_table(out, "trades", ["feeder", "slot", "power_w", "price"]) for out in runs]
    assert len(trades[0]) > 0
    pd.testing.assert_frame_equal(*trades)
