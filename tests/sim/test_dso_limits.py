"""The community file's DSO limits govern the run: MAXEPA/MAXECA and an FA credit the DSO renews every day."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from gridledger.profiles.community import generate_community
from gridledger.sim.run import RunError, RunParams, run_community

DAY_FA = 2 * 5760  # two units of 2,000 W for 24 h at 120 per kWh


def with_dso(community, **limits):
    return dataclasses.replace(community, dso=dataclasses.replace(community.dso, **limits))


@pytest.mark.parametrize(("key", "value"), [("max_epa_w", 3999), ("max_eca_w", 100), ("credit_fa", DAY_FA - 1)])
def test_limits_too_small_for_the_daily_units_are_refused_before_anything_is_written(tmp_path, key, value):
    community = with_dso(generate_community(4, 1, 0, feeders=1), **{key: value})
    assert community.prices.consumption_per_kwh == 120
    with pytest.raises(RunError, match=rf"\[dso\] {key} = {value}: .* need at least"):
        run_community(community, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_credit_of_one_day_lasts_the_whole_run(tmp_path):
    """Three days on a credit worth one day's FA: without the DSO's daily renewal the second extraction would be
    insolvent (``bad-issue-insolvent``)."""
    community = with_dso(generate_community(4, 3, 1, feeders=1), max_epa_w=4000, max_eca_w=4000, credit_fa=DAY_FA)
    out = tmp_path / "run"
    summary = run_community(community, out, params=RunParams())
    assert summary["slots"] == 3 * 96
    bills = pd.read_parquet(out / "bills.parquet")
    assert bills.slot.max() == 3 * 96 - 1
    # every meter's FA issue of every day was committed (an issue beyond the chain's credit is refused)
    issued = bills[bills.fa_issued > 0].assign(day=lambda b: b.slot // 96).groupby("meter").day.nunique()
    assert len(issued) == 4 and (issued == 3).all(), issued
