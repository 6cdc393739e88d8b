"""A rooftop PV system on the home circuit, playing back a pvlib output profile.

Its output comes from :func:`gridledger.profiles.pv_power` (pvlib clear sky, the seeded cloud process and PVWatts),
read at each step. The twin can switch it off (``On``: anti-islanding disconnect) or cap its output (``Limit``, W:
curtailment, as a DSO might order). As a source its power is negative (it feeds the home circuit) and its energy
is counted in ``Production``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from gridledger.devices.base import Device, Profile, is_int


@dataclass
class PVSystem(Device):
    """A PV system.

    Attributes
    ----------
    output : Profile
        AC output profile, W (>= 0).
    peak_w : int
        DC nameplate, W (for the twin document).
    limit_w : int or None
        Curtailment cap, W; None for no cap.
    """

    id: int = 4
    name: str = "PV"
    output: Profile | None = field(default=None, repr=False)
    peak_w: int = 0
    limit_w: int | None = None

    PRODUCES: ClassVar[bool] = True
    COMMANDS: ClassVar = Device.COMMANDS | {
        "Limit": (lambda v: v is None or (is_int(v) and v >= 0), "an integer number of W >= 0, or null")
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.output is None:
            raise ValueError("PVSystem needs an output profile")
        if not is_int(self.peak_w) or self.peak_w < 0:
            raise ValueError(f"PVSystem peak_w must be an integer >= 0, got {self.peak_w!r}")

    @classmethod
    def from_series(cls, series: pd.Series, peak_w: int, **kwargs: Any) -> PVSystem:
        """A PV system playing back ``series`` (W), e.g. ``pv_power(index, peak_w / 1000)``."""
        if (series < 0).any():
            raise ValueError("a PV output profile must be >= 0")
        return cls(output=Profile(series), peak_w=peak_w, **kwargs)

    def _set(self, key: str, value: Any) -> None:
        if key == "Limit":
            self.limit_w = value
        else:
            super()._set(key, value)

    def _advance(self, now: pd.Timestamp, dt_s: float) -> float:
        available = self.output.at(now)
        return -(available if self.limit_w is None else min(available, self.limit_w))

    def to_twin(self) -> dict[str, Any]:
        return super().to_twin() | {"Peak": self.peak_w, "Limit": self.limit_w}
