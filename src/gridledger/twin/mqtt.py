"""MQTT plumbing: a private mosquitto broker on loopback, paho-mqtt 2.x clients, and the twin topics.

``Broker`` starts Debian's ``mosquitto`` on a free 127.0.0.1 port with a temporary config: anonymous access
on or off, an optional password file (hashed with ``mosquitto_passwd -U``) plus an ACL that lets each device
write only its own uplink and read only its own downlink, and a log file from which the DT controller learns
every connection (the paper's "the DT platform monitors the network connection of all devices").

With ``tls`` (a CA and the broker's certificate, :mod:`gridledger.node.pki`) the listener speaks only TLS and
demands a client certificate signed by the CA; its common name is the device's user name
(``use_identity_as_username``), the ACL lets a device use only its own topics (``gridledger/meters/<cn>/#`` and its
twin topics), and a certificate listed in ``crl`` (the CA's revocation list, read when the broker starts) is refused.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gridledger.devices.meter_device import METER_TOPICS
from gridledger.node.netutil import free_port
from gridledger.node.pki import TlsFiles

ROOT = "gridledger/twin"
SERIAL_SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # what may stand in a topic level
ANNOUNCE = f"{ROOT}/announce/+"
ACCESS_REQUEST = f"{ROOT}/access/request"
REPLICA_HEARTBEAT = f"{ROOT}/replica/heartbeat"
REPLICA_LOG = f"{ROOT}/replica/log"
REPLICA_REGISTRY = f"{ROOT}/replica/registry"


def uplink(serial: str) -> str:
    return f"{ROOT}/{serial}/up"


def downlink(serial: str) -> str:
    return f"{ROOT}/{serial}/down"


def announce(serial: str) -> str:
    return f"{ROOT}/announce/{serial}"


def provision(serial: str) -> str:
    return f"{ROOT}/{serial}/provision"


def access_response(party: str) -> str:
    return f"{ROOT}/access/{party}/response"


class BrokerUnavailable(RuntimeError):
    """mosquitto is not installed or did not start."""


def mosquitto_binary() -> str | None:
    """Path of the mosquitto binary (Debian installs it in /usr/sbin), or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


@dataclass(frozen=True)
class ConnectionEvent:
    """A client connection seen in the broker log: client id, peer address, whether it was accepted."""

    client_id: str
    address: str
    accepted: bool


_CONNECTED = re.compile(r"New client connected from (\S+) as (\S+) ")
_REFUSED = re.compile(r"Client (\S+) disconnected, not authori[sz]ed")
_PEER = re.compile(r"New connection from (\S+) on port")


#: ACL patterns (``%u``: the device's user name) for a device's own twin topics.
_DEVICE_PATTERNS = [
    f"pattern write {ROOT}/%u/up",
    f"pattern read {ROOT}/%u/down",
    f"pattern read {ROOT}/%u/provision",
    f"pattern write {ROOT}/announce/%u",
]


class Broker:
    """A private mosquitto on 127.0.0.1. Use as a context manager, or ``start()`` / ``stop()``."""

    def __init__(
        self,
        *,
        allow_anonymous: bool = True,
        users: dict[str, str] | None = None,
        admin: str | None = None,
        tls: TlsFiles | None = None,
        crl: Path | None = None,
    ) -> None:
        """``users`` maps user name -> password; ``admin`` is the user with access to every twin topic; ``tls``:
        certificate-only access (see the module docstring; ``allow_anonymous`` and ``users`` are then unused)."""
        self.allow_anonymous = allow_anonymous and tls is None
        self.users = dict(users or {})
        self.admin = admin
        self.tls, self.crl = tls, crl
        self.host = "127.0.0.1"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._log_offset = 0
        self._log_lock = threading.Lock()

    @property
    def log_path(self) -> Path:
        assert self._dir is not None, "broker not started"
        return Path(self._dir.name) / "mosquitto.log"

    def _write_config(self, root: Path) -> Path:
        lines = [
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            "persistence false",
            f"log_dest file {root / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "max_queued_messages 10000",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # keep access to the private temp dir
        if self.tls is not None:
            lines += [f"cafile {self.tls.ca}", f"certfile {self.tls.cert}", f"keyfile {self.tls.key}"]
            lines += ["require_certificate true", "use_identity_as_username true"]
            lines += [f"crlfile {self.crl}"] if self.crl is not None else []
            acl = root / "acl"
            acl_lines = [f"user {self.admin}", f"topic readwrite {ROOT}/#", ""] if self.admin else []
            acl.write_text("\n".join([*acl_lines, f"pattern readwrite {METER_TOPICS}/%u/#", *_DEVICE_PATTERNS]) + "\n")
            lines.append(f"acl_file {acl}")
        elif self.users:
            passwd = root / "passwd"
            passwd.write_text("".join(f"{u}:{p}\n" for u, p in self.users.items()))
            passwd.chmod(0o600)
            subprocess.run(["mosquitto_passwd", "-U", str(passwd)], check=True, capture_output=True)
            acl = root / "acl"
            acl_lines = [f"user {self.admin}", f"topic readwrite {ROOT}/#", ""] if self.admin else []
            acl_lines += _DEVICE_PATTERNS
            acl.write_text("\n".join(acl_lines) + "\n")
            lines += [f"password_file {passwd}", f"acl_file {acl}"]
        conf = root / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self, timeout_s: float = 10.0) -> Broker:
        binary = mosquitto_binary()
        if binary is None:
            raise BrokerUnavailable("mosquitto is not installed (apt-get install mosquitto, or ./dev services)")
        self._dir = tempfile.TemporaryDirectory(prefix="gridledger-mqtt-")
        self._log_offset = 0  # a new log file (a broker started again)
        self.port = free_port()
        conf = self._write_config(Path(self._dir.name))
        self._proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                self.stop()
                raise BrokerUnavailable(f"mosquitto exited at start: {err.strip()[:300]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise BrokerUnavailable(f"mosquitto did not listen on port {self.port} within {timeout_s} s")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            if self._proc.stderr:
                self._proc.stderr.close()
            self._proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def connection_events(self) -> list[ConnectionEvent]:
        """New connection events in the broker log since the last call."""
        with self._log_lock:
            try:
                with open(self.log_path, "rb") as f:
                    f.seek(self._log_offset)
                    chunk = f.read()
            except FileNotFoundError:
                return []
            end = chunk.rfind(b"\n") + 1
            self._log_offset += end
        events: list[ConnectionEvent] = []
        peer = ""
        for line in chunk[:end].decode(errors="replace").splitlines():
            if m := _PEER.search(line):
                peer = m.group(1)
            elif m := _CONNECTED.search(line):
                events.append(ConnectionEvent(m.group(2), m.group(1), True))
            elif m := _REFUSED.search(line):
                client_id = peer if m.group(1) == "<unknown>" else m.group(1)
                events.append(ConnectionEvent(client_id, peer, False))
        return events


class MqttError(RuntimeError):
    """A client could not connect (refused or timed out)."""


def connect(
    port: int,
    client_id: str,
    *,
    username: str | None = None,
    password: str | None = None,
    host: str = "127.0.0.1",
    timeout_s: float = 5.0,
    tls: TlsFiles | None = None,
) -> paho.Client:
    """A connected paho-mqtt 2.x client with its network loop running in a thread; MqttError if refused (also a
    TLS handshake the broker or the client refuses). ``tls``: verify the broker against ``tls.ca`` and present
    ``tls.cert``."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311)
    if username is not None:
        client.username_pw_set(username, password)
    if tls is not None:
        client.tls_set(str(tls.ca), str(tls.cert), str(tls.key))
    done = threading.Event()
    result: dict[str, object] = {}

    def on_connect(_c: paho.Client, _u: object, _flags: object, reason: object, _p: object) -> None:
        result["reason"] = reason
        done.set()

    client.on_connect = on_connect
    try:
        client.connect(host, port, keepalive=30)
    except OSError as exc:
        raise MqttError(f"cannot reach broker at {host}:{port}: {exc}") from None
    client.loop_start()
    if not done.wait(timeout_s):
        client.loop_stop()
        client.disconnect()
        raise MqttError(f"{client_id}: no CONNACK within {timeout_s} s")
    reason = result["reason"]
    if getattr(reason, "is_failure", False):
        client.loop_stop()
        client.disconnect()
        raise MqttError(f"{client_id}: connection refused ({reason})")
    client.on_connect = None
    return client


def close(client: paho.Client) -> None:
    """Disconnect and stop a client's loop (idempotent)."""
    try:
        client.disconnect()
    finally:
        client.loop_stop()
