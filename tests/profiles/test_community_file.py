"""The community TOML file: the shipped examples, a table of bad inputs each rejected naming its key, and the
generator whose files round-trip through the parser."""

from __future__ import annotations

import copy
import dataclasses
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridledger.profiles import (
    MORELIA,
    Community,
    CommunityError,
    DsoLimits,
    Prices,
    PVArray,
    community_toml,
    generate_community,
    load_community,
    parse_community,
)

EXAMPLES = Path(__file__).parents[2] / "examples"
EXAMPLE = EXAMPLES / "community.toml"


@pytest.fixture(scope="module")
def example() -> dict:
    return tomllib.loads(EXAMPLE.read_text())


def test_the_example_loads(example):
    community = load_community(EXAMPLE)
    assert isinstance(community, Community)
    assert community.location is MORELIA
    assert (community.slot_seconds, community.days, len(community.homes)) == (900, 7, 10)
    assert [f.id for f in community.feeders] == ["F1", "F2"]
    assert community.start == pd.Timestamp("2024-04-11", tz="America/Mexico_City")
    assert [h.id for h in community.homes_on("F2")] == ["MI006", "MI007", "MI008", "MI009", "MI010"]
    first = community.homes[0]
    assert (first.pv_kw, first.battery_wh, first.battery_w, first.appliances) == (3.0, 5000, 2500, ("iron", "blender"))
    assert community.homes[2].pv_array == PVArray(surface_tilt=15.0, surface_azimuth=165.0)
    assert community.prices == Prices(consumption_per_kwh=120, production_per_kwh=60)
    assert community.dso == DsoLimits(max_epa_w=10_000, max_eca_w=10_000, credit_fa=100_000)
    assert len(community.slots()) == 7 * 96


@pytest.mark.parametrize(
    ("name", "homes", "feeders", "days"),
    [("community-small.toml", 6, 2, 2), ("community-realistic.toml", 40, 3, 21)],
)
def test_the_shipped_communities_load(name, homes, feeders, days):
    community = load_community(EXAMPLES / name)
    assert (len(community.homes), len(community.feeders), community.days) == (homes, feeders, days)
    assert all(community.homes_on(feeder.id) for feeder in community.feeders)
    assert any(home.battery_wh for home in community.homes)
    assert 0.5 <= np.mean([home.pv_kw > 0 for home in community.homes]) <= 0.7


def test_optional_keys_take_their_defaults(example):
    data = copy.deepcopy(example)
    data["homes"] = [{"id": "A", "feeder": "F1", "annual_kwh": 1000}]
    del data["community"]["variability"], data["community"]["seed"]
    home = parse_community(data).homes[0]
    assert (home.profile, home.pv_kw, home.battery_wh, home.battery_w, home.appliances) == ("H0", 0.0, 0, 0, ())
    assert home.pv_array == PVArray()
    assert parse_community(data).variability == 0.3


def test_a_location_table_and_a_string_start(example):
    data = copy.deepcopy(example)
    data["community"]["location"] = {"latitude": 40.4, "longitude": -3.7, "tz": "Europe/Madrid", "altitude": 650}
    data["community"]["start"] = "2024-06-01"
    community = parse_community(data)
    assert community.location.latitude == 40.4
    assert community.start == pd.Timestamp("2024-06-01", tz="Europe/Madrid")


def test_readings_of_the_community_file():
    community = load_community(EXAMPLE)
    frame = community.readings(freq="15min")
    assert len(frame) == 10 * 7 * 96
    assert list(frame["meter_id"].unique()) == [h.id for h in community.homes]
    assert frame["timestamp"].iloc[0] == community.start
    produced = frame.groupby("meter_id")["production_wh"].sum()
    assert produced["MI002"] == 0 and produced["MI001"] > 0  # no PV / 3 kWp
    pd.testing.assert_frame_equal(frame, community.readings(freq="15min"))


def test_homes_on_one_feeder_share_its_voltage_swings():
    frame = load_community(EXAMPLE).readings(freq="15min")
    volts = frame.pivot(index="timestamp", columns="meter_id", values="voltage_v")
    same = np.corrcoef(volts["MI002"], volts["MI004"])[0, 1]  # both on F1, no PV
    assert same > 0.3


def _set(path: str, value):
    """A mutation of the parsed example: ``path`` like ``homes.1.pv_kw``; value ``...`` deletes the key."""

    def mutate(data: dict) -> None:
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is ...:
            del node[int(last) if last.isdigit() else last]
        else:
            node[int(last) if last.isdigit() else last] = value

    return mutate


BAD = [
    ("extra", _set("extra", 1), "top level: unknown key 'extra'"),
    ("no community", _set("community", ...), "the [community] table is required"),
    ("community not a table", _set("community", 3), "'community' must be a table"),
    ("name missing", _set("community.name", ...), "[community]: key 'name': is required"),
    ("name empty", _set("community.name", " "), "[community]: key 'name': must be a non-empty string"),
    ("unknown place", _set("community.location", "atlantis"), "key 'location': unknown place"),
    ("location number", _set("community.location", 3), "key 'location': must be a name or a table"),
    (
        "location bad tz",
        _set("community.location", {"latitude": 1.0, "longitude": 2.0, "tz": "Mars/Olympus"}),
        "[community.location]: key 'tz'",
    ),
    (
        "location bad latitude",
        _set("community.location", {"latitude": 100.0, "longitude": 2.0, "tz": "UTC"}),
        "[community.location]: key 'latitude'",
    ),
    (
        "location typo",
        _set("community.location", {"latitude": 1.0, "longitude": 2.0, "tz": "UTC", "alt": 3}),
        "[community.location]: key 'alt': unknown key",
    ),
    ("slot not minutes", _set("community.slot_seconds", 90), "key 'slot_seconds'"),
    ("slot not dividing day", _set("community.slot_seconds", 420 * 60), "key 'slot_seconds'"),
    ("slot float", _set("community.slot_seconds", 900.0), "key 'slot_seconds'"),
    ("start garbage", _set("community.start", "yesterday-ish"), "key 'start': must be a date"),
    ("days zero", _set("community.days", 0), "key 'days'"),
    ("days bool", _set("community.days", True), "key 'days'"),
    ("variability", _set("community.variability", 1.2), "key 'variability': must be in [0, 1]"),
    ("seed", _set("community.seed", -1), "key 'seed'"),
    ("community typo", _set("community.slot_second", 900), "[community]: key 'slot_second': unknown key"),
    ("no prices", _set("prices", ...), "top level: the [prices] table is required"),
    ("prices not a table", _set("prices", 120), "[prices]: 'prices' must be a table"),
    ("price missing", _set("prices.production_per_kwh", ...), "[prices]: key 'production_per_kwh': is required"),
    ("price negative", _set("prices.consumption_per_kwh", -1), "[prices]: key 'consumption_per_kwh'"),
    ("price float", _set("prices.consumption_per_kwh", 1.2), "[prices]: key 'consumption_per_kwh'"),
    ("production dearer", _set("prices.production_per_kwh", 121), "key 'production_per_kwh': must be <="),
    ("prices typo", _set("prices.consumption", 100), "[prices]: key 'consumption': unknown key"),
    ("no dso", _set("dso", ...), "top level: the [dso] table is required"),
    ("dso negative", _set("dso.max_epa_w", -5), "[dso]: key 'max_epa_w': must be an integer number of W >= 0"),
    ("dso credit", _set("dso.credit_fa", "lots"), "[dso]: key 'credit_fa'"),
    ("dso typo", _set("dso.max_epa", 5), "[dso]: key 'max_epa': unknown key"),
    ("no feeders", _set("feeders", ...), "[[feeders]]: at least one feeder is required"),
    ("feeders empty", _set("feeders", []), "[[feeders]]: at least one feeder is required"),
    ("feeder no id", _set("feeders.1.id", ...), "feeders[1]: key 'id': is required"),
    ("feeder dup", _set("feeders.1.id", "F1"), "feeders[1] (id \"F1\"): key 'id': duplicate feeder id"),
    ("feeder capacity float", _set("feeders.0.internal_capacity_w", 4e4), "key 'internal_capacity_w'"),
    ("feeder capacity neg", _set("feeders.1.external_capacity_w", -1), 'feeders[1] (id "F2"): key \'external'),
    ("feeder typo", _set("feeders.0.capacity", 1), "feeders[0] (id \"F1\"): key 'capacity': unknown key"),
    ("no homes", _set("homes", ...), "[[homes]]: at least one home is required"),
    ("home not table", _set("homes.2", "MI003"), "homes[2]: 'homes' must be a table"),
    ("home dup", _set("homes.3.id", "MI001"), "homes[3] (id \"MI001\"): key 'id': duplicate home id"),
    ("home feeder", _set("homes.2.feeder", "F9"), "homes[2] (id \"MI003\"): key 'feeder': must be one of"),
    ("annual missing", _set("homes.4.annual_kwh", ...), "homes[4] (id \"MI005\"): key 'annual_kwh': is required"),
    ("annual negative", _set("homes.4.annual_kwh", -5.0), "homes[4] (id \"MI005\"): key 'annual_kwh'"),
    ("annual string", _set("homes.4.annual_kwh", "2000"), "homes[4] (id \"MI005\"): key 'annual_kwh'"),
    ("annual nan", _set("homes.4.annual_kwh", float("nan")), "homes[4] (id \"MI005\"): key 'annual_kwh'"),
    ("profile", _set("homes.0.profile", "H9"), "homes[0] (id \"MI001\"): key 'profile': must be a BDEW profile"),
    ("pv negative", _set("homes.1.pv_kw", -1), "homes[1] (id \"MI002\"): key 'pv_kw': must be a number of kWp"),
    ("tilt", _set("homes.0.pv_tilt_deg", 91.0), "homes[0] (id \"MI001\"): key 'pv_tilt_deg': must be a number"),
    ("azimuth", _set("homes.0.pv_azimuth_deg", 360), "homes[0] (id \"MI001\"): key 'pv_azimuth_deg'"),
    ("battery negative", _set("homes.0.battery_wh", -5000), "homes[0] (id \"MI001\"): key 'battery_wh'"),
    ("battery power alone", _set("homes.1.battery_w", 2000), "key 'battery_w': needs a battery"),
    ("battery float", _set("homes.0.battery_wh", 5000.5), "homes[0] (id \"MI001\"): key 'battery_wh'"),
    ("battery power zero", _set("homes.0.battery_w", 0), "homes[0] (id \"MI001\"): key 'battery_w': must be > 0"),
    ("appliance unknown", _set("homes.0.appliances", ["toaster"]), "key 'appliances': must be a list"),
    ("appliance twice", _set("homes.0.appliances", ["iron", "iron"]), "key 'appliances'"),
    ("appliances string", _set("homes.0.appliances", "iron"), "key 'appliances'"),
    ("home typo", _set("homes.5.pv_kwp", 2.0), "homes[5] (id \"MI006\"): key 'pv_kwp': unknown key"),
]


@pytest.mark.parametrize(("mutate", "message"), [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_community_files_are_rejected_naming_the_key(example, mutate, message):
    data = copy.deepcopy(example)
    mutate(data)
    with pytest.raises(CommunityError) as caught:
        parse_community(data)
    assert message in str(caught.value)


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(CommunityError, match="cannot read the file"):
        load_community(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[community\nname = 1")
    with pytest.raises(CommunityError, match=r"broken.toml: not valid TOML"):
        load_community(broken)
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE.read_text().replace("pv_kw = 1.5", "pv_kw = -1.5"))
    with pytest.raises(CommunityError, match=r"bad.toml: homes\[2\] \(id \"MI003\"\): key 'pv_kw'"):
        load_community(bad)


def test_a_generated_community_is_a_realistic_mix():
    community = generate_community(200, days=3, seed=4)
    homes = community.homes
    assert [h.id for h in homes] == [f"MI{k:03d}" for k in range(1, 201)]
    assert len(community.feeders) == 5 and all(community.homes_on(f.id) for f in community.feeders)
    assert 0.5 <= np.mean([h.pv_kw > 0 for h in homes]) <= 0.7
    assert 0.05 <= np.mean([h.battery_wh > 0 for h in homes]) <= 0.4
    assert all(h.pv_kw >= 1.0 and 0 < h.battery_w <= h.battery_wh for h in homes if h.battery_wh)
    assert 1500 <= np.median([h.annual_kwh for h in homes]) <= 2100
    assert len({(h.pv_tilt_deg, h.pv_azimuth_deg) for h in homes if h.pv_kw}) <= 35  # PV profiles are shared
    assert {a for h in homes for a in h.appliances} == {"iron", "blender"}
    for feeder in community.feeders:
        assert feeder.internal_capacity_w == 2000 * len(community.homes_on(feeder.id))
    assert generate_community(200, days=3, seed=4) == community
    assert generate_community(200, days=3, seed=5) != community
    assert len(generate_community(1).feeders) == 1 and len(generate_community(10, feeders=4).feeders) == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"homes": 0}, "homes must be an integer >= 1"),
        ({"homes": 3, "days": 0}, "days must be an integer >= 1"),
        ({"homes": 3, "feeders": 4}, "leave a feeder empty"),
    ],
)
def test_generating_a_bad_community_is_refused(kwargs, message):
    with pytest.raises(CommunityError, match=message):
        generate_community(**kwargs)


def _same(a: Community, b: Community) -> None:
    """Equal communities (a pvlib Location compares by identity, so its attributes are compared)."""
    assert dataclasses.replace(a, location=MORELIA) == dataclasses.replace(b, location=MORELIA)
    for key in ("latitude", "longitude", "altitude", "tz", "name"):
        assert getattr(a.location, key) == getattr(b.location, key)


LOCATIONS = st.one_of(
    st.just("morelia"),
    st.builds(
        dict,
        latitude=st.floats(-90, 90),
        longitude=st.floats(-180, 180),
        tz=st.sampled_from(["UTC", "Europe/Madrid", "America/Mexico_City", "Asia/Kolkata"]),
        altitude=st.floats(-500, 9000),
        name=st.text(min_size=1, max_size=12),
    ),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    homes=st.integers(1, 60),
    days=st.integers(1, 400),
    seed=st.integers(0, 2**32),
    slot_seconds=st.sampled_from([60, 300, 900, 1800, 3600, 86400]),
    location=LOCATIONS,
    name=st.text(min_size=1, max_size=30).filter(str.strip),
    variability=st.floats(0, 1),
)
def test_a_written_community_parses_back_to_itself(homes, days, seed, slot_seconds, location, name, variability):
    community = generate_community(homes, days, seed, slot_seconds=slot_seconds, name=name)
    if isinstance(location, dict):
        data = tomllib.loads(community_toml(community))
        data["community"]["location"] = location
        community = parse_community(data)
    community = dataclasses.replace(community, variability=variability)
    text = community_toml(community, comment="a comment\nover two lines")
    assert text.startswith("# a comment\n# over two lines\n")
    _same(parse_community(tomllib.loads(text)), community)


def test_a_written_file_loads_from_disk(tmp_path):
    community = load_community(EXAMPLE)
    path = tmp_path / "copy.toml"
    path.write_text(community_toml(community))
    _same(load_community(path), community)
