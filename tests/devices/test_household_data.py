"""The whole community at once (``simulate_households``) against the device models stepped one object at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.devices import ApplianceUse, Battery, Blender, Household, Iron, households, simulate_households
from gridledger.devices.appliances import appliance_power, appliance_uses
from gridledger.devices.battery import dispatch
from gridledger.devices.household import dispatch_batteries
from gridledger.profiles import generate_community, load_community
from gridledger.profiles.meter_readings import _WEATHER
from gridledger.profiles.noise import derived_seed
from gridledger.profiles.pv import pv_system_power, synthetic_weather

SMALL = Path(__file__).parents[2] / "examples" / "community-small.toml"
T0 = pd.Timestamp("2024-04-11", tz="America/Mexico_City")


@pytest.fixture(scope="module")
def small():
    community = load_community(SMALL)
    return community, simulate_households(community)


def step_objects(house: Household, uses: tuple[ApplianceUse, ...], index: pd.DatetimeIndex) -> dict[str, np.ndarray]:
    """Step one household object minute by minute, the residents' uses given as twin commands."""
    commands: dict[int, list[dict]] = {}
    for use in uses:
        commands.setdefault(use.start, []).append({"Name": use.name, "Position": use.position})
        commands.setdefault(use.start + use.minutes, []).insert(0, {"Name": use.name, "Position": 0})
    net, soc, pv = (np.zeros(len(index)) for _ in range(3))
    for minute, now in enumerate(index):
        for command in commands.get(minute, []):
            house.apply(command)
        house.step(now, 60.0)
        net[minute] = house.meter.power_w
        soc[minute] = house.battery.soc if house.battery else 0.0
        pv[minute] = -house.pv.power_w if house.pv else 0.0
    return {"net_w": net, "soc": soc, "pv_w": pv}


@pytest.mark.parametrize("generated", [False, True], ids=["small example", "generated, with ironing"])
def test_the_fast_path_is_the_per_object_path(small, generated):
    community, data = small
    if generated:  # seed 7: two batteries, three homes iron, one of them with a battery
        community = generate_community(8, days=2, seed=7)
        data = simulate_households(community)
        assert sum(any(u.name == "Iron" for u in uses) for uses in data.uses.values()) == 3
    objects = {house.home_id: house for house in households(community)}
    assert data.home_ids == tuple(sorted(objects))
    assert any(h.battery_wh for h in community.homes) and any("blender" in h.appliances for h in community.homes)
    for row, home_id in enumerate(data.home_ids):
        uses = data.uses.get(home_id, ())
        stepped = step_objects(objects[home_id], uses, data.index)
        np.testing.assert_allclose(stepped["pv_w"], data.pv_w[row], rtol=1e-12, atol=1e-9)
        if not any(use.name == "Iron" for use in uses):  # no voltage-dependent device: the same numbers
            np.testing.assert_allclose(stepped["net_w"], data.net_w[row], rtol=1e-9, atol=1e-6)
            np.testing.assert_allclose(stepped["soc"], data.soc[row], rtol=1e-9, atol=1e-9)
            imported, exported = data.slot_energy_wh(community.slot_seconds)
            assert objects[home_id].meter.imported.wh == pytest.approx(imported[row].sum(), abs=1)
            assert objects[home_id].meter.exported.wh == pytest.approx(exported[row].sum(), abs=1)
        else:  # the iron's heater follows the supply voltage, fixed at no load in the fast path: energy within 3 %
            assert stepped["net_w"].sum() == pytest.approx(data.net_w[row].sum(), rel=0.03)


def test_the_household_data_balances_and_the_batteries_only_shift_the_home_s_own_energy(small):
    community, data = small
    homes = {h.id: h for h in community.homes}
    np.testing.assert_allclose(data.net_w, data.load_w - data.pv_w + data.battery_w)
    assert (data.load_w >= 0).all() and (data.pv_w >= 0).all()
    for row, home_id in enumerate(data.home_ids):
        home = homes[home_id]
        assert (data.pv_w[row].max() > 0) == (home.pv_kw > 0) and data.pv_w[row].max() <= 1000 * home.pv_kw
        if not home.battery_wh:
            assert not data.battery_w[row].any() and not data.soc[row].any()
            continue
        own = data.load_w[row] - data.pv_w[row]
        assert (data.battery_w[row] <= np.maximum(-own, 0) + 1e-9).all()  # charges only from surplus PV
        assert (-data.battery_w[row] <= np.maximum(own, 0) + 1e-9).all()  # discharges only into the load
        assert data.soc[row].min() >= 0.1 - 1e-12 and data.soc[row].max() <= 0.95 + 1e-12
        assert np.abs(data.net_w[row]).sum() < np.abs(own).sum()
        assert (np.abs(data.battery_w[row]) <= home.battery_w + 1e-9).all()


def test_the_frame_and_the_slot_energy(small):
    community, data = small
    frame = data.frame()
    assert list(frame.columns) == ["home_id", "timestamp", "load_w", "pv_w", "battery_w", "soc", "net_w"]
    assert len(frame) == 6 * 2 * 1440 and frame["timestamp"].iloc[0] == community.start
    assert str(frame["timestamp"].dt.tz) == "America/Mexico_City" and frame["home_id"].dtype == "str"
    assert frame["home_id"].iloc[1440 * 2] == data.home_ids[1]
    np.testing.assert_array_equal(frame["net_w"].to_numpy()[: 2 * 1440], data.net_w[0])
    imported, exported = data.slot_energy_wh(900)
    assert imported.shape == (6, 2 * 96)
    np.testing.assert_allclose(imported - exported, data.net_w.reshape(6, -1, 15).sum(axis=-1) / 60)
    with pytest.raises(ValueError, match="slot_seconds"):
        data.slot_energy_wh(7 * 60)


def test_pv_is_built_once_per_orientation_and_scaled_to_each_home(small):
    community, data = small
    weather = synthetic_weather(data.index, community.location, derived_seed(community.seed, _WEATHER), 0.3)
    for row, home in enumerate(sorted(community.homes, key=lambda h: h.id)):
        np.testing.assert_allclose(data.pv_w[row], pv_system_power(weather, home.pv_kw, home.pv_array), atol=1e-9)


def test_the_same_community_gives_the_same_data():
    community = generate_community(8, days=1, seed=2)
    first, again = simulate_households(community), simulate_households(community)
    for name in ("load_w", "pv_w", "battery_w", "soc", "net_w"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert first.uses == again.uses


@settings(max_examples=40, deadline=None)
@given(
    capacities=st.lists(st.sampled_from([1000, 5000, 13500]), min_size=1, max_size=5),
    requests=st.lists(st.floats(-8000, 8000), min_size=1, max_size=40),
    dt_s=st.sampled_from([1.0, 60.0, 900.0]),
)
def test_the_battery_step_on_arrays_is_the_battery_object_s_step(capacities, requests, dt_s):
    batteries = [Battery(capacity_wh=c, max_charge_w=c // 2, max_discharge_w=c // 3) for c in capacities]
    net = np.array([[r * (k + 1) / len(capacities) for r in requests] for k in range(len(capacities))])
    power, soc = dispatch_batteries([*batteries, None], np.vstack([net, np.ones(len(requests))]), dt_s)
    assert not power[-1].any() and not soc[-1].any()
    for k, battery in enumerate(batteries):
        for t, wanted in enumerate(net[k]):
            battery.request_w = -wanted
            assert battery.step(T0, dt_s) == power[k, t]
            assert battery.soc == soc[k, t]


def test_dispatch_takes_scalars_and_arrays_alike():
    args = (2000.0, 1500.0, 3000, 3000, 500.0, 4750.0, 0.9, 60.0)
    scalar = dispatch(*args)
    vector = dispatch(*(np.full(3, a) if k < 2 else a for k, a in enumerate(args)))
    assert (vector[0] == scalar[0]).all() and (vector[1] == scalar[1]).all()


def test_appliance_uses_are_at_plausible_times():
    index = pd.date_range(T0, periods=30 * 1440, freq="1min")
    uses = appliance_uses(("iron", "blender"), np.arange(30) * 1440, np.random.default_rng(1))
    irons = [u for u in uses if u.name == "Iron"]
    blenders = [u for u in uses if u.name == "Blender"]
    assert 2 <= len(irons) <= 15 and 10 <= len(blenders) <= 28
    assert all(9 * 60 <= u.start % 1440 < 20 * 60 and 15 <= u.minutes <= 45 and 1 <= u.position <= 5 for u in irons)
    assert all(u.start % 1440 // 60 in (7, 8, 13, 14, 19, 20) and u.minutes <= 4 for u in blenders)
    assert [u.start for u in uses] == sorted(u.start for u in uses)
    assert appliance_uses(("blender",), np.arange(30) * 1440, np.random.default_rng(1)) != uses
    assert len(index) == 30 * 1440


def test_appliance_power_steps_the_device_models():
    index = pd.date_range(T0, periods=1440, freq="1min")
    uses = [ApplianceUse("Iron", 600, 30, 4), ApplianceUse("Blender", 620, 3, 2), ApplianceUse("Iron", 660, 10, 5)]
    fast = appliance_power([Iron(), Blender()], uses, index)
    iron, blender, slow = Iron(), Blender(), np.zeros(len(index))
    for minute in range(len(index)):
        for use in uses:
            device = iron if use.name == "Iron" else blender
            if minute == use.start:
                device.apply({"Position": use.position})
            if minute == use.start + use.minutes:
                device.apply({"Position": 0})
        slow[minute] = iron.step(index[minute], 60.0) + blender.step(index[minute], 60.0)
    np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-9)
    assert fast[620:623].min() >= 400 and fast[600:630].mean() > 300 and not fast[:600].any()
