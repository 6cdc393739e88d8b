"""Theft detection: training on injected attacks, held-out evaluation, and the JSON model format."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from gridledger.analytics.data import DayCube
from gridledger.analytics.theft import (
    Detection,
    SmallSampleWarning,
    TheftModel,
    TheftSettings,
    attack_scenario,
    detect,
    holdout_evaluation,
    labelled_scenario,
    report,
    split_meters,
    train,
)
from gridledger.analytics.trees import BoostedTrees, ModelFormatError

FAST = TheftSettings(max_iter=60, draws=2)


@pytest.fixture(scope="module")
def model(cube: DayCube) -> TheftModel:
    return train(cube.select(range(12)), FAST)


def test_detector_separates_injected_theft_on_held_out_meters(cube):
    with pytest.warns(SmallSampleWarning):
        result = holdout_evaluation(cube, FAST, test_fraction=0.25)
    assert result["injected"] and len(result["test_meters"]) == 4 and result["train_meters"] == 12
    for key in ("without_rl", "with_rl"):
        r = result[key]
        assert r["n"] == 4 * 14
        assert r["accuracy"] > 0.8 and r["auc"] > 0.9, r  # small data, few trees: a sanity bound only
        (tp, fn), (fp, tn) = r["confusion"]
        assert tp + fn + fp + tn == r["n"]
    assert set(result["per_meter"]) == set(result["test_meters"])


def test_training_is_deterministic(cube):
    a = train(cube.select(range(8)), FAST)
    b = train(cube.select(range(8)), FAST)
    assert json.dumps(a.to_dict()) == json.dumps(b.to_dict())


def test_model_json_round_trip_scores_identically(model, cube):
    x = cube.select(range(12, 16)).values["consumption_wh"]
    loaded = TheftModel.from_dict(json.loads(json.dumps(model.to_dict())))
    np.testing.assert_array_equal(loaded.logits(x), model.logits(x))
    np.testing.assert_array_equal(loaded.agent_prior, model.agent_prior)


def _labelled(cube: DayCube, labels: np.ndarray) -> DayCube:
    n = labels.shape[0]
    values = {"consumption_wh": cube.values["consumption_wh"][:n]}
    return DayCube(cube.meters[:n], cube.days, cube.step_s, values, labels)


def test_labelled_thefts_in_training_data_are_kept_as_positives(cube):
    labels = np.zeros((8, len(cube.days)), dtype=np.int8)
    labels[:, :3] = 1
    trained = train(_labelled(cube, labels), TheftSettings(max_iter=20, draws=1, theft_rate=0.0))
    assert trained.info["positives"] == 8 * 3


def test_labelled_honest_days_are_not_tampered_unless_asked(cube):
    """A 50 %-labelled file trains on its own 50 %, not on ~75 % (attacks re-injected into its honest days)."""
    labels = np.zeros((8, len(cube.days)), dtype=np.int8)
    labels[:, ::2] = 1
    file = _labelled(cube, labels)
    trained = train(file, TheftSettings(max_iter=20, draws=3, theft_rate=0.5))
    assert trained.info["draws"] == 1  # every day labelled: nothing to draw
    assert trained.info["positives"] == int(labels.sum()) and trained.info["examples"] == labels.size
    reported, got = attack_scenario(file, TheftSettings(theft_rate=0.5), np.random.default_rng(0))
    assert np.array_equal(got, labels) and np.array_equal(reported, file.values["consumption_wh"])
    asked = TheftSettings(theft_rate=0.5, inject_labelled=True)
    reported, got = attack_scenario(file, asked, np.random.default_rng(0))
    assert 0.6 < got.mean() < 0.9 and (got[labels == 1] == 1).all()
    assert not np.array_equal(reported, file.values["consumption_wh"])


def test_unlabelled_days_of_a_partly_labelled_file_are_tampered(cube):
    labels = np.full((8, len(cube.days)), -1, dtype=np.int8)
    labels[:4] = 0
    reported, got = attack_scenario(_labelled(cube, labels), TheftSettings(theft_rate=0.5), np.random.default_rng(0))
    assert (got[:4] == 0).all() and 0.3 < got[4:].mean() < 0.7
    np.testing.assert_array_equal(reported[:4], cube.values["consumption_wh"][:4])


def test_small_evaluations_warn_with_their_size(model, cube):
    test = cube.select(range(12, 16))
    reported, labels, _ = labelled_scenario(test, FAST, seed=1)
    found = detect(model, test.meters, reported, labels)
    with pytest.warns(SmallSampleWarning, match=f"only {labels.size} labelled meter-days .* fewer than 500"):
        result = report(found, labels)
    assert "±" in result["warning"]
    big = np.tile(labels, (10, 1))  # 560 meter-days
    tiled = Detection(
        [f"m{i}" for i in range(40)],
        *(np.tile(a, (10, 1)) for a in (found.logits, found.detector_decisions, found.agent_scores)),
        np.tile(found.agent_decisions, (10, 1)),
        0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert report(tiled, big)["warning"] is None


def test_training_across_neighbourhoods(cube):
    a, b = cube.select(range(8)), cube.select(range(8, 16))
    trained = train([a, b], FAST)
    assert trained.info["neighbourhoods"] == 2 and trained.info["meters"] == 16
    with pytest.raises(ValueError, match="same resolution"):
        train([a, b.coarsen(3600)], FAST)


def test_file_labels_are_used_for_evaluation_instead_of_injection(cube):
    labels = np.zeros((16, len(cube.days)), dtype=np.int8)
    labelled = DayCube(cube.meters, cube.days, cube.step_s, cube.values, labels)
    reported, got, injected = labelled_scenario(labelled, FAST, seed=1)
    assert not injected and (got == 0).all() and reported is cube.values["consumption_wh"]
    _, got, injected = labelled_scenario(cube, FAST, seed=1)
    assert injected and 0 < got.mean() < 1


def test_detect_without_labels_still_decides(model, cube):
    x = cube.select(range(12, 16)).values["consumption_wh"]
    found = detect(model, cube.meters[12:], x)
    assert ((found.agent_decisions == 0) | (found.agent_decisions == 1)).all()
    assert np.array_equal(found.detector_decisions, (found.logits > 0).astype(np.int8))
    assert ((found.probability > 0) & (found.probability < 1)).all()


def test_report_needs_labelled_days(model, cube):
    found = detect(model, cube.meters[12:], cube.select(range(12, 16)).values["consumption_wh"])
    with pytest.raises(ValueError, match="no labelled"):
        report(found, np.full(found.logits.shape, -1))


def test_finer_data_is_aggregated_to_the_models_resolution(model, cube):
    hourly = model.conform(cube)
    assert hourly is cube
    hourly_model = TheftModel(model.trees, 3600, model.agent_prior)
    assert hourly_model.conform(cube).step_s == 3600
    with pytest.raises(ModelFormatError, match="trained on 5 min data"):
        TheftModel(model.trees, 300, model.agent_prior).conform(cube)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(format="something-else"), "not a gridledger-theft-model"),
        (lambda d: d.update(format_version=99), "unsupported"),
        (lambda d: d.update(features=d["features"][:-1]), "feature list does not match"),
        (lambda d: d.update(features=[*d["features"][:-1], "no_such_feature"]), "unknown to this version"),
        (lambda d: d.update(agent_prior=[1.0, 2.0]), "agent prior"),
        (lambda d: d["trees"].update(sklearn_version="0.1"), "scikit-learn 0.1"),
        (
            lambda d: d["trees"]["trees"][0].update(left=[10**6] * len(d["trees"]["trees"][0]["left"])),
            "child index",
        ),
        (
            lambda d: d["trees"]["trees"][0].update(feature_idx=[999] * len(d["trees"]["trees"][0]["left"])),
            "feature",
        ),
        (lambda d: d["trees"]["trees"][0].update(value=[]), "lengths"),
        (lambda d: d["trees"].pop("baseline"), "malformed"),
    ],
)
def test_malformed_models_are_refused(model, mutate, message):
    data = json.loads(json.dumps(model.to_dict()))
    mutate(data)
    with pytest.raises(ModelFormatError, match=message):
        TheftModel.from_dict(data)


def test_boosted_trees_match_scikit_learn_exactly():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 6))
    x[rng.uniform(size=x.shape) < 0.05] = np.nan
    y = (np.nan_to_num(x[:, 0]) + x[:, 1] ** 2 > 1).astype(int)
    with threadpool_limits(limits=1, user_api="openmp"):
        clf = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(x, y)
    trees = BoostedTrees.from_dict(json.loads(json.dumps(BoostedTrees.from_sklearn(clf).to_dict())))
    np.testing.assert_array_equal(trees.decision_function(x), clf.decision_function(x))
    with pytest.raises(ValueError, match="shape"):
        trees.decision_function(x[:, :3])


@pytest.mark.parametrize(
    ("n", "fraction", "message"), [(2, 0.3, "at least 3 meters"), (10, 1.0, "test fraction")]
)
def test_split_rejects_impossible_splits(n, fraction, message):
    with pytest.raises(ValueError, match=message):
        split_meters(n, fraction, 0)


def test_split_is_meter_wise_and_seeded():
    train_idx, test_idx = split_meters(20, 0.3, 7)
    assert len(test_idx) == 6 and not set(train_idx) & set(test_idx)
    assert np.array_equal(split_meters(20, 0.3, 7)[1], test_idx)


def test_training_needs_a_neighbourhood(cube):
    with pytest.raises(ValueError, match="at least 2 meters"):
        train(cube.select([0]), FAST)


def test_rl_gain_is_the_accuracy_difference_per_seed_with_a_t_interval(cube):
    from gridledger.analytics.theft import rl_gain

    gains = rl_gain(cube, FAST, rates=(0.5, 0.1), seeds=(0, 1, 2), folds=4)
    assert set(gains) == {0.5, 0.1}
    for g in gains.values():
        assert len(g.values) == 3 and g.low <= g.mean <= g.high and g.confidence == 0.95
        assert all(-100 < v < 100 for v in g.values)
    # one seed by hand: 4 meter-wise folds, attacks at 50 %, gain = accuracy with RL - without, in points
    folds = np.random.default_rng(1).permutation(len(cube.meters)) % 4
    y, det, rl = [], [], []
    for k in range(4):
        model = train(cube.select(np.flatnonzero(folds != k)), TheftSettings(max_iter=60, draws=2, seed=1))
        test = cube.select(np.flatnonzero(folds == k))
        draw = TheftSettings(theft_rate=0.5, inject_labelled=True)
        reported, labels = attack_scenario(test, draw, np.random.default_rng([1, k, 0]))
        found = detect(model, test.meters, reported, labels)
        y.append(labels.ravel()), det.append(found.detector_decisions.ravel()), rl.append(found.agent_decisions.ravel())
    y, det, rl = (np.concatenate(a) for a in (y, det, rl))
    assert gains[0.5].values[1] == pytest.approx(100 * (np.mean(rl == y) - np.mean(det == y)))
    assert rl_gain(cube, FAST, rates=(0.5,), seeds=(0, 1, 2), folds=4)[0.5] == gains[0.5]
