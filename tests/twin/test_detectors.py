"""Detector rules and their thresholds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.profiles.electrical import NOMINAL_VOLTAGE, VOLTAGE_BAND
from gridledger.twin.detectors import (
    MINUTES_PER_DAY,
    NOMINAL_V,
    VOLTAGE_BAND_V,
    ComponentMonitor,
    ConnectionMonitor,
    ConsumptionBand,
    EnergyMonitor,
    HeartbeatMonitor,
    RateMonitor,
    RobustZ,
    SensorMonitor,
    minute_of,
)


def test_gaussian_noise_seldom_alarms() -> None:
    """Over 300 seeded streams of 200 Gaussian values (any mean, cv 1-20 %), at most 3 alarms in 60 000 values.

    Not "never": a baseline of 12-20 values sometimes has a small MAD, and then a 4-sigma value scores above 8
    (about one stream in 500).
    """
    alarms = 0
    for seed in range(300):
        rng = np.random.default_rng(seed)
        mean, cv = rng.uniform(1, 1000), rng.uniform(0.01, 0.2)
        z = RobustZ(k=8.0)
        alarms += sum(z.observe(float(x)) is not None for x in rng.normal(mean, cv * mean, 200))
    assert alarms <= 3


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


HONEST = {"Voltage": 127.0, "Current": 2.0, "Power": 241.0, "Frequency": 60.0}


def test_the_bands_are_mexican_residential_service() -> None:
    assert NOMINAL_V == NOMINAL_VOLTAGE and pytest.approx(VOLTAGE_BAND) == VOLTAGE_BAND_V


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"Voltage": 141.0}, "outside"),
        ({"Voltage": 113.0}, "outside"),
        ({"Frequency": 60.7}, "frequency"),
        ({"Frequency": 59.3}, "frequency"),
        ({"Power": 300.0}, "exceeds"),
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
        assert monitor.observe("m", {"Voltage": 127 + 0.3 * rng.normal()}, i) == []
    assert monitor.observe("m", {"Voltage": 133.0}, 31)[0].kind == "sensor-anomaly"
    assert monitor.observe("other", {"Voltage": 133.0}, 31) == []  # per-device history


def test_the_homes_own_load_does_not_alarm_a_steady_voltage() -> None:
    """A meter whose voltage sat still (MAD 0) sees the iron switch on: a 0.6 V drop is within the floor."""
    monitor = SensorMonitor(k=8.0)
    for i in range(30):
        assert monitor.observe("m", {"Voltage": 127.4}, i) == []
    assert monitor.observe("m", {"Voltage": 126.8}, 31) == []
    assert monitor.observe("m", {"Voltage": 131.5}, 32)[0].kind == "sensor-anomaly"


# ------------------------------------------------------------------ energy: the time-of-day band
STEP = 2  # minutes between readings


def steady(monitor: EnergyMonitor, watts: float, days: int = 7, start: int = 0) -> tuple[int, float]:
    """Feed ``days`` of history at ``watts`` (readings every STEP minutes); returns (next minute, register Wh)."""
    wh = 0.0
    history = []
    for minute in range(start, start + days * MINUTES_PER_DAY, STEP):
        history.append((minute, wh))
        wh += watts * STEP / 60
    monitor.learn("m", history)
    return start + days * MINUTES_PER_DAY, wh


def live(monitor: EnergyMonitor, minute: int, wh: float, watts: float, n: int) -> tuple[list, int, float]:
    alarms = []
    for _ in range(n):
        alarms += monitor.observe("m", wh, float(minute), minute)
        minute, wh = minute + STEP, wh + watts * STEP / 60
    return alarms, minute, wh


def test_a_bypass_falls_below_the_band() -> None:
    monitor = EnergyMonitor(window_min=20, days=7, ratio=0.4)
    minute, wh = steady(monitor, 300.0)
    alarms, minute, wh = live(monitor, minute, wh, 300.0, 30)  # an honest hour
    assert alarms == []
    alarms, *_ = live(monitor, minute, wh, 60.0, 30)  # 80 % of the load hidden
    assert alarms and {a.kind for a in alarms} == {"energy-outlier"} and "below the band" in alarms[0].detail


def test_bursty_load_inside_the_band_is_not_an_alarm() -> None:
    monitor = EnergyMonitor(window_min=20, days=7, ratio=0.4)
    minute, wh = steady(monitor, 300.0)
    for watts in (150.0, 2000.0, 130.0, 900.0):  # half the usual, an iron, ...: all above 0.4 x 300 W
        alarms, minute, wh = live(monitor, minute, wh, watts, 10)
        assert alarms == []


def test_the_band_judges_only_with_full_history_and_import() -> None:
    monitor = EnergyMonitor(window_min=20, days=7, ratio=0.4)
    minute, wh = steady(monitor, 300.0, days=3)  # only 3 days known
    assert live(monitor, minute, wh, 10.0, 30)[0] == []
    night = EnergyMonitor(window_min=20, days=7, ratio=0.4, floor_wh=10.0)
    minute, wh = steady(night, 20.0)  # 20 W imports 6.7 Wh in 20 min: below the floor, nothing to judge
    night_alarms, *_ = live(night, minute, wh, 0.0, 30)
    assert night_alarms == []


@pytest.mark.parametrize("switched", [True, False])
def test_a_switched_meter_is_not_judged_until_its_window_refills(switched: bool) -> None:
    monitor = EnergyMonitor(window_min=20, days=7, ratio=0.4)
    minute, wh = steady(monitor, 300.0)
    _, minute, wh = live(monitor, minute, wh, 300.0, 10)
    if switched:
        monitor.reset("m")  # switched off for 16 min (the controller judges nothing while it is off), then on
    alarms, *_ = live(monitor, minute + 16, wh, 300.0, 9)
    assert (alarms == []) == switched  # a window over the off time looks like a bypass


def test_energy_rollback() -> None:
    monitor = EnergyMonitor()
    assert monitor.observe("m", 100.0, 0.0) == []
    assert monitor.observe("m", 95.0, 1.0)[0].kind == "energy-rollback"


@settings(max_examples=40, deadline=None)
@given(
    past=st.lists(st.floats(1, 5_000), min_size=7, max_size=7),
    share=st.floats(0.0, 3.0),
)
def test_band_alarms_exactly_below_ratio_times_the_least_day(past: list[float], share: float) -> None:
    """One window per day: the band alarms iff now < ratio * min(past), when every past day reached the floor."""
    band = ConsumptionBand(window_min=20, days=7, ratio=0.4, floor_wh=10.0)
    now_minute = 7 * MINUTES_PER_DAY + 600
    for d, energy in enumerate(reversed(past), start=1):
        band.add(now_minute - d * MINUTES_PER_DAY - 20, 0.0)
        band.add(now_minute - d * MINUTES_PER_DAY, energy)
    now = share * min(past)
    band.add(now_minute - 20, 1_000.0)
    band.add(now_minute, 1_000.0 + now)
    verdict = band.below(now_minute)
    expected = min(past) >= 10.0 and now < 0.4 * min(past)
    assert (verdict is not None) == expected


def test_band_parameters_are_checked() -> None:
    for bad in ({"window_min": 0}, {"days": 0}, {"ratio": 1.5}, {"floor_wh": -1}):
        with pytest.raises(ValueError):
            ConsumptionBand(**bad)


def test_minute_of_reads_the_meters_clock() -> None:
    from datetime import datetime

    assert minute_of(datetime(1970, 1, 2, 0, 3)) == MINUTES_PER_DAY + 3


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
