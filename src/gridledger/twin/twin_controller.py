"""The DT Framework Controller (DTFC) of Olivares-Rojas et al. 2023, section 4.5, free of network I/O.

The controller "maps real objects to their virtual representation, exchanges values between twins, notifies
events and alarms between all objects, and simulates cyber threats". Here:

* registry: physical devices (hardware identity = serial + Ed25519 key, AES-GCM key provisioned at
  registration) each with a virtual mirror ``V-<serial>``, and virtual-only objects; manual registration
  (``register_physical``) or discovery (``discover``: a signed announce from a device on the hardware
  allow-list is answered with its AES key sealed to the device's key);
* two-way synchronization: a device report updates its physical object and its virtual mirror; a change made
  to a virtual mirror (``set_virtual``) becomes a signed, encrypted command that the device applies and
  confirms in its next report;
* history: every sensor value of every accepted report, keyed by (serial, counter, field);
* events and alarms: the detectors of ``detectors.py`` plus the envelope checks (spoofing, replay,
  unregistered device), the connection watch (sniffing), the rate firewall (DDoS) and the access policy
  (sensitive-data leakage).

The network adapter (``node.ControllerNode``) feeds raw MQTT payloads in and publishes what comes out.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from gridledger.twin import envelope
from gridledger.twin.detectors import (
    BAND_DAYS,
    BAND_RATIO,
    BAND_WINDOW_MIN,
    SENSOR_Z,
    Alarm,
    ComponentMonitor,
    ConnectionMonitor,
    EnergyMonitor,
    HeartbeatMonitor,
    RateMonitor,
    SensorMonitor,
    minute_of,
)
from gridledger.twin.envelope import EnvelopeRejected
from gridledger.twin.identity import AES_KEY_BYTES, HardwareIdentity, IdentityError, check_serial, seal_to
from gridledger.twin.mapping import MappingError, check_twin, sensor_values, twin_from_report
from gridledger.twin.messages import AccessRequest, Announce, MessageError
from gridledger.twin.smartpi import SmartPiFormatError, measured_at
from gridledger.twin.twin_store import TwinObject, TwinStore

# Envelope reject code -> alarm kind raised for it.
REJECT_ALARMS = {
    envelope.BAD_SIGNATURE: "spoofing",
    envelope.UNREGISTERED: "unregistered-device",
    envelope.REPLAYED: "replay",
    envelope.BAD_CIPHERTEXT: "spoofing",
    envelope.MALFORMED: "malformed-message",
    envelope.OVERSIZE: "malformed-message",
    envelope.MALFORMED_PAYLOAD: "malformed-message",
}
ACTIONS = ("read", "export")
WILDCARD = "*"


@dataclass(frozen=True)
class Thresholds:
    """Detector thresholds (see ``detectors``). Times in seconds of the controller's clock."""

    sensor_z: float = SENSOR_Z
    energy_window_min: int = BAND_WINDOW_MIN
    energy_days: int = BAND_DAYS
    energy_ratio: float = BAND_RATIO
    heartbeat_timeout_s: float = 1.0
    rate_window_s: float = 1.0
    rate_max_messages: int = 60
    alarm_holdoff_s: float = 30.0


@dataclass(frozen=True)
class Outcome:
    """What happened to one received message."""

    accepted: bool
    serial: str | None
    kind: str | None
    code: str | None = None
    alarms: tuple[Alarm, ...] = ()


@dataclass
class _Command:
    changes: dict[str, Any]
    counter: int
    t: float


@dataclass
class ControllerStats:
    accepted: int = 0
    rejected: int = 0
    quarantined: int = 0
    suppressed_alarms: int = 0
    rejected_by_code: dict[str, int] = field(default_factory=dict)


class TwinController:
    """The DTFC core: feed it raw messages with ``receive``, time with ``tick``; it answers with envelopes."""

    def __init__(
        self,
        store: TwinStore,
        controller_seed: bytes,
        *,
        thresholds: Thresholds = Thresholds(),
        clock: Callable[[], float] = time.time,
        name: str = "dtfc",
    ) -> None:
        self.store = store
        self.name = name
        self.signing_key = SigningKey(controller_seed)
        self.thresholds = thresholds
        self.clock = clock
        self.stats = ControllerStats()
        self.allowlist: dict[str, bytes] = {}
        self.sensors = SensorMonitor(thresholds.sensor_z)
        self.energy = EnergyMonitor(thresholds.energy_window_min, thresholds.energy_days, thresholds.energy_ratio)
        self.components = ComponentMonitor()
        self.heartbeats = HeartbeatMonitor(thresholds.heartbeat_timeout_s)
        self.rates = RateMonitor(thresholds.rate_window_s, thresholds.rate_max_messages)
        self.connections = ConnectionMonitor({name})
        self._pending: dict[str, _Command] = {}
        self._out_counter: dict[str, int] = {}
        self._seen_nonces: set[str] = set()
        self._latched: dict[tuple[str, str], float] = {}
        self._lock = threading.RLock()

    @property
    def verify_key(self) -> bytes:
        return self.signing_key.verify_key.encode()

    # -- events and alarms -----------------------------------------------------------------------------------
    def event(self, kind: str, source: str, detail: str, t: float | None = None) -> None:
        self.store.add_event(self.clock() if t is None else t, "event", kind, source, detail)

    def raise_alarm(self, alarm: Alarm) -> bool:
        """Record an alarm unless the same (kind, source) was raised within the hold-off; True if recorded."""
        with self._lock:
            key = (alarm.kind, alarm.source)
            last = self._latched.get(key)
            if last is not None and alarm.t - last < self.thresholds.alarm_holdoff_s:
                self.stats.suppressed_alarms += 1
                return False
            self._latched[key] = alarm.t
            self.store.add_event(alarm.t, "alarm", alarm.kind, alarm.source, alarm.detail)
            return True

    def _raise_all(self, alarms: Iterable[Alarm]) -> tuple[Alarm, ...]:
        out = tuple(alarms)
        for alarm in out:
            self.raise_alarm(alarm)
        return out

    def alarms(self) -> list[Alarm]:
        return [Alarm(e.kind, e.source, e.detail, e.t) for e in self.store.events("alarm")]

    # -- registry --------------------------------------------------------------------------------------------
    def register_physical(
        self, identity: HardwareIdentity, twin: dict[str, Any], aes_key: bytes | None = None
    ) -> bytes:
        """Register a device (manual registration); returns its AES-GCM-128 key (generated if not given).

        A virtual mirror ``V-<serial>`` is created with the same twin object.
        """
        twin = check_twin(twin)
        key = os.urandom(AES_KEY_BYTES) if aes_key is None else aes_key
        if len(key) != AES_KEY_BYTES:
            raise IdentityError(f"AES key must be {AES_KEY_BYTES} bytes")
        with self._lock:
            existing = self.store.by_serial(identity.serial)
            if existing is not None and existing.verify_key != identity.verify_key:
                raise IdentityError(f"serial {identity.serial} is already registered with another key")
            self.store.put_object(
                TwinObject(identity.serial, "physical", identity.serial, twin, identity.verify_key, key, -1, None)
            )
            self.store.put_object(
                TwinObject(f"V-{identity.serial}", "virtual", None, twin, None, None, -1, identity.serial)
            )
            self.connections.known.add(identity.serial)
            self.event("registered", identity.serial, f"{twin['Name']} registered with its hardware identity")
        return key

    def register_virtual(self, object_id: str, twin: dict[str, Any]) -> None:
        """Register a virtual-only object (a twin with no physical counterpart)."""
        check_serial(object_id)
        twin = check_twin(twin)
        with self._lock:
            if self.store.get_object(object_id) is not None:
                raise IdentityError(f"object {object_id} already exists")
            self.store.put_object(TwinObject(object_id, "virtual", None, twin, None, None, -1, None))
            self.event("registered", object_id, "virtual object registered")

    def allow_hardware(self, identity: HardwareIdentity) -> None:
        """Put a hardware identity on the discovery allow-list (e.g. from the DSO's meter inventory)."""
        self.allowlist[identity.serial] = identity.verify_key

    def discover(self, raw: bytes) -> tuple[str, bytes] | None:
        """Handle a device's announce; returns (serial, AES key sealed to the device) or None if refused."""
        t = self.clock()
        try:
            announce = Announce.parse(raw)
        except MessageError as exc:
            self.raise_alarm(Alarm("malformed-message", "announce", str(exc), t))
            return None
        if self.allowlist.get(announce.serial) != announce.verify_key:
            self.raise_alarm(Alarm("unknown-device", announce.serial, "announce from hardware not on allow-list", t))
            return None
        existing = self.store.by_serial(announce.serial)
        key = self.register_physical(
            HardwareIdentity(announce.serial, announce.verify_key),
            announce.twin,
            existing.aes_key if existing else None,
        )
        self.event("discovered", announce.serial, "device discovered and provisioned")
        return announce.serial, seal_to(HardwareIdentity(announce.serial, announce.verify_key), key)

    def objects(self) -> list[TwinObject]:
        return self.store.objects()

    def twin(self, object_id: str) -> dict[str, Any]:
        obj = self.store.get_object(object_id)
        if obj is None:
            raise KeyError(f"no object {object_id!r}")
        return obj.twin

    # -- uplink ----------------------------------------------------------------------------------------------
    def receive(self, raw: bytes) -> Outcome:
        """Verify and process one device message (report or ack). Never raises on bad input."""
        t = self.clock()
        with self._lock:
            try:
                env = envelope.parse(raw)
                obj = self.store.by_serial(env.serial)
                if obj is None:
                    raise EnvelopeRejected(envelope.UNREGISTERED, f"{env.serial!r} is not registered")
                env.verify(obj.verify_key)
                if env.serial in self.rates.flagged:
                    self.stats.quarantined += 1
                    return Outcome(False, env.serial, env.kind, "quarantined")
                rate_alarms = self._raise_all(self.rates.observe(env.serial, t))
                if rate_alarms:
                    self.event("quarantined", env.serial, "device firewalled after abnormal message rate", t)
                    self.stats.quarantined += 1
                    return Outcome(False, env.serial, env.kind, "quarantined", rate_alarms)
                payload = env.decrypt(obj.aes_key)
                if not self.store.advance_counter(env.serial, env.counter):
                    raise EnvelopeRejected(envelope.REPLAYED, f"counter {env.counter} of {env.serial} already used")
            except EnvelopeRejected as exc:
                return self._reject(exc, raw, t)
            self.heartbeats.seen(env.serial, t)
            self.stats.accepted += 1
            if env.kind == "report":
                return self._report(obj, env.counter, payload, t)
            if env.kind == "ack":
                self.event("command-applied", env.serial, f"applied {payload.get('changes')}", t)
            return Outcome(True, env.serial, env.kind)

    def _reject(self, exc: EnvelopeRejected, raw: bytes, t: float) -> Outcome:
        self.stats.rejected += 1
        self.stats.rejected_by_code[exc.code] = self.stats.rejected_by_code.get(exc.code, 0) + 1
        try:
            source = envelope.parse(raw).serial
        except EnvelopeRejected:
            source = "unknown"
        alarm = Alarm(REJECT_ALARMS[exc.code], source, exc.detail, t)
        self.raise_alarm(alarm)
        return Outcome(False, source, None, exc.code, (alarm,))

    def _report(self, obj: TwinObject, counter: int, payload: dict[str, Any], t: float) -> Outcome:
        serial = obj.object_id
        try:
            twin = twin_from_report(payload)
            minute = minute_of(measured_at(payload["smartpi"])) if "smartpi" in payload else None
        except (MappingError, SmartPiFormatError) as exc:
            alarm = Alarm("malformed-message", serial, f"report does not map: {exc}", t)
            self.raise_alarm(alarm)
            return Outcome(False, serial, "report", envelope.MALFORMED_PAYLOAD, (alarm,))
        values = sensor_values(twin)
        self.store.add_readings(serial, counter, t, values)
        self.store.set_twin(serial, twin)
        self._sync_mirror(serial, twin, t)
        on = twin.get("On", 1) != 0  # a meter switched off measures nothing: no sensor or energy rule applies
        alarms = list(self.sensors.observe(serial, values, t)) if on else []
        if twin.get("On") != obj.twin.get("On"):
            self.energy.reset(serial)  # switching on or off changes the consumption pattern legitimately
        if "Consumption" in values and on:
            alarms += self.energy.observe(serial, values["Consumption"], t, minute)
        selftest = payload.get("selftest", {})
        if isinstance(selftest, dict):
            alarms += self.components.observe(serial, selftest, t)
        return Outcome(True, serial, "report", None, self._raise_all(alarms))

    def _sync_mirror(self, serial: str, twin: dict[str, Any], t: float) -> None:
        """Physical -> virtual: the mirror shows the device's state, except fields of a pending command."""
        mirror = dict(twin)
        pending = self._pending.get(serial)
        if pending is not None:
            if all(twin.get(k) == v for k, v in pending.changes.items()):
                self.event("synced", serial, f"device reflects {pending.changes}", t)
                del self._pending[serial]
            else:
                mirror.update(pending.changes)
        self.store.set_twin(f"V-{serial}", mirror)

    # -- downlink (virtual -> physical) ----------------------------------------------------------------------
    def set_virtual(self, object_id: str, changes: dict[str, Any]) -> tuple[str, bytes] | None:
        """Change a virtual object. For a mirror, returns (serial, command envelope) to send to the device."""
        with self._lock:
            obj = self.store.get_object(object_id)
            if obj is None or obj.kind != "virtual":
                raise KeyError(f"no virtual object {object_id!r}")
            if not changes or {"ID", "Name"} & set(changes):
                raise MappingError("a change must name at least one field, and never ID or Name")
            twin = check_twin({**obj.twin, **changes})
            self.store.set_twin(object_id, twin)
            t = self.clock()
            self.event("virtual-changed", object_id, f"{changes}", t)
            if obj.mirror_of is None:
                return None
            device = self.store.by_serial(obj.mirror_of)
            assert device is not None and device.aes_key is not None
            counter = max(self._out_counter.get(device.object_id, -1) + 1, time.time_ns() // 1000)
            self._out_counter[device.object_id] = counter
            self._pending[device.object_id] = _Command(dict(changes), counter, t)
            raw = envelope.seal(
                self.signing_key, device.aes_key, device.object_id, counter, "command", {"changes": changes}
            )
            self.event("command-sent", device.object_id, f"{changes}", t)
            return device.object_id, raw

    # -- time, connections -----------------------------------------------------------------------------------
    def tick(self) -> tuple[Alarm, ...]:
        """Run the time-driven checks (device heartbeats)."""
        with self._lock:
            return self._raise_all(self.heartbeats.check(self.clock()))

    def observe_connection(self, client_id: str, accepted: bool) -> tuple[Alarm, ...]:
        """A broker connection was seen (``mqtt.Broker.connection_events``)."""
        with self._lock:
            if accepted and self.store.by_serial(client_id) is not None:
                return ()  # a registered device (also one learnt from a replicated registry)
            return self._raise_all(self.connections.observe(client_id, accepted, self.clock()))

    def release(self, serial: str) -> None:
        """Lift the rate firewall from a device (operator action after a DDoS alarm)."""
        with self._lock:
            self.rates.flagged.discard(serial)
            self.event("released", serial, "firewall lifted")

    # -- sensitive data: authorized reads and exports --------------------------------------------------------
    def grant(self, party: str, verify_key: bytes, serials: list[str], actions: list[str]) -> None:
        """Allow ``party`` (Ed25519 key) to ``actions`` (read/export) the data of ``serials`` (or ``*``)."""
        check_serial(party)
        bad = set(actions) - set(ACTIONS)
        if bad or not actions:
            raise ValueError(f"actions must be among {ACTIONS}, got {sorted(bad) or actions}")
        for serial in serials:
            if serial != WILDCARD:
                check_serial(serial)
        self.store.put_grant(party, verify_key, serials, actions)
        self.event("granted", party, f"{actions} on {serials}")

    def access(self, raw: bytes) -> tuple[bool, bytes]:
        """Serve a signed read/export request; the answer is sealed to the requester's key.

        Returns (granted, response bytes). Any refusal raises an ``unauthorized-access`` alarm.
        """
        t = self.clock()
        with self._lock:
            try:
                request = AccessRequest.parse(raw)
            except MessageError as exc:
                self.raise_alarm(Alarm("unauthorized-access", "unknown", f"malformed request: {exc}", t))
                return False, envelope.canonical({"denied": "malformed request"})
            reason = self._authorize(request)
            if reason is not None:
                self.raise_alarm(Alarm("unauthorized-access", request.party, reason, t))
                return False, envelope.canonical({"denied": reason})
            self._seen_nonces.add(request.nonce)
            serial = request.serial
            data: Any = self.twin(serial) if request.action == "read" else self.store.history(serial)
            self.event(f"data-{request.action}", request.party, f"{request.serial}", t)
            key, _serials, _actions = self.store.grant(request.party)  # type: ignore[misc]
            body = envelope.canonical({"serial": request.serial, "action": request.action, "data": data})
            return True, seal_to(HardwareIdentity(request.party, key), body)

    def _authorize(self, request: AccessRequest) -> str | None:
        grant = self.store.grant(request.party)
        if grant is None:
            return f"party {request.party!r} has no grant"
        key, serials, actions = grant
        try:
            VerifyKey(key).verify(request.signed_bytes(), request.signature)
        except BadSignatureError:
            return f"request signature of {request.party!r} does not verify"
        if request.nonce in self._seen_nonces:
            return "request nonce replayed"
        if request.action not in actions:
            return f"{request.party!r} may not {request.action}"
        if WILDCARD not in serials and request.serial not in serials:
            return f"{request.party!r} may not access {request.serial}"
        if self.store.by_serial(request.serial) is None:
            return f"no device {request.serial}"
        return None
