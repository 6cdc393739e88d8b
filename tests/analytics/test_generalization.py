"""Leave-one-source-out evaluation, the baseline, and the shipped default model."""

from __future__ import annotations

import numpy as np
import pytest

from gridledger.analytics import default_model
from gridledger.analytics.features import feature_names
from gridledger.analytics.generalization import (
    BASELINE_FEATURES,
    Baseline,
    baseline_features,
    evaluate_left_out,
    false_alarm_rate,
    leave_one_source_out,
)
from gridledger.analytics.theft import FORMAT_VERSION, TheftSettings, attack_scenario, detect, report

FAST = TheftSettings(max_iter=40, draws=1)


def test_baseline_has_twelve_simple_day_features(cube):
    x = cube.values["consumption_wh"]
    f = baseline_features(x)
    assert len(BASELINE_FEATURES) == 12 and f.shape == (*x.shape[:2], 12) and np.isfinite(f).all()


def test_baseline_learns_and_scores_only_complete_days(cube):
    scenario = attack_scenario(cube, TheftSettings(), np.random.default_rng(0))
    base = Baseline.fit([scenario])
    reported = scenario[0].copy()
    reported[0, 0, 5] = np.nan
    scores = base.scores(reported)
    assert np.isnan(scores[0, 0]) and np.isfinite(scores[1:]).all()
    labels = scenario[1]
    assert np.mean((scores[1:] > 0) == (labels[1:] == 1)) > 0.9  # its own training days


def test_false_alarm_rate_is_the_share_of_honest_days_flagged():
    assert false_alarm_rate({"confusion": [[5, 1], [3, 9]]}) == 0.25


def test_left_out_evaluation_reports_detector_rl_and_baseline_at_each_share(cube):
    a, b = cube.select(range(10)), cube.select(range(10, 16))
    result = evaluate_left_out([a], b, FAST, rates=(0.5, 0.1), seed=3)
    assert set(result) == {0.5, 0.1}
    for rate, r in result.items():
        assert r["days"] == 6 * len(cube.days)
        for key in ("detector", "detector_rl", "baseline"):
            (tp, fn), (fp, tn) = r[key]["confusion"]
            assert tp + fn + fp + tn == r["days"] and r[key]["false_alarm_rate"] == fp / (fp + tn)
            assert abs((tp + fn) / r["days"] - rate) < 0.15  # the test share asked for
    assert result[0.5]["detector"]["auc"] > 0.8


def test_leave_one_source_out_leaves_each_out_once(cube):
    sources = {"x": cube.select(range(6)), "y": cube.select(range(6, 12)), "z": cube.select(range(12, 16))}
    results = leave_one_source_out(sources, FAST, rates=(0.5,))
    assert list(results) == ["x", "y", "z"]
    assert results["z"][0.5]["days"] == 4 * len(cube.days)
    with pytest.raises(ValueError, match="at least 2 sources"):
        leave_one_source_out({"x": cube}, FAST)


def test_the_shipped_model_loads_with_its_data_card_and_detects(cube):
    model = default_model.load_default_model()
    card = model.info["data_card"]
    assert card["version"] == default_model.SHIPPED and card["resolution_s"] == model.step_s == 900
    assert [s["source"] for s in card["sources"]] == ["profiles", "richardson", "synpro", "ramp"]
    assert card["meter_days"] == sum(s["meters"] * s["days"] for s in card["sources"])
    assert model.to_dict()["format_version"] == FORMAT_VERSION
    test = model.conform(cube)  # homes it has never seen (another seed), 15-minute data
    reported, labels = attack_scenario(test, TheftSettings(theft_rate=0.5), np.random.default_rng(5))
    with pytest.warns(UserWarning, match="fewer than 500"):
        r = report(detect(model, test.meters, reported, labels), labels)
    assert r["without_rl"]["accuracy"] > 0.85 and r["without_rl"]["auc"] > 0.93


def test_the_shipped_model_is_the_v3_recipe_on_four_sources_with_a_pooled_prior():
    model = default_model.load_default_model()
    card = model.info["data_card"]
    assert default_model.SHIPPED == 7 and default_model.FILE == "theft-default-v7.json"
    assert len(model.features) == model.trees.n_features == len(feature_names(96)) == 36
    assert "zero_excess" in model.features and "z_zero_share" not in model.features and "base_z" in model.features
    assert card["draws"] == 5 and card["theft_shares"] == [0.5, 0.4, 0.3, 0.2, 0.1]
    assert "changed no reading is labelled honest" in card["attacks"]
    assert all(len(s["varied_copies"]) == 2 for s in card["sources"]) and card["neighbourhoods"] == 16
    # the agents flag a day above log-odds -5 * bias / weight: pooled over the 50 ... 10 % draws that is near 1;
    # a prior chained over the draws ended at the 10 % draw's (v2: 1.8)
    bias, weight = model.agent_prior[:2]
    assert 0.5 < -5 * bias / weight < 1.5


def test_the_previous_shipped_models_still_load_and_score(cube):
    """v6 (no-op attacks labelled tampered), v5 (no ``base_z``), v4 (zero slots as z-scores), v3 (three sources)
    and v2 (26 features, its own feature list: a stored model reads the columns it was trained on) still load."""
    v6 = default_model.load_default_model(6)
    assert v6.features == default_model.load_default_model().features
    assert np.isfinite(v6.logits(v6.conform(cube).values["consumption_wh"])).all()
    v5 = default_model.load_default_model(5)
    assert len(v5.features) == 35 and "base_z" not in v5.features
    assert np.isfinite(v5.logits(v5.conform(cube).values["consumption_wh"])).all()
    v4 = default_model.load_default_model(4)
    assert "z_zero_share" in v4.features and "z_zero_share" not in feature_names(96)
    assert np.isfinite(v4.logits(v4.conform(cube).values["consumption_wh"])).all()
    v3 = default_model.load_default_model(3)
    assert [s["source"] for s in v3.info["data_card"]["sources"]] == ["profiles", "richardson", "synpro"]
    assert np.isfinite(v3.logits(v3.conform(cube).values["consumption_wh"])).all()
    v2 = default_model.load_default_model(2)
    assert len(v2.features) == v2.trees.n_features == 26 < len(feature_names(96))
    logits = v2.logits(v2.conform(cube).values["consumption_wh"])
    assert np.isfinite(logits).all()
    with pytest.raises(ValueError, match="no shipped theft model version 1"):
        default_model.load_default_model(1)
