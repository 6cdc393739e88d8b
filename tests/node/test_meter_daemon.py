"""The meter daemon (``gridledger meter init|run|status``) against a real PoEf cluster (3-member etcd, a primary and a
backup concentrator, four meters; one process each) and a real mosquitto: SmartPi measurements published on MQTT
become readings committed on the NAN chain exactly once, with the energies measured, through a daemon killed with
SIGKILL mid-stream, a broker restart and a node restart; bad payloads are counted and dropped.

Compressed time: the test meter stamps its measurements 10 s of chain time apart and publishes them at once; the
chain's first slot (15 minutes) accepts readings of minutes 0..14.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests import requires
from typer.testing import CliRunner

from gridledger.cli import app
from gridledger.ledger.kinds.reading import Reading
from gridledger.meter.daemon import Accumulator, Dropped, MeterConfig
from gridledger.meter.outbox import Outbox
from gridledger.node import cluster
from gridledger.node.testnet import Testnet, wait_until
from gridledger.twin import mqtt
from gridledger.twin.smartpi import PhaseReading, measurement

STEP_S = 10  # chain seconds between two measurements
MINUTES = range(1, 15)  # the readings the stream makes: minute m holds (60 m, 60 (m + 1)] s, sealed at 60 (m + 1)
runner = CliRunner()


def power_w(t: int) -> float:
    """The test meter's load (W) in force up to chain second ``t``: 60 (m + 10) W in minute m, i.e. m + 10 Wh."""
    return 60.0 * ((t - 1) // 60 + 10)


def payload(serial: str, start: int, t: int, power: float | None = None) -> bytes:
    """A SmartPi measurement taken at chain second ``t``: all of ``power`` on phase 1."""
    p = power_w(t) if power is None else power
    phases = [PhaseReading(1, abs(p) / 230, 230.0, p, 1.0, 50.0)] + [
        PhaseReading(k, 0.0, 230.0, 0.0, 1.0, 50.0) for k in (2, 3)
    ]
    when = datetime.fromtimestamp(start + t, UTC).replace(tzinfo=None)
    return json.dumps(measurement(serial, serial, phases, when)).encode()


def stream(upto_minute: int = 15) -> list[int]:
    """Chain seconds of the test meter's measurements: every ``STEP_S`` from 60 to 60 * ``upto_minute``."""
    return list(range(60, 60 * upto_minute + 1, STEP_S))


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    requires.etcd()
    requires.mosquitto()
    folder = tmp_path_factory.mktemp("meter-cluster")
    cluster.up(folder, meters=4, concentrators=1, rate_limit=(1_000, 2_000), poef=True, insecure=True)  # plain broker
    network = Testnet(folder)
    try:
        ids = network.ids()
        wait_until(lambda: network.agree(ids, 1), 60, "the enrolment block on every node")
        yield network
    finally:
        network.stop()


class Meter:
    """One meter of the cluster: its daemon process (``gridledger meter run``), its configuration, a publisher."""

    def __init__(self, net: Testnet, meter: str, broker: mqtt.Broker, folder: Path) -> None:
        self.net, self.meter, self.broker = net, meter, broker
        made = runner.invoke(
            app,
            ["meter", "init", "--cluster", str(net.folder), "--meter", meter, "--out", str(folder)]
            + ["--broker-port", str(broker.port)],
        )
        assert made.exit_code == 0, made.output
        self.config = folder / f"{meter}.meter.toml"
        # compressed time: measurements up to 15 chain minutes ahead of the clock are the meter's, not a bad clock
        self.config.write_text("max_ahead_s = 3600\npoll_s = 0.1\n" + self.config.read_text())
        self.cfg = MeterConfig.load(self.config)
        self.log = folder / f"{meter}.log"
        self.proc: subprocess.Popen | None = None
        self.publisher = None

    def start(self) -> None:
        log = open(self.log, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gridledger", "meter", "run", "--config", str(self.config), "--verbose"],
            stdout=log,
            stderr=log,
        )
        log.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.publisher is not None:
            mqtt.close(self.publisher)
            self.publisher = None

    def subscribed(self, since: int = 0) -> None:
        """Wait until the daemon's MQTT session exists at the broker (its connection is in the broker log)."""
        client_id = f"gridledger-meter-{self.meter}"
        wait_until(
            lambda: any(e.client_id == client_id and e.accepted for e in self.broker.connection_events()),
            30,
            f"{self.meter}'s daemon to connect",
        )
        time.sleep(0.3)  # its SUBSCRIBE follows the CONNACK

    def publish(self, *payloads: bytes) -> None:
        if self.publisher is None:
            self.publisher = mqtt.connect(self.broker.port, f"smartpi-{self.meter}")
        for p in payloads:
            self.publisher.publish(self.cfg.topic, p, qos=1).wait_for_publish(10)

    def measure(self, seconds: list[int]) -> None:
        self.publish(*(payload(self.meter, self.cfg.start_time, t) for t in seconds))

    def counts(self) -> dict[str, int]:
        box = Outbox(self.cfg.outbox)
        try:
            return box.counts()
        finally:
            box.close()

    def on_chain(self) -> list[tuple[int, int]]:
        """(minute, height) of every reading of this meter on DC1's chain, in chain order (duplicates kept)."""
        return [
            (tx.minute, block.height)
            for block in self.net.blocks("DC1")
            for tx in block.transactions
            if isinstance(tx, Reading) and tx.member == self.cfg.member
        ]

    def wait_committed(self, minutes: range, timeout: float = 90.0) -> None:
        wanted = len(minutes)
        wait_until(lambda: self.counts()["committed"] >= wanted, timeout, f"{wanted} readings of {self.meter}")

    def check_chain(self, minutes: range) -> None:
        """Each minute exactly once on the chain, in order, with the energy the meter measured."""
        assert [m for m, _ in self.on_chain()] == list(minutes)
        values = self.net.client("DC1").readings(self.meter, limit=100)["readings"]
        assert {v["minute"]: v["consumption_wh"] for v in values} == {m: m + 10 for m in minutes}
        assert {v["production_wh"] for v in values} == {0}
        assert all(v["voltage_dv"] == 2300 for v in values)


@pytest.fixture
def meter_of(net, tmp_path):
    made: list[Meter] = []
    brokers: list[mqtt.Broker] = []

    def make(meter: str) -> Meter:
        broker = mqtt.Broker().start()
        brokers.append(broker)
        made.append(Meter(net, meter, broker, tmp_path))
        return made[-1]

    yield make
    for m in made:
        m.stop()
    for b in brokers:
        b.stop()


def test_readings_flow_and_survive_a_kill_9_mid_stream(meter_of):
    mi = meter_of("MI1")
    mi.start()
    mi.subscribed()
    seconds = stream()
    first, rest = seconds[:40], seconds[40:]  # the first ones seal minutes 1..5
    mi.measure(first)
    wait_until(lambda: mi.counts()["committed"] >= 3, 60, "the first readings committed")
    mi.kill()  # SIGKILL while it may still be submitting: the outbox holds what the node has not acknowledged
    mi.measure(rest[:30])  # while it is dead: the broker keeps them for its persistent session
    mi.start()
    mi.measure(rest[30:])
    mi.wait_committed(MINUTES)
    mi.check_chain(MINUTES)
    counts = mi.counts()
    assert counts["received"] >= len(seconds) and counts["queued"] == counts["sent"] == counts["rejected"] == 0
    # a message whose effect was on disk but not yet acknowledged when the daemon died comes again: it is a replay
    assert set(counts) <= {"queued", "sent", "committed", "rejected", "received", "dropped:replayed", "resent"}, counts


def test_a_broker_restart_and_a_node_restart_lose_nothing(net, meter_of, monkeypatch):
    mi = meter_of("MI2")
    mi.start()
    mi.subscribed()
    seconds = stream()
    mi.measure(seconds[:30])
    wait_until(lambda: mi.counts()["committed"] >= 2, 60, "the first readings committed")
    # the broker goes away and comes back on the same port (its sessions are gone: the daemon subscribes again)
    port = mi.broker.port
    mqtt.close(mi.publisher)
    mi.publisher = None
    mi.broker.stop()
    monkeypatch.setattr(mqtt, "free_port", lambda: port)
    mi.broker.start()
    mi.subscribed()
    # the node the daemon submits to is killed and restarted while readings are made
    net.kill("DC1")
    mi.measure(seconds[30:60])
    time.sleep(1.0)
    net.restart("DC1")
    mi.measure(seconds[60:])
    mi.wait_committed(MINUTES, timeout=120)
    mi.check_chain(MINUTES)
    counts = mi.counts()
    assert counts.get("retry:unreachable", 0) >= 1, counts  # it did meet the dead node, and waited
    assert counts["rejected"] == 0 and not any(k.startswith(("dropped", "rejected:")) for k in counts), counts


def test_bad_payloads_are_counted_and_dropped_and_the_daemon_runs_on(meter_of):
    mi = meter_of("MI3")
    mi.start()
    mi.subscribed()
    seconds = stream(3)  # minutes 1 and 2
    start = mi.cfg.start_time
    mi.measure(seconds[:8])
    mi.publish(
        b"not json",
        b'{"serial": "MI3"}',
        payload("MI3", start, seconds[7]),  # replayed: the last one again
        payload("MI3", start, seconds[3]),  # out of order
        payload("someone-else", start, seconds[8]),
        payload("MI3", start, seconds[8], power=1e7),  # 43 kA: out of a reading's range
        json.dumps({**json.loads(payload("MI3", start, 0)), "time": "1999-01-01 00:00:00"}).encode(),
    )
    mi.measure(seconds[8:])
    wait_until(lambda: mi.counts()["committed"] >= 2, 60, "MI3's readings committed")
    counts = mi.counts()
    assert counts["dropped:malformed"] == 3 and counts["dropped:replayed"] == 1
    assert counts["dropped:out-of-order"] == 1 and counts["dropped:wrong-serial"] == 1
    assert counts["dropped:before-start"] == 1 and counts["received"] == len(seconds) + 7
    assert [m for m, _ in mi.on_chain()] == [1, 2]
    assert mi.proc is not None and mi.proc.poll() is None
    shown = runner.invoke(app, ["meter", "status", "--config", str(mi.config)])
    assert shown.exit_code == 0 and "dropped:replayed" in shown.output


def test_the_daemon_learns_of_each_commit_from_the_block_stream_without_polling(meter_of):
    """With a status poll every 30 s, five readings one after the other would take minutes: the node's block stream
    wakes the submitter at each block instead."""
    mi = meter_of("MI4")
    mi.config.write_text(mi.config.read_text().replace("poll_s = 0.1", "poll_s = 30.0"))
    mi.start()
    mi.subscribed()
    mi.measure(stream(6))  # minutes 1..5
    mi.wait_committed(range(1, 6), timeout=60)
    mi.check_chain(range(1, 6))


# ---------------------------------------------------------------------- no network: the accumulator and the config
class _Cfg:
    serial, start_time, interval_min, max_gap_s, max_ahead_s = "M", 1_000_000, 1, 300, 300


def test_the_accumulator_splits_energy_at_interval_ends_and_carries_the_remainder():
    acc = Accumulator(_Cfg(), {})
    now = 2_000_000
    assert acc.add(payload("M", 1_000_000, 30, 1000.0), now) == []  # the first measurement: no energy yet
    sealed = acc.add(payload("M", 1_000_000, 90, 1000.0), now)  # 60 s of 1 kW: 30 s in minute 0 (now over), 30 in 1
    assert [(m, v.consumption_wh, v.production_wh, v.voltage_dv) for m, v in sealed] == [(0, 8, 0, 2300)]
    sealed = acc.add(payload("M", 1_000_000, 120, -720.0), now)  # minute 1 ends: 8.333 Wh in, 6 Wh out
    assert [(m, v.consumption_wh, v.production_wh) for m, v in sealed] == [(1, 8, 6)]
    assert acc.carry == [2400.0, 0.0]  # 8.333 Wh twice: 8 Wh sealed in each minute, 0.667 Wh (2400 W·s) carried
    with pytest.raises(Dropped, match="replayed"):
        acc.add(payload("M", 1_000_000, 120), now)
    with pytest.raises(Dropped, match="future"):
        acc.add(payload("M", 1_000_000, 2_000_000), now)


def test_a_config_with_a_readable_key_or_without_a_broker_is_refused(net, tmp_path):
    made = runner.invoke(app, ["meter", "init", "--cluster", str(net.folder), "--meter", "MI1", "--out", str(tmp_path)])
    assert made.exit_code == 0, made.output
    config = tmp_path / "MI1.meter.toml"
    assert (tmp_path / "MI1.seed").stat().st_mode & 0o077 == 0
    os.chmod(tmp_path / "MI1.seed", 0o644)
    refused = runner.invoke(app, ["meter", "status", "--config", str(config)])
    assert refused.exit_code == 2 and "key_file" in refused.output and "chmod 600" in refused.output
    os.chmod(tmp_path / "MI1.seed", 0o600)
    config.write_text(config.read_text().split("[broker]")[0])
    refused = runner.invoke(app, ["meter", "run", "--config", str(config)])
    assert refused.exit_code == 2 and "[broker] table" in refused.output
    refused = runner.invoke(app, ["meter", "init", "--cluster", str(net.folder), "--meter", "DC1"])
    assert refused.exit_code == 2 and "not a meter" in refused.output
