"""The SmartPi message shape and the paper's twin mapping."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.twin.mapping import MappingError, check_twin, sensor_values, twin_from_report
from gridledger.twin.smartpi import (
    PhaseReading,
    SmartPiFormatError,
    flat_topics,
    measured_at,
    measurement,
    parse_measurement,
)

WHEN = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
P1 = PhaseReading(1, 4.5, 127.1, 546.0, 0.95, 60.01)


def test_measurement_has_the_smartpi_shape() -> None:
    msg = measurement("sp-1", "Smart_Meter", [P1], WHEN, neutral_current=2.5)
    assert set(msg) == {"serial", "name", "lat", "lng", "time", "softwareversion", "ipaddress", "datasets"}
    assert msg["time"] == "2024-01-02 03:04:05"
    phase1, neutral = msg["datasets"][0]["phases"]
    assert phase1["name"] == "phase 1"
    assert [(v["type"], v["unity"]) for v in phase1["values"]] == [
        ("current", "A"),
        ("voltage", "V"),
        ("power", "W"),
        ("cosphi", ""),
        ("frequency", "Hz"),
    ]
    assert neutral["phase"] == 4 and [v["type"] for v in neutral["values"]] == ["current"]


finite = st.floats(-1e5, 1e5, allow_nan=False)


@settings(deadline=None)
@given(c=finite, v=finite, p=finite, cos=st.floats(-1, 1), f=st.floats(45, 55))
def test_parse_inverts_measurement(c: float, v: float, p: float, cos: float, f: float) -> None:
    phases = [PhaseReading(1, c, v, p, cos, f), PhaseReading(2, c, v, p, cos, f)]
    parsed, neutral = parse_measurement(measurement("s", "n", phases, WHEN, neutral_current=1.0))
    assert parsed == phases and neutral == 1.0


def test_flat_topics() -> None:
    topics = flat_topics("smartpi", [P1], 2.5)
    assert topics["smartpi/I4"] == "2.50"
    assert topics["smartpi/V1"] == "127.10" and topics["smartpi/COS1"] == "0.95" and topics["smartpi/F1"] == "60.01"
    assert set(topics) == {"smartpi/I4", "smartpi/I1", "smartpi/V1", "smartpi/P1", "smartpi/COS1", "smartpi/F1"}


GOOD = measurement("s", "n", [P1], WHEN)
BAD_MEASUREMENTS = {
    "not an object": [],
    "no datasets": {k: v for k, v in GOOD.items() if k != "datasets"},
    "empty datasets": {**GOOD, "datasets": []},
    "phases not a list": {**GOOD, "datasets": [{"time": "t", "phases": 3}]},
    "bad phase number": {**GOOD, "datasets": [{"phases": [{"phase": 9, "values": []}]}]},
    "wrong unit": {
        **GOOD,
        "datasets": [{"phases": [{"phase": 1, "values": [{"type": "voltage", "unity": "kV", "data": 0.23}]}]}],
    },
    "missing quantity": {
        **GOOD,
        "datasets": [{"phases": [{"phase": 1, "values": [{"type": "voltage", "unity": "V", "data": 127.0}]}]}],
    },
    "only neutral": {**GOOD, "datasets": [{"phases": [{"phase": 4, "values": []}]}]},
    "text data": {
        **GOOD,
        "datasets": [
            {
                "phases": [
                    {
                        "phase": 1,
                        "values": [
                            {"type": k, "unity": u, "data": "x"}
                            for k, u in [
                                ("current", "A"),
                                ("voltage", "V"),
                                ("power", "W"),
                                ("cosphi", ""),
                                ("frequency", "Hz"),
                            ]
                        ],
                    }
                ]
            }
        ],
    },
}


@pytest.mark.parametrize("case", sorted(BAD_MEASUREMENTS))
def test_bad_measurements_are_rejected(case: str) -> None:
    with pytest.raises(SmartPiFormatError):
        parse_measurement(BAD_MEASUREMENTS[case])


def test_phase_reading_refuses_nan_and_neutral() -> None:
    with pytest.raises(SmartPiFormatError):
        PhaseReading(1, math.nan, 127, 0, 1, 60)
    with pytest.raises(SmartPiFormatError):
        PhaseReading(4, 1, 127, 0, 1, 60)


def test_paper_example_maps() -> None:
    paper = {"ID": 0x0001, "Name": "Smart_Meter", "On": 0, "Voltage": 1, "Current": 2, "Power": 3, "Consumption": 4}
    assert check_twin(paper) == paper
    assert sensor_values(paper) == {"On": 0.0, "Voltage": 1.0, "Current": 2.0, "Power": 3.0, "Consumption": 4.0}


@pytest.mark.parametrize(
    "twin",
    [
        None,
        {"Name": "x"},
        {"ID": -1, "Name": "x"},
        {"ID": True, "Name": "x"},
        {"ID": 1, "Name": ""},
        {"ID": 1, "Name": "x", "On": -1},
        {"ID": 1, "Name": "x", "On": 1.5},
        {"ID": 1, "Name": "x", "Power": math.inf},
        {"ID": 1, "Name": "x", "Power": [1]},
    ],
)
def test_bad_twins_are_rejected(twin: object) -> None:
    with pytest.raises(MappingError):
        check_twin(twin)


def test_report_maps_phases_onto_the_twin() -> None:
    phases = [PhaseReading(1, 2.0, 127.0, 200.0, 0.9, 60.0), PhaseReading(2, 4.0, 129.0, 400.0, 0.9, 60.02)]
    twin = twin_from_report(
        {"twin": {"ID": 1, "Name": "m", "On": 1, "Consumption": 12.5}, "smartpi": measurement("s", "n", phases, WHEN)}
    )
    assert twin["Voltage"] == pytest.approx(128.0) and twin["Current"] == 6.0 and twin["Power"] == 600.0
    assert twin["Frequency"] == pytest.approx(60.01) and twin["Consumption"] == 12.5


def test_measured_at_reads_the_smartpi_time() -> None:
    m = measurement("s", "n", [P1], datetime(2024, 4, 18, 19, 30))
    assert measured_at(m) == datetime(2024, 4, 18, 19, 30)
    for bad in ({**m, "time": "18/04/2024"}, {**m, "time": None}, "x"):
        with pytest.raises(SmartPiFormatError, match="measurement time"):
            measured_at(bad)
