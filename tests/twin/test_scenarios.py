"""Every attack scenario, run on a small community with real processes and a real broker."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests import requires

from gridledger.twin.detectors import BAND_DAYS, Alarm
from gridledger.twin.scenarios import RunContext, RunResult, get, register, scenarios, summarize
from gridledger.twin.scenarios.base import first_detection
from gridledger.twin.scenarios.harness import (
    DEFAULT_COMMUNITY,
    EVENING,
    INTERVAL_S,
    RUN_DAYS,
    LabError,
    TwinLab,
    community_file,
    run_start,
)

PAPER_EIGHT = {"sensor", "spoofing", "hardware", "energy", "sniffing", "ddos", "leakage", "fault-tolerance"}
needs_broker = requires.needs_mosquitto


def test_registry_holds_the_papers_eight() -> None:
    assert set(scenarios()) >= PAPER_EIGHT
    with pytest.raises(ValueError, match="already registered"):
        register(get("sensor"))
    with pytest.raises(KeyError, match="unknown scenario"):
        get("nope")


def test_a_ledger_scenario_can_be_registered() -> None:
    class Fake:
        name, threat, detector, needs_broker = "fake-price-test", "t", "d", False

        def run(self, ctx: RunContext) -> RunResult:
            return RunResult("x", True, 0.0, 0, 1, 0)

    register(Fake())
    try:
        assert get("fake-price-test").run(RunContext(0, 2, Path("."))).detected
    finally:
        from gridledger.twin.scenarios import base

        del base._REGISTRY["fake-price-test"]


def test_summary_rates() -> None:
    results = [
        RunResult("a", True, 0.5, 1, 100, 0),
        RunResult("a", False, None, 0, 100, 2),
        RunResult("a", True, 1.5, 1, 0, 0),
    ]
    s = summarize("x", results)
    assert s.detection_rate == pytest.approx(2 / 3)
    assert s.false_alarm_rate == pytest.approx(2 / 200)
    assert s.mean_time_to_detect_s == pytest.approx(1.0)
    assert s.data_lost == 2
    assert {"scenario", "runs", "detection_rate", "false_alarm_rate", "mean_time_to_detect_s", "data_lost"} <= set(
        s.to_json()
    )
    with pytest.raises(ValueError):
        summarize("x", [])


def test_first_detection_separates_attack_and_false_alarms() -> None:
    alarms = [
        Alarm("sensor-anomaly", "m1", "", 9.0),  # before the injection: false
        Alarm("sensor-anomaly", "m2", "", 11.0),  # honest device: false
        Alarm("energy-outlier", "m1", "", 10.5),  # caused, but not of the detecting kind
        Alarm("sensor-anomaly", "m1", "", 12.0),
    ]
    detect, false = first_detection(alarms, 10.0, lambda a: a.source == "m1", {"sensor-anomaly"})
    assert detect == pytest.approx(2.0) and false == 2
    assert first_detection(alarms, None, lambda a: True, {"sensor-anomaly"}) == (None, 4)


CASES = [(name, 0) for name in sorted(PAPER_EIGHT)] + [("hardware", 1)]


@pytest.mark.mqtt
@needs_broker
@pytest.mark.parametrize(("name", "seed"), CASES)
def test_scenario_detects_without_losing_data(name: str, seed: int, tmp_path: Path) -> None:
    result = get(name).run(RunContext(seed=seed, households=3, workdir=tmp_path))
    assert result.detected, result
    assert result.time_to_detect_s is not None and result.time_to_detect_s >= 0
    assert result.data_lost == 0, result
    assert result.honest_observations > 0
    assert result.false_alarms / result.honest_observations < 0.05, result
    details = result.details
    if name == "sniffing":
        assert details["captured"] > 0 and details["readable"] == 0
    if name == "spoofing":
        assert details["forged_stored"] == 0 and details["rejected"].get("bad-signature") == details["forged_sent"]
    if name == "ddos":
        assert details["rogue_admitted"] == 0 and details["rogue_refused"] > 0
    if name == "leakage":
        assert details["intruder_answers_opened"] == 0 and details["neighbour_answers_opened"] == 0
        assert details["honest_answers_opened"] == details["honest_requests"] > 0
    if name == "fault-tolerance":
        assert details["backup_took_over"]


@pytest.mark.parametrize("seed", range(6))
def test_the_lab_runs_an_evening_after_a_week_of_history(seed: int, tmp_path: Path) -> None:
    community = community_file(DEFAULT_COMMUNITY)
    start = run_start(community, seed)
    first_day = community.index("1D")[0]
    assert BAND_DAYS <= (start - first_day).days < BAND_DAYS + RUN_DAYS
    assert EVENING[0] <= start.hour * 60 + start.minute < EVENING[1]
    assert start.minute % (INTERVAL_S // 60) == 0


def test_the_target_is_drawn_among_eligible_homes(tmp_path: Path) -> None:
    targets = set()
    for seed in range(8):
        lab = TwinLab(RunContext(seed, 3, tmp_path / str(seed)))
        try:
            assert lab.homes["meter-1"].battery_wh > 0  # MI001 has a battery
            targets.add(lab.choose_target(lambda home: home.battery_wh == 0))
            with pytest.raises(LabError, match="no household"):
                lab.choose_target(lambda home: False)
        finally:
            lab.store.close()
    assert targets == {"meter-2", "meter-3"}
