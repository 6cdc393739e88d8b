"""The paper's JSON mapping of a twin object, and how a SmartPi report maps onto it.

Olivares-Rojas et al. 2023, section 4.5, map every physical and virtual object to a JSON object such as::

    {ID: 0x0001, Name: "Smart_Meter", On: 0, Voltage: 1, Current: 2, Power: 3, Consumption: 4}

Units here: ``Voltage`` V (RMS), ``Current`` A (RMS), ``Power`` W (active), ``Consumption`` Wh (cumulative
import counter); ``On`` is 0 for off, else the device's position (iron: fabric setting 1-6, blender: speed
1-4, meter: 1). Devices may add fields (e.g. ``Temperature`` in degC for the iron); every numeric field is a
sensor value that the controller stores in its history.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from gridledger.twin.smartpi import parse_measurement

CORE_FIELDS = ("ID", "Name", "On", "Voltage", "Current", "Power", "Consumption")


class MappingError(ValueError):
    """A twin object that does not follow the mapping."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_twin(obj: Any) -> dict[str, Any]:
    """Validate a twin object; return a copy. ``ID`` (int >= 0 or text) and ``Name`` (text) are required."""
    if not isinstance(obj, Mapping):
        raise MappingError("a twin object must be a JSON object")
    twin = dict(obj)
    ident = twin.get("ID")
    if not ((isinstance(ident, int) and not isinstance(ident, bool) and ident >= 0) or isinstance(ident, str)):
        raise MappingError(f"twin ID must be a non-negative integer or text, got {ident!r}")
    if not isinstance(twin.get("Name"), str) or not twin["Name"]:
        raise MappingError("twin Name must be non-empty text")
    for key, value in twin.items():
        if not isinstance(key, str):
            raise MappingError(f"twin field names must be text, got {key!r}")
        if key in ("ID", "Name"):
            continue
        if key == "On":
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
                raise MappingError(f"twin On must be an integer position >= 0, got {value!r}")
        elif not (_is_number(value) or isinstance(value, str | bool)):
            raise MappingError(f"twin field {key} must be a finite number, text or boolean, got {value!r}")
    return twin


def sensor_values(twin: Mapping[str, Any]) -> dict[str, float]:
    """The numeric sensor values of a twin object (everything numeric except ``ID``)."""
    return {k: float(v) for k, v in twin.items() if k != "ID" and _is_number(v)}


def twin_from_report(report: Mapping[str, Any]) -> dict[str, Any]:
    """Map a device report (``twin`` fields + ``smartpi`` measurement) to the twin object.

    ``Voltage`` is the mean line voltage over the measured phases (V), ``Current`` and ``Power`` their sums
    (A, W), ``Frequency`` their mean (Hz); the other fields (``ID``, ``Name``, ``On``, ``Consumption``,
    extras) come from ``twin``.
    """
    if not isinstance(report, Mapping):
        raise MappingError("report must be a JSON object")
    twin = check_twin(report.get("twin"))
    if "smartpi" in report:
        phases, _neutral = parse_measurement(report["smartpi"])
        twin["Voltage"] = sum(p.voltage for p in phases) / len(phases)
        twin["Current"] = sum(p.current for p in phases)
        twin["Power"] = sum(p.power for p in phases)
        twin["Frequency"] = sum(p.frequency for p in phases) / len(phases)
    return twin
