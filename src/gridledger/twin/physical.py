"""The "physical" household a twin meter measures, and the physical attacks on it (no I/O).

A home of the community file behind its smart meter (the paper's MI: a Raspberry Pi with the SmartPi board),
stepped minute by minute with the device models of :mod:`gridledger.devices` (``Household``): its base load (a
BDEW profile made individual, :func:`gridledger.profiles.household_load`), the paper's iron and blender, PV and
battery. The meter registers the net at the connection as a Mexican residential meter does: single phase, 127 V
nominal (CFE L0000-02; :mod:`gridledger.profiles.electrical`), the household's power factor and current, import
(``Consumption``) and export (``Production``) registers in whole Wh. The household models carry no grid frequency:
each report reads ``60 + N(0, 0.02)`` Hz, seeded.

Each report covers ``interval_s`` simulated seconds (whole minutes); the twin document is the meter's, plus the
positions of the home's iron and blender (``Iron``, ``Blender``), which the twin can set.

Attacks (:class:`Tamper`) act where a physical attacker acts: on a sensor (the voltage reading biased), on the
energy path (a bypass shunts part of the current around the meter, which registers ``bypass_factor`` of the net),
or on the hardware (the current transformer disconnected: the self-check reports it and the meter registers
0 A). The supply voltage, which the service cable sets, follows the real load in every case.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from gridledger.devices import CommandError, Household, MeterDevice
from gridledger.profiles.electrical import NOMINAL_VOLTAGE
from gridledger.twin.smartpi import PhaseReading, measurement

NOMINAL_V = NOMINAL_VOLTAGE  # V, Mexican residential service
NOMINAL_HZ = 60.0
FREQUENCY_NOISE_HZ = 0.02
STEP_S = 60  # the household models are stepped minute by minute
COMPONENTS = ("voltage_sensor", "current_sensor", "radio")
APPLIANCE_FIELDS = ("Iron", "Blender")  # twin fields: the position of the home's appliance of that name


@dataclass(frozen=True)
class Tamper:
    """A physical attack: ``kind`` in sensor-bias / energy-bypass / component-disconnect, and its size."""

    kind: str
    bias_v: float = 6.0
    bypass_factor: float = 0.2
    component: str = "current_sensor"

    KINDS: ClassVar[tuple[str, ...]] = ("sensor-bias", "energy-bypass", "component-disconnect")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"unknown tamper {self.kind!r}; choose from {self.KINDS}")
        if not 0 <= self.bypass_factor <= 1:
            raise ValueError("bypass factor must be in [0, 1]")
        if self.component not in COMPONENTS:
            raise ValueError(f"unknown component {self.component!r}")

    @property
    def registered(self) -> float:
        """The share of the net power the meter registers under this attack."""
        if self.kind == "energy-bypass":
            return self.bypass_factor
        if self.kind == "component-disconnect" and self.component == "current_sensor":
            return 0.0
        return 1.0


@dataclass
class TamperableMeter(MeterDevice):
    """The home's smart meter on an energy path an attacker can reach: it registers ``registered`` of the net."""

    registered: float = 1.0

    def measure(self, net_w: float, dt_s: float, voltage_v: float, power_factor: float) -> dict[str, Any]:
        return super().measure(net_w * self.registered, dt_s, voltage_v, power_factor)


def report(
    serial: str,
    twin: dict[str, Any],
    phase: PhaseReading,
    when: datetime,
    selftest: dict[str, bool] | None = None,
    interval_s: float = 60.0,
) -> dict[str, Any]:
    """A device report: the SmartPi measurement of one phase, the twin fields and the self-check."""
    return {
        "smartpi": measurement(serial, str(twin["Name"]), [phase], when, neutral_current=phase.current),
        "twin": twin,
        "selftest": selftest if selftest is not None else dict.fromkeys(COMPONENTS, True),
        "interval_s": interval_s,
    }


@dataclass
class HouseholdSignal:
    """What the meter of ``household`` reports, one report per ``interval_s`` simulated seconds from ``now``.

    Parameters
    ----------
    serial : the meter's serial.
    household : the home (its profiles must cover the simulated time).
    now : start of the next report's interval (local time of the profiles).
    interval_s : seconds per report, a whole number of minutes.
    seed : seed of the grid-frequency noise.
    """

    serial: str
    household: Household
    now: pd.Timestamp
    interval_s: int = 120
    seed: int = 0
    tamper: Tamper | None = None
    meter: TamperableMeter = field(init=False)
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.interval_s, int) or self.interval_s <= 0 or self.interval_s % STEP_S:
            raise ValueError(f"interval_s must be a positive whole number of minutes in s, got {self.interval_s!r}")
        self.meter = TamperableMeter(id=self.household.meter.id, name=self.household.meter.name)
        self.household.meter = self.meter
        self._rng = np.random.default_rng(self.seed)

    def apply(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply a twin command: meter fields (``On``, ``Position``) or an appliance position (``Iron``: 0-5,
        ``Blender``: 0-4). Every key is checked before any is applied; returns what was applied.

        Raises
        ------
        CommandError
            For an unknown field, an appliance the home does not have, or a value out of range.
        """
        if not isinstance(changes, dict):
            raise CommandError("a command must be a mapping")
        meter = {k: v for k, v in changes.items() if k not in APPLIANCE_FIELDS}
        appliances = {k: v for k, v in changes.items() if k in APPLIANCE_FIELDS}
        targets = {name: self.household.device(name) for name in appliances}  # CommandError if absent
        for name, position in appliances.items():
            check, allowed = targets[name].COMMANDS["Position"]
            if not check(position):
                raise CommandError(f"{name}: position must be {allowed}, got {position!r}")
        applied = self.meter.apply(meter) if meter else {}
        for name, position in appliances.items():
            targets[name].apply({"Position": position})
            applied[name] = position
        return applied

    def step(self) -> dict[str, Any]:
        """Advance one interval and return the report (SmartPi measurement + twin + self-check)."""
        tamper = self.tamper
        doc = self._advance()
        voltage = doc["Voltage"] + (tamper.bias_v if tamper is not None and tamper.kind == "sensor-bias" else 0.0)
        frequency = NOMINAL_HZ + FREQUENCY_NOISE_HZ * float(self._rng.standard_normal())
        selftest = dict.fromkeys(COMPONENTS, True)
        if tamper is not None and tamper.kind == "component-disconnect":
            selftest[tamper.component] = False
        phase = PhaseReading(1, doc["Current"], voltage, doc["Power"], doc["PowerFactor"], frequency)
        when = self.now.tz_localize(None).to_pydatetime()  # the end of the interval just measured
        return report(self.serial, self.to_twin(doc), phase, when, selftest, self.interval_s)

    def _advance(self) -> dict[str, Any]:
        """Step the home through one interval; returns the meter's last document."""
        self.meter.registered = 1.0 if self.tamper is None else self.tamper.registered
        for _ in range(self.interval_s // STEP_S):
            doc = self.household.step(self.now, STEP_S)
            self.now += pd.Timedelta(seconds=STEP_S)
        return doc

    def history(self, reports: int) -> list[tuple[datetime, int]]:
        """Step ``reports`` intervals without reporting them: (measurement time, import register in Wh) after each,
        what the controller would have stored of this meter before now."""
        out = []
        for _ in range(reports):
            when = self.measured_at
            out.append((when, self._advance()["Consumption"]))
        return out

    @property
    def measured_at(self) -> datetime:
        """The time the next report is measured (the end of its interval), naive local time as SmartPi sends it."""
        return (self.now + pd.Timedelta(seconds=self.interval_s)).tz_localize(None).to_pydatetime()

    def to_twin(self, doc: dict[str, Any] | None = None) -> dict[str, Any]:
        """The meter's twin document (``doc``: the meter's last measurement) with the appliances' positions."""
        doc = doc or self.meter.to_twin()
        twin = {k: doc[k] for k in ("ID", "Name", "On", "Consumption", "Production")}
        for name in APPLIANCE_FIELDS:
            try:
                twin[name] = self.household.device(name).position  # type: ignore[attr-defined]
            except CommandError:
                continue
        return twin
