"""The smart meter (the paper's MI: a Raspberry Pi with the SmartPi energy board) at a home's grid connection.

It measures the voltage, current, net active power and power factor at the connection, and keeps the two
cumulative registers of a bidirectional meter: energy imported (``Consumption``) and exported (``Production``),
in whole Wh, never decreasing. A meter that is switched off (``On`` = 0) measures nothing and its registers stand
still. Its potentiometer selects what its display shows, as in the paper's mapping ``{On: 0, Voltage: 1,
Current: 2, Power: 3, Consumption: 4}`` (position 5 shows Production); the twin document carries the selected
value as ``Display``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from gridledger.devices.base import EnergyCounter, TwinObject, check_step, is_int
from gridledger.profiles.electrical import NOMINAL_VOLTAGE, line_current

METER_TOPICS = "gridledger/meters"
"""The MQTT topic root of meter boards: ``<root>/<meter>/smartpi`` carries a meter's measurements; with TLS a
device may use only the topics under its own ``<root>/<meter>/``."""


def measurement_topic(meter: str) -> str:
    """The MQTT topic on which the SmartPi board of ``meter`` publishes its measurements."""
    return f"{METER_TOPICS}/{meter}/smartpi"


DISPLAY = (None, "Voltage", "Current", "Power", "Consumption", "Production")
"""Potentiometer position -> the twin field the display shows (0: display off)."""


@dataclass
class MeterDevice(TwinObject):
    """A bidirectional smart meter as a device (what the twin mirrors); its ledger side is
    :class:`gridledger.petra.meter.SmartMeter`.

    Attributes
    ----------
    position : int
        Display selector, 0-5 (see :data:`DISPLAY`).
    voltage_v, current_a, power_w, power_factor : float
        Last measurement: V, A, net W (import positive), power factor.
    imported, exported : EnergyCounter
        Cumulative registers (``Consumption``, ``Production``).
    """

    id: int = 1
    name: str = "Smart_Meter"
    position: int = 3
    voltage_v: float = NOMINAL_VOLTAGE
    current_a: float = 0.0
    power_w: float = 0.0
    power_factor: float = 1.0
    imported: EnergyCounter = field(default_factory=EnergyCounter)
    exported: EnergyCounter = field(default_factory=EnergyCounter)

    COMMANDS: ClassVar = TwinObject.COMMANDS | {
        "Position": (lambda v: is_int(v) and 0 <= v < len(DISPLAY), "an integer 0-5")
    }

    def _set(self, key: str, value: Any) -> None:
        if key == "Position":
            self.position = value
        else:
            super()._set(key, value)

    def measure(self, net_w: float, dt_s: float, voltage_v: float, power_factor: float) -> dict[str, Any]:
        """Register one step at the connection and return the twin document.

        Parameters
        ----------
        net_w : float
            Mean net power over the step, W (import positive, export negative).
        dt_s : float
            Step length, s.
        voltage_v : float
            Voltage at the connection, V (> 0).
        power_factor : float
            Power factor, in (0, 1].
        """
        dt_s = check_step(dt_s)
        if not (math.isfinite(net_w) and voltage_v > 0 and 0 < power_factor <= 1):
            raise ValueError(
                f"meter {self.name}: bad measurement net_w={net_w!r} voltage_v={voltage_v!r} pf={power_factor!r}"
            )
        if self.on:
            self.voltage_v, self.power_w, self.power_factor = float(voltage_v), float(net_w), float(power_factor)
            self.current_a = float(line_current(net_w, voltage_v, power_factor))
            self.imported.add(max(net_w, 0.0), dt_s)
            self.exported.add(max(-net_w, 0.0), dt_s)
        else:
            self.voltage_v = self.current_a = self.power_w = 0.0
        return self.to_twin()

    def to_twin(self) -> dict[str, Any]:
        twin = super().to_twin() | {
            "Position": self.position,
            "Voltage": round(self.voltage_v, 1),
            "Current": round(self.current_a, 2),
            "Power": round(self.power_w),
            "PowerFactor": round(self.power_factor, 3),
            "Consumption": self.imported.wh,
            "Production": self.exported.wh,
        }
        shown = DISPLAY[self.position]
        twin["Display"] = None if shown is None or not self.on else twin[shown]
        return twin
