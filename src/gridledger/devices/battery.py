"""A home battery with power limits, charge and discharge efficiency and state-of-charge bounds.

Power is signed from the home's side like every device's: ``power_w`` is what the battery draws from the home
circuit, positive while charging (counted in ``Consumption``) and negative while discharging (``Production``).
Requests (``Setpoint`` and the household's self-consumption request) use the same sign.

With round-trip efficiency ``eta``, charging ``P`` for ``dt`` stores ``P dt sqrt(eta)`` and discharging ``P`` for
``dt`` takes ``P dt / sqrt(eta)`` from the store. The stored energy stays within
``[soc_min, soc_max] * capacity_wh``: a request is cut to the power limit and to what the bounds allow.

Modes: ``"auto"`` (self-consumption: the household asks it to cancel its net load, charging from surplus PV and
discharging into the load) and ``"manual"`` (it follows ``Setpoint``, W).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from gridledger.devices.base import SECONDS_PER_HOUR, Device, is_int

MODES = ("auto", "manual")


def dispatch(stored_wh, request_w, max_charge_w, max_discharge_w, min_wh, max_wh, efficiency, dt_s: float):
    """One step of the battery model, on scalars or on NumPy arrays (one element per battery).

    ``request_w`` (positive charges) is cut to the power limit and to what keeps the store in
    ``[min_wh, max_wh]``; charging ``P`` stores ``P dt sqrt(eta)``, discharging ``P`` takes ``P dt / sqrt(eta)``.

    Returns
    -------
    power_w, stored_wh
        Power drawn from the home circuit over the step, W (negative while discharging), and the new store, Wh.
    """
    one_way = np.sqrt(efficiency)
    hours = dt_s / SECONDS_PER_HOUR
    charge = np.minimum(np.minimum(request_w, max_charge_w), (max_wh - stored_wh) / (one_way * hours))
    discharge = np.minimum(np.minimum(np.negative(request_w), max_discharge_w), (stored_wh - min_wh) * one_way / hours)
    charging = np.greater_equal(request_w, 0)
    power = np.where(charging, np.maximum(charge, 0.0), -np.maximum(discharge, 0.0))
    stored = np.where(
        charging,
        np.minimum(stored_wh + charge * one_way * hours, max_wh),
        np.maximum(stored_wh - discharge / one_way * hours, min_wh),
    )
    return power, stored


@dataclass
class Battery(Device):
    """A battery on the home circuit.

    Attributes
    ----------
    capacity_wh : int
        Usable nameplate capacity, Wh.
    max_charge_w, max_discharge_w : int
        Power limits, W.
    efficiency : float
        Round-trip efficiency, in (0, 1].
    soc_min, soc_max : float
        State-of-charge bounds, fractions of ``capacity_wh``.
    stored_wh : float
        Energy in the store, Wh (default: halfway between the bounds).
    mode : str
        ``"auto"`` or ``"manual"``.
    setpoint_w : int
        Requested power in manual mode, W (positive charges, negative discharges).
    """

    id: int = 5
    name: str = "Battery"
    capacity_wh: int = 5000
    max_charge_w: int = 2500
    max_discharge_w: int = 2500
    efficiency: float = 0.9
    soc_min: float = 0.1
    soc_max: float = 0.95
    stored_wh: float | None = None
    mode: str = "auto"
    setpoint_w: int = 0
    request_w: float = 0.0

    PRODUCES: ClassVar[bool] = True
    COMMANDS: ClassVar = Device.COMMANDS | {
        "Mode": (lambda v: v in MODES, f"one of {list(MODES)}"),
        "Setpoint": (is_int, "an integer number of W (positive charges, negative discharges)"),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("capacity_wh", "max_charge_w", "max_discharge_w"):
            value = getattr(self, key)
            if not is_int(value) or value <= 0:
                raise ValueError(f"Battery {key} must be an integer > 0, got {value!r}")
        if not 0 < self.efficiency <= 1:
            raise ValueError(f"Battery efficiency must be in (0, 1], got {self.efficiency!r}")
        if not 0 <= self.soc_min < self.soc_max <= 1:
            raise ValueError(f"Battery needs 0 <= soc_min < soc_max <= 1, got {self.soc_min!r}, {self.soc_max!r}")
        if self.mode not in MODES:
            raise ValueError(f"Battery mode must be one of {MODES}, got {self.mode!r}")
        if self.stored_wh is None:
            self.stored_wh = (self.soc_min + self.soc_max) / 2 * self.capacity_wh
        if not self.min_wh <= self.stored_wh <= self.max_wh:
            raise ValueError(f"Battery stored_wh must be within [{self.min_wh}, {self.max_wh}], got {self.stored_wh!r}")

    @property
    def min_wh(self) -> float:
        return self.soc_min * self.capacity_wh

    @property
    def max_wh(self) -> float:
        return self.soc_max * self.capacity_wh

    @property
    def soc(self) -> float:
        """State of charge, fraction of capacity."""
        return self.stored_wh / self.capacity_wh

    def _set(self, key: str, value: Any) -> None:
        if key == "Mode":
            self.mode = value
        elif key == "Setpoint":
            self.setpoint_w = value
        else:
            super()._set(key, value)

    def _advance(self, now: pd.Timestamp, dt_s: float) -> float:
        request = self.setpoint_w if self.mode == "manual" else self.request_w
        power, stored = dispatch(
            self.stored_wh,
            request,
            self.max_charge_w,
            self.max_discharge_w,
            self.min_wh,
            self.max_wh,
            self.efficiency,
            dt_s,
        )
        self.stored_wh = float(stored)
        return float(power)

    def to_twin(self) -> dict[str, Any]:
        return super().to_twin() | {
            "Mode": self.mode,
            "Setpoint": self.setpoint_w,
            "SoC": round(100 * self.soc, 1),
            "Stored": math.floor(self.stored_wh),
        }
