"""Detectors of the DT platform: deterministic logic over readings and events, with documented thresholds.

Each maps one threat of Olivares-Rojas et al. 2023, section 4.5, to a concrete rule:

============================  ===================================================================
threat (paper)                rule here
============================  ===================================================================
sensor attack                 voltage outside EN 50160 (230 V +-10 %), frequency outside 50 Hz +-1 %,
                              active power above apparent power (P > 1.05 V I), or a robust z-score
                              of the voltage against the device's own history above ``SENSOR_Z``
energy tampering              a negative consumption increment (rollback), or a robust z-score of the
                              increment against the device's history above ``ENERGY_Z``
hardware tampering            a component reported disconnected by the device's self-check, or no
                              message for ``heartbeat_timeout_s`` (device unplugged)
DDoS                          more than ``max_messages`` from one source in a sliding ``window_s``
sniffing                      a broker connection from a client id that is not registered
fault tolerance               no primary heartbeat for ``timeout_s`` (see ``backup``)
============================  ===================================================================

The robust z-score is ``|x - median| / (1.4826 * MAD)`` over the last ``window`` accepted values (Iglewicz &
Hoaglin 1993); values that raise an alarm are kept out of the baseline, so an attacker cannot drag it along.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

SENSOR_Z = 8.0
ENERGY_Z = 6.0
Z_WINDOW = 60
Z_MIN_HISTORY = 12
VOLTAGE_BAND_V = (207.0, 253.0)  # EN 50160: 230 V +- 10 %
FREQUENCY_BAND_HZ = (49.5, 50.5)  # EN 50160: 50 Hz +- 1 %
APPARENT_POWER_SLACK = 1.05  # P may exceed V*I by 5 % of measurement error
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class Alarm:
    """An alarm: ``kind`` (stable code), ``source`` (serial, client or party), ``detail``, time ``t`` (s)."""

    kind: str
    source: str
    detail: str
    t: float


@dataclass
class RobustZ:
    """Robust z-score of a stream against its own recent history (median / MAD)."""

    k: float
    window: int = Z_WINDOW
    min_history: int = Z_MIN_HISTORY
    floor: float = 1e-9
    history: deque[float] = field(default_factory=deque)

    def observe(self, x: float) -> float | None:
        """Return the z-score if ``x`` is anomalous (> k), else None; only normal values join the baseline."""
        if len(self.history) >= self.min_history:
            values = np.fromiter(self.history, dtype=float)
            median = float(np.median(values))
            scale = MAD_TO_SIGMA * float(np.median(np.abs(values - median)))
            z = abs(x - median) / max(scale, self.floor, 1e-3 * abs(median))
            if z > self.k:
                return z
        self.history.append(x)
        if len(self.history) > self.window:
            self.history.popleft()
        return None


class SensorMonitor:
    """Sensor-attack rules over ``Voltage`` (V), ``Current`` (A), ``Power`` (W) and ``Frequency`` (Hz)."""

    def __init__(self, k: float = SENSOR_Z) -> None:
        self.k = k
        self._voltage: dict[str, RobustZ] = {}

    def observe(self, source: str, values: Mapping[str, float], t: float) -> list[Alarm]:
        alarms: list[Alarm] = []
        voltage = values.get("Voltage")
        if voltage is not None:
            lo, hi = VOLTAGE_BAND_V
            if not lo <= voltage <= hi:
                alarms.append(Alarm("sensor-anomaly", source, f"voltage {voltage:.1f} V outside {lo}-{hi} V", t))
            else:
                z = self._voltage.setdefault(source, RobustZ(self.k)).observe(voltage)
                if z is not None:
                    alarms.append(Alarm("sensor-anomaly", source, f"voltage {voltage:.1f} V, z = {z:.1f}", t))
        frequency = values.get("Frequency")
        if frequency is not None and not FREQUENCY_BAND_HZ[0] <= frequency <= FREQUENCY_BAND_HZ[1]:
            alarms.append(Alarm("sensor-anomaly", source, f"frequency {frequency:.2f} Hz out of band", t))
        current, power = values.get("Current"), values.get("Power")
        if None not in (voltage, current, power) and abs(power) > APPARENT_POWER_SLACK * voltage * abs(current) + 1:
            alarms.append(
                Alarm("sensor-anomaly", source, f"P = {power:.0f} W exceeds V*I = {voltage * current:.0f} VA", t)
            )
        return alarms


class EnergyMonitor:
    """Energy-tampering rules over the cumulative ``Consumption`` counter (Wh) of each device."""

    def __init__(self, k: float = ENERGY_Z) -> None:
        self.k = k
        self._last: dict[str, float] = {}
        self._increments: dict[str, RobustZ] = {}

    def reset(self, source: str) -> None:
        """Forget a device's baseline (after a legitimate change of state, e.g. switched on or off)."""
        self._last.pop(source, None)
        self._increments.pop(source, None)

    def observe(self, source: str, consumption_wh: float, t: float) -> list[Alarm]:
        last = self._last.get(source)
        self._last[source] = consumption_wh
        if last is None:
            return []
        step = consumption_wh - last
        if step < 0:
            return [Alarm("energy-rollback", source, f"consumption counter went back {-step:.1f} Wh", t)]
        z = self._increments.setdefault(source, RobustZ(self.k)).observe(step)
        if z is None:
            return []
        return [Alarm("energy-outlier", source, f"consumption step {step:.2f} Wh, z = {z:.1f}", t)]


class ComponentMonitor:
    """Hardware tampering: alarm when the device's self-check reports a component disconnected."""

    def __init__(self) -> None:
        self._down: dict[str, set[str]] = {}

    def observe(self, source: str, selftest: Mapping[str, bool], t: float) -> list[Alarm]:
        down = {name for name, ok in selftest.items() if ok is not True}
        new = sorted(down - self._down.get(source, set()))
        self._down[source] = down
        return [Alarm("component-disconnected", source, f"{name} disconnected", t) for name in new]


class HeartbeatMonitor:
    """Alarm ``kind`` once when a source is silent for ``timeout_s`` seconds; re-armed when it returns."""

    def __init__(self, timeout_s: float, kind: str = "heartbeat-timeout") -> None:
        if timeout_s <= 0:
            raise ValueError("heartbeat timeout must be positive")
        self.timeout_s = timeout_s
        self.kind = kind
        self._seen: dict[str, float] = {}
        self._silent: set[str] = set()

    def seen(self, source: str, t: float) -> None:
        self._seen[source] = t
        self._silent.discard(source)

    def forget(self, source: str) -> None:
        self._seen.pop(source, None)
        self._silent.discard(source)

    def check(self, t: float) -> list[Alarm]:
        alarms = []
        for source, last in self._seen.items():
            if source not in self._silent and t - last > self.timeout_s:
                self._silent.add(source)
                alarms.append(Alarm(self.kind, source, f"silent for {t - last:.2f} s > {self.timeout_s} s", t))
        return alarms


class RateMonitor:
    """DDoS: alarm when one source sends more than ``max_messages`` within a sliding ``window_s``."""

    def __init__(self, window_s: float, max_messages: int) -> None:
        if window_s <= 0 or max_messages < 1:
            raise ValueError("rate window must be positive and the limit at least 1")
        self.window_s = window_s
        self.max_messages = max_messages
        self._times: dict[str, deque[float]] = {}
        self.flagged: set[str] = set()

    def observe(self, source: str, t: float) -> list[Alarm]:
        times = self._times.setdefault(source, deque())
        times.append(t)
        while times and t - times[0] > self.window_s:
            times.popleft()
        if len(times) > self.max_messages and source not in self.flagged:
            self.flagged.add(source)
            rate = len(times) / self.window_s
            return [Alarm("message-rate", source, f"{len(times)} messages in {self.window_s} s ({rate:.0f}/s)", t)]
        return []


class ConnectionMonitor:
    """Sniffing: alarm on a broker connection from a client id that is not registered (or was refused)."""

    def __init__(self, known: set[str] | None = None) -> None:
        self.known: set[str] = set(known or ())
        self._reported: set[tuple[str, bool]] = set()

    def observe(self, client_id: str, accepted: bool, t: float) -> list[Alarm]:
        if accepted and client_id in self.known:
            return []
        key = (client_id, accepted)
        if key in self._reported:
            return []
        self._reported.add(key)
        if accepted:
            return [Alarm("new-connection", client_id, "unregistered client connected to the broker", t)]
        return [Alarm("connection-refused", client_id, "broker refused a connection (not authorised)", t)]


def finite(values: Mapping[str, float]) -> bool:
    """True if every value is a finite float (guards detectors against NaN from bad inputs)."""
    return all(math.isfinite(v) for v in values.values())
