"""The signal a "physical" twin device measures, and the physical attacks that can be applied to it.

A single-phase household meter (the paper's MI: Raspberry Pi + SmartPi board) samples once per simulated
``interval_s`` (the paper: one sample per minute). Deterministic for a seed:

* voltage ``V = 230 + N(0, 1)`` V, frequency ``50 + N(0, 0.02)`` Hz, cos phi 0.95 (EN 50160 nominal values);
* active power ``P = base * (1 + N(0, cv))`` W (clipped at 0), 0 W when switched off (``On`` = 0);
* current ``I = P / (V cos phi)`` A; consumption counter ``+= P * interval_s / 3600`` Wh.

Attacks (``Tamper``) act where a physical attacker acts: on a sensor (voltage bias), on the energy path
(a bypass that hides part of the load from the meter), or on the hardware (the current transformer
disconnected: the self-check reports it and the current reads 0 A).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from gridledger.twin.smartpi import PhaseReading, measurement

NOMINAL_V = 230.0
NOMINAL_HZ = 50.0
COS_PHI = 0.95
COMPONENTS = ("voltage_sensor", "current_sensor", "radio")


@dataclass(frozen=True)
class Tamper:
    """A physical attack: ``kind`` in sensor-bias / energy-bypass / component-disconnect, and its size."""

    kind: str
    bias_v: float = 12.0
    bypass_factor: float = 0.2
    component: str = "current_sensor"

    KINDS = ("sensor-bias", "energy-bypass", "component-disconnect")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"unknown tamper {self.kind!r}; choose from {self.KINDS}")
        if not 0 <= self.bypass_factor <= 1:
            raise ValueError("bypass factor must be in [0, 1]")
        if self.component not in COMPONENTS:
            raise ValueError(f"unknown component {self.component!r}")


@dataclass
class MeterSignal:
    """A household meter's measured values, one step per ``interval_s`` simulated seconds."""

    serial: str
    name: str = "Smart_Meter"
    twin_id: int = 1
    base_power_w: float = 600.0
    power_cv: float = 0.1
    interval_s: float = 60.0
    seed: int = 0
    on: int = 1
    consumption_wh: float = 0.0
    step_index: int = 0
    tamper: Tamper | None = None
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.base_power_w < 0 or self.interval_s <= 0 or self.power_cv < 0:
            raise ValueError("base power, power cv must be >= 0 and interval > 0")
        self._rng = np.random.default_rng(self.seed)

    def apply(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply a command from the twin (only ``On`` is settable on a meter); returns what was applied."""
        applied: dict[str, Any] = {}
        if "On" in changes:
            value = changes["On"]
            if not isinstance(value, int) or isinstance(value, bool) or value not in (0, 1):
                raise ValueError(f"meter On must be 0 or 1, got {value!r}")
            self.on = value
            applied["On"] = value
        return applied

    def step(self, when: datetime | None = None) -> dict[str, Any]:
        """Advance one interval and return the report payload (SmartPi measurement + twin + self-check)."""
        noise_v, noise_p, noise_f = self._rng.standard_normal(3)
        voltage = NOMINAL_V + noise_v
        power = max(0.0, self.base_power_w * (1 + self.power_cv * noise_p)) if self.on else 0.0
        selftest = dict.fromkeys(COMPONENTS, True)
        tamper = self.tamper
        if tamper is not None and tamper.kind == "sensor-bias":
            voltage += tamper.bias_v
        if tamper is not None and tamper.kind == "energy-bypass":
            power *= tamper.bypass_factor
        current = power / (voltage * COS_PHI)
        if tamper is not None and tamper.kind == "component-disconnect":
            selftest[tamper.component] = False
            if tamper.component == "current_sensor":
                current, power = 0.0, 0.0
        self.consumption_wh += power * self.interval_s / 3600.0
        self.step_index += 1
        phase = PhaseReading(1, current, voltage, power, COS_PHI, NOMINAL_HZ + 0.02 * noise_f)
        stamp = when or datetime.fromtimestamp(self.step_index * self.interval_s, UTC)
        return {
            "smartpi": measurement(self.serial, self.name, [phase], stamp, neutral_current=current),
            "twin": self.to_twin(),
            "selftest": selftest,
            "interval_s": self.interval_s,
        }

    def to_twin(self) -> dict[str, Any]:
        """The paper's JSON mapping of the meter (Voltage, Current, Power come from the SmartPi values)."""
        return {
            "ID": self.twin_id,
            "Name": self.name,
            "On": self.on,
            "Consumption": round(self.consumption_wh, 3),
        }
