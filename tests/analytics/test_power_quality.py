"""Power quality: sags, swells and poor power factor flagged against limits and the meter's own normal."""

from __future__ import annotations

import numpy as np
import pytest

from gridledger.analytics.power_quality import (
    Limits,
    PowerQualityModel,
    evaluate_power_quality,
    event_scores,
    flag_events,
    inject_events,
    runs,
)


def readings(n: int = 2000, seed: int = 0):
    rng = np.random.default_rng(seed)
    hour = np.arange(n) % 1440 * 24 // 1440
    power = rng.gamma(1.5, 300.0, n)
    pf = 0.95 - 0.15 * np.exp(-power / 250.0) + rng.normal(0, 0.004, n)
    v = 127.0 - 0.0004 * power + rng.normal(0, 0.3, n)
    return hour, power, v, pf


def test_model_learns_the_meters_normal_power_factor_and_voltage():
    hour, power, v, pf = readings()
    model = PowerQualityModel.fit(hour, power, v, pf)
    for p in (60.0, 300.0, 2000.0):
        assert model.expected_pf(np.array([p]))[0] == pytest.approx(
            0.95 - 0.15 * np.exp(-p / 250.0), abs=0.02
        )
    assert model.v_per_w == pytest.approx(-0.0004, abs=1e-4)
    assert model.expected_voltage(np.array([3]), np.array([0.0]))[0] == pytest.approx(127.0, abs=0.1)


def test_flags_follow_the_limits_and_the_meters_normal():
    hour, power, v, pf = readings()
    model = PowerQualityModel.fit(hour, power, v, pf)
    v2, pf2 = v.copy(), pf.copy()
    v2[10], v2[20] = 110.0, 145.0
    light = np.argmin(power)  # normal light-load power factor is low but not a fault
    pf2[30] = 0.6
    flags = flag_events(v2, pf2, power, model)
    assert flags["sag"][10] and flags["swell"][20] and flags["poor_pf"][30]
    assert flags["sag"].sum() == 1 and flags["swell"].sum() == 1
    assert pf[light] < 0.9 and not flags["poor_pf"][light]
    strict = flag_events(v2, pf2, power, model, Limits(sag_pu=0.95))
    assert strict["sag"].sum() >= 1


def test_runs_and_event_scores():
    assert runs(np.array([0, 1, 1, 0, 1], dtype=bool)).tolist() == [[1, 3], [4, 5]]
    truth = np.array([0, 1, 1, 0, 0, 1, 0, 0], dtype=bool)
    flagged = np.array([0, 0, 1, 0, 0, 0, 0, 1], dtype=bool)
    s = event_scores(truth, flagged)
    assert s == {"events": 2, "flagged": 2, "precision": 0.5, "recall": 0.5}
    assert np.isnan(event_scores(truth, np.zeros(8, dtype=bool))["precision"])


def test_injected_events_have_one_true_kind_each():
    _, _, v, pf = readings(20_000)
    v2, pf2, truth = inject_events(v, pf, np.random.default_rng(1), per_day=5)
    assert truth["sag"].any() and truth["swell"].any() and truth["poor_pf"].any()
    assert not (truth["sag"] & truth["swell"]).any() and not (truth["sag"] & truth["poor_pf"]).any()
    assert (v2[truth["sag"]] < 0.9 * 127 + 2.5).all() and (pf2[truth["poor_pf"]] < 0.9).all()


def test_evaluation_on_the_community(cube):
    r = evaluate_power_quality(cube, seed=0, per_day=3)
    assert r["meters"] == 16
    for kind in ("sag", "swell", "poor_pf"):
        assert r["events"][kind]["events"] > 10
        assert r["events"][kind]["precision"] > 0.8 and r["events"][kind]["recall"] > 0.8, r["events"][kind]
    assert r["mae"]["pf_model"] < r["mae"]["pf_naive"]
    assert r["mae"]["voltage_model"] < r["mae"]["voltage_naive"]


def test_evaluation_needs_the_electrical_columns(cube):
    from gridledger.analytics.data import DayCube

    bare = DayCube(
        cube.meters, cube.days, cube.step_s, {"consumption_wh": cube.values["consumption_wh"]}, cube.labels
    )
    with pytest.raises(ValueError, match="voltage_v"):
        evaluate_power_quality(bare)


def test_model_needs_enough_readings():
    with pytest.raises(ValueError, match="at least 24"):
        PowerQualityModel.fit(np.zeros(5), np.ones(5), np.ones(5) * 127, np.ones(5))
