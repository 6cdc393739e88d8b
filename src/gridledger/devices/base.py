"""What every device model shares: identity, the On switch, an energy counter, the twin mapping and commands.

The paper's digital twin maps each object to a JSON document (Olivares-Rojas et al. 2023, sec. 4.5)::

    {ID: 0x0001, Name: "Smart_Meter", On: 0, Voltage: 1, Current: 2, Power: 3, Consumption: 4}

Every model here exposes its state in that style with :meth:`Device.to_twin` and takes commands (the keys it
lists as settable) with :meth:`Device.apply`, which returns what it applied. Values are integer-friendly: power in
whole W, energy counters in whole Wh (kept internally in integer mWh so they never go backwards), voltage to
0.1 V, current to 0.01 A.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from gridledger.profiles.electrical import NOMINAL_VOLTAGE, line_current
from gridledger.profiles.timegrid import step_minutes

MWH_PER_WH = 1000
SECONDS_PER_HOUR = 3600


class CommandError(ValueError):
    """A command a device cannot take; the message names the device, the key and what is allowed."""


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_switch(value: Any) -> bool:
    """0/1 or a bool: the paper's ``On`` field."""
    return isinstance(value, bool) or (is_int(value) and value in (0, 1))


def check_step(dt_s: float) -> float:
    value = float(dt_s)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"step dt_s must be a finite number of seconds > 0, got {dt_s!r}")
    return value


@dataclass
class EnergyCounter:
    """A cumulative energy register in integer mWh: it only moves forward (negative energy is refused)."""

    mwh: int = 0
    _residue: float = 0.0  # sub-mWh remainder carried to the next step

    def add(self, power_w: float, dt_s: float) -> None:
        if not power_w >= 0:
            raise ValueError(f"an energy register only counts power >= 0, got {power_w!r}")
        exact = power_w * dt_s / SECONDS_PER_HOUR * MWH_PER_WH + self._residue
        whole = math.floor(exact)
        self.mwh += whole
        self._residue = exact - whole

    @property
    def wh(self) -> int:
        return self.mwh // MWH_PER_WH


@dataclass
class TwinObject:
    """Identity, the ``On`` switch and commands: what the twin controller maps for every object.

    Attributes
    ----------
    id : int
        The twin ID (the paper's ``ID: 0x0001``).
    name : str
        The twin name (``"Smart_Meter"``, ``"Iron"``...).
    on : bool
        The ``On`` switch.
    """

    id: int
    name: str
    on: bool = True

    COMMANDS: ClassVar[dict[str, tuple[Callable[[Any], bool], str]]] = {"On": (is_switch, "0 or 1")}

    def __post_init__(self) -> None:
        if not is_int(self.id) or self.id < 0:
            raise ValueError(f"device id must be an integer >= 0, got {self.id!r}")

    def apply(self, command: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a twin command such as ``{"On": 1}``; returns the keys it applied.

        ``ID`` and ``Name``, if present, must be this object's. Every key is checked before any is applied.

        Raises
        ------
        CommandError
            For an unknown key, a value out of range, or a command addressed to another object.
        """
        if not isinstance(command, Mapping):
            raise CommandError(f"{self.name}: a command must be a mapping, got {type(command).__name__}")
        for key, expected in (("ID", self.id), ("Name", self.name)):
            if key in command and command[key] != expected:
                raise CommandError(f"{self.name}: command for {key} {command[key]!r}, this device is {expected!r}")
        changes = {key: value for key, value in command.items() if key not in ("ID", "Name")}
        for key, value in changes.items():
            if key not in self.COMMANDS:
                raise CommandError(f"{self.name}: key {key!r} is not settable (settable: {', '.join(self.COMMANDS)})")
            check, allowed = self.COMMANDS[key]
            if not check(value):
                raise CommandError(f"{self.name}: key {key!r} must be {allowed}, got {value!r}")
        for key, value in changes.items():
            self._set(key, value)
        return dict(changes)

    def _set(self, key: str, value: Any) -> None:
        if key == "On":
            self.on = bool(value)

    def to_twin(self) -> dict[str, Any]:
        """The object in the paper's JSON mapping style."""
        return {"ID": self.id, "Name": self.name, "On": int(self.on)}


@dataclass
class Device(TwinObject, ABC):
    """A device on the home circuit, stepped in time.

    Power is signed from the home's side, as the ledger's net consumption: ``power_w > 0`` is drawn from the home
    circuit (counted in ``Consumption``), ``power_w < 0`` is fed into it (counted in ``Production``).

    Attributes
    ----------
    power_factor : float
        Power factor of the device's current.
    voltage_v : float
        Supply voltage of the last step, V.
    power_w : float
        Mean power of the last step, W.
    """

    power_factor: float = 1.0
    voltage_v: float = NOMINAL_VOLTAGE
    power_w: float = 0.0
    consumption: EnergyCounter = field(default_factory=EnergyCounter)
    production: EnergyCounter = field(default_factory=EnergyCounter)

    PRODUCES: ClassVar[bool] = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.power_factor <= 1:
            raise ValueError(f"{self.name}: power_factor must be in (0, 1], got {self.power_factor!r}")

    @property
    def current_a(self) -> float:
        """RMS current of the device, A."""
        return float(line_current(self.power_w, self.voltage_v, self.power_factor))

    def to_twin(self) -> dict[str, Any]:
        twin = super().to_twin() | {
            "Voltage": round(self.voltage_v, 1),
            "Current": round(self.current_a, 2),
            "Power": round(self.power_w),
            "Consumption": self.consumption.wh,
        }
        if self.PRODUCES:
            twin["Production"] = self.production.wh
        return twin

    def step(self, now: pd.Timestamp, dt_s: float, voltage_v: float = NOMINAL_VOLTAGE) -> float:
        """Advance ``dt_s`` seconds from ``now`` at supply ``voltage_v``; returns the mean power, W (signed)."""
        dt_s = check_step(dt_s)
        self.voltage_v = float(voltage_v)
        self.power_w = self._advance(now, dt_s) if self.on else self._idle(dt_s)
        if self.power_w >= 0:
            self.consumption.add(self.power_w, dt_s)
        else:
            self.production.add(-self.power_w, dt_s)
        return self.power_w

    @abstractmethod
    def _advance(self, now: pd.Timestamp, dt_s: float) -> float:
        """One step while switched on; returns the mean power, W."""

    def _idle(self, dt_s: float) -> float:
        """One step while switched off (nothing happens by default); returns the mean power, W."""
        return 0.0


class Profile:
    """A power profile (W) on a regular index, read at any instant: the value of the step that holds it.

    Parameters
    ----------
    series : pandas.Series
        Power, W, on a regular index at a whole-minute step (e.g. from :func:`gridledger.profiles.household_load`).
    """

    def __init__(self, series: pd.Series):
        step = step_minutes(series.index)
        self.tz = series.index.tz
        self._times = series.index.as_unit("ns").asi8
        self._values = series.to_numpy(dtype=float)
        self._end = self._times[-1] + pd.Timedelta(minutes=step).value
        if not np.isfinite(self._values).all():
            raise ValueError("a profile must hold finite values")

    @property
    def start(self) -> pd.Timestamp:
        return pd.Timestamp(self._times[0], tz=self.tz)

    def at(self, now: pd.Timestamp) -> float:
        """The profile's value at ``now`` (tz-aware if and only if the profile is)."""
        now = pd.Timestamp(now)
        if (now.tz is None) != (self.tz is None):
            raise ValueError(f"time {now} and the profile must both be tz-aware or both naive")
        t = now.value
        if not self._times[0] <= t < self._end:
            raise ValueError(f"time {now} is outside the profile, which starts {self.start}")
        return float(self._values[np.searchsorted(self._times, t, side="right") - 1])
