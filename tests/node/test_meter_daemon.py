"""The meter daemon (``gridledger meter init|run|status``) against a real PoEf cluster (3-member etcd, a primary and a
backup concentrator, seven meters; one process each) and a real mosquitto: SmartPi measurements published on MQTT
become readings committed on the NAN chain exactly once, with the energies measured, through a daemon killed with
SIGKILL mid-stream, a broker restart and a node restart; bad payloads are counted and dropped. Meters MI5..MI7 send
READING_BATCHes (``batch_minutes``): full batches, held minutes through a SIGKILL, partial batches on a gap, on a
clean stop and after a quiet board.

Compressed time: the test meter stamps its measurements 10 s of chain time apart and publishes them at once; the
chain's first slot (15 minutes) accepts readings of minutes 0..14.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests import requires
from typer.testing import CliRunner

from gridledger.cli import app
from gridledger.ledger.block import ZERO_HASH, make_block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.ledger.kinds.reading import Reading
from gridledger.ledger.kinds.reading_batch import ReadingBatch, readings_of
from gridledger.meter.daemon import Accumulator, Dropped, MeterConfig, MeterConfigError
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
    cluster.up(folder, meters=7, concentrators=1, rate_limit=(1_000, 2_000), poef=True, insecure=True)  # plain broker
    network = Testnet(folder)
    try:
        ids = network.ids()
        wait_until(lambda: network.agree(ids, 1), 60, "the enrolment block on every node")
        yield network
    finally:
        network.stop()


class Meter:
    """One meter of the cluster: its daemon process (``gridledger meter run``), its configuration, a publisher."""

    def __init__(self, net: Testnet, meter: str, broker: mqtt.Broker, folder: Path, batch_minutes: int = 1) -> None:
        self.net, self.meter, self.broker = net, meter, broker
        made = runner.invoke(
            app,
            ["meter", "init", "--cluster", str(net.folder), "--meter", meter, "--out", str(folder)]
            + ["--broker-port", str(broker.port), "--batch-minutes", str(batch_minutes)],
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

    def transactions(self) -> list[Reading | ReadingBatch]:
        """This meter's READINGs and READING_BATCHes on DC1's chain, in chain order."""
        return [
            tx
            for block in self.net.blocks("DC1")
            for tx in block.transactions
            if isinstance(tx, Reading | ReadingBatch) and tx.member == self.cfg.member
        ]

    def on_chain(self) -> list[tuple[int, int]]:
        """(minute, height) of every reading of this meter on DC1's chain (a batch's minutes each), in chain order
        (duplicates kept)."""
        return [
            (r.minute, block.height)
            for block in self.net.blocks("DC1")
            for tx in block.transactions
            for r in readings_of(tx)
            if r.member == self.cfg.member
        ]

    def spans(self) -> list[tuple[str, int, int]]:
        """(kind, first minute, last minute) of each of this meter's transactions on the chain."""
        out = []
        for tx in self.transactions():
            views = readings_of(tx)
            out.append((type(tx).__name__, views[0].minute, views[-1].minute))
        return out

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

    def make(meter: str, batch_minutes: int = 1) -> Meter:
        broker = mqtt.Broker().start()
        brokers.append(broker)
        made.append(Meter(net, meter, broker, tmp_path, batch_minutes))
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
    allowed = {"held", "queued", "sent", "committed", "rejected", "received", "dropped:replayed", "resent"}
    assert set(counts) <= allowed, counts
    assert counts["held"] == 0 and all(isinstance(tx, Reading) for tx in mi.transactions())  # batch_minutes = 1


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


# ---------------------------------------------------------------------- READING_BATCHes (batch_minutes)
def served(mi: Meter) -> dict[int, int]:
    """Each of the meter's minutes on the chain → its consumption (Wh), asked of DC1 by the minute's own id."""
    client = mi.net.client("DC1")
    out = {}
    for tx in mi.transactions():
        for view in readings_of(tx):
            assert client.tx_status(view.txid)["status"] == "committed"
            out[view.minute] = client.reading(view.txid)["consumption_wh"]
    return out


def status_table(mi: Meter) -> str:
    shown = runner.invoke(app, ["meter", "status", "--config", str(mi.config)], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    return shown.output


def test_batches_of_n_minutes_commit_and_each_minute_is_served_by_its_own_id(meter_of):
    """Batches of 4: minutes 1..12 go out as three READING_BATCHes, 13 and 14 are held (shown by ``meter status``);
    a clean stop sends them as a partial batch, which the next start submits."""
    mi = meter_of("MI5", batch_minutes=4)
    assert "batch_minutes = 4" in mi.config.read_text() and mi.cfg.batch_minutes == 4
    mi.start()
    mi.subscribed()
    mi.measure(stream())  # minutes 1..14
    mi.wait_committed(range(1, 13))
    wait_until(lambda: mi.counts()["held"] == 2, 30, "minutes 13 and 14 held")
    assert mi.spans() == [("ReadingBatch", 1, 4), ("ReadingBatch", 5, 8), ("ReadingBatch", 9, 12)]
    shown = status_table(mi)
    assert "batches of 4 minutes" in shown and "minutes 13..14" in shown, shown
    assert re.search(r"committed\W+12\W+3\W", shown) and re.search(r"held \(not signed yet\)\W+2\W", shown), shown
    mi.stop()  # SIGTERM: the held minutes are signed and queued as one partial batch
    counts = mi.counts()
    assert (counts["held"], counts["queued"] + counts["sent"], counts["flushed:stop"]) == (0, 2, 1), counts
    mi.start()
    mi.wait_committed(MINUTES)
    assert mi.spans()[-1] == ("ReadingBatch", 13, 14)
    mi.check_chain(MINUTES)
    assert served(mi) == {m: m + 10 for m in MINUTES}


def test_held_minutes_survive_a_kill_9_and_a_skipped_minute_flushes_a_partial_batch(meter_of):
    """Batches of 5: minutes 1..3 are held when the daemon is killed, 4 follows after the restart; the board then
    skips minutes 5 and 6 (a silence longer than max_gap_s), so 1..4 go out as a partial batch and a new one starts."""
    mi = meter_of("MI6", batch_minutes=5)
    mi.config.write_text("max_gap_s = 100\n" + mi.config.read_text())  # the board's 120 s silence is a gap
    mi.start()
    mi.subscribed()
    mi.measure(stream(4))  # minutes 1..3, held
    wait_until(lambda: mi.counts()["held"] == 3, 30, "minutes 1..3 held")
    mi.kill()
    assert (mi.counts()["held"], mi.counts()["queued"]) == (3, 0)  # on disk, nothing signed yet
    mi.start()
    mi.measure(list(range(250, 301, STEP_S)))  # minute 4: the fourth held minute
    mi.measure(list(range(420, 901, STEP_S)))  # 120 s of silence: minutes 5, 6 skipped; then 7..14
    mi.wait_committed(range(1, 10))  # nine minutes: 1..4 and 7..11
    wait_until(lambda: mi.counts()["held"] == 3, 30, "minutes 12..14 held")
    assert mi.spans() == [("ReadingBatch", 1, 4), ("ReadingBatch", 7, 11)]
    assert mi.counts()["flushed:gap"] == 1
    # the silence (300, 420] added no energy and sealed no minute; minute 7 is (420, 480], measured from 420 on
    assert served(mi) == {m: m + 10 for m in (1, 2, 3, 4, 7, 8, 9, 10, 11)}


def test_a_quiet_board_flushes_the_held_minutes_after_max_gap_s(meter_of):
    mi = meter_of("MI7", batch_minutes=10)
    mi.config.write_text("max_gap_s = 12\n" + mi.config.read_text())
    mi.start()
    mi.subscribed()
    quiet_from = time.monotonic()
    mi.measure(stream(4))  # minutes 1..3 of a batch of 10, then nothing
    mi.wait_committed(range(1, 4), timeout=60)
    assert time.monotonic() - quiet_from >= 12
    assert mi.spans() == [("ReadingBatch", 1, 3)] and mi.counts()["flushed:quiet"] == 1
    assert served(mi) == {m: m + 10 for m in (1, 2, 3)}


def test_a_batch_size_the_chain_does_not_allow_is_refused_with_the_reason(net, tmp_path):
    def init(n: int):
        return runner.invoke(
            app,
            ["meter", "init", "--cluster", str(net.folder), "--meter", "MI1", "--out", str(tmp_path)]
            + ["--batch-minutes", str(n)],
        )

    refused = init(0)
    assert refused.exit_code == 2 and "batch_minutes must be at least 1" in refused.output, refused.output
    refused = init(61)
    assert refused.exit_code == 2, refused.output
    assert "rule set nan v1, which allows at most 60 minutes in one READING_BATCH" in refused.output
    assert not (tmp_path / "MI1.meter.toml").exists()  # nothing written
    made = init(60)
    assert made.exit_code == 0, made.output
    config = tmp_path / "MI1.meter.toml"
    text = config.read_text()
    config.write_text(text.replace("batch_minutes = 60", "batch_minutes = 61"))
    with pytest.raises(MeterConfigError, match="allows at most 60 minutes"):
        MeterConfig.load(config)
    config.write_text(text.replace("interval_min = 1", "interval_min = 5"))
    with pytest.raises(MeterConfigError, match="needs interval_min = 1"):
        MeterConfig.load(config)
    # a chain whose rule set has no READING_BATCH (coordinator-only PETra)
    key = KeyPair.from_secret("batch-test")
    genesis = Genesis("petra-chain", 900, 1_767_225_600, key.public, (key.public,))
    block = make_block(genesis.chain_id, 0, ZERO_HASH, 1_767_225_600, (genesis,), key)
    (tmp_path / "MI1.genesis").write_text(block.encode().hex())
    with pytest.raises(MeterConfigError, match="rule set petra v1, which has no READING_BATCH"):
        MeterConfig.load(config)
    config.write_text(text.replace("batch_minutes = 60", "batch_minutes = 1"))
    assert MeterConfig.load(config).batch_minutes == 1  # one READING a minute runs on any chain


def test_an_outbox_from_before_batches_is_migrated(tmp_path):
    """An outbox written by the daemon before READING_BATCHes (no first_minute, no held table) opens: every old row
    is one minute, the submitter resumes with the old queued one, and batches are added beside them."""
    path = tmp_path / "old.outbox.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE readings (
            minute INTEGER PRIMARY KEY, txid BLOB NOT NULL, raw BLOB NOT NULL, status TEXT NOT NULL,
            code TEXT, height INTEGER, created REAL NOT NULL, sent REAL, attempts INTEGER NOT NULL DEFAULT 0);
        CREATE INDEX readings_open ON readings (status, minute);
        CREATE TABLE meter (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL);
        CREATE TABLE counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL);
        INSERT INTO readings VALUES (3, x'03', x'aa', 'committed', NULL, 5, 1.0, 1.0, 1);
        INSERT INTO readings VALUES (4, x'04', x'bb', 'queued', NULL, NULL, 2.0, NULL, 0);
        INSERT INTO meter VALUES (1, '{"last_t": 300}');
        INSERT INTO counters VALUES ('committed', 1), ('received', 30);
        """
    )
    db.commit()
    db.close()
    box = Outbox(path)
    try:
        assert [(r.first_minute, r.minute, r.status) for r in box.rows()] == [(3, 3, "committed"), (4, 4, "queued")]
        assert box.next_open().span == "minute 4" and box.last_minute() == 4 and box.held() == []
        assert box.state() == {"last_t": 300}
        counts = box.counts()
        assert (counts["held"], counts["queued"], counts["committed"], counts["received"]) == (0, 1, 1, 30)
        box.record({"last_t": 600}, [(5, 8, b"\x08", b"cc")], ["received"], [(9, {"consumption_wh": 19})])
        box.finish(4, height=6)
        box.finish(8, height=7)
    finally:
        box.close()
    box = Outbox(path)  # again: nothing more to migrate
    try:
        assert [(r.first_minute, r.minute) for r in box.rows()] == [(3, 3), (4, 4), (5, 8)]
        counts = box.counts()
        assert (counts["held"], counts["committed"], box.transactions()["committed"]) == (1, 6, 3)
        assert box.held() == [(9, {"consumption_wh": 19})]
    finally:
        box.close()


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
