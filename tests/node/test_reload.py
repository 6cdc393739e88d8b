"""A running node re-reads the ``[[registry]]`` of its configuration file on SIGHUP (``systemctl reload``): a real
``gridledger node`` process with its own chain (in-process orderer, SQLite), called over HTTP. A caller registered by
a reload is served, one removed is refused, a broken file or one without the node's own entry is refused as a whole
(the old registry stays, the node keeps serving), keys other than the registry are named as needing a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from gridledger.chain import Chain
from gridledger.client import ApiError, NodeClient
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.node.auth import AuthError, NodeRegistry, sign_headers
from gridledger.node.config import ConfigError, NodeConfig
from gridledger.node.deploy import node_command, registry_entry, spawn
from gridledger.node.netutil import free_port
from gridledger.node.testnet import wait_until
from gridledger.store.sqlite import SqliteStore

START, SLOT = 1_767_225_600, 900
DC1, DSO, MI9 = (KeyPair.from_secret(f"reload-{n}") for n in ("DC1", "DSO", "MI9"))


def write_config(folder, port: int) -> str:
    """DC1's configuration in ``folder`` (its genesis beside it): it registers itself and the DSO; returns the text."""
    genesis = Genesis("nan-reload", SLOT, START, DSO.public, (DC1.public,))
    block = Chain.create(SqliteStore(":memory:"), genesis, DC1, START).genesis_block.encode()
    (folder / "nan.genesis").write_text(block.hex())
    text = (
        f'node_id = "DC1"\nrole = "concentrator"\nkey_seed = "{DC1.seed.hex()}"\nstore = "DC1.sqlite"\n'
        f'genesis = "nan.genesis"\napi = "127.0.0.1:{port}"\norderer = "inprocess"\n'
    )
    text += registry_entry("DC1", "concentrator", DC1.public) + registry_entry("operator", "dso", DSO.public)
    (folder / "DC1.toml").write_text(text)
    return text


@pytest.fixture
def node(tmp_path):
    """(process, config path, log path, URL, config text) of a running DC1 process; stopped after the test."""
    port = free_port()
    text = write_config(tmp_path, port)
    log = tmp_path / "DC1.log"
    proc = spawn(node_command(sys.executable, "concentrator", str(tmp_path / "DC1.toml")), log)
    url = f"http://127.0.0.1:{port}"
    try:
        with NodeClient(url, "operator", DSO) as dso:
            wait_until(dso.status, 90, "the node to serve")
        yield proc, tmp_path / "DC1.toml", log, url, text
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


def registry(url: str) -> dict:
    with NodeClient(url, "operator", DSO) as dso:
        return dso.status()["registry"]


def served(url: str) -> bool:
    """True if the node serves MI9, False if it refuses it as unregistered (401)."""
    with NodeClient(url, "MI9", MI9) as mi9:
        try:
            mi9.status()
            return True
        except ApiError as e:
            assert (e.status, e.message) == (401, "unregistered node 'MI9'"), e
            return False


def reloaded(proc, url: str, applied: int, refused: int) -> dict:
    """SIGHUP the node and wait until its status counts the reload; its registry figures."""
    os.kill(proc.pid, signal.SIGHUP)
    return wait_until(
        lambda: (r := registry(url))["applied"] == applied and r["refused"] == refused and r, 60, "the reload"
    )


def test_sighup_reloads_the_registry_and_a_bad_file_changes_nothing(node):
    proc, path, log, url, text = node
    assert registry(url) == {"nodes": 2, "applied": 0, "refused": 0, "last_refused": None}
    assert not served(url)  # MI9 is not registered yet

    # registered by a reload (and a changed rate limit: named, not applied)
    path.write_text("rate_limit = { rate = 7, burst = 9 }\n" + text + registry_entry("MI9", "meter", MI9.public))
    assert reloaded(proc, url, 1, 0)["nodes"] == 3
    assert served(url)
    out = log.read_text()
    assert "reloaded the registry from" in out and "only [[registry]] is reloaded" in out and "added MI9" in out
    assert "also changes rate_limit: not reloaded" in out and "restart the node to apply" in out

    # a file that does not load, one that registers a node twice, one without the node itself: refused as a whole
    bad = [
        (text + "[[registry]]\nid = 'MI10'\nrole = 'meter'\npubkey = 'not hex'\n", "registry entry 2 needs id"),
        (text + registry_entry("MI9", "meter", MI9.public) * 2, "node 'MI9' is registered twice"),
        ("node_id = \n" + text, "Invalid value (at line 1"),
        (
            text.split("\n[[registry]]")[0] + registry_entry("operator", "dso", DSO.public),
            "may not remove or change this node's own entry (DC1)",
        ),
    ]
    for refused, (content, message) in enumerate(bad, 1):
        path.write_text(content + registry_entry("MI10", "meter", KeyPair.generate().public))
        figures = reloaded(proc, url, 1, refused)
        assert message in figures["last_refused"] and figures["nodes"] == 3, figures
        assert served(url)  # the registry in force stays; the node keeps serving
        assert "registry reload refused, the 3 registered nodes stay as they were" in log.read_text()
        assert message in log.read_text()

    # removed by a reload: refused from then on
    path.write_text(text)
    assert reloaded(proc, url, 2, len(bad))["nodes"] == 2
    assert not served(url)
    assert "removed MI9" in log.read_text()
    with NodeClient(url, "operator", DSO) as dso:
        metrics = dso.metrics()
    assert "gridledger_registry_reloads_total 2\n" in metrics
    assert f"gridledger_registry_reloads_refused_total {len(bad)}\n" in metrics
    assert proc.poll() is None  # SIGHUP never stopped it


def test_a_request_sees_the_registry_before_or_after_a_swap_never_between():
    """Requests authenticated while another thread swaps the registry in and out: each is accepted or refused as
    unregistered, never fails half-way (a swap between the membership test and the key lookup)."""
    reg = NodeRegistry()
    with_mi9, without = [("MI9", "meter", MI9.public)], [("DC1", "concentrator", DC1.public)]
    stop, errors = threading.Event(), []

    def swap() -> None:
        while not stop.is_set():
            reg.replace(with_mi9)
            reg.replace(without)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    swapper = threading.Thread(target=swap)
    swapper.start()
    outcomes = set()
    try:
        for _ in range(20_000):
            headers = {k.lower(): v for k, v in sign_headers(MI9, "MI9", "GET", "/v1/status").items()}
            try:
                outcomes.add(reg.authenticate(headers, "GET", "/v1/status", b"")[0])
            except AuthError:
                outcomes.add("refused")
            except Exception as e:  # noqa: BLE001 - what the test looks for
                errors.append(e)
    finally:
        stop.set()
        swapper.join()
        sys.setswitchinterval(interval)
    assert not errors, errors[:3]
    assert outcomes == {"MI9", "refused"}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[[registry]]\nid = "MI1"\nrole = "meter"\npubkey = "abcd"\n', "(MI1): pubkey must be 64 hex characters"),
        ('[[registry]]\nid = 7\nrole = "meter"\npubkey = "' + "ab" * 32 + '"\n', "id and role must be non-empty"),
        ("registry = 5\n", "registry must be an array of tables"),
        ("rate_limit = 5\n", "rate_limit must be { rate = N, burst = N }"),
        ("peer_limit = { rate = -1 }\n", "peer_limit must be { rate = N, burst = N }"),
        ('peers = "http://x"\n', "peers must be a list of node API URLs"),
        ("children = 5\n", "children must be a list of genesis file names"),
    ],
)
def test_a_bad_registry_or_limit_is_named(tmp_path, table, message):
    text = write_config(tmp_path, 8101)
    top, _, tables = text.partition("\n[[registry]]")
    if table.startswith("[["):
        (tmp_path / "DC1.toml").write_text(text + table)
    else:
        rest = "" if table.startswith("registry") else "\n[[registry]]" + tables
        (tmp_path / "DC1.toml").write_text(top + "\n" + table + rest)
    with pytest.raises(ConfigError) as e:
        NodeConfig.load(tmp_path / "DC1.toml")
    assert message in str(e.value)


def test_only_changed_keys_other_than_the_registry_need_a_restart(tmp_path):
    text = write_config(tmp_path, 8101)
    path = tmp_path / "DC1.toml"
    before = NodeConfig.load(path)
    path.write_text(text + registry_entry("MI9", "meter", MI9.public))
    assert before.restart_keys(NodeConfig.load(path)) == []
    changed = text.replace("127.0.0.1:8101", "127.0.0.1:8102").replace('"DC1.sqlite"', '"other.sqlite"')
    path.write_text("peers = []\nround_timeout = 5\n" + changed)
    assert before.restart_keys(NodeConfig.load(path)) == ["api", "round_timeout", "store"]
