"""The theft report shows the evaluation's own numbers: ROC, operating points, Table 6, per-attack rates."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from gridledger.analytics.data import to_cube, validate_readings
from gridledger.analytics.theft import Detection, TheftSettings, labelled_scenario, report
from gridledger.profiles import community_readings
from gridledger.report import Provenance
from gridledger.report.theft_report import injected_attacks, theft_report

# 2 meters x 4 days: day kinds (0 honest, k = attack hk), labels, detector log-odds and agent decisions.
KINDS = np.array([[0, 1, 0, 6], [2, 0, 0, 1]])
LABELS = (KINDS > 0).astype(np.int8)
LOGITS = np.array([[-2.0, 1.5, 0.5, -0.5], [3.0, -1.0, -3.0, 2.0]])
AGENT = np.array([[-0.8, 0.6, -0.1, 0.2], [0.9, -0.5, -0.9, 0.7]])


def detection(logits=LOGITS) -> Detection:
    return Detection(
        ["MI1", "MI2"],
        logits,
        (logits > 0).astype(np.int8),
        AGENT,
        (AGENT > 0).astype(np.int8),
        0,
    )


def build(labels=LABELS, kinds=KINDS):
    d = detection()
    return theft_report(d, labels, report(d, labels), Provenance("cmd", 0), kinds, ("data.csv: 2 meters",))


def test_summary_rows_are_the_metrics_without_and_with_rl():
    d = detection()
    result = report(d, LABELS)
    rows = build().summary.rows
    assert [r[0] for r in rows] == ["detector", "detector + RL"]
    assert (
        rows[0][1] == f"{result['without_rl']['accuracy']:.4f}"
        and rows[1][5] == f"{result['with_rl']['auc']:.4f}"
    )
    assert rows[0][-1] == "8"


def test_roc_curves_are_sklearns_and_the_crosses_are_the_decisions_taken():
    roc = build().figures[0]
    assert roc.title == "ROC curve"
    curves = {t.name.split(" (")[0]: t for t in roc.plot.data if t.mode == "lines" and t.name != "chance"}
    fpr, tpr, _ = roc_curve(LABELS.ravel(), LOGITS.ravel())
    np.testing.assert_array_equal(curves["detector"].x, fpr)
    np.testing.assert_array_equal(curves["detector"].y, tpr)
    crosses = {t.name: (t.x[0], t.y[0]) for t in roc.plot.data if t.mode == "markers"}
    # detector: flags days with log-odds > 0 -> TP 3 of 4 tampered (h1, h2, h1), FP 1 of 4 honest
    assert crosses["detector: its decisions"] == (0.25, 0.75)


def test_confusion_matrices_are_in_table_6_form():
    conf = next(f for f in build().figures if f.title.startswith("Confusion matrix"))
    d = detection()
    result = report(d, LABELS)
    for trace, key in zip(conf.plot.data, ("without_rl", "with_rl"), strict=True):
        np.testing.assert_array_equal(trace.z, result[key]["confusion"])
        assert list(trace.y) == ["tampered", "honest"] and list(trace.x) == ["tampered", "honest"]


def test_per_attack_rates_count_each_attacks_flagged_days():
    bars = build().figures[-1]
    detector = next(t for t in bars.plot.data if t.name == "detector")
    assert list(detector.x) == [
        "h1 whole day × α",
        "h2 zero for ≥ 4 h",
        "h6 day reversed",
        "honest (false alarms)",
    ]
    # h1 days: log-odds 1.5 and 2.0 (both flagged); h2: 3.0; h6: -0.5 (missed); honest: 0.5 flagged of 4
    assert list(detector.y) == [1.0, 1.0, 0.0, 0.25]
    assert list(detector.customdata) == [2, 1, 1, 4]


def test_without_attack_kinds_or_with_one_class_those_plots_are_left_out_and_said_so():
    made = build(kinds=None)
    assert [f.title for f in made.figures][-2:] == ["Confusion matrix (Table 6 form), without and with RL",
                                                   "Per meter (Table 5 form)"]
    assert any("does not say which attack" in n for n in made.notes)
    honest = np.zeros_like(LABELS)
    made = build(labels=honest, kinds=None)
    assert "ROC curve" not in [f.title for f in made.figures]
    assert any("no ROC curve" in n for n in made.notes)


@pytest.fixture(scope="module")
def cube():
    return to_cube(validate_readings(community_readings(4, 4, "1h", seed=2)), ("consumption_wh",))


def test_injected_attacks_are_the_draw_the_evaluation_used(cube):
    settings = TheftSettings(theft_rate=0.6)
    reported, labels, injected = labelled_scenario(cube, settings, seed=11)
    assert injected
    kinds = injected_attacks(cube.values["consumption_wh"], settings, 11, reported, labels)
    assert kinds is not None and ((kinds > 0) == (labels == 1)).all() and set(np.unique(kinds)) > {0}
    assert injected_attacks(cube.values["consumption_wh"], settings, 12, reported, labels) is None


def test_per_meter_table_is_table_5_of_the_evaluation():
    table = next(f for f in build().figures if f.title == "Per meter (Table 5 form)").plot.data[0]
    columns = dict(zip(table.header.values, table.cells.values, strict=True))
    assert list(columns["meter"]) == ["MI1", "MI2"]
    # MI1: days h1 and h6 tampered; agent flags days 2 and 4 (scores 0.6, 0.2) -> both found, no false alarm
    assert list(columns["tampered"]) == ["2", "2"] and list(columns["flagged"]) == ["2", "2"]
    assert list(columns["false alarms"]) == ["0", "0"] and list(columns["accuracy + RL"]) == ["1.0000", "1.0000"]
    # the detector alone flags MI1's honest day 3 (log-odds 0.5) and misses its h6 day (-0.5)
    assert list(columns["accuracy"]) == ["0.5000", "1.0000"]
