"""The SmartPi meter's message shapes (nD-enerserve SmartPi, the meter board of the paper's MI, ref. [34-35]).

Two forms, as the SmartPi sources publish them (checked against a stored copy of ``nDenerserve/SmartPi``:
``src/smartpi/measurement.go``, ``apihandlersmomentary.go``, ``src/readout/mqtt.go``):

* JSON measurement (the REST API's ``/api/{phase}/{value}/now`` body)::

    {"serial": ..., "name": ..., "lat": ..., "lng": ..., "time": "YYYY-MM-DD hh:mm:ss",
     "softwareversion": ..., "ipaddress": ...,
     "datasets": [{"time": ..., "phases": [{"phase": 1, "name": "phase 1",
                   "values": [{"type": "current", "unity": "A", "info": "", "data": 1.23}, ...]}]}]}

  with value types ``current`` (A), ``voltage`` (V), ``power`` (W), ``cosphi`` (-) and ``frequency`` (Hz);
  phase 4 is the neutral conductor and carries a current only.
* Flat MQTT topics ``<base>/I1..I4``, ``V1..V3``, ``P1..P3``, ``COS1..3``, ``F1..3``, each a decimal string.

gridledger devices send the JSON form (inside a signed, encrypted envelope); the flat form is provided for
interoperability with tools that read a SmartPi.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # Go layout "2006-01-02 15:04:05"
NEUTRAL = 4
QUANTITIES: dict[str, str] = {"current": "A", "voltage": "V", "power": "W", "cosphi": "", "frequency": "Hz"}
FLAT_PREFIX = {"current": "I", "voltage": "V", "power": "P", "cosphi": "COS", "frequency": "F"}


class SmartPiFormatError(ValueError):
    """A message that does not have the SmartPi measurement shape."""


@dataclass(frozen=True)
class PhaseReading:
    """One phase's momentary values: current (A), voltage (V), active power (W), cos phi, frequency (Hz)."""

    phase: int
    current: float
    voltage: float
    power: float
    cosphi: float
    frequency: float

    def __post_init__(self) -> None:
        if self.phase not in (1, 2, 3):
            raise SmartPiFormatError(f"phase must be 1, 2 or 3 (4 is the neutral), got {self.phase!r}")
        for name in QUANTITIES:
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
                raise SmartPiFormatError(f"phase {self.phase} {name} must be a finite number, got {value!r}")


def _value(kind: str, data: float) -> dict[str, Any]:
    return {"type": kind, "unity": QUANTITIES[kind], "info": "", "data": float(data)}


def measurement(
    serial: str,
    name: str,
    phases: Iterable[PhaseReading],
    when: datetime,
    *,
    neutral_current: float = 0.0,
    lat: float = 0.0,
    lng: float = 0.0,
    softwareversion: str = "gridledger",
    ipaddress: str = "127.0.0.1",
) -> dict[str, Any]:
    """Build a SmartPi JSON measurement with one dataset (the momentary values at ``when``)."""
    stamp = when.strftime(TIME_FORMAT)
    out = [
        {
            "phase": p.phase,
            "name": f"phase {p.phase}",
            "values": [_value(k, getattr(p, k)) for k in QUANTITIES],
        }
        for p in phases
    ]
    out.append({"phase": NEUTRAL, "name": f"phase {NEUTRAL}", "values": [_value("current", neutral_current)]})
    return {
        "serial": serial,
        "name": name,
        "lat": float(lat),
        "lng": float(lng),
        "time": stamp,
        "softwareversion": softwareversion,
        "ipaddress": ipaddress,
        "datasets": [{"time": stamp, "phases": out}],
    }


def _phase_values(entry: Any) -> tuple[int, dict[str, float]]:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("values"), list):
        raise SmartPiFormatError("each phase needs a 'values' list")
    phase = entry.get("phase")
    if phase not in (1, 2, 3, NEUTRAL):
        raise SmartPiFormatError(f"bad phase number {phase!r}")
    values: dict[str, float] = {}
    for v in entry["values"]:
        if not isinstance(v, Mapping) or v.get("type") not in QUANTITIES:
            raise SmartPiFormatError(f"phase {phase}: bad value entry {v!r}")
        if v.get("unity") != QUANTITIES[v["type"]]:
            raise SmartPiFormatError(f"phase {phase}: {v['type']} must be in {QUANTITIES[v['type']]!r}")
        values[v["type"]] = v.get("data")
    return phase, values


def parse_measurement(msg: Any) -> tuple[list[PhaseReading], float]:
    """Return the phase readings of the first dataset and the neutral current (A); or SmartPiFormatError."""
    if not isinstance(msg, Mapping):
        raise SmartPiFormatError("measurement must be a JSON object")
    for key in ("serial", "name", "time", "datasets"):
        if key not in msg:
            raise SmartPiFormatError(f"measurement lacks {key!r}")
    datasets = msg["datasets"]
    if not isinstance(datasets, list) or not datasets or not isinstance(datasets[0], Mapping):
        raise SmartPiFormatError("measurement needs at least one dataset")
    phases = datasets[0].get("phases")
    if not isinstance(phases, list):
        raise SmartPiFormatError("dataset needs a 'phases' list")
    readings: list[PhaseReading] = []
    neutral = 0.0
    for entry in phases:
        phase, values = _phase_values(entry)
        if phase == NEUTRAL:
            neutral = values.get("current", 0.0)
            continue
        missing = set(QUANTITIES) - set(values)
        if missing:
            raise SmartPiFormatError(f"phase {phase} lacks {sorted(missing)}")
        readings.append(PhaseReading(phase, **values))
    if not readings:
        raise SmartPiFormatError("measurement has no line phase")
    return readings, neutral


def measured_at(msg: Mapping[str, Any]) -> datetime:
    """The measurement's time (``time``, SmartPi's ``YYYY-MM-DD hh:mm:ss``, the meter's local time)."""
    stamp = msg.get("time") if isinstance(msg, Mapping) else None
    try:
        return datetime.strptime(stamp, TIME_FORMAT)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SmartPiFormatError(f"measurement time must be 'YYYY-MM-DD hh:mm:ss', got {stamp!r}") from None


def flat_topics(base: str, phases: Iterable[PhaseReading], neutral_current: float = 0.0) -> dict[str, str]:
    """The flat MQTT form: ``{<base>/I1: "1.23", ...}`` with two decimals, as SmartPi's readout publishes."""
    out = {f"{base}/I{NEUTRAL}": f"{neutral_current:.2f}"}
    for p in phases:
        for kind, prefix in FLAT_PREFIX.items():
            out[f"{base}/{prefix}{p.phase}"] = f"{getattr(p, kind):.2f}"
    return out
