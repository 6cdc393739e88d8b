"""A deployment across machines: the deployment file's validation, the per-host plan, and the plan running.

The running test spreads three "hosts" over three network namespaces (a bridge between them, each namespace its own
address; skipped when ``ip netns`` is not permitted) or over 127.0.0.11-13: a 3-member etcd cluster (one member per
host), a NAN whose primary and backup concentrators each have their own PostgreSQL server, three meters. Every
process is started from the ``ExecStart`` line of its generated systemd unit, inside its host's namespace; the etcd
bootstrap runs in the DSO's namespace through the CLI; readings commit on every node.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from tests import requires
from tests.node.test_meter_daemon import payload
from typer.testing import CliRunner

from gridledger.cli import app
from gridledger.client import ApiError, NodeClient
from gridledger.devices.meter_device import measurement_topic
from gridledger.ledger.kinds import decode_transaction
from gridledger.ledger.kinds.dso_policy import DsoPolicy
from gridledger.ledger.kinds.reading import ContentKeys
from gridledger.meter.daemon import MeterConfig
from gridledger.meter.outbox import Outbox
from gridledger.node import cluster
from gridledger.node.config import NodeConfig
from gridledger.node.deploy import (
    MANIFEST,
    MQTT_PORT,
    UNIT_DIR,
    Deployment,
    DeploymentError,
    admin_tls,
    exec_start,
    start_unit,
    write_plan,
)
from gridledger.node.etcd import delete_user, etcd_binary, etcd_client
from gridledger.node.netutil import wait_port
from gridledger.node.pki import LocalCA, TlsFiles
from gridledger.node.poef_board import EtcdPoefOrderer
from gridledger.node.testnet import Testnet, wait_until
from gridledger.store.pgserver import PgServer
from gridledger.twin import mqtt

runner = CliRunner()

DEPLOYMENT = """
name = "feeder7"
dso = "ops"
mqtt = "ops"

[[host]]
name = "ops"
address = "10.20.0.10"
dns = ["ops.feeder7.example"]

[[host]]
name = "dc1"
address = "10.20.0.11"

[[host]]
name = "dc2"
address = "10.20.0.12"

[[host]]
name = "home1"
address = "10.20.1.1"

[[etcd]]
host = "ops"

[[etcd]]
host = "dc1"

[[etcd]]
host = "dc2"

[[nan]]
name = "nan1"
primary = { id = "DC1", host = "dc1", store = "postgresql:///gridledger_dc1?host=/run/postgresql" }
backup = { id = "DC1-backup", host = "dc2", store = "postgresql:///gridledger_dc1b?host=/run/postgresql" }
meters = [{ id = "MI1", host = "home1" }, { id = "MI2", host = "dc1", port = 8444 }]
"""


def _load(tmp_path: Path, text: str) -> Deployment:
    path = tmp_path / "deployment.toml"
    path.write_text(text)
    return Deployment.load(path)


def test_a_valid_deployment_loads(tmp_path):
    dep = _load(tmp_path, DEPLOYMENT)
    assert [m.name for m in dep.etcd] == ["etcd-ops", "etcd-dc1", "etcd-dc2"]
    assert [(n.id, n.role, n.host, n.port) for n in dep.nodes][2:] == [
        ("MI1", "meter", "home1", 8443),
        ("MI2", "meter", "dc1", 8444),
    ]
    assert dep.endpoints()[0] == "https://10.20.0.10:2379"


BAD = [
    ("duplicate host", ('name = "dc2"', 'name = "dc1"'), "host 'dc1' is defined twice"),
    ("same address", ('"10.20.0.12"', '"10.20.0.11"'), "have the same address"),
    ("address not IP", ('"10.20.1.1"', '"home-one"'), "address 'home-one' is not an IP address"),
    ("even etcd", ('[[etcd]]\nhost = "dc2"\n', ""), "2 members; a deployment needs 3 or 5"),
    ("unknown etcd host", ('host = "dc2"\n\n[[nan]]', 'host = "dc9"\n\n[[nan]]'), "unknown host 'dc9'"),
    ("unknown dso", ('dso = "ops"', 'dso = "nowhere"'), "dso: unknown host 'nowhere'"),
    ("unknown node host", ('host = "home1" }', 'host = "home2" }'), "node 'MI1': unknown host 'home2'"),
    ("no backup", ("backup = {", "standby = {"), "NAN 'nan1' has no backup concentrator"),
    ("no meters", ("meters = [", "old_meters = ["), "NAN 'nan1' has no meters"),
    ("port clash", ("port = 8444", "port = 8443"), "port 8443 on host 'dc1' is already used by node 'DC1'"),
    ("port clash etcd", ("port = 8444", "port = 2379"), "port 2379 on host 'dc1' is already used by etcd member"),
    ("duplicate node", ('id = "MI2"', 'id = "MI1"'), "'MI1' is used twice"),
    ("bad node id", ('id = "MI2"', 'id = "MI 2"'), "name 'MI 2': letters, digits"),
    ("port type", ("port = 8444", 'port = "8444"'), "node 'MI2': 'port' must be a int"),
    ("consensus", ('mqtt = "ops"', 'mqtt = "ops"\nconsensus = "pow"'), "consensus must be 'poef' or 'coordinator'"),
    ("store path", ('"postgresql:///gridledger_dc1?host=/run/postgresql"', '"/srv/x.sqlite"'), "store must be"),
    ("install key", ('mqtt = "ops"', 'mqtt = "ops"\ninstall = { prefix = "/opt" }'), "unknown key 'prefix'"),
    ("toml", ('name = "feeder7"', "name = "), "deployment.toml"),
    ("missing name", ('name = "feeder7"', ""), "missing key 'name'"),
    ("daemon host", ('host = "home1" }', 'host = "home1", daemon = "home9" }'), "'MI1': daemon: unknown host 'home9'"),
    ("daemon of a DC", ('host = "dc1", store', 'host = "dc1", daemon = "dc1", store'), "only a meter has a meter"),
    ("reserved host", ('name = "home1"', 'name = "meters"'), "host name 'meters' is reserved"),
    ("batch of a DC", ('host = "dc1", store', 'host = "dc1", batch_minutes = 5, store'), "only a meter has a meter"),
    ("batch over cap", ('host = "home1" }', 'host = "home1", batch_minutes = 61 }'), "61 is not in 1..60"),
    ("batch zero", ('host = "home1" }', 'host = "home1", batch_minutes = 0 }'), "'MI1': batch_minutes 0 is not in"),
    ("batch type", ('host = "home1" }', 'host = "home1", batch_minutes = "5" }'), "'batch_minutes' must be a int"),
]


@pytest.mark.parametrize(("case", "edit", "message"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_deployment_file_names_its_error(tmp_path, case, edit, message):
    assert edit[0] in DEPLOYMENT, case
    with pytest.raises(DeploymentError, match=None) as err:
        _load(tmp_path, DEPLOYMENT.replace(edit[0], edit[1], 1))
    assert message in str(err.value)


def test_only_a_poef_nan_needs_meters(tmp_path):
    text = DEPLOYMENT.replace("meters = [", "old_meters = [")
    assert (
        _load(tmp_path, text.replace('mqtt = "ops"', 'mqtt = "ops"\nconsensus = "coordinator"')).nodes[-1].id
        == "DC1-backup"
    )


def test_a_meter_daemon_needs_a_broker_and_poef(tmp_path):
    text = DEPLOYMENT.replace('host = "home1" }', 'host = "home1", daemon = "home1" }')
    for edit in (('mqtt = "ops"', ""), ('mqtt = "ops"', 'mqtt = "ops"\nconsensus = "coordinator"')):
        with pytest.raises(DeploymentError, match="'MI1': a meter daemon needs an MQTT broker"):
            _load(tmp_path, text.replace(*edit))


def test_the_plan_gives_each_host_exactly_its_part(tmp_path):
    (tmp_path / "deployment.toml").write_text(DEPLOYMENT)
    out = tmp_path / "plan"
    r = runner.invoke(app, ["cluster", "plan", str(tmp_path / "deployment.toml"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    files = {
        h: {p.relative_to(out / h).as_posix() for p in (out / h).rglob("*") if p.is_file()}
        for h in ("ops", "dc1", "dc2", "home1")
    }
    # secrets: the operator key and the CA key only on the DSO's host; each node's key only on its own host
    assert {"keys/operator.seed", "pki/ca.key", "bootstrap.json", MANIFEST} <= files["ops"]
    for h in ("dc1", "dc2", "home1"):
        assert not any(f.startswith("keys/") or f in ("pki/ca.key", "bootstrap.json") for f in files[h]), h
    assert {"DC1.toml", "MI2.toml", "pki/DC1.key", "pki/MI2.key", "pki/etcd-dc1.key", "nan1.genesis"} <= files["dc1"]
    assert not any("MI1" in f or "DC1-backup" in f for f in files["dc1"])
    assert {f for f in files["home1"] if f.endswith(".key")} == {"pki/MI1.key"}
    assert "mosquitto/mosquitto.conf" in files["ops"] and "mosquitto/mosquitto.conf" not in files["dc1"]
    for h in files:
        for f in files[h]:
            if f.endswith((".key", ".toml")) or f in ("bootstrap.json", "keys/operator.seed"):
                assert (out / h / f).stat().st_mode & 0o077 == 0, f"{h}/{f} is readable by others"
    # certificates carry the hosts' real addresses and names
    cert = x509.load_pem_x509_certificate((out / "ops" / "pki" / "etcd-ops.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "ops.feeder7.example" in san.get_values_for_type(x509.DNSName)
    assert "10.20.0.10" in {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    ca = x509.load_pem_x509_certificate((out / "home1" / "pki" / "ca.crt").read_bytes())
    x509.load_pem_x509_certificate((out / "home1" / "pki" / "MI1.crt").read_bytes()).verify_directly_issued_by(ca)
    # etcd: the three members, TLS with client certificates on both URLs
    yaml = (out / "dc1" / "etcd" / "etcd-dc1.yaml").read_text()
    assert "etcd-ops=https://10.20.0.10:2380,etcd-dc1=https://10.20.0.11:2380,etcd-dc2=https://10.20.0.12:2380" in yaml
    assert yaml.count("client-cert-auth: true") == 2 and '"https://10.20.0.11:2379"' in yaml
    # systemd units: one per process, hardened, restarted, run as the dedicated user from the install folder; a
    # node's `systemctl reload` sends it SIGHUP (it re-reads its registry), etcd's has no reload
    unit = (out / "dc1" / UNIT_DIR / "gridledger-DC1.service").read_text()
    for line in ("Restart=on-failure", "User=gridledger", "NoNewPrivileges=yes", "ProtectSystem=strict"):
        assert line in unit
    assert "\nExecReload=/bin/kill -HUP $MAINPID\n" in unit
    assert "ExecReload" not in (out / "dc1" / UNIT_DIR / "gridledger-etcd-etcd-dc1.service").read_text()
    assert exec_start(out / "dc1" / UNIT_DIR / "gridledger-DC1.service") == [
        "/opt/gridledger/bin/python", "-m", "gridledger", "node", "--role", "concentrator",
        "--config", "/var/lib/gridledger/DC1.toml",
    ]  # fmt: skip
    assert sorted(p.name for p in (out / "home1" / UNIT_DIR).iterdir()) == ["gridledger-MI1.service"]
    assert "gridledger-etcd-etcd-dc1.service" in (out / "dc1" / "install.sh").read_text()
    assert subprocess.run(["sh", "-n", str(out / "dc1" / "install.sh")]).returncode == 0  # valid shell
    cfg = (out / "dc1" / "DC1.toml").read_text()
    assert 'api = "10.20.0.11:8443"' in cfg and "postgresql:///gridledger_dc1?host=/run/postgresql" in cfg
    again = runner.invoke(app, ["cluster", "plan", str(tmp_path / "deployment.toml"), "--out", str(out)])
    assert again.exit_code != 0 and "exists" in again.output  # never over an earlier plan (its keys, its CA)


def test_the_plan_gives_every_meter_its_daemon_folder(tmp_path):
    """MI1's daemon runs on home1 (its folder and unit there) and batches 15 minutes; MI2's runs on no host (its
    folder in plan/meters/), a READING a minute."""
    text = DEPLOYMENT.replace('host = "home1" }', 'host = "home1", daemon = "home1", batch_minutes = 15 }')
    (tmp_path / "deployment.toml").write_text(text)
    out = tmp_path / "plan"
    r = runner.invoke(app, ["cluster", "plan", str(tmp_path / "deployment.toml"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "meter daemon MI1" in r.output
    manifest = json.loads((out / "ops" / MANIFEST).read_text())
    chain_id = bytes.fromhex(manifest["chains"]["nan1"]["chain_id"])
    content = ContentKeys(bytes.fromhex((out / "ops" / "keys" / "content.root").read_text()))
    ca = x509.load_pem_x509_certificate((out / "ops" / "pki" / "ca.crt").read_bytes())
    for meter, folder, member in (("MI1", out / "home1" / "meters" / "MI1", 0), ("MI2", out / "meters" / "MI2", 1)):
        cfg = MeterConfig.load(folder / f"{meter}.meter.toml")
        node = next(n for n in manifest["nodes"] if n["id"] == meter)
        assert node["daemon"] == folder.relative_to(out).as_posix()
        assert (cfg.meter_id, cfg.member, cfg.chain_id, cfg.node) == (meter, member, chain_id, node["url"])
        assert cfg.key.public.hex() == node["pubkey"]  # it signs as the meter
        assert cfg.content_key == content.chain(chain_id).member_key(member)
        assert (cfg.broker_host, cfg.broker_port, cfg.topic) == ("10.20.0.10", 8883, measurement_topic(meter))
        assert cfg.batch_minutes == (15 if meter == "MI1" else 1) == node["batch_minutes"]
        assert cfg.broker_tls is not None and cfg.node_ca == folder / "ca.crt"
        device = x509.load_pem_x509_certificate(cfg.broker_tls.cert.read_bytes())
        device.verify_directly_issued_by(ca)
        assert device.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == meter  # its MQTT user
        for secret in (f"{meter}.seed", f"{meter}.content", f"{meter}.key"):
            assert (folder / secret).stat().st_mode & 0o077 == 0, secret
    assert "pattern readwrite gridledger/meters/%u/#" in (out / "ops" / "mosquitto" / "acl").read_text()
    assert exec_start(out / "home1" / UNIT_DIR / "gridledger-meter-MI1.service") == [
        "/opt/gridledger/bin/python", "-m", "gridledger", "meter", "run",
        "--config", "/var/lib/gridledger/meters/MI1/MI1.meter.toml",
    ]  # fmt: skip
    assert "gridledger-meter-MI1.service" in (out / "home1" / "install.sh").read_text()
    assert not (out / "dc1" / "meters").exists() and (out / "meters" / "README").exists()


def test_add_meter_issues_its_keys_node_and_daemon_and_prints_the_dso_command(tmp_path):
    (tmp_path / "deployment.toml").write_text(DEPLOYMENT)
    out = tmp_path / "plan"
    assert runner.invoke(app, ["cluster", "plan", str(tmp_path / "deployment.toml"), "--out", str(out)]).exit_code == 0
    add = ["cluster", "add-meter", str(out), "MI9", "--nan", "nan1", "--host", "home9", "--address", "10.20.1.9"]
    r = runner.invoke(app, [*add, "--daemon", "home9", "--batch-minutes", "10"])
    assert r.exit_code == 0, r.output
    manifest = json.loads((out / "ops" / MANIFEST).read_text())
    entry = manifest["nodes"][-1]
    assert (entry["id"], entry["member"], entry["added"], entry["host"]) == ("MI9", 2, True, "home9")
    cfg = MeterConfig.load(out / "home9" / "meters" / "MI9" / "MI9.meter.toml")
    assert cfg.batch_minutes == 10
    assert cfg.key.public.hex() == entry["pubkey"] and cfg.member == 2 and cfg.node == "https://10.20.1.9:8443"
    chain_id = bytes.fromhex(manifest["chains"]["nan1"]["chain_id"])
    content = ContentKeys(bytes.fromhex((out / "ops" / "keys" / "content.root").read_text()))
    assert cfg.content_key == content.chain(chain_id).member_key(2)
    ca = x509.load_pem_x509_certificate((out / "ops" / "pki" / "ca.crt").read_bytes())
    device = x509.load_pem_x509_certificate(cfg.broker_tls.cert.read_bytes())
    device.verify_directly_issued_by(ca)
    assert device.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "MI9"
    # its node, and every node of its NAN registers it (the plan's configurations, to copy to their hosts)
    own = NodeConfig.load(out / "home9" / "MI9.toml")
    assert own.key.public == cfg.key.public and own.content_key == cfg.content_key
    assert {rid for rid, _, _ in own.registry} == {"operator", "DC1", "DC1-backup", "MI1", "MI2", "MI9"}
    for host, node in (("dc1", "DC1"), ("dc2", "DC1-backup"), ("home1", "MI1"), ("dc1", "MI2")):
        registry = {rid: pub for rid, _, pub in NodeConfig.load(out / host / f"{node}.toml").registry}
        assert registry["MI9"] == cfg.key.public, node
        assert (out / host / f"{node}.toml").stat().st_mode & 0o077 == 0
    assert {p.name for p in (out / "home9" / UNIT_DIR).iterdir()} == {
        "gridledger-MI9.service",
        "gridledger-meter-MI9.service",
    }
    users = json.loads((out / "ops" / "bootstrap.json").read_text())["users"]
    assert users[-1]["user"] == "MI9" and users[-1]["prefix"] == f"/gridledger/{chain_id.hex()}/"
    # the DSO console authorizes it: the command (which checks that it becomes member 2), not a policy written here
    authorize = (
        f"gridledger dso authorize --meter MI9 --pubkey {entry['pubkey']} --member 2 --node https://10.20.0.11:8443"
    )
    assert authorize in r.output
    assert (
        "systemctl reload gridledger-<node>" in r.output and "re-reads its registry, no restart" in r.output
    )  # the nodes re-read
    assert "--key /var/lib/gridledger/keys/operator.seed --ca /var/lib/gridledger/pki/ca.crt" in r.output
    assert "gridledger dso limits --meter MI9 --max-epa 5000" in r.output
    # the next one is the next member; mistakes are named
    r = runner.invoke(
        app, ["cluster", "add-meter", str(out), "MI10", "--nan", "nan1", "--host", "home9", "--port", "8444"]
    )
    assert r.exit_code == 0 and "MI10: member 3 of nan1" in r.output, r.output
    for args, message in (
        ([*add[:4], "--nan", "nan1", "--host", "home1", "--port", "8450"], "'MI9' is used twice"),
        ([*add[:3], "MI11", "--nan", "nan7", "--host", "home1"], "--nan 'nan7': no such NAN"),
        ([*add[:3], "MI11", "--nan", "nan1", "--host", "home7"], "node 'MI11': unknown host 'home7'"),
        ([*add[:3], "MI11", "--nan", "nan1", "--host", "home1", "--batch-minutes", "90"], "batch_minutes 90 is not in"),
        (
            [*add[:3], "MI11", "--nan", "nan1", "--host", "home9"],
            "port 8443 on host 'home9' is already used by node 'MI9'",
        ),
        (
            [*add[:3], "MI11", "--nan", "nan1", "--host", "home1", "--address", "10.20.1.2"],
            "host 'home1' is in the plan",
        ),
        (["cluster", "add-meter", str(tmp_path), "MI11", "--nan", "nan1", "--host", "home1"], "not a plan folder"),
    ):
        r = runner.invoke(app, args)
        assert r.exit_code != 0 and message in r.output, (args, r.output)
    assert json.loads((out / "ops" / MANIFEST).read_text())["nodes"][-1]["id"] == "MI10"  # refusals changed nothing


# ------------------------------------------------------------------------------------------------- running the plan


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def namespaces():
    """Three network namespaces on one bridge (10.231.N.1-3, the test itself at .254); skip if not permitted."""
    tag = f"{os.getpid() % 10000}"
    names, bridge, net = [f"gl{tag}{c}" for c in "abc"], f"glbr{tag}", f"10.231.{os.getpid() % 250}"
    try:
        _ip("link", "add", bridge, "type", "bridge")
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"cannot create network namespaces here (ip link add: {getattr(e, 'stderr', e)!r})")
    try:
        _ip("addr", "add", f"{net}.254/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for i, ns in enumerate(names, 1):
            _ip("netns", "add", ns)
            _ip("link", "add", f"{ns}v", "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", f"{ns}v", "master", bridge, "up")
            _ip("-n", ns, "addr", "add", f"{net}.{i}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield {f"h{i}": (f"{net}.{i}", ["ip", "netns", "exec", ns]) for i, ns in enumerate(names, 1)}
    except subprocess.CalledProcessError as e:
        pytest.skip(f"cannot set up network namespaces here: {e.stderr!r}")
    finally:
        for ns in names:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)


@pytest.fixture
def loopback():
    """Three "hosts" on 127.0.0.11-13 of this machine."""
    return {f"h{i}": (f"127.0.0.1{i}", []) for i in (1, 2, 3)}


def _deployment(hosts: dict, pg: list[PgServer]) -> str:
    lines = ['name = "nstest"', 'dso = "h1"', 'mqtt = "h1"', "[install]", f'python = "{sys.executable}"']
    lines += [f'etcd = "{etcd_binary()}"', 'user = "root"']
    for h, (address, _) in hosts.items():
        lines += ["[[host]]", f'name = "{h}"', f'address = "{address}"', "[[etcd]]", f'host = "{h}"']
    dsn = [f"postgresql://postgres@/gridledger?host={p.base / 'socket'}&port={p.port}" for p in pg]
    lines += ["[[nan]]", 'name = "nan1"']
    lines += [f'primary = {{ id = "DC1", host = "h1", store = "{dsn[0]}" }}']
    lines += [f'backup = {{ id = "DC1-backup", host = "h2", store = "{dsn[1]}" }}']
    meters = '{ id = "MI1", host = "h2", port = 8444 }, { id = "MI2", host = "h3", daemon = "h3" }, '
    meters += '{ id = "MI3", host = "h3", port = 8444 }'
    lines += [f"meters = [{meters}]"]
    return "\n".join(lines) + "\n"


@pytest.mark.slow
@pytest.mark.etcd
@pytest.mark.postgres
@pytest.mark.parametrize("where", ["namespaces", "loopback"])
def test_a_planned_deployment_runs_from_its_units(tmp_path, request, where):
    requires.etcd()
    requires.postgres()
    hosts = request.getfixturevalue(where)
    pg = [PgServer.start(), PgServer.start()]  # each concentrator its own server (its socket folder: any namespace)
    for server in pg:
        server.create_database("gridledger")
    out = tmp_path / "plan"
    (tmp_path / "deployment.toml").write_text(_deployment(hosts, pg))
    # a real install folder is /var/lib/gridledger; here each host's folder is installed where it was written
    dep = Deployment.load(tmp_path / "deployment.toml")
    assert dep.install.python == sys.executable and dep.install.root == "/var/lib/gridledger"
    dep.install = replace(dep.install, root=None)
    manifest = write_plan(dep, out)
    dso = out / "h1"
    state = dict(manifest, nodes=[], etcd=[])
    started: list[subprocess.Popen] = []  # mosquitto and the meter daemon (cluster.down stops the rest)
    try:
        for m in manifest["etcd"]:
            unit = out / m["host"] / UNIT_DIR / f"gridledger-etcd-{m['name']}.service"
            proc = start_unit(unit, out / m["host"] / f"{m['name']}.log", hosts[m["host"]][1])
            state["etcd"].append(m | {"pid": proc.pid})
        (dso / cluster.STATE_FILE).write_text(json.dumps(state))  # cluster.down stops whatever started
        boot = subprocess.run(
            [*hosts["h1"][1], sys.executable, "-m", "gridledger", "cluster", "bootstrap", "--dir", str(dso)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert boot.returncode == 0, boot.stdout + boot.stderr
        _bootstrap_again(dso, manifest)
        for n in manifest["nodes"]:
            unit = out / n["host"] / UNIT_DIR / f"gridledger-{n['id']}.service"
            proc = start_unit(unit, out / n["host"] / f"{n['id']}.log", hosts[n["host"]][1])
            state["nodes"].append(n | {"pid": proc.pid})
        (dso / cluster.STATE_FILE).write_text(json.dumps(state))
        net = Testnet(dso)
        ids = net.ids()
        wait_until(lambda: net.agree(ids, 1), 120, "the enrolment block on every node")
        txids = []
        for meter in ("MI1", "MI2", "MI3"):  # through the CLI, from outside every namespace
            args = ["cluster", "reading", "--meter", meter, "--minute", "3", "--consumption", "42", "--dir", str(dso)]
            r = runner.invoke(app, args)
            assert r.exit_code == 0, r.output
            txids.append(bytes.fromhex(r.stdout.split("txid ")[1].split()[0]))
        for txid in txids:
            assert net.client("DC1").wait(txid, 90)["status"] == "committed"
        height = max(net.client("DC1").tx_status(t)["height"] for t in txids)
        net.wait_agree(ids, at_least=height, timeout=90)  # on every node, in every namespace
        # MI2 (host h3) reaches the etcd member on h1 over TLS with its own certificate and etcd user: its chain's
        # keys only
        cfg = out / "h3" / "MI2.toml"
        probe = (
            "import sys, tomllib; from pathlib import Path; from gridledger.node.etcd import etcd_client;"
            "from gridledger.node.pki import TlsFiles; c = tomllib.loads(Path(sys.argv[1]).read_text());"
            "t = TlsFiles(*(Path(sys.argv[1]).parent / c['tls'][k] for k in ('ca', 'cert', 'key')));"
            "e = etcd_client(sys.argv[2], t, 5, ('MI2', c['etcd_password']));"
            "print(len(e.get_prefix(sys.argv[3])) > 0);"
            "print(e.get('/gridledger/elsewhere'))"
        )
        prefix = f"/gridledger/{manifest['chains']['nan1']['chain_id']}/"
        r = subprocess.run(
            [*hosts["h3"][1], sys.executable, "-c", probe, str(cfg), manifest["etcd"][0]["url"], prefix],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.stdout.startswith("True"), r.stdout + r.stderr
        assert r.stderr.rstrip().endswith("Forbidden"), r.stderr[-500:]  # another chain's key: refused
        _meter_daemon_commits(out, hosts, manifest, net, started)
        _add_meter_and_authorize(out, dso, hosts, state, net)
        # each concentrator wrote its own PostgreSQL server
        for server in pg:
            import psycopg

            with psycopg.connect(server.url("gridledger")) as db:
                tables = db.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0]
            assert tables > 0
    finally:
        for proc in started:
            proc.terminate()
            proc.wait(15)
        if (dso / cluster.STATE_FILE).exists():
            cluster.down(dso)
        for server in pg:
            server.stop()


def _bootstrap_again(dso: Path, manifest: dict) -> None:
    """A second bootstrap finishes what is missing (a node's etcd user, deleted here) and leaves what is done (access
    control, the other users, the enrolment: still one DSO policy queued); a third finds everything in place."""
    tls = admin_tls(dso)
    root = ("root", (dso / "pki" / "etcd-root.password").read_text())
    admin = etcd_client(manifest["etcd"][1]["url"], tls, 5, root)
    delete_user(admin, "MI3")
    admin.session.close()
    again = runner.invoke(app, ["cluster", "bootstrap", "--dir", str(dso)])
    assert again.exit_code == 0, again.output
    assert "done: etcd users made: MI3 " in again.output, again.output
    assert "already in place: etcd's access control is on" in again.output
    assert "already in place: 4 of 5 node users in etcd" in again.output
    assert "already in place: nan1: the meters' enrolment is queued" in again.output
    third = runner.invoke(app, ["cluster", "bootstrap", "--dir", str(dso)])
    assert third.exit_code == 0 and "everything was in place already" in third.output, third.output
    assert "done:" not in third.output
    chain = manifest["chains"]["nan1"]["chain_id"]
    orderer = EtcdPoefOrderer([m["url"] for m in manifest["etcd"]], bytes.fromhex(chain), tls=tls, auth=root)
    try:
        queued = [decode_transaction(raw) for _, raw in orderer.pending(100)]
    finally:
        orderer.close()
    assert [type(tx) for tx in queued] == [DsoPolicy]  # the enrolment, once


def _meter_daemon_commits(out: Path, hosts: dict, manifest: dict, net: Testnet, started: list) -> None:
    """The planned broker (h1) and MI2's planned meter daemon (h3) run from their units: MI2's board publishes
    SmartPi measurements with MI2's device certificate and the daemon's reading is committed. The broker refuses a
    certificate of another CA, and MI2's certificate cannot publish into MI1's topics."""
    h1, h3 = hosts["h1"], hosts["h3"]
    started.append(start_unit(out / "h1" / UNIT_DIR / "gridledger-mosquitto.service", out / "h1" / "mqtt.log", h1[1]))
    wait_port(MQTT_PORT, 20, h1[0])
    daemon = out / "h3" / UNIT_DIR / "gridledger-meter-MI2.service"
    started.append(start_unit(daemon, out / "h3" / "meter-MI2.log", h3[1]))
    mi2, mi1 = out / "h3" / "meters" / "MI2", out / "meters" / "MI1"  # MI1 has no daemon host: the plan's meters/
    device = TlsFiles(mi2 / "ca.crt", mi2 / "MI2.crt", mi2 / "MI2.key")
    cfg = MeterConfig.load(mi2 / "MI2.meter.toml")
    assert cfg.node == "https://" + h3[0] + ":8443" and cfg.broker_host == h1[0]
    board = mqtt.connect(MQTT_PORT, "smartpi-MI2", host=h1[0], tls=device)
    mi1_device = TlsFiles(mi1 / "ca.crt", mi1 / "MI1.crt", mi1 / "MI1.key")
    other = mqtt.connect(MQTT_PORT, "smartpi-MI1", host=h1[0], tls=mi1_device)
    heard: list[bytes] = []
    other.on_message = lambda _c, _u, msg: heard.append(msg.payload)
    other.subscribe(measurement_topic("MI1"), qos=1)
    try:
        start = manifest["chains"]["nan1"]["start"]
        outbox = mi2 / "MI2.outbox.sqlite"

        def probe() -> bool:  # its first measurement, again until the daemon has it (repeats: dropped as replayed)
            board.publish(cfg.topic, payload("MI2", start, 240), qos=1).wait_for_publish(10)
            time.sleep(0.5)
            return outbox.exists() and _outbox_counts(outbox).get("received", 0) > 0

        wait_until(probe, 60, "MI2's daemon to receive its board's measurements")
        for t in range(250, 301, 10):  # chain minute 4 (minutes 0..3 were reported through the CLI)
            board.publish(cfg.topic, payload("MI2", start, t), qos=1).wait_for_publish(10)
        other.publish(measurement_topic("MI1"), b"MI1's own", qos=1).wait_for_publish(10)
        wait_until(lambda: heard == [b"MI1's own"], 10, "MI1's device to hear its own topic")
        board.publish(measurement_topic("MI1"), b"not MI2's topic", qos=1).wait_for_publish(10)

        def minute_4() -> list[dict]:
            return [r for r in net.client("DC1").readings("MI2")["readings"] if r["minute"] == 4]

        wait_until(lambda: minute_4(), 90, "MI2's daemon's reading of minute 4 committed")
        assert minute_4()[0]["consumption_wh"] == 14  # 840 W for 60 s
        assert heard == [b"MI1's own"]  # MI2's publication into MI1's topics was dropped by the ACL
    finally:
        mqtt.close(board)
        mqtt.close(other)
    rogue = LocalCA.create(out / "rogue-ca").issue("MI2", out=out / "rogue")  # right name, wrong CA
    with pytest.raises(mqtt.MqttError):
        mqtt.connect(MQTT_PORT, "rogue", host=h1[0], tls=TlsFiles(device.ca, rogue.cert, rogue.key), timeout_s=5)


def _add_meter_and_authorize(out: Path, dso: Path, hosts: dict, state: dict, net: Testnet) -> None:
    """``cluster add-meter`` on the running deployment: the running nodes of its NAN take its registry entry on a
    reload (SIGHUP, what ``systemctl reload`` sends), no restart; bootstrap again makes its etcd user; its node, started
    from its unit, follows the chain; the DSO console command it prints, run as printed, commits the meter's
    authorization, and the meter's reading commits."""
    r = runner.invoke(app, ["cluster", "add-meter", str(out), "MI4", "--nan", "nan1", "--host", "h3", "--port", "8445"])
    assert r.exit_code == 0 and "MI4: member 3 of nan1" in r.output, r.output
    assert "systemctl reload gridledger-<node>" in r.output and "re-reads its registry, no restart" in r.output
    added = json.loads((dso / MANIFEST).read_text())["nodes"][-1]
    key = NodeConfig.load(added["config"]).key
    nan = [n for n in state["nodes"] if n["chain"] == "nan1"]

    def answered() -> set[str]:  # the nodes that serve MI4's signed requests
        ok = set()
        for n in nan:
            with NodeClient(n["url"], "MI4", key, ca=net.ca) as mi4:
                try:
                    mi4.status()
                    ok.add(n["id"])
                except ApiError as e:
                    assert e.status == 401, e
        return ok

    assert answered() == set()  # their configurations register MI4, but the running nodes have not read them
    for n in nan:
        os.kill(n["pid"], signal.SIGHUP)
    wait_until(lambda: answered() == {n["id"] for n in nan}, 60, "every node of nan1 to reload its registry")
    boot = runner.invoke(app, ["cluster", "bootstrap", "--dir", str(dso)])
    assert boot.exit_code == 0 and "done: etcd users made: MI4 " in boot.output, boot.output
    unit = out / "h3" / UNIT_DIR / "gridledger-MI4.service"
    state["nodes"].append(added | {"pid": start_unit(unit, out / "h3" / "MI4.log", hosts["h3"][1]).pid})
    (dso / cluster.STATE_FILE).write_text(json.dumps(state))  # cluster.down stops it too
    command = next(
        line.split() for line in r.output.splitlines() if line.strip().startswith("gridledger dso authorize")
    )
    assert command[command.index("--member") + 1] == "3"
    done = runner.invoke(app, [*command[1:], "--wait", "90"])
    assert done.exit_code == 0 and "committed at height" in done.output, done.output
    show = runner.invoke(app, ["dso", "show", "--json", *command[command.index("--node") :]])
    meters = {m["meter"]: m["status"] for m in json.loads(show.stdout)["in_force"]["meters"]}
    assert meters == {"MI1": "authorized", "MI2": "authorized", "MI3": "authorized", "MI4": "authorized"}, meters
    height = net.client("DC1").status()["height"]
    net.wait_agree(["DC1", "MI4"], at_least=height, timeout=120)  # its node follows the chain
    args = ["cluster", "reading", "--meter", "MI4", "--minute", "3", "--consumption", "7", "--dir", str(dso)]
    reading = runner.invoke(app, args)  # through MI4's own node
    assert reading.exit_code == 0, reading.output
    txid = bytes.fromhex(reading.stdout.split("txid ")[1].split()[0])
    st = net.client("MI4").wait(txid, 90)  # the node it was queued at knows it pending until its fate is known
    assert st["status"] == "committed", st
    wait_until(lambda: net.client("DC1").tx_status(txid)["status"] == "committed", 60, "the reading on DC1")
    with NodeClient(nan[0]["url"], "MI4", key, ca=net.ca) as mi4:  # DC1 serves MI4 its own reading
        assert [v["consumption_wh"] for v in mi4.readings("MI4")["readings"]] == [7]


def _outbox_counts(path: Path) -> dict[str, int]:
    box = Outbox(path)
    try:
        return box.counts()
    finally:
        box.close()
