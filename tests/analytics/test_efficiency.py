"""PoEf efficiency score: integers in [0, 1000], components that respond to what they measure."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from gridledger.analytics.data import DataError
from gridledger.analytics.efficiency import efficiency_score, peak_reduction, per_mille


def prosumer(days: int = 3, load_w=None, pf: float = 0.95, voltage: float = 127.0, pv_w=None) -> pd.DataFrame:
    idx = pd.date_range("2024-01-01", periods=days * 96, freq="15min", tz="America/Mexico_City")
    load = np.full(len(idx), 400.0) if load_w is None else np.asarray(load_w, dtype=float)
    pv = np.zeros(len(idx)) if pv_w is None else np.asarray(pv_w, dtype=float)
    net = load - pv
    return pd.DataFrame(
        {
            "meter_id": "MI001",
            "timestamp": idx,
            "consumption_wh": np.maximum(net, 0) / 4,
            "production_wh": np.maximum(-net, 0) / 4,
            "voltage_v": voltage,
            "current_a": np.abs(net) / (voltage * pf),
            "power_factor": pf,
        }
    )


def test_a_flat_steady_good_prosumer_scores_1000():
    s = efficiency_score(prosumer())
    assert s.as_dict() == {
        "score": 1000,
        "forecast_adherence": 1000,
        "power_quality": 1000,
        "peak_reduction": 1000,
    }


def test_each_component_responds_to_what_it_measures():
    base = efficiency_score(prosumer())
    poor_pf = efficiency_score(prosumer(pf=0.8))
    assert poor_pf.power_quality == 0 and poor_pf.score < base.score
    low_v = efficiency_score(prosumer(voltage=110.0))
    assert low_v.power_quality == 0
    peaky = np.tile(np.r_[np.full(80, 100.0), np.full(16, 2000.0)], 3)
    assert efficiency_score(prosumer(load_w=peaky)).peak_reduction < 300
    erratic = np.random.default_rng(0).uniform(0, 2000, 3 * 96)
    assert efficiency_score(prosumer(load_w=erratic)).forecast_adherence < base.forecast_adherence


def test_scores_are_integers_in_range_on_community_readings(community):
    for meter, rows in community.groupby("meter_id"):
        s = efficiency_score(rows)
        for v in s.as_dict().values():
            assert isinstance(v, int) and 0 <= v <= 1000, (meter, s)


def test_weights_and_determinism():
    df = prosumer(pf=0.8)
    only_pq = efficiency_score(df, weights=(0, 1, 0))
    assert only_pq.score == only_pq.power_quality == 0
    assert efficiency_score(df) == efficiency_score(
        df.sample(frac=1.0, random_state=1)
    )  # row order is irrelevant


@pytest.mark.parametrize(
    ("df", "kwargs", "error", "message"),
    [
        (pd.concat([prosumer(), prosumer().assign(meter_id="MI002")]), {}, DataError, "expected one meter"),
        (prosumer(days=1), {}, DataError, "at least 2 complete days"),
        (prosumer().drop(columns="power_factor"), {}, DataError, "power_factor"),
        (prosumer(), {"weights": (0, 0, 0)}, ValueError, "weights"),
        (prosumer(), {"weights": (1, -1, 1)}, ValueError, "weights"),
        (prosumer(), {"weights": (1.5, 1, 1)}, ValueError, "weights"),
    ],
)
def test_bad_inputs(df, kwargs, error, message):
    with pytest.raises(error, match=message):
        efficiency_score(df, **kwargs)


def test_helpers():
    assert per_mille(Fraction(0)) == 0 and per_mille(Fraction(1)) == 1000
    assert per_mille(Fraction(1, 80)) == 13 and per_mille(Fraction(2499, 200_000)) == 12  # 12.5 up, 12.495 down
    flat, ramp = [[5] * 24] * 2, [[0] * 24, [1] * 12 + [3] * 12]
    assert peak_reduction(flat, 1) == 1000 and peak_reduction(ramp, 1) == 667  # load factor 2/3
    assert peak_reduction([[0] * 24, [-4] * 24], 1) == 1000  # nothing imported
