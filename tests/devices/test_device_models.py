"""Device models: the iron's thermal dynamics, the blender, the battery's bounds, the PV playback, the meter."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.devices import (
    BLENDER_SPEEDS_W,
    IRON_SETTINGS,
    Battery,
    Blender,
    CommandError,
    EnergyCounter,
    Iron,
    MeterDevice,
    Profile,
    PVSystem,
)

T0 = pd.Timestamp("2024-04-11 10:00", tz="America/Mexico_City")


def run(device, seconds: float, dt_s: float = 1.0, voltage: float = 127.0) -> list[float]:
    return [device.step(T0, dt_s, voltage) for _ in range(round(seconds / dt_s))]


# ------------------------------------------------------------------------------------------------------- iron


def test_iron_heats_up_when_on_and_settles_in_its_thermostat_band():
    iron = Iron()
    iron.apply({"Position": 4})  # cotton, 190 degC
    temps = []
    for _ in range(600):
        iron.step(T0, 1.0)
        temps.append(iron.temperature_c)
    first_fall = next(k for k in range(len(temps) - 1) if temps[k + 1] <= temps[k])
    assert temps[first_fall] > 194  # it rose without a pause up to the top of the band (195 degC)
    assert 60 < next(k for k, t in enumerate(temps) if t >= 185) < 240  # 1-4 minutes to cotton
    assert min(temps[300:]) >= 185 - 1e-6 and max(temps[300:]) <= 195 + 1e-6


def test_iron_cools_towards_the_room_when_switched_off():
    iron = Iron(position=5)
    run(iron, 300)
    hot = iron.temperature_c
    iron.apply({"On": 0})
    powers = run(iron, 600)
    assert max(powers) == 0
    assert 25 < iron.temperature_c < hot - 100
    iron.apply({"On": 1, "Position": 0})
    assert run(iron, 60) == [0.0] * 60  # position 0 is off too


@settings(max_examples=30, deadline=None)
@given(position=st.integers(1, 5), splits=st.lists(st.floats(0.5, 400), min_size=1, max_size=12))
def test_iron_integration_does_not_depend_on_the_step(position, splits):
    """The thermostat switches at exact crossing times, so one long step equals many short ones."""
    coarse, fine = Iron(position=position), Iron(position=position)
    for dt in splits:
        coarse.step(T0, dt)
        for _ in range(10):
            fine.step(T0, dt / 10)
    assert coarse.temperature_c == pytest.approx(fine.temperature_c, abs=1e-6)
    assert coarse.consumption.mwh == pytest.approx(fine.consumption.mwh, abs=12)
    assert coarse.power_w <= coarse.heater_w() + 1e-9


def test_iron_energy_is_the_heater_on_time():
    iron = Iron(position=4)
    powers = run(iron, 1800, dt_s=60)
    assert iron.consumption.wh == math.floor(sum(powers) * 60 / 3600)
    assert 400 < np.mean(powers[10:]) < 700  # steady-state duty cycle: (190 - 25) / 0.3 = 550 W


def test_iron_heater_is_a_resistor():
    iron = Iron()
    iron.voltage_v = 127 * 1.1
    assert iron.heater_w() == pytest.approx(1200 * 1.21)


def test_iron_positions_are_the_six_of_the_paper():
    assert len(IRON_SETTINGS) == 6
    iron = Iron()
    for position, (fabric, set_point) in enumerate(IRON_SETTINGS):
        iron.apply({"Position": position})
        assert (iron.to_twin()["Fabric"], iron.set_point_c) == (fabric, set_point)


def test_iron_twin_document():
    iron = Iron(position=3)
    iron.step(T0, 60.0)
    twin = iron.to_twin()
    assert {"ID", "Name", "On", "Voltage", "Current", "Power", "Consumption", "Position", "Temperature"} <= set(twin)
    assert (twin["ID"], twin["Name"], twin["On"], twin["Position"]) == (2, "Iron", 1, 3)
    assert isinstance(twin["Power"], int) and isinstance(twin["Consumption"], int)
    assert twin["Current"] == pytest.approx(twin["Power"] / 127.0, abs=0.01)


# ------------------------------------------------------------------------------------------------------- blender


def test_blender_draws_the_power_of_its_speed():
    blender = Blender()
    assert len(BLENDER_SPEEDS_W) == 5  # stopped + 4 speeds
    for speed, watts in enumerate(BLENDER_SPEEDS_W):
        blender.apply({"Position": speed})
        assert blender.step(T0, 60.0) == watts
    blender.apply({"On": 0})
    assert blender.step(T0, 60.0) == 0
    assert blender.to_twin()["Consumption"] == round(sum(BLENDER_SPEEDS_W) / 60)
    blender.apply({"On": 1, "Position": 4})
    blender.step(T0, 1.0)
    assert blender.current_a == pytest.approx(600 / (127 * 0.95))


# ------------------------------------------------------------------------------------------------------- commands


@pytest.mark.parametrize(
    ("device", "command", "message"),
    [
        (Iron(), {"Position": 6}, "key 'Position' must be an integer 0-5, got 6"),
        (Iron(), {"Position": True}, "key 'Position' must be an integer 0-5"),
        (Iron(), {"Position": 2.0}, "key 'Position' must be an integer 0-5"),
        (Iron(), {"Temperature": 300}, "key 'Temperature' is not settable"),
        (Iron(), {"On": 2}, "key 'On' must be 0 or 1"),
        (Iron(), {"ID": 7, "On": 1}, "command for ID 7"),
        (Iron(), {"Name": "Blender", "On": 1}, "command for Name 'Blender'"),
        (Iron(), ["On", 1], "a command must be a mapping"),
        (Blender(), {"Position": 5}, "key 'Position' must be an integer 0-4"),
        (Battery(), {"Mode": "turbo"}, "key 'Mode' must be one of"),
        (Battery(), {"Setpoint": 1.5}, "key 'Setpoint' must be an integer"),
        (MeterDevice(), {"Position": 6}, "key 'Position' must be an integer 0-5"),
        (MeterDevice(), {"Consumption": 0}, "key 'Consumption' is not settable"),
    ],
)
def test_bad_commands_are_rejected_naming_the_key(device, command, message):
    before = device.to_twin()
    with pytest.raises(CommandError, match=message):
        device.apply(command)
    assert device.to_twin() == before


def test_a_command_is_applied_whole_or_not_at_all():
    iron = Iron()
    with pytest.raises(CommandError):
        iron.apply({"On": 0, "Position": 9})
    assert iron.on and iron.position == 0
    assert iron.apply({"ID": 2, "On": 0, "Position": 1}) == {"On": 0, "Position": 1}


def test_bad_steps_are_rejected():
    for dt in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="dt_s must be a finite number of seconds > 0"):
            Blender().step(T0, dt)


# ------------------------------------------------------------------------------------------------------- battery


@settings(max_examples=60, deadline=None)
@given(
    requests=st.lists(st.integers(-6000, 6000), min_size=1, max_size=60),
    dt_s=st.sampled_from([1.0, 60.0, 900.0]),
    start=st.floats(0.1, 0.95),
)
def test_battery_respects_its_soc_bounds_power_limits_and_efficiency(requests, dt_s, start):
    battery = Battery(capacity_wh=4000, max_charge_w=2000, max_discharge_w=1500, mode="manual", stored_wh=4000 * start)
    for request in requests:
        before = battery.stored_wh
        battery.apply({"Setpoint": request})
        power = battery.step(T0, dt_s)
        assert battery.min_wh - 1e-9 <= battery.stored_wh <= battery.max_wh + 1e-9
        assert -1500 <= power <= 2000
        assert (power >= 0) == (request >= 0) or power == 0
        assert abs(power) <= abs(request) + 1e-9
        energy = power * dt_s / 3600
        expected = energy * math.sqrt(0.9) if power >= 0 else energy / math.sqrt(0.9)
        assert battery.stored_wh - before == pytest.approx(expected, abs=1e-6)


def test_battery_round_trip_returns_the_efficiency():
    battery = Battery(capacity_wh=1000, max_charge_w=500, max_discharge_w=500, soc_min=0.0, soc_max=1.0, stored_wh=0.0)
    battery.apply({"Mode": "manual", "Setpoint": 500})
    while battery.stored_wh < battery.max_wh - 1e-9:
        battery.step(T0, 60.0)
    charged = battery.consumption.mwh
    battery.apply({"Setpoint": -500})
    while battery.stored_wh > 1e-9:
        battery.step(T0, 60.0)
    assert battery.production.mwh / charged == pytest.approx(0.9, abs=1e-3)


def test_battery_auto_mode_follows_the_household_request_and_off_does_nothing():
    battery = Battery()
    battery.request_w = -800.0
    assert battery.step(T0, 60.0) == -800.0
    battery.apply({"On": 0})
    assert battery.step(T0, 60.0) == 0.0
    twin = battery.to_twin()
    assert twin["Production"] == 13 and twin["SoC"] == pytest.approx(100 * battery.soc, abs=0.05)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"capacity_wh": 0}, "capacity_wh must be an integer > 0"),
        ({"max_charge_w": 1.5}, "max_charge_w must be an integer > 0"),
        ({"efficiency": 1.2}, "efficiency must be in"),
        ({"soc_min": 0.9, "soc_max": 0.5}, "soc_min < soc_max"),
        ({"stored_wh": 10_000.0}, "stored_wh must be within"),
        ({"mode": "eco"}, "mode must be one of"),
    ],
)
def test_bad_battery_parameters_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Battery(**kwargs)


# ------------------------------------------------------------------------------------------------------- PV


def pv_profile() -> pd.Series:
    index = pd.date_range(T0, periods=4, freq="15min")
    return pd.Series([0.0, 1000.0, 2500.0, 300.0], index=index)


def test_pv_plays_back_its_profile_as_a_source_and_obeys_the_limit():
    pv = PVSystem.from_series(pv_profile(), peak_w=3000)
    assert pv.step(T0 + pd.Timedelta(minutes=20), 60.0) == -1000.0
    pv.apply({"Limit": 2000})
    assert pv.step(T0 + pd.Timedelta(minutes=31), 60.0) == -2000.0
    pv.apply({"Limit": None, "On": 0})
    assert pv.step(T0 + pd.Timedelta(minutes=31), 60.0) == 0.0
    twin = pv.to_twin()
    assert (twin["Production"], twin["Consumption"], twin["Peak"]) == (50, 0, 3000)


def test_profiles_are_read_inside_their_span_only():
    profile = Profile(pv_profile())
    assert profile.at(T0 + pd.Timedelta(minutes=59, seconds=59)) == 300.0
    with pytest.raises(ValueError, match="outside the profile"):
        profile.at(T0 + pd.Timedelta(hours=1))
    with pytest.raises(ValueError, match="outside the profile"):
        profile.at(T0 - pd.Timedelta(seconds=1))
    with pytest.raises(ValueError, match="both be tz-aware or both naive"):
        profile.at(pd.Timestamp("2024-04-11 10:00"))
    with pytest.raises(ValueError, match=">= 0"):
        PVSystem.from_series(-pv_profile(), peak_w=1000)


# ------------------------------------------------------------------------------------------------------- meter


@settings(max_examples=60, deadline=None)
@given(nets=st.lists(st.floats(-5000, 8000), min_size=1, max_size=80), dt_s=st.sampled_from([1.0, 60.0]))
def test_meter_registers_never_go_backwards_and_split_import_from_export(nets, dt_s):
    meter = MeterDevice()
    last = (0, 0)
    for net in nets:
        twin = meter.measure(net, dt_s, 127.0, 0.9)
        now = (twin["Consumption"], twin["Production"])
        assert now[0] >= last[0] and now[1] >= last[1]
        last = now
    imported = sum(max(n, 0) for n in nets) * dt_s / 3600
    exported = sum(max(-n, 0) for n in nets) * dt_s / 3600
    assert math.floor(imported) - 1 <= last[0] <= imported + 1e-9
    assert math.floor(exported) - 1 <= last[1] <= exported + 1e-9


def test_meter_measures_current_from_power_voltage_and_power_factor():
    meter = MeterDevice()
    twin = meter.measure(-1270.0, 60.0, 127.0, 0.8)
    assert (twin["Power"], twin["Current"], twin["Voltage"], twin["PowerFactor"]) == (-1270, 12.5, 127.0, 0.8)


def test_switched_off_meter_measures_nothing_and_its_display_follows_the_potentiometer():
    meter = MeterDevice()
    meter.measure(6000.0, 3600.0, 127.0, 1.0)
    assert meter.to_twin()["Display"] == 6000  # position 3: Power
    meter.apply({"Position": 4})
    assert meter.to_twin()["Display"] == 6000  # Consumption, Wh
    meter.apply({"Position": 1})
    assert meter.to_twin()["Display"] == 127.0
    meter.apply({"On": 0})
    twin = meter.measure(6000.0, 3600.0, 127.0, 1.0)
    assert (twin["Consumption"], twin["Power"], twin["Voltage"], twin["Display"]) == (6000, 0, 0.0, None)
    with pytest.raises(ValueError, match="bad measurement"):
        meter.measure(float("nan"), 60.0, 127.0, 1.0)


def test_energy_counter_carries_fractions_of_a_milliwatt_hour():
    counter = EnergyCounter()
    for _ in range(3600):
        counter.add(1.0, 1.0)  # 1 W for one hour, in one-second steps
    assert counter.mwh in (999, 1000) and counter.wh in (0, 1)
    counter.add(0.0, 1.0)
    with pytest.raises(ValueError, match="only counts power >= 0"):
        counter.add(-1.0, 1.0)
