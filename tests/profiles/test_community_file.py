"""The community TOML file: the shipped example, and a table of bad inputs each rejected naming its key."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gridledger.profiles import MORELIA, Community, CommunityError, load_community, parse_community

EXAMPLE = Path(__file__).parents[2] / "examples" / "community.toml"


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
    assert len(community.slots()) == 7 * 96


def test_optional_keys_take_their_defaults(example):
    data = copy.deepcopy(example)
    data["homes"] = [{"id": "A", "feeder": "F1", "annual_kwh": 1000}]
    del data["community"]["variability"], data["community"]["seed"]
    home = parse_community(data).homes[0]
    assert (home.profile, home.pv_kw, home.battery_wh, home.battery_w, home.appliances) == ("H0", 0.0, 0, 0, ())
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
