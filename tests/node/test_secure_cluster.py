"""The default ``cluster up`` is secure: a local CA, etcd with TLS and client certificates, HTTPS node APIs, and a
mosquitto with TLS and per-device certificates (revocable); a real PoEf cluster (3-member etcd, one process per
node) and a real mosquitto. Plain HTTP, missing or foreign certificates and revoked devices are refused; a reading
goes from MQTT to a committed block over TLS all the way."""

from __future__ import annotations

import contextlib
import json
import threading
import tomllib
from dataclasses import replace

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from tests import requires
from tests.node.test_meter_daemon import payload, stream
from typer.testing import CliRunner

from gridledger.cli import app
from gridledger.client import NodeClient, NodeUnreachable
from gridledger.ledger.kinds.reading import Reading
from gridledger.meter.daemon import MeterConfig, MeterDaemon
from gridledger.node import cluster
from gridledger.node.etcd import delete_user, etcd_client, grant_prefix
from gridledger.node.ordering import EtcdOrderer
from gridledger.node.pki import LocalCA, TlsFiles
from gridledger.node.testnet import Testnet, wait_until
from gridledger.twin import mqtt

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    requires.etcd()
    folder = tmp_path_factory.mktemp("secure-cluster")
    cluster.up(folder, meters=2, concentrators=2, rate_limit=(1_000, 2_000), poef=True)  # nan1: MI1, nan2: MI2
    network = Testnet(folder)
    try:
        for nan in ("nan1", "nan2"):
            wait_until(lambda nan=nan: network.agree(network.ids(chain=nan), 1), 60, f"the enrolment block on {nan}")
        yield network
    finally:
        network.stop()


@pytest.fixture(scope="module")
def ca(net) -> LocalCA:
    return LocalCA.load(net.folder / cluster.PKI_DIR)


@pytest.fixture
def stranger(tmp_path) -> TlsFiles:
    """A certificate named like a node (DC1) but issued by another CA."""
    return LocalCA.create(tmp_path / "rogue").issue("DC1")


def test_everything_is_https_and_every_key_is_private(net):
    state = net.state
    assert state["ca"] == str(net.folder / "pki" / "ca.crt")
    assert all(n["url"].startswith("https://") for n in state["nodes"])
    assert all(m["url"].startswith("https://") for m in state["etcd"])
    keys = list((net.folder / "pki").glob("*.key"))
    assert {k.stem for k in keys} >= {"ca", "root", "etcd0", "etcd1", "etcd2", "DC1", "DC1-backup", "DC2", "MI1", "MI2"}
    assert all(k.stat().st_mode & 0o777 == 0o600 for k in keys)
    cfg = tomllib.loads((net.folder / "DC1.toml").read_text())
    assert cfg["tls"] == {"ca": "pki/ca.crt", "cert": "pki/DC1.crt", "key": "pki/DC1.key"}
    assert all(u.startswith("https://") for u in cfg["orderer"] + cfg["peers"])


def test_a_node_api_refuses_plain_http_and_unverified_clients(net):
    url = net.node("DC1")["url"]
    with pytest.raises(httpx.TransportError):  # plain HTTP to the TLS port: no answer
        httpx.get(url.replace("https://", "http://") + "/v1/health", timeout=5)
    with NodeClient(url, "operator", net.operator) as system_cas, pytest.raises(NodeUnreachable) as e:
        system_cas.status()  # the node's certificate is not signed by any CA the system trusts
    assert e.value.tls
    with NodeClient(url, "operator", net.operator, ca=net.ca) as verified:
        assert verified.status()["node_id"] == "DC1"
        assert verified.health()["healthy"]


def refusal(orderer: EtcdOrderer, call) -> str:
    """Why etcd refused ``call(orderer)`` (every member refused it)."""
    try:
        call(orderer)
    except ConnectionError as e:
        return str(e)
    finally:
        orderer.close()
    raise AssertionError("etcd accepted it")


def test_etcd_refuses_clients_without_a_certificate_of_its_ca(net, ca, stranger):
    url = net.state["etcd"][0]["url"]
    chain_key = f"/gridledger/{net.chain_id.hex()}/blocks/{10**6:020d}"
    with pytest.raises(Exception):  # noqa: B017, PT011 - etcd3gw raises its own errors for a refused TLS handshake
        etcd_client(url.replace("https://", "http://"), timeout=3).put(chain_key, "junk")
    verified_only = etcd_client(url, ca.files("DC1"), timeout=3)
    verified_only.session.cert = None  # TLS verifying etcd against the CA, but no client certificate
    with pytest.raises(Exception):  # noqa: B017, PT011
        verified_only.put(chain_key, "junk")
    with pytest.raises(Exception):  # noqa: B017, PT011
        etcd_client(url, TlsFiles(ca.ca_path, stranger.cert, stranger.key), timeout=3).put(chain_key, "junk")
    urls = [m["url"] for m in net.state["etcd"]]
    junk = EtcdOrderer(urls, net.chain_id, tls=TlsFiles(ca.ca_path, stranger.cert, stranger.key))
    with contextlib.closing(junk), pytest.raises(ConnectionError, match="no etcd member answered"):
        junk.publish(10**6, b"junk")  # a non-member's write: refused by every member
    dc1 = ("DC1", tomllib.loads((net.folder / "DC1.toml").read_text())["etcd_password"])
    anonymous = EtcdOrderer(urls, net.chain_id, tls=ca.files("DC1"))  # a certificate of the CA, but no etcd user
    assert "user name is empty" in refusal(anonymous, lambda o: o.publish(10**6, b"junk"))
    nan2 = bytes.fromhex(net.status("DC2")["chain_id"])
    elsewhere = EtcdOrderer(urls, nan2, tls=ca.files("DC1"), auth=dc1)  # DC1's role: its own chain's keys only
    assert "permission denied" in refusal(elsewhere, lambda o: o.publish(10**6, b"junk"))
    assert "permission denied" in refusal(EtcdOrderer(urls, nan2, tls=ca.files("DC1"), auth=dc1), lambda o: o.leader())
    guess = EtcdOrderer(urls, net.chain_id, tls=ca.files("DC1"), auth=("DC1", "guess"))
    assert "authentication failed" in refusal(guess, lambda o: o.leader())
    with contextlib.closing(EtcdOrderer(urls, net.chain_id, tls=ca.files("DC1"), auth=dc1)) as member:
        assert [h for h, _ in member.blocks(1, 1)] == [1]  # the node's own user reads its chain's keys
        assert member.blocks(10**6) == []  # and nothing of the junk got in
        for client in member._clients:  # as after a member restarted: etcd no longer knows the token
            client.session.headers["Authorization"] = "forgotten"
        assert [h for h, _ in member.blocks(1, 1)] == [1]  # logged in again
    root_password = (net.folder / "pki" / "etcd-root.password").read_text()
    assert (net.folder / "pki" / "etcd-root.password").stat().st_mode & 0o777 == 0o600
    admin = etcd_client(url, ca.files("root"), timeout=3, user=("root", root_password))
    grant_prefix(admin, "newcomer", "pw", f"/gridledger/{net.chain_id.hex()}/")
    newcomer = EtcdOrderer(urls, net.chain_id, tls=ca.files("DC1"), auth=("newcomer", "pw"))
    assert [h for h, _ in newcomer.blocks(1, 1)] == [1]
    delete_user(admin, "newcomer")  # revoked: its token and password stop working
    assert "authentication failed" in refusal(newcomer, lambda o: o.leader())  # its token gone, its password too


def test_a_dashboard_shows_the_other_nan_over_tls(net):
    with NodeClient(net.node("DC1")["url"], "operator", net.operator, ca=net.ca) as dc1:
        chains = dc1.http.get("/v1/dashboard").json()["chains"]
    other = [c for c in chains if c.get("node") == "DC2"]  # DC1 fetched it from DC2 over HTTPS, verified by the CA
    assert other and "error" not in other[0], chains


def test_a_reading_is_committed_over_tls_through_the_cli(net):
    minute = 3
    r = runner.invoke(
        app,
        [
            "cluster",
            "reading",
            "--meter",
            "MI2",
            "--minute",
            str(minute),
            "--consumption",
            "42",
            "--dir",
            str(net.folder),
        ],
    )
    assert r.exit_code == 0, r.output
    txid = bytes.fromhex(r.stdout.split("txid ")[1].split()[0])
    assert net.client("DC2").wait(txid, 60)["status"] == "committed"  # MI2 is on nan2
    key = str(net.folder / "keys" / "operator.seed")
    shown = runner.invoke(
        app, ["tx", "status", txid.hex(), "--node", net.node("DC2")["url"], "--key", key, "--ca", net.ca]
    )
    assert shown.exit_code == 0 and "committed at height" in shown.stdout, shown.output
    readings = ["cluster", "readings", "--meter", "MI2", "--via", "DC2", "--dir", str(net.folder)]
    r = runner.invoke(app, readings, env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "42 Wh consumed" in r.stdout


@pytest.fixture
def broker(net, ca):
    requires.mosquitto()
    with mqtt.Broker(tls=ca.files(cluster.MQTT_CERT), crl=ca.crl_path) as b:
        yield b


def meter_config(net, meter: str, broker: mqtt.Broker, out) -> MeterConfig:
    made = runner.invoke(
        app,
        ["meter", "init", "--cluster", str(net.folder), "--meter", meter, "--out", str(out)]
        + ["--broker-port", str(broker.port)],
    )
    assert made.exit_code == 0, made.output
    config = out / f"{meter}.meter.toml"
    config.write_text("max_ahead_s = 3600\npoll_s = 0.1\n" + config.read_text())  # compressed time (see test_meter)
    return MeterConfig.load(config)


def test_mqtt_to_commit_over_tls_with_the_device_certificate(net, broker, tmp_path):
    cfg = meter_config(net, "MI1", broker, tmp_path)
    assert cfg.broker_tls is not None and cfg.node_ca is not None and cfg.node.startswith("https://")
    assert (tmp_path / "MI1.key").stat().st_mode & 0o777 == 0o600
    daemon = MeterDaemon(cfg).start()
    try:
        assert daemon.connected.wait(30), "the daemon did not connect to the TLS broker"
        board = mqtt.connect(broker.port, "smartpi-MI1", tls=cfg.broker_tls)  # the meter board, same device
        try:
            for t in stream(3):  # minutes 1 and 2
                board.publish(cfg.topic, payload("MI1", cfg.start_time, t), qos=1).wait_for_publish(10)
        finally:
            mqtt.close(board)
        wait_until(lambda: daemon.outbox.counts().get("committed", 0) >= 2, 90, "MI1's readings committed")
    finally:
        daemon.stop()
    minutes = [
        tx.minute
        for block in net.blocks("DC1")
        for tx in block.transactions
        if isinstance(tx, Reading) and tx.member == cfg.member
    ]
    assert minutes == [1, 2]


def test_mqtt_refuses_plain_anonymous_foreign_and_revoked_devices(net, ca, broker, stranger, tmp_path):
    with pytest.raises(mqtt.MqttError):  # plain MQTT to the TLS listener
        mqtt.connect(broker.port, "plain", timeout_s=3)
    anonymous = paho.Client(CallbackAPIVersion.VERSION2, client_id="anonymous")
    anonymous.tls_set(str(ca.ca_path))  # TLS verifying the broker, but no client certificate
    accepted = threading.Event()
    anonymous.on_connect = lambda _c, _u, _f, reason, _p: reason.is_failure or accepted.set()
    with contextlib.suppress(OSError):  # refused in the handshake (TLS 1.2) or right after it (TLS 1.3)
        anonymous.connect("127.0.0.1", broker.port)
        anonymous.loop_start()
    assert not accepted.wait(3)
    anonymous.loop_stop()
    assert "peer did not return a certificate" in broker.log_path.read_text()
    with pytest.raises(mqtt.MqttError):  # a certificate of another CA
        mqtt.connect(broker.port, "rogue", tls=TlsFiles(ca.ca_path, stranger.cert, stranger.key), timeout_s=3)
    mi2 = meter_config(net, "MI2", broker, tmp_path)
    device = mi2.broker_tls
    mqtt.close(mqtt.connect(broker.port, "MI2-before", tls=device, timeout_s=5))  # valid: accepted
    ca.revoke(device.cert)
    assert json.loads((ca.folder / "revoked.json").read_text())  # the CRL lists it
    broker.stop()  # mosquitto reads the CRL when it starts
    broker.start()
    with pytest.raises(mqtt.MqttError):
        mqtt.connect(broker.port, "MI2-revoked", tls=device, timeout_s=5)
    daemon = MeterDaemon(replace(mi2, broker_port=broker.port)).start()  # MI2's daemon, with the revoked certificate
    try:  # refused, logged and counted; it keeps running (and retrying)
        wait_until(lambda: daemon.outbox.counts().get("broker:refused", 0) >= 2, 30, "MI2's daemon to be refused")
        assert not daemon.connected.is_set() and daemon._submitter.is_alive()
    finally:
        daemon.stop()
    assert "certificate verify failed" in broker.log_path.read_text()  # the broker logs each refusal
    other = ca.issue("MI1", out=tmp_path / "mi1")
    other = TlsFiles(ca.ca_path, other.cert, other.key)
    mqtt.close(mqtt.connect(broker.port, "MI1-still", tls=other, timeout_s=5))  # the others still get in


def test_insecure_is_plain_and_says_so(tmp_path):
    requires.etcd()
    folder = tmp_path / "plain"
    r = runner.invoke(app, ["cluster", "up", "--meters", "1", "--coordinator-only", "--insecure", "--dir", str(folder)])
    try:
        assert r.exit_code == 0, r.output
        assert "WARNING: --insecure" in r.stderr and "plain HTTP without authentication" in " ".join(r.stderr.split())
        state = json.loads((folder / "cluster.json").read_text())
        assert state["ca"] is None and not (folder / "pki").exists()
        assert all(n["url"].startswith("http://") for n in state["nodes"] + state["etcd"])
    finally:
        cluster.down(folder)
