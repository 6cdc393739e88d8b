"""The paper's two appliances: an iron with 6 positions and a temperature sensor, and a blender with 4 speeds.

In the testbed each appliance got a WiFi module, an Arduino with current and voltage sensors, and a potentiometer
whose position selects the setting; the iron's heat is watched by a temperature sensor (Olivares-Rojas et al.
2023, sec. 4.5). Position 0 of the potentiometer is "off".

**Iron.** Positions 1-5 are fabrics with soleplate set points (synthetics 100, silk 130, wool 160, cotton 190,
linen 220 degC, after the dot marks of IEC 60311). A bimetal thermostat switches a resistive heater (1200 W at
127 V, so ``P = V^2 / R``) on below ``set point - 5`` degC and off above ``set point + 5`` degC. The soleplate is one
thermal mass: ``C dT/dt = P_heater - (T - T_ambient) / R_th`` with ``C = 800 J/K`` and ``R_th = 0.3 K/W`` (time
constant 4 min: about 2.5 min from cold to cotton). Each step is integrated exactly, switching at the thermostat's
crossing times, so the temperature and the energy do not depend on the step length.

**Blender.** Positions 1-4 are speeds drawing 300, 400, 500 and 600 W (a 600 W universal motor, power factor
0.95); position 0 is stopped.

**The residents' use** (for the community simulation, where no twin commands them): :func:`appliance_uses` draws
seeded sessions per day and :func:`appliance_power` steps the models through them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from gridledger.devices.base import Device, is_int
from gridledger.profiles.electrical import NOMINAL_VOLTAGE

IRON_SETTINGS: tuple[tuple[str, float | None], ...] = (
    ("off", None),
    ("synthetics", 100.0),
    ("silk", 130.0),
    ("wool", 160.0),
    ("cotton", 190.0),
    ("linen", 220.0),
)
"""Position -> (fabric, soleplate set point in degC)."""
BLENDER_SPEEDS_W: tuple[float, ...] = (0.0, 300.0, 400.0, 500.0, 600.0)
"""Position (speed) -> motor power, W."""


def _position_check(n: int):
    return lambda value: is_int(value) and 0 <= value < n


@dataclass
class Iron(Device):
    """A clothes iron: 6 positions (0 off, 1-5 fabrics), a thermostat, and a soleplate temperature sensor.

    Attributes
    ----------
    position : int
        Potentiometer position, 0-5.
    temperature_c : float
        Soleplate temperature, degC (what the sensor reads).
    heating : bool
        Thermostat contact state.
    rated_w : float
        Heater power at 127 V, W.
    heat_capacity_j_per_k, thermal_resistance_k_per_w : float
        Soleplate thermal mass and its resistance to the room.
    ambient_c : float
        Room temperature, degC.
    hysteresis_c : float
        Half-width of the thermostat band, degC.
    """

    id: int = 2
    name: str = "Iron"
    position: int = 0
    temperature_c: float = 25.0
    heating: bool = False
    rated_w: float = 1200.0
    heat_capacity_j_per_k: float = 800.0
    thermal_resistance_k_per_w: float = 0.3
    ambient_c: float = 25.0
    hysteresis_c: float = 5.0

    COMMANDS: ClassVar = Device.COMMANDS | {"Position": (_position_check(len(IRON_SETTINGS)), "an integer 0-5")}

    def __post_init__(self) -> None:
        super().__post_init__()
        if not _position_check(len(IRON_SETTINGS))(self.position):
            raise ValueError(f"Iron position must be an integer 0-5, got {self.position!r}")
        if min(self.rated_w, self.heat_capacity_j_per_k, self.thermal_resistance_k_per_w, self.hysteresis_c) <= 0:
            raise ValueError("Iron rated_w, heat capacity, thermal resistance and hysteresis must be > 0")

    def _set(self, key: str, value: Any) -> None:
        if key == "Position":
            self.position = value
        else:
            super()._set(key, value)

    @property
    def fabric(self) -> str:
        return IRON_SETTINGS[self.position][0]

    @property
    def set_point_c(self) -> float | None:
        """Thermostat set point, degC, or None when the position is 0."""
        return IRON_SETTINGS[self.position][1]

    @property
    def tau_s(self) -> float:
        return self.heat_capacity_j_per_k * self.thermal_resistance_k_per_w

    def heater_w(self) -> float:
        """Heater power at the present supply voltage (a resistor: ``P = V^2 / R``)."""
        return self.rated_w * (self.voltage_v / NOMINAL_VOLTAGE) ** 2

    def _relax(self, dt_s: float, power_w: float) -> None:
        """Exact first-order response over ``dt_s`` with constant heater power."""
        target = self.ambient_c + power_w * self.thermal_resistance_k_per_w
        self.temperature_c = target + (self.temperature_c - target) * math.exp(-dt_s / self.tau_s)

    def _time_to(self, threshold: float, power_w: float) -> float:
        """Seconds until the temperature crosses ``threshold`` under constant power (inf if it never does)."""
        target = self.ambient_c + power_w * self.thermal_resistance_k_per_w
        ratio = (self.temperature_c - target) / (threshold - target) if threshold != target else 0.0
        return self.tau_s * math.log(ratio) if ratio > 1 else (0.0 if ratio == 1 else math.inf)

    def _advance(self, now: pd.Timestamp, dt_s: float) -> float:
        set_point = self.set_point_c
        if set_point is None:
            return self._idle(dt_s)
        heater, low, high = self.heater_w(), set_point - self.hysteresis_c, set_point + self.hysteresis_c
        if self.temperature_c < low:
            self.heating = True
        elif self.temperature_c > high:
            self.heating = False
        left, heated = dt_s, 0.0
        while left > 0:
            power = heater if self.heating else 0.0
            cross = self._time_to(high if self.heating else low, power)
            span = min(left, cross)
            self._relax(span, power)
            heated += span if self.heating else 0.0
            left -= span
            if span == cross:
                self.heating = not self.heating
        return heater * heated / dt_s

    def _idle(self, dt_s: float) -> float:
        self.heating = False
        self._relax(dt_s, 0.0)
        return 0.0

    def to_twin(self) -> dict[str, Any]:
        return super().to_twin() | {
            "Position": self.position,
            "Fabric": self.fabric,
            "Temperature": round(self.temperature_c, 1),
        }


@dataclass
class Blender(Device):
    """A blender: 4 speeds (potentiometer positions 1-4; 0 is stopped)."""

    id: int = 3
    name: str = "Blender"
    power_factor: float = 0.95
    position: int = 0

    COMMANDS: ClassVar = Device.COMMANDS | {"Position": (_position_check(len(BLENDER_SPEEDS_W)), "an integer 0-4")}

    def __post_init__(self) -> None:
        super().__post_init__()
        if not _position_check(len(BLENDER_SPEEDS_W))(self.position):
            raise ValueError(f"Blender position must be an integer 0-4, got {self.position!r}")

    def _set(self, key: str, value: Any) -> None:
        if key == "Position":
            self.position = value
        else:
            super()._set(key, value)

    def _advance(self, now: pd.Timestamp, dt_s: float) -> float:
        return BLENDER_SPEEDS_W[self.position]

    def to_twin(self) -> dict[str, Any]:
        return super().to_twin() | {"Position": self.position}


# ------------------------------------------------------------------------------------------ the resident's use

APPLIANCE_MODELS: dict[str, type[Device]] = {"iron": Iron, "blender": Blender}
"""The community file's appliance names -> their device models."""


@dataclass(frozen=True)
class ApplianceUse:
    """One use of an appliance: from minute ``start`` (position in the run's 1-minute index) for ``minutes``
    minutes at potentiometer ``position``; the twin commands are ``{"Name": name, "Position": position}`` at
    ``start`` and ``{"Name": name, "Position": 0}`` at ``start + minutes``."""

    name: str
    start: int
    minutes: int
    position: int


IRON_USE = (0.25, (9 * 60, 20 * 60), (15, 45), (0.1, 0.15, 0.15, 0.45, 0.15))
"""Iron: probability of a session per day, start window (minute of day), length range (min), P(position 1-5)."""
BLENDER_USE = (0.6, ((7 * 60, 9 * 60), (13 * 60, 15 * 60), (19 * 60, 21 * 60)), (1, 4))
"""Blender: probability of a use per day, meal-time start windows (minute of day), length range (min), speed
1-4 uniform."""


def appliance_uses(names: tuple[str, ...], day_starts: np.ndarray, rng: np.random.Generator) -> list[ApplianceUse]:
    """A household's seeded appliance sessions over the days starting at minutes ``day_starts``, sorted by start.

    Per day, the iron is used with probability 0.25 (one 15-45 minute session between 09:00 and 20:00, mostly
    at "cotton"), the blender with probability 0.6 (1-4 minutes around breakfast, lunch or dinner).
    """
    uses = []
    for day in np.asarray(day_starts, dtype=np.int64):
        if "iron" in names and rng.random() < IRON_USE[0]:
            start, length = rng.integers(*IRON_USE[1]), rng.integers(IRON_USE[2][0], IRON_USE[2][1] + 1)
            uses.append(ApplianceUse("Iron", int(day + start), int(length), int(rng.choice(5, p=IRON_USE[3]) + 1)))
        if "blender" in names and rng.random() < BLENDER_USE[0]:
            window = BLENDER_USE[1][rng.integers(len(BLENDER_USE[1]))]
            start, length = rng.integers(*window), rng.integers(BLENDER_USE[2][0], BLENDER_USE[2][1] + 1)
            uses.append(ApplianceUse("Blender", int(day + start), int(length), int(rng.integers(1, 5))))
    return sorted(uses, key=lambda use: (use.start, use.name))


def appliance_power(
    devices: list[Device], uses: list[ApplianceUse], index: pd.DatetimeIndex, voltage_v: float = NOMINAL_VOLTAGE
) -> np.ndarray:
    """Power (W, 1-minute steps over ``index``) that ``devices`` draw through ``uses``, stepping the device
    models themselves: minute by minute during a use, in one step over the idle time before it (both appliances
    draw nothing at position 0, and the iron's exact integration does not depend on the step length). Uses
    reaching past the index are cut at its end."""
    by_name = {device.name: device for device in devices}
    power = np.zeros(len(index))
    clock = {name: 0 for name in by_name}  # minute up to which each device has been stepped
    for use in uses:
        device, start, end = by_name[use.name], min(use.start, len(index)), min(use.start + use.minutes, len(index))
        if start > clock[use.name]:
            device.step(index[clock[use.name]], 60.0 * (start - clock[use.name]), voltage_v)
        device.apply({"Position": use.position})
        for minute in range(start, end):
            power[minute] += device.step(index[minute], 60.0, voltage_v)
        device.apply({"Position": 0})
        clock[use.name] = end
    return power
