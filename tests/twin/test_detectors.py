"""Detector rules and their thresholds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.twin.detectors import (
    ComponentMonitor,
    ConnectionMonitor,
    EnergyMonitor,
    HeartbeatMonitor,
    RateMonitor,
    RobustZ,
    SensorMonitor,
)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), mean=st.floats(1, 1000), cv=st.floats(0.01, 0.2))
def test_gaussian_noise_never_alarms(seed: int, mean: float, cv: float) -> None:
    z = RobustZ(k=8.0)
    values = np.random.default_rng(seed).normal(mean, cv * mean, 200)
    assert all(z.observe(float(x)) is None for x in values)


def test_shift_alarms_and_stays_out_of_the_baseline() -> None:
    z = RobustZ(k=8.0)
    for x in np.random.default_rng(0).normal(100, 1, 30):
        assert z.observe(float(x)) is None
    baseline = list(z.history)
    for _ in range(50):
        assert z.observe(120.0) is not None
    assert list(z.history) == baseline


def test_no_verdict_before_min_history() -> None:
    z = RobustZ(k=1.0, min_history=5)
    assert [z.observe(x) for x in (1.0, 1000.0, -1000.0, 5.0, 7.0)] == [None] * 5


HONEST = {"Voltage": 230.0, "Current": 2.0, "Power": 437.0, "Frequency": 50.0}


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"Voltage": 260.0}, "outside"),
        ({"Voltage": 200.0}, "outside"),
        ({"Frequency": 51.0}, "frequency"),
        ({"Power": 600.0}, "exceeds"),
    ],
)
def test_sensor_rules(change: dict, fragment: str) -> None:
    monitor = SensorMonitor()
    assert monitor.observe("m", HONEST, 0.0) == []
    alarms = monitor.observe("m", {**HONEST, **change}, 1.0)
    assert alarms and alarms[0].kind == "sensor-anomaly" and fragment in alarms[0].detail


def test_sensor_z_score_catches_in_band_bias() -> None:
    monitor = SensorMonitor(k=8.0)
    rng = np.random.default_rng(1)
    for i in range(30):
        assert monitor.observe("m", {"Voltage": 230 + rng.normal()}, i) == []
    assert monitor.observe("m", {"Voltage": 242.0}, 31)[0].kind == "sensor-anomaly"
    assert monitor.observe("other", {"Voltage": 242.0}, 31) == []  # per-device history


def test_energy_rollback_and_outlier_and_reset() -> None:
    monitor = EnergyMonitor(k=6.0)
    total, rng = 0.0, np.random.default_rng(2)
    for i in range(30):
        total += 10 * (1 + 0.1 * rng.normal())
        assert monitor.observe("m", total, i) == []
    assert monitor.observe("m", total + 2.0, 31)[0].kind == "energy-outlier"
    assert monitor.observe("m", total - 5.0, 32)[0].kind == "energy-rollback"
    monitor.reset("m")
    assert monitor.observe("m", total, 33) == [] and monitor.observe("m", total, 34) == []


def test_component_monitor_alarms_on_transitions() -> None:
    monitor = ComponentMonitor()
    assert monitor.observe("m", {"ct": True}, 0) == []
    assert [a.detail for a in monitor.observe("m", {"ct": False}, 1)] == ["ct disconnected"]
    assert monitor.observe("m", {"ct": False}, 2) == []
    assert monitor.observe("m", {"ct": True}, 3) == []
    assert len(monitor.observe("m", {"ct": False}, 4)) == 1


def test_heartbeat_timeout_once_then_rearm() -> None:
    monitor = HeartbeatMonitor(1.0)
    monitor.seen("m", 0.0)
    assert monitor.check(0.9) == []
    assert [a.kind for a in monitor.check(1.1)] == ["heartbeat-timeout"]
    assert monitor.check(5.0) == []
    monitor.seen("m", 6.0)
    assert len(monitor.check(7.5)) == 1
    with pytest.raises(ValueError):
        HeartbeatMonitor(0)


def test_rate_monitor_window() -> None:
    monitor = RateMonitor(window_s=1.0, max_messages=5)
    assert all(monitor.observe("m", t * 0.25) == [] for t in range(40))  # 4-5 per second: fine
    alarms = [a for i in range(10) for a in monitor.observe("f", 100 + i * 0.01)]
    assert len(alarms) == 1 and "f" in monitor.flagged
    with pytest.raises(ValueError):
        RateMonitor(1.0, 0)


def test_connection_monitor() -> None:
    monitor = ConnectionMonitor({"dtfc"})
    assert monitor.observe("dtfc", True, 0) == []
    assert monitor.observe("sniffer", True, 1)[0].kind == "new-connection"
    assert monitor.observe("sniffer", True, 2) == []
    assert monitor.observe("127.0.0.1:5", False, 3)[0].kind == "connection-refused"
