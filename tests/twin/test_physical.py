"""The simulated physical signal of a meter, and the physical attacks on it."""

from __future__ import annotations

import pytest

from gridledger.twin.mapping import twin_from_report
from gridledger.twin.physical import MeterSignal, Tamper


def run(signal: MeterSignal, n: int) -> list[dict]:
    return [twin_from_report(signal.step()) for _ in range(n)]


def test_deterministic_for_a_seed() -> None:
    assert run(MeterSignal("m", seed=3), 5) == run(MeterSignal("m", seed=3), 5)
    assert run(MeterSignal("m", seed=3), 5) != run(MeterSignal("m", seed=4), 5)


def test_consumption_integrates_power() -> None:
    signal = MeterSignal("m", interval_s=60.0, seed=1)
    twins = run(signal, 10)
    assert twins[-1]["Consumption"] == pytest.approx(sum(t["Power"] for t in twins) / 60.0, abs=1e-2)


def test_switching_off_stops_consumption() -> None:
    signal = MeterSignal("m", seed=1)
    assert signal.apply({"On": 0}) == {"On": 0}
    twin = run(signal, 1)[0]
    assert twin["Power"] == 0.0 and twin["On"] == 0
    with pytest.raises(ValueError):
        signal.apply({"On": 7})


def test_sensor_bias_shifts_voltage() -> None:
    honest, biased = MeterSignal("m", seed=2), MeterSignal("m", seed=2, tamper=Tamper("sensor-bias", bias_v=12.0))
    assert run(biased, 1)[0]["Voltage"] == pytest.approx(run(honest, 1)[0]["Voltage"] + 12.0)


def test_bypass_hides_load() -> None:
    honest = MeterSignal("m", seed=2)
    bypassed = MeterSignal("m", seed=2, tamper=Tamper("energy-bypass", bypass_factor=0.2))
    assert run(bypassed, 1)[0]["Power"] == pytest.approx(0.2 * run(honest, 1)[0]["Power"])


def test_disconnected_current_sensor_is_reported() -> None:
    signal = MeterSignal("m", seed=2, tamper=Tamper("component-disconnect"))
    report = signal.step()
    assert report["selftest"]["current_sensor"] is False
    assert twin_from_report(report)["Current"] == 0.0


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
