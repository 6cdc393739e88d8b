"""The meter daemon (``gridledger meter run``): SmartPi measurements from MQTT → signed, encrypted readings → the
meter's NAN node, with nothing lost or sent twice across crashes and restarts.

**Input.** The meter board publishes SmartPi JSON measurements (:mod:`gridledger.twin.smartpi`) on ``topic``; the
daemon subscribes with QoS 1 in a persistent session and acknowledges a message only once its effect is on disk.
Each measurement's momentary active power (sum of the line phases, W; positive: drawn from the grid, negative: fed
in) holds from the previous measurement's time to its own; the energy of that span (W·s, split at
interval boundaries) goes to the reading intervals it covers. Interval ``j`` of ``interval_min`` minutes is the span
``(j·L, (j+1)·L]`` seconds after the chain's start (``L = 60·interval_min``); its reading carries the chain minute
``(j+1)·interval_min − 1``. An interval is sealed as soon as a measurement at or after its end arrives: energy (Wh,
the sub-Wh remainder carried on), and the voltage (mean of the phases), current (sum) and power factor (mean) of its
last measurement. A gap longer than ``max_gap_s`` between measurements adds no energy (the meter was off).

**Refused input**, logged, counted (``dropped:<reason>``) and dropped, the daemon runs on: ``malformed`` (not JSON,
not a SmartPi measurement, values out of a reading's range), ``wrong-serial``, ``replayed`` (a measurement time
already seen), ``out-of-order`` (older than the last one), ``before-start`` (before the chain's start), ``future``
(more than ``max_ahead_s`` ahead of this host's clock).

**Batches.** With ``batch_minutes`` = N > 1 (interval 1 minute; the chain's rule set must have READING_BATCH and
allow N minutes in one) the daemon's device (:class:`gridledger.ledger.kinds.reading_batch.BatchingDevice`) holds
sealed minutes until N consecutive ones are collected, then signs them as one READING_BATCH. A partial batch goes
out earlier when a minute is skipped (a gap: the minutes held so far), when the board has been quiet for longer than
``max_gap_s`` (this host's clock, since the last measurement taken), and on a clean stop; a partial batch of one
minute is a plain READING. Held minutes are saved in the same fsync'd transaction as the state they came from, so a
daemon killed at any point resumes with them. A minute reaches the chain up to N − 1 minutes later than alone.

**Output.** Every signed transaction goes to the outbox (:mod:`gridledger.meter.outbox`, one row per READING or
READING_BATCH, keyed by its last minute) in the same fsync'd
transaction as the state it came from; the submitter sends the oldest unacknowledged one to ``node`` (signed as
``api_id``), and asks ``GET /v1/transactions/{txid}`` until it is committed or rejected (the code is logged and
counted): after every block the node announces on its block stream (``/v1/stream``, followed in a thread of its
own), else every ``poll_s`` (every ``STREAM_POLL_S`` at least while the stream is open). One reading is in flight
at a time, so a meter's readings reach the chain in minute order. A node that does
not answer, refuses with a status other than 400, or forgot the transaction is retried; the same bytes are sent
again (the same txid: the node's queue is idempotent, and the chain refuses a minute already reported).

**TLS.** With ``[broker] ca_file, cert_file, key_file`` the daemon reaches the broker over TLS only, verifies it
against the CA and logs in with its device certificate (the broker takes its common name as the user name); with
``node_ca`` it verifies an ``https`` node against that CA. ``meter init`` on a secure cluster writes both. A broker
that refuses the daemon (a revoked or unknown certificate, bad credentials) is logged and counted
(``broker:refused``; ``broker:connect-failed`` when the connection or a TLS 1.2 handshake fails, ``broker:lost``
when an open session drops); the daemon keeps retrying.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
import time
import tomllib
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

import httpx
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gridledger.devices.meter_device import measurement_topic
from gridledger.ledger.block import Block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds import decode_transaction
from gridledger.ledger.kinds.reading import ReadingError, ReadingValues
from gridledger.ledger.kinds.reading_batch import BatchingDevice, readings_of
from gridledger.ledger.ruleset import ruleset_of
from gridledger.ledger.transactions import Transaction
from gridledger.meter.outbox import SENT, Outbox
from gridledger.node.client import ApiError, KeyFileError, NodeClient, NodeUnreachable, load_key
from gridledger.node.pki import TlsFiles
from gridledger.twin.smartpi import SmartPiFormatError, measured_at, parse_measurement

log = logging.getLogger("gridledger.meter")

#: Seconds between the submitter's status requests while the node's block stream is open (it wakes it at each block).
STREAM_POLL_S = 1.0
#: The reasons a measurement is dropped (counted as ``dropped:<reason>``).
DROP_REASONS = ("malformed", "wrong-serial", "replayed", "out-of-order", "before-start", "future")


class MeterConfigError(ValueError):
    """A meter configuration that cannot be used (the message names the file and key)."""


@dataclass(frozen=True)
class MeterConfig:
    """``gridledger meter run``'s TOML configuration (relative paths are relative to the file; see docs)."""

    meter_id: str
    member: int
    key: KeyPair
    content_key: bytes
    genesis: Block
    node: str
    outbox: Path
    broker_host: str
    broker_port: int
    topic: str
    serial: str
    api_id: str
    api_key: KeyPair
    broker_username: str | None = None
    broker_password: str | None = None
    broker_tls: TlsFiles | None = None
    node_ca: Path | None = None
    interval_min: int = 1
    batch_minutes: int = 1
    max_gap_s: int = 300
    max_ahead_s: int = 300
    poll_s: float = 0.2
    resend_s: float = 30.0

    @property
    def chain_id(self) -> bytes:
        return self.genesis.header.chain_id

    @property
    def start_time(self) -> int:
        return self.genesis.transactions[0].start_time

    @classmethod
    def load(cls, path: str | Path) -> MeterConfig:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except OSError as e:
            raise MeterConfigError(f"cannot read {path}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise MeterConfigError(f"{path}: not valid TOML: {e}") from None

        def need(key: str, kind: type, table: dict = data, where: str = ""):
            value = table.get(key)
            if kind is float and isinstance(value, int):
                value = float(value)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise MeterConfigError(f"{path}: {where}{key} must be a {kind.__name__}, got {value!r}")
            return value

        def optional(key: str, kind: type, default, table: dict = data, where: str = ""):
            return default if key not in table else need(key, kind, table, where)

        def key_file(key: str):
            try:
                return load_key(path.parent / need(key, str))
            except KeyFileError as e:
                raise MeterConfigError(f"{path}: {key}: {e}") from None

        broker = data.get("broker")
        if not isinstance(broker, dict):
            raise MeterConfigError(f"{path}: a [broker] table (host, port, topic) is required")
        try:
            genesis = Block.decode(bytes.fromhex((path.parent / need("genesis", str)).read_text().strip()))
        except (OSError, ValueError) as e:
            raise MeterConfigError(f"{path}: genesis: cannot read the chain's genesis block: {e}") from None
        tls_keys = ("ca_file", "cert_file", "key_file")
        if any(k in broker for k in tls_keys):
            files = [path.parent / need(k, str, broker, "broker.") for k in tls_keys]
            for k, f in zip(tls_keys, files, strict=True):
                if not f.is_file():
                    raise MeterConfigError(f"{path}: broker.{k}: no file {f}")
            broker_tls = TlsFiles(*files)
        else:
            broker_tls = None
        node_ca = path.parent / need("node_ca", str) if "node_ca" in data else None
        if node_ca is not None and not node_ca.is_file():
            raise MeterConfigError(f"{path}: node_ca: no file {node_ca}")
        meter_id = need("meter_id", str)
        member = need("member", int)
        if not 0 <= member <= 0xFFFF:
            raise MeterConfigError(f"{path}: member must be a member index 0..65535, got {member}")
        key = key_file("key_file")
        cfg = cls(
            meter_id=meter_id,
            member=member,
            key=key,
            content_key=key_file("content_key_file").seed,
            genesis=genesis,
            node=need("node", str),
            outbox=path.parent / need("outbox", str),
            broker_host=optional("host", str, "127.0.0.1", broker, "broker."),
            broker_port=need("port", int, broker, "broker."),
            topic=need("topic", str, broker, "broker."),
            broker_username=optional("username", str, None, broker, "broker."),
            broker_password=optional("password", str, None, broker, "broker."),
            broker_tls=broker_tls,
            node_ca=node_ca,
            serial=optional("serial", str, meter_id),
            api_id=optional("api_id", str, meter_id),
            api_key=key_file("api_key_file") if "api_key_file" in data else key,
            interval_min=optional("interval_min", int, 1),
            batch_minutes=optional("batch_minutes", int, 1),
            max_gap_s=optional("max_gap_s", int, 300),
            max_ahead_s=optional("max_ahead_s", int, 300),
            poll_s=float(optional("poll_s", float, 0.2)),
            resend_s=float(optional("resend_s", float, 30.0)),
        )
        if not 1 <= cfg.interval_min <= 60:
            raise MeterConfigError(f"{path}: interval_min must be 1..60 minutes, got {cfg.interval_min}")
        check_batch_minutes(cfg.batch_minutes, genesis, cfg.interval_min, f"{path}: ")
        return cfg


def check_batch_minutes(n: int, genesis: Block, interval_min: int = 1, where: str = "") -> None:
    """``MeterConfigError`` unless a meter of the chain of ``genesis`` may send ``n`` minutes per transaction: 1 (a
    READING a minute) anywhere; more only in READING_BATCHes, which the chain's rule set must have and allow ``n``
    minutes in, of 1-minute intervals (a batch holds consecutive minutes)."""
    if type(n) is not int or n < 1:
        raise MeterConfigError(f"{where}batch_minutes must be at least 1 (1: one READING a minute), got {n!r}")
    if n == 1:
        return
    try:
        rules = ruleset_of(genesis.transactions[0])
    except Reject as e:
        raise MeterConfigError(f"{where}batch_minutes = {n}: {e.message}") from None
    chain = genesis.transactions[0].chain
    if rules.max_reading_batch == 0:
        raise MeterConfigError(
            f"{where}batch_minutes = {n}: chain {chain!r} runs rule set {rules}, which has no READING_BATCH "
            "transactions; use batch_minutes = 1 (one READING a minute)"
        )
    if n > rules.max_reading_batch:
        raise MeterConfigError(
            f"{where}batch_minutes = {n}: chain {chain!r} runs rule set {rules}, which allows at most "
            f"{rules.max_reading_batch} minutes in one READING_BATCH"
        )
    if interval_min != 1:
        raise MeterConfigError(
            f"{where}batch_minutes = {n} needs interval_min = 1 (a READING_BATCH holds consecutive minutes), "
            f"got interval_min = {interval_min}"
        )


def write_config(
    cluster: Path,
    meter: str,
    out: Path,
    broker_host: str,
    broker_port: int,
    topic: str | None = None,
    batch_minutes: int = 1,
) -> Path:
    """Write ``out/METER.meter.toml``, the meter's key files (mode 0600) and its chain's genesis for ``meter`` of the
    local PoEf cluster in ``cluster`` (``gridledger cluster up``); it submits to its NAN's primary concentrator, in
    transactions of ``batch_minutes`` minutes (checked against the chain's rule set first: ``check_batch_minutes``).
    On a secure cluster the meter also gets a device certificate for the broker (``METER.crt``/``.key``, common
    name ``meter``, issued by the cluster's CA) and the CA (``ca.crt``) to verify the broker and its node."""
    from gridledger.node.cluster import PKI_DIR, STATE_FILE
    from gridledger.node.config import ConfigError, NodeConfig
    from gridledger.node.meter_files import MeterFiles, write_meter_folder
    from gridledger.node.pki import LocalCA

    try:
        state = json.loads((cluster / STATE_FILE).read_text())
    except (OSError, ValueError):
        raise MeterConfigError(
            f"--cluster {cluster}: no cluster.json (start one with `gridledger cluster up`)"
        ) from None
    node = next((n for n in state["nodes"] if n["id"] == meter), None)
    if node is None or "member" not in node:
        raise MeterConfigError(f"--meter {meter}: not a meter of a PoEf chain in {cluster}")
    try:
        cfg = NodeConfig.load(node["config"])
    except ConfigError as e:
        raise MeterConfigError(str(e)) from None
    check_batch_minutes(batch_minutes, Block.decode(cfg.genesis), where="--batch-minutes: ")
    coordinator = next(n for n in state["nodes"] if n["chain"] == node["chain"] and n["role"] == "concentrator")
    files = MeterFiles(
        meter,
        node["member"],
        cfg.key.seed,
        cfg.content_key,
        cfg.genesis,
        coordinator["url"],
        coordinator["id"],
        broker_host,
        broker_port,
        topic or measurement_topic(meter),
        batch_minutes,
    )
    return write_meter_folder(files, out, LocalCA.load(cluster / PKI_DIR) if state.get("ca") else None)


class Dropped(ValueError):
    """A measurement that is refused; ``reason`` is one of ``DROP_REASONS``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


def electrical(payload: bytes) -> tuple[str, float, float, float, float, float]:
    """(serial, total power W, mean voltage V, total current A, mean cos phi, time) of a SmartPi measurement;
    ``Dropped('malformed')`` if it is not one."""
    try:
        msg = json.loads(payload)
        phases, _ = parse_measurement(msg)
        when = measured_at(msg).replace(tzinfo=UTC).timestamp()
    except (UnicodeDecodeError, json.JSONDecodeError, SmartPiFormatError, RecursionError) as e:
        raise Dropped("malformed", str(e) or type(e).__name__) from None
    n = len(phases)
    return (
        str(msg["serial"]),
        sum(p.power for p in phases),
        sum(p.voltage for p in phases) / n,
        sum(p.current for p in phases),
        sum(p.cosphi for p in phases) / n,
        when,
    )


class Accumulator:
    """Turns measurements into reading intervals (see the module docstring); its state is plain JSON."""

    def __init__(self, cfg: MeterConfig, state: dict) -> None:
        self.cfg = cfg
        self.length = 60 * cfg.interval_min
        self.last_t: int | None = state.get("last_t")
        #: Energy consumed and produced (W·s) per open interval (JSON keys are text), and the sub-Wh remainders.
        self.open: dict[str, list[float]] = state.get("open", {})
        self.carry: list[float] = state.get("carry", [0.0, 0.0])
        self.electrical: list[int] | None = state.get("electrical")

    def state(self) -> dict:
        return {"last_t": self.last_t, "open": self.open, "carry": self.carry, "electrical": self.electrical}

    def add(self, payload: bytes, now: float) -> list[tuple[int, ReadingValues]]:
        """Take one measurement; the (chain minute, values) of the intervals it completes. ``Dropped`` if refused."""
        serial, power, volts, amps, cosphi, when = electrical(payload)
        if serial != self.cfg.serial:
            raise Dropped("wrong-serial", f"measurement of meter {serial!r}; this daemon reads {self.cfg.serial!r}")
        t = int(when) - self.cfg.start_time
        if t < 0:
            raise Dropped("before-start", f"measured {-t} s before the chain's start")
        if when > now + self.cfg.max_ahead_s:
            raise Dropped("future", f"measured {when - now:.0f} s ahead of this host's clock")
        if self.last_t is not None and t <= self.last_t:
            reason = "replayed" if t == self.last_t else "out-of-order"
            raise Dropped(reason, f"measured at chain second {t}, the last measurement was at {self.last_t}")
        values = (round(10 * volts), round(100 * amps), round(1000 * max(-1.0, min(1.0, cosphi))))
        if not (0 <= values[0] <= 0xFFFF and 0 <= values[1] <= 0xFFFF) or not math.isfinite(power):
            raise Dropped("malformed", f"voltage {volts} V or current {amps} A out of a reading's range")
        if self.last_t is not None and t - self.last_t <= self.cfg.max_gap_s:
            self._spread(self.last_t, t, power)
        self.last_t, self.electrical = t, list(values)
        return self._seal(t)

    def _spread(self, a: int, b: int, power: float) -> None:
        """Add ``power`` (W) held over chain seconds (a, b] to the intervals it covers, in W·s."""
        while a < b:
            j = a // self.length  # the interval holding (a, a + 1]
            end = min(b, (j + 1) * self.length)
            acc = self.open.setdefault(str(j), [0.0, 0.0])
            acc[0 if power >= 0 else 1] += abs(power) * (end - a)
            a = end

    def _seal(self, t: int) -> list[tuple[int, ReadingValues]]:
        out = []
        for j in sorted(int(k) for k in self.open if (int(k) + 1) * self.length <= t):
            energy = [round(x + c, 6) for x, c in zip(self.open.pop(str(j)), self.carry, strict=True)]
            wh = [int(e // 3600) for e in energy]
            self.carry = [e - 3600 * w for e, w in zip(energy, wh, strict=True)]
            volts, amps, pf = self.electrical  # type: ignore[misc]
            minute = (j + 1) * self.cfg.interval_min - 1
            out.append((minute, ReadingValues(wh[0], wh[1], volts, amps, pf)))
        return out


class MeterDaemon:
    """One meter: its MQTT subscription, accumulator, outbox and submitter. ``start`` / ``stop`` (or ``run``)."""

    def __init__(self, cfg: MeterConfig) -> None:
        self.cfg = cfg
        self.outbox = Outbox(cfg.outbox)
        self._restore()
        #: When the last measurement was taken (host's monotonic clock): held minutes go out after ``max_gap_s``.
        self._last_input = time.monotonic()
        self.node = NodeClient(cfg.node, cfg.api_id, cfg.api_key, timeout=5.0, ca=cfg.node_ca)
        self._lock = threading.Lock()  # one message at a time through the accumulator and the device
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._submitter: threading.Thread | None = None
        #: The node's block stream: its own client (closed by ``stop``), and whether it is open now.
        self._blocks = NodeClient(cfg.node, cfg.api_id, cfg.api_key, timeout=5.0, ca=cfg.node_ca)
        self._streaming = False
        self.mqtt = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"gridledger-meter-{cfg.meter_id}",
            clean_session=False,
            protocol=paho.MQTTv311,
            manual_ack=True,
        )
        if cfg.broker_username is not None:
            self.mqtt.username_pw_set(cfg.broker_username, cfg.broker_password)
        if cfg.broker_tls is not None:
            self.mqtt.tls_set(str(cfg.broker_tls.ca), str(cfg.broker_tls.cert), str(cfg.broker_tls.key))
        self.mqtt.reconnect_delay_set(0.2, 5)
        self.mqtt.on_connect = self._on_connect
        self.mqtt.on_connect_fail = self._on_connect_fail
        self.mqtt.on_disconnect = self._on_disconnect
        self.mqtt.on_message = self._on_message
        self.connected = threading.Event()
        self._session_up = False  # between a CONNACK and the next disconnect

    # ------------------------------------------------------------------ MQTT side
    def _on_connect(self, client: paho.Client, _u, _flags, reason, _p) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("%s: broker refused the connection: %s", self.cfg.meter_id, reason)
            self.outbox.count("broker:refused")
            return
        client.subscribe(self.cfg.topic, qos=1)  # again after every reconnect: a restarted broker forgot it
        self._session_up = True
        self.connected.set()
        log.info("%s: subscribed to %s", self.cfg.meter_id, self.cfg.topic)

    def _on_connect_fail(self, _client: paho.Client, _u) -> None:
        where = f"{self.cfg.broker_host}:{self.cfg.broker_port}"
        log.warning("%s: cannot connect to the broker at %s (down, or TLS refused)", self.cfg.meter_id, where)
        self.outbox.count("broker:connect-failed")

    def _on_disconnect(self, _client: paho.Client, _u, _flags, reason, _p) -> None:
        if self._stop.is_set():
            return
        up, self._session_up = self._session_up, False
        if up:
            log.warning("%s: lost the broker (%s); reconnecting", self.cfg.meter_id, reason)
        else:  # closed before its CONNACK: with TLS 1.3 a refused client certificate ends here
            log.warning("%s: broker closed the connection before accepting it (%s)", self.cfg.meter_id, reason)
        self.outbox.count("broker:lost" if up else "broker:refused")

    def _on_message(self, client: paho.Client, _u, msg: paho.MQTTMessage) -> None:
        try:
            self.handle(msg.payload)
        except Exception:  # noqa: BLE001 - not acknowledged: the broker sends it again after a reconnect
            log.exception("%s: could not record a measurement", self.cfg.meter_id)
            return
        client.ack(msg.mid, msg.qos)  # only now: the message's effect is on disk

    def _restore(self) -> None:
        """The accumulator and the device (its last minute sealed, the minutes it holds) as the outbox has them."""
        self.acc = Accumulator(self.cfg, self.outbox.state())
        held = [(m, ReadingValues(**v)) for m, v in self.outbox.held()]
        cfg = self.cfg
        self.device = BatchingDevice(
            cfg.chain_id, cfg.member, cfg.key, cfg.content_key, self.outbox.last_minute(), cfg.batch_minutes, held
        )

    def _record(self, txs: list[Transaction], counters: list[str]) -> list[int]:
        """Save the accumulator's state, the device's held minutes and ``txs`` in one transaction; their minutes."""
        rows = []
        for tx in txs:
            views = readings_of(tx)
            rows.append((views[0].minute, views[-1].minute, tx.txid, tx.encode()))
        held = [(m, dataclasses.asdict(v)) for m, v in self.device.held]
        self.outbox.record(self.acc.state(), rows, counters, held)
        if txs:
            self._wake.set()
        return [v.minute for tx in txs for v in readings_of(tx)]

    def handle(self, payload: bytes, now: float | None = None) -> list[int]:
        """Take one MQTT payload: the minutes it put into signed transactions in the outbox (none if it was dropped,
        or if its minutes are held for a batch)."""
        with self._lock:
            counters = ["received"]
            try:
                sealed = self.acc.add(payload, time.time() if now is None else now)
                txs: list[Transaction] = []
                for minute, values in sealed:
                    held = self.device.held
                    if held and minute != held[-1][0] + 1:
                        counters.append("flushed:gap")  # a skipped minute: what is held goes out first
                    txs += self.device.report(minute, values)
            except (Dropped, ReadingError) as e:
                reason = e.reason if isinstance(e, Dropped) else "malformed"
                log.warning("%s: dropped a measurement: %s", self.cfg.meter_id, e)
                self._restore()  # nothing of it was taken
                self.outbox.count("received", f"dropped:{reason}")
                return []
            self._last_input = time.monotonic()
            return self._record(txs, counters)

    def flush(self, why: str, quiet_s: float | None = None) -> list[int]:
        """Sign and queue the minutes held now (a partial batch; counted as ``flushed:<why>``): their minutes. With
        ``quiet_s``, only if no measurement was taken for longer than that."""
        with self._lock:
            if not self.device.held:
                return []
            if quiet_s is not None and time.monotonic() - self._last_input <= quiet_s:
                return []
            txs = self.device.flush()
            log.info("%s: %d held minute(s) sent as a partial batch (%s)", self.cfg.meter_id, len(txs), why)
            return self._record(txs, [f"flushed:{why}"])

    def _watch_quiet(self) -> None:
        """Flush the held minutes once the board has been quiet for longer than ``max_gap_s``."""
        while not self._stop.wait(min(1.0, self.cfg.max_gap_s / 4)):
            if self.device.held:
                try:
                    self.flush("quiet", self.cfg.max_gap_s)
                except Exception:  # noqa: BLE001 - logged; tried again at the next check
                    log.exception("%s: could not flush the held minutes", self.cfg.meter_id)

    # ------------------------------------------------------------------ node side
    def submit_once(self) -> bool:
        """One step for the oldest unacknowledged reading; True if there may be more to do right away."""
        row = self.outbox.next_open()
        if row is None:
            return False
        try:
            if row.status == SENT:
                st = self.node.tx_status(row.txid)
                if st["status"] == "committed":
                    self.outbox.finish(row.minute, height=st["height"])
                    return True
                if st["status"] == "rejected":
                    log.error("%s: reading of %s rejected: %s", self.cfg.meter_id, row.span, st["code"])
                    self.outbox.finish(row.minute, code=st["code"])
                    return True
                if st["status"] == "pending" and time.time() - (row.sent or 0) < self.cfg.resend_s:
                    return False
                self.outbox.count("resent")  # unknown to the node (it restarted) or pending too long
            self.node.send(decode_transaction(row.raw))
            self.outbox.mark_sent(row.minute)
            return False
        except ApiError as e:
            if e.status == 400:
                log.error("%s: reading of %s refused: %s", self.cfg.meter_id, row.span, e)
                self.outbox.finish(row.minute, code=e.code)
                return True
            log.warning("%s: node refused for now (%s); retrying", self.cfg.meter_id, e)
            self.outbox.count(f"retry:{e.code}")
        except NodeUnreachable as e:
            log.warning("%s: %s; retrying", self.cfg.meter_id, e)
            self.outbox.count("retry:unreachable")
        self._stop.wait(min(1.0, 5 * self.cfg.poll_s))
        return False

    def _submit_loop(self) -> None:
        while not self._stop.is_set():
            try:
                more = self.submit_once()
            except Exception:  # noqa: BLE001 - logged; the daemon keeps running
                log.exception("%s: submitter step failed; retrying", self.cfg.meter_id)
                more = False
                self._stop.wait(1.0)
            if not more:
                self._wake.wait(max(self.cfg.poll_s, STREAM_POLL_S) if self._streaming else self.cfg.poll_s)
                self._wake.clear()

    def _follow_blocks(self) -> None:
        """Wake the submitter on every block the node announces (a committed reading is seen at once, without
        polling); a stream that ends or fails is opened again after ``poll_s`` (the submitter polls meanwhile)."""
        while not self._stop.is_set():
            try:
                for _ in self._blocks.events(self._blocks.status()["height"] + 1):
                    self._streaming = True
                    self._wake.set()
                    if self._stop.is_set():
                        return
            except (ApiError, NodeUnreachable, httpx.HTTPError, ValueError) as e:
                if not self._stop.is_set():
                    log.info("%s: the node's block stream ended (%s); polling", self.cfg.meter_id, e)
            finally:
                self._streaming = False
            self._stop.wait(max(self.cfg.poll_s, 1.0))

    # ------------------------------------------------------------------ life cycle
    def start(self) -> MeterDaemon:
        self._submitter = threading.Thread(target=self._submit_loop, name=f"submit-{self.cfg.meter_id}", daemon=True)
        self._submitter.start()
        threading.Thread(target=self._follow_blocks, name=f"blocks-{self.cfg.meter_id}", daemon=True).start()
        if self.cfg.batch_minutes > 1:
            threading.Thread(target=self._watch_quiet, name=f"quiet-{self.cfg.meter_id}", daemon=True).start()
        self.mqtt.connect_async(self.cfg.broker_host, self.cfg.broker_port, keepalive=10)
        self.mqtt.loop_start()  # connects, and reconnects after the broker went away
        return self

    def stop(self) -> None:
        """Stop cleanly: no more messages, the held minutes queued as a partial batch (sent at the next start if the
        submitter has no time left), the submitter and the block stream ended, the outbox closed."""
        self._stop.set()
        self._wake.set()
        self.mqtt.disconnect()
        self.mqtt.loop_stop()
        self.flush("stop")
        if self._submitter is not None:
            self._submitter.join(10)
        self.node.close()
        self._blocks.close()  # ends its stream
        self.outbox.close()

    def run(self) -> None:
        """Run until interrupted (SIGINT / SIGTERM end it cleanly)."""
        import signal

        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        self.start()
        try:
            while not self._stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()
