"""The household: appliances, PV and battery summed behind the smart meter, and command routing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gridledger.devices import Battery, Blender, CommandError, Household, Iron, Profile, PVSystem, households
from gridledger.profiles import household_load, load_community, pv_power

EXAMPLE = Path(__file__).parents[2] / "examples" / "community.toml"
INDEX = pd.date_range("2024-04-11", periods=2 * 1440, freq="1min", tz="America/Mexico_City")


def home(battery: bool = True) -> Household:
    return Household(
        home_id="MI001",
        base_load=Profile(household_load(INDEX, 2200, seed=1)),
        appliances=[Iron(), Blender()],
        pv=PVSystem.from_series(pv_power(INDEX, 3.0, seed=1), peak_w=3000),
        battery=Battery(capacity_wh=5000) if battery else None,
    )


def test_the_meter_registers_the_net_of_every_device():
    house = home()
    house.apply({"ID": 2, "Position": 4})
    house.apply({"Name": "Blender", "Position": 2})
    net = []
    for now in INDEX[:600]:
        twin = house.step(now, 60.0)
        devices = house.base_load.at(now) + sum(d.power_w for d in (*house.appliances, house.pv, house.battery))
        net.append(devices)
        assert twin["Power"] == round(devices)
    imported = sum(max(p, 0) for p in net) / 60
    exported = sum(max(-p, 0) for p in net) / 60
    assert house.meter.imported.wh == pytest.approx(imported, abs=1)
    assert house.meter.exported.wh == pytest.approx(exported, abs=1)


def test_meter_counters_are_monotone_over_two_days():
    readings = home().run(INDEX)
    assert readings["Consumption"].is_monotonic_increasing and readings["Production"].is_monotonic_increasing
    assert readings["Voltage"].between(127 * 0.9, 127 * 1.1).all()


def test_the_battery_lowers_what_the_home_imports_and_exports():
    with_battery, without = home(battery=True).run(INDEX), home(battery=False).run(INDEX)
    assert with_battery["Consumption"].iloc[-1] < 0.6 * without["Consumption"].iloc[-1]
    assert with_battery["Production"].iloc[-1] < without["Production"].iloc[-1]


def test_the_iron_adds_its_power_to_the_meter():
    idle, ironing = home(battery=False), home(battery=False)
    ironing.apply({"ID": 2, "Position": 5})
    for now in INDEX[:120]:
        idle.step(now, 60.0)
        ironing.step(now, 60.0)
    assert ironing.meter.imported.wh - idle.meter.imported.wh == pytest.approx(
        ironing.appliances[0].consumption.wh, abs=25
    )
    assert ironing.device("Iron").to_twin()["Temperature"] > 200


def test_commands_are_routed_by_id_and_bad_ones_rejected():
    house = home()
    assert house.apply({"ID": 5, "Mode": "manual", "Setpoint": -500}) == {"Mode": "manual", "Setpoint": -500}
    assert house.battery.mode == "manual"
    with pytest.raises(CommandError, match="no device 9"):
        house.apply({"ID": 9, "On": 0})
    with pytest.raises(CommandError, match="needs the ID or Name"):
        house.apply({"On": 0})
    with pytest.raises(CommandError, match="key 'Position' must be an integer 0-4"):
        house.apply({"ID": 3, "Position": 7})
    assert [twin["ID"] for twin in house.to_twin()] == [1, 2, 3, 4, 5]


def test_a_switched_off_meter_is_the_paper_s_energy_theft():
    house = home(battery=False)
    house.apply({"ID": 1, "On": 0})
    readings = house.run(INDEX[:600])
    assert (readings["Consumption"] == 0).all() and (readings["Power"] == 0).all()


def test_duplicate_ids_are_rejected():
    with pytest.raises(ValueError, match="device ids must be unique"):
        Household("MI001", Profile(household_load(INDEX, 1000)), appliances=[Iron(), Iron()])


def test_households_of_the_community_file_match_its_readings():
    community = load_community(EXAMPLE)
    homes = households(community, freq="15min")
    assert [h.home_id for h in homes] == [h.id for h in community.homes]
    by_id = {h.home_id: h for h in homes}
    assert by_id["MI001"].battery is not None and by_id["MI001"].pv.peak_w == 3000
    assert [type(a).__name__ for a in by_id["MI003"].appliances] == ["Blender"]
    plain = by_id["MI002"]  # no PV, no battery
    index = community.index("15min")
    meter = plain.run(index)
    readings = community.readings(freq="15min")
    expected = readings[readings["meter_id"] == "MI002"]["consumption_wh"].sum()
    assert meter["Consumption"].iloc[-1] == pytest.approx(expected, abs=1)
    assert np.isclose(
        meter["Power"].to_numpy(), readings[readings["meter_id"] == "MI002"]["consumption_wh"] * 4, atol=1
    ).all()
