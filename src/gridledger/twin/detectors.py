"""Detectors of the DT platform: deterministic logic over readings and events, with documented thresholds.

Each maps one threat of Olivares-Rojas et al. 2023, section 4.5, to a concrete rule:

============================  ===================================================================
threat (paper)                rule here
============================  ===================================================================
sensor attack                 voltage outside 127 V +-10 % (Mexican residential service, CFE L0000-02),
                              frequency outside 60 Hz +-1 %, active power above apparent power
                              (P > 1.05 V I), or a robust z-score of the voltage against the device's
                              own history above ``SENSOR_Z``
energy tampering              a negative consumption increment (rollback), or the energy imported over
                              the last ``BAND_WINDOW_MIN`` minutes below the device's time-of-day band
                              (``ConsumptionBand``: ``BAND_RATIO`` times the least it imported over the
                              same minutes of each of the last ``BAND_DAYS`` days)
hardware tampering            a component reported disconnected by the device's self-check, or no
                              message for ``heartbeat_timeout_s`` (device unplugged)
DDoS                          more than ``max_messages`` from one source in a sliding ``window_s``
sniffing                      a broker connection from a client id that is not registered
fault tolerance               no primary heartbeat for ``timeout_s`` (see ``backup``)
============================  ===================================================================

The robust z-score is ``|x - median| / (1.4826 * MAD)`` over the last ``window`` accepted values (Iglewicz &
Hoaglin 1993); values that raise an alarm are kept out of the baseline, so an attacker cannot drag it along.

Real household load is bursty (an iron's thermostat, a blender), so the consumption is not compared with its
own last minutes but with the same time of day on the previous days: a meter bypass that hides 80 % of the load
drops the import below any recent day's, an appliance event does not.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

SENSOR_Z = 8.0
Z_WINDOW = 60
Z_MIN_HISTORY = 12
NOMINAL_V = 127.0  # Mexican residential service (= gridledger.profiles.electrical.NOMINAL_VOLTAGE)
VOLTAGE_BAND_V = (0.9 * NOMINAL_V, 1.1 * NOMINAL_V)  # +-10 % (CFE L0000-02)
VOLTAGE_SCALE_FLOOR_V = 0.5  # least voltage spread of the z-score: the home's own load moves it ~1-2 V
NOMINAL_HZ = 60.0
FREQUENCY_BAND_HZ = (0.99 * NOMINAL_HZ, 1.01 * NOMINAL_HZ)  # +-1 %, as EN 50160 for interconnected grids
APPARENT_POWER_SLACK = 1.05  # P may exceed V*I by 5 % of measurement error
MAD_TO_SIGMA = 1.4826
BAND_WINDOW_MIN = 20
BAND_DAYS = 7
BAND_RATIO = 0.4
BAND_FLOOR_WH = 10.0  # a window is judged only if the meter imported at least this much in it on every past day
MINUTES_PER_DAY = 1440


def minute_of(when: datetime) -> int:
    """Minutes since 1970-01-01 of a meter's (naive, local) measurement time, read as it is."""
    return int(when.replace(tzinfo=UTC).timestamp()) // 60


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

    def __init__(self, k: float = SENSOR_Z, voltage_floor_v: float = VOLTAGE_SCALE_FLOOR_V) -> None:
        self.k = k
        self.voltage_floor_v = voltage_floor_v
        self._voltage: dict[str, RobustZ] = {}

    def observe(self, source: str, values: Mapping[str, float], t: float) -> list[Alarm]:
        alarms: list[Alarm] = []
        voltage = values.get("Voltage")
        if voltage is not None:
            lo, hi = VOLTAGE_BAND_V
            if not lo <= voltage <= hi:
                alarms.append(Alarm("sensor-anomaly", source, f"voltage {voltage:.1f} V outside {lo}-{hi} V", t))
            else:
                z = self._voltage.setdefault(source, RobustZ(self.k, floor=self.voltage_floor_v)).observe(voltage)
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


@dataclass
class ConsumptionBand:
    """One meter's time-of-day band: its import over a trailing window against the same window on past days.

    ``add(minute, wh)`` records the import register (Wh) at a minute (:func:`minute_of`); ``below(minute)``
    compares the energy imported over the ``window_min`` minutes up to ``minute`` with the least imported over
    the same minutes of each of the last ``days`` days, and returns (now, band) in Wh if it is below
    ``ratio`` times that least, else None. Windows where some past day imported less than ``floor_wh`` are not
    judged (a home on its battery or PV imports next to nothing: there is nothing to compare).

    Registers are looked up at exactly those minutes, so history and live readings come at the same minutes
    of the day (any report interval that divides the window and the day).
    """

    window_min: int = BAND_WINDOW_MIN
    days: int = BAND_DAYS
    ratio: float = BAND_RATIO
    floor_wh: float = BAND_FLOOR_WH
    registers: dict[int, float] = field(default_factory=dict)
    since: int | None = None  # first minute of the live pattern (after a reset)

    def __post_init__(self) -> None:
        if self.window_min < 1 or self.days < 1 or not 0 < self.ratio < 1 or self.floor_wh < 0:
            raise ValueError("band window and days must be >= 1, ratio in (0, 1), floor >= 0")

    def add(self, minute: int, wh: float) -> None:
        """Record the register at ``minute`` (readings come in time order); forget what no window needs."""
        self.registers[minute] = wh
        oldest = minute - self.days * MINUTES_PER_DAY - self.window_min
        while (first := next(iter(self.registers))) < oldest:
            del self.registers[first]

    def energy(self, minute: int) -> float | None:
        """Energy imported over the window ending at ``minute`` (Wh), if both registers are known."""
        end, start = self.registers.get(minute), self.registers.get(minute - self.window_min)
        return None if end is None or start is None else end - start

    def below(self, minute: int) -> tuple[float, float] | None:
        if self.since is not None and minute - self.window_min < self.since:
            return None
        now = self.energy(minute)
        past = [self.energy(minute - d * MINUTES_PER_DAY) for d in range(1, self.days + 1)]
        if now is None or None in past:
            return None
        least = min(past)  # type: ignore[type-var]
        if least < self.floor_wh or now >= self.ratio * least:
            return None
        return now, self.ratio * least


class EnergyMonitor:
    """Energy-tampering rules over the cumulative import register ``Consumption`` (Wh) of each device."""

    def __init__(
        self,
        window_min: int = BAND_WINDOW_MIN,
        days: int = BAND_DAYS,
        ratio: float = BAND_RATIO,
        floor_wh: float = BAND_FLOOR_WH,
    ) -> None:
        ConsumptionBand(window_min, days, ratio, floor_wh)  # validates
        self._params = (window_min, days, ratio, floor_wh)
        self._last: dict[str, float] = {}
        self._bands: dict[str, ConsumptionBand] = {}
        self._reset: set[str] = set()  # devices whose next reading starts a new live pattern

    def _band(self, source: str) -> ConsumptionBand:
        return self._bands.setdefault(source, ConsumptionBand(*self._params))

    def learn(self, source: str, history: Iterable[tuple[int, float]]) -> None:
        """Seed a device's band with its past readings: (minute, import register in Wh)."""
        band = self._band(source)
        for minute, wh in history:
            band.add(minute, wh)

    def reset(self, source: str) -> None:
        """A legitimate change of state (switched on or off): the last readings are no pattern to judge."""
        self._last.pop(source, None)
        self._reset.add(source)

    def observe(self, source: str, consumption_wh: float, t: float, minute: int | None = None) -> list[Alarm]:
        """A new register reading at time ``t`` (s), measured at ``minute`` (:func:`minute_of`; None: unknown)."""
        last = self._last.get(source)
        self._last[source] = consumption_wh
        if last is not None and consumption_wh < last:
            back = last - consumption_wh
            return [Alarm("energy-rollback", source, f"consumption counter went back {back:.1f} Wh", t)]
        if minute is None:
            return []
        band = self._band(source)
        if source in self._reset:
            band.since = minute
            self._reset.discard(source)
        band.add(minute, consumption_wh)
        verdict = band.below(minute)
        if verdict is None:
            return []
        now, floor = verdict
        return [
            Alarm(
                "energy-outlier",
                source,
                f"{now:.0f} Wh imported in {band.window_min} min, below the band {floor:.0f} Wh of the last "
                f"{band.days} days",
                t,
            )
        ]


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
