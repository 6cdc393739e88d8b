"""The household a twin meter measures (the device models of ``gridledger.devices``), and the physical attacks."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gridledger.devices import CommandError
from gridledger.twin.detectors import FREQUENCY_BAND_HZ, VOLTAGE_BAND_V
from gridledger.twin.mapping import twin_from_report
from gridledger.twin.physical import HouseholdSignal, Tamper
from gridledger.twin.smartpi import measured_at


def run(signal: HouseholdSignal, n: int) -> list[dict]:
    return [twin_from_report(signal.step()) for _ in range(n)]


def test_deterministic_for_a_seed(home_signal) -> None:
    assert run(home_signal("m", seed=3), 5) == run(home_signal("m", seed=3), 5)
    assert run(home_signal("m", seed=3), 5) != run(home_signal("m", seed=4), 5)


def test_mexican_residential_service(home_signal) -> None:
    for twin in run(home_signal("m"), 30):
        assert VOLTAGE_BAND_V[0] < twin["Voltage"] < VOLTAGE_BAND_V[1] and abs(twin["Voltage"] - 127) < 3
        assert FREQUENCY_BAND_HZ[0] < twin["Frequency"] < FREQUENCY_BAND_HZ[1]
        assert twin["Power"] <= twin["Voltage"] * twin["Current"] + 1  # P <= S


def test_consumption_registers_the_power(home_signal) -> None:
    twins = run(home_signal("m", interval_s=60), 30)
    energy = sum(t["Power"] for t in twins) / 60.0  # Wh: each report is one minute at its mean power
    assert twins[-1]["Consumption"] == pytest.approx(energy, abs=1.5)  # whole-Wh register
    assert [t["Consumption"] for t in twins] == sorted(t["Consumption"] for t in twins)


def test_reports_are_measured_at_the_end_of_each_interval(home_signal) -> None:
    signal = home_signal("m", interval_s=180)
    first = signal.measured_at
    times = [measured_at(signal.step()["smartpi"]) for _ in range(3)]
    assert times == [first + timedelta(minutes=3 * k) for k in range(3)]


def test_history_steps_like_reports(home_signal) -> None:
    signal, twin = home_signal("m", seed=5), home_signal("m", seed=5)
    history = signal.history(10)
    reports = [twin.step() for _ in range(10)]
    assert history == [(measured_at(r["smartpi"]), r["twin"]["Consumption"]) for r in reports]
    assert signal.now == twin.now


def test_switching_the_meter_off_stops_measuring(home_signal) -> None:
    signal = home_signal("m")
    before = run(signal, 1)[0]["Consumption"]
    assert signal.apply({"On": 0}) == {"On": 0}
    twin = run(signal, 3)[-1]
    assert twin["Power"] == 0.0 and twin["On"] == 0 and twin["Consumption"] == before
    with pytest.raises(CommandError):
        signal.apply({"On": 7})


def test_the_twin_sets_the_iron_and_the_blender(home_signal) -> None:
    honest, ironing = home_signal("m"), home_signal("m")
    assert ironing.apply({"Iron": 4, "Blender": 2}) == {"Iron": 4, "Blender": 2}
    a, b = run(honest, 1)[0], run(ironing, 1)[0]
    assert b["Iron"] == 4 and b["Blender"] == 2 and a["Iron"] == 0
    assert b["Power"] > a["Power"] + 1000  # a cold iron heats at 1200 W, the blender draws 400 W
    for bad in ({"Iron": 6}, {"Blender": -1}, {"Iron": 1, "Blender": 9}, {"Kettle": 1}):
        with pytest.raises(CommandError):
            honest.apply(bad)
    assert run(honest, 1)[0]["Iron"] == 0  # nothing of a refused command was applied


def test_sensor_bias_shifts_voltage(home_signal) -> None:
    honest, biased = home_signal("m", seed=2), home_signal("m", seed=2, tamper=Tamper("sensor-bias", bias_v=6.0))
    assert run(biased, 1)[0]["Voltage"] == pytest.approx(run(honest, 1)[0]["Voltage"] + 6.0)


def test_bypass_hides_load(home_signal) -> None:
    honest = home_signal("m", seed=2)
    bypassed = home_signal("m", seed=2, tamper=Tamper("energy-bypass", bypass_factor=0.2))
    h, b = run(honest, 10), run(bypassed, 10)
    assert all(y["Power"] == pytest.approx(0.2 * x["Power"], abs=1) for x, y in zip(h, b, strict=True))
    assert b[-1]["Consumption"] == pytest.approx(0.2 * h[-1]["Consumption"], abs=2)


def test_disconnected_current_sensor_is_reported(home_signal) -> None:
    signal = home_signal("m", seed=2, tamper=Tamper("component-disconnect"))
    report = signal.step()
    assert report["selftest"]["current_sensor"] is False
    assert twin_from_report(report)["Current"] == 0.0


def test_interval_must_be_whole_minutes(home_signal) -> None:
    with pytest.raises(ValueError, match="whole number of minutes"):
        home_signal("m", interval_s=90)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "laser"},
        {"kind": "energy-bypass", "bypass_factor": 2.0},
        {"kind": "component-disconnect", "component": "flux-capacitor"},
    ],
)
def test_bad_tamper(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Tamper(**kwargs)
