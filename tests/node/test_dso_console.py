"""The DSO console (``gridledger dso``) against a real PoEf cluster (3-member etcd, one process per node): changes
are signed, submitted over the API, committed by the chain and shown; bad input is one line and exit 2."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime

import pytest
from tests import requires
from typer.testing import CliRunner

from gridledger.cli import app
from gridledger.client import ApiError, NodeClient
from gridledger.ledger.crypto import KeyPair
from gridledger.node import cluster
from gridledger.node.add_meter import add_meter
from gridledger.node.config import NodeConfig
from gridledger.node.deploy import MANIFEST
from gridledger.node.netutil import free_port
from gridledger.node.testnet import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    requires.etcd()
    folder = tmp_path_factory.mktemp("dso-cluster")
    state = cluster.up(folder, meters=2, concentrators=1, poef=True)
    try:
        urls = {n["id"]: n["url"] for n in state["nodes"]}
        # cluster up returns once the nodes answer; the enrolment policy (nonce 1) may still be on its way
        wait_until(lambda: _nonce((folder, urls)) >= 1, 60, "the enrolment policy committed")
        yield folder, urls
    finally:
        cluster.down(folder)


def dso(net, *args: str, via: str = "DC1"):
    folder, urls = net
    argv = ["dso", *args, "--node", urls[via], "--key", str(folder / "keys" / "operator.seed")]
    argv += ["--ca", str(folder / "pki" / "ca.crt")]  # the cluster is TLS (the default): verify it against its CA
    return CliRunner().invoke(app, argv)


def _nonce(net) -> int:
    r = dso(net, "show", "--json")
    return json.loads(r.stdout)["nonce"] if r.exit_code == 0 else -1


def timeline(net, via: str = "DC1") -> dict:
    r = dso(net, "show", "--json", via=via)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def one_line_error(r, *words: str) -> None:
    assert r.exit_code == 2, r.output
    text = r.stderr.strip()
    assert text.startswith("error:") and "Traceback" not in r.output, text
    assert " ".join(text.split()).count("error:") == 1
    for w in words:
        assert w in " ".join(text.split()), text


def test_the_cluster_key_is_private_and_a_looser_copy_is_refused(net, tmp_path):
    folder, urls = net
    seed = folder / "keys" / "operator.seed"
    assert seed.stat().st_mode & 0o777 == 0o600
    loose = tmp_path / "operator.seed"
    shutil.copy(seed, loose)
    loose.chmod(0o640)
    r = CliRunner().invoke(app, ["dso", "show", "--node", urls["DC1"], "--key", str(loose)])
    one_line_error(r, "--key", "mode 0640", "chmod 600")


def test_changes_are_committed_and_the_timeline_shows_what_is_in_force(net):
    before = timeline(net)
    assert before["nonce"] == 1  # the enrolment of MI1 and MI2 by cluster up
    assert {m["meter"]: m["status"] for m in before["in_force"]["meters"]} == {"MI1": "authorized", "MI2": "authorized"}

    r = dso(net, "prices", "--consumption", "120", "--production", "90")
    assert r.exit_code == 0, r.output
    assert "policy 2" in r.stdout and "committed at height" in r.stdout
    newcomer = KeyPair.generate().public.hex()
    assert dso(net, "authorize", "--meter", "MI9", "--pubkey", newcomer).exit_code == 0
    r = dso(net, "limits", "--meter", "MI9", "--max-epa", "3000", "--max-eca", "2500", "--credit", "5000")
    assert r.exit_code == 0, r.output
    later = datetime.fromtimestamp(before["start_time"] + (before["current_slot"] + 3) * before["slot_seconds"], UTC)
    r = dso(net, "ban", "--meter", "MI2", "--at", later.isoformat())
    assert r.exit_code == 0, r.output

    view = wait_until(lambda: (v := timeline(net, via="DC1-backup"))["nonce"] == 5 and v, 30, "the backup's timeline")
    force = view["in_force"]
    assert force["prices"] == [120, 90]
    meters = {m["meter"]: m for m in force["meters"]}
    assert meters["MI9"]["status"] == "authorized" and meters["MI9"]["pubkey"] == newcomer
    assert meters["MI9"]["limits"] == {"max_epa_w": 3000, "max_eca_w": 2500, "credit_fa": 5000}
    assert meters["MI2"]["status"] == "authorized"  # the ban is scheduled, not yet in force
    ban = view["policies"][-1]
    assert ban["ban"] == ["MI2"] and not ban["in_force"] and ban["effective_slot"] == before["current_slot"] + 3
    assert [p["nonce"] for p in view["policies"]] == [1, 2, 3, 4, 5] and all(p["height"] for p in view["policies"])

    r = dso(net, "show")
    assert r.exit_code == 0, r.output
    for text in ("120 consumption, 90 production", "MI9", "3000", "scheduled", "ban MI2", "authorize MI9"):
        assert text in r.stdout, text


def test_bad_input_is_one_line_and_changes_nothing(net):
    before = timeline(net)
    one_line_error(
        dso(net, "prices", "--consumption", "1", "--production", "1", "--at", "2020-01-01T00:00:00Z"),
        "--at 2020-01-01T00:00:00Z",
        "in the past",
    )
    one_line_error(dso(net, "ban", "--meter", "MI77"), "--meter MI77", "no such meter", "MI1")
    one_line_error(dso(net, "limits", "--meter", "MI77", "--max-epa", "1", "--max-eca", "1", "--credit", "1"), "MI77")
    one_line_error(dso(net, "prices", "--consumption", "1", "--production", "1", "--at", "tomorrow"), "--at 'tomorrow'")
    one_line_error(dso(net, "authorize", "--meter", "MI8", "--pubkey", "abc"), "--pubkey", "64 hex")
    folder, urls = net
    gone = f"http://127.0.0.1:{free_port()}"
    r = CliRunner().invoke(app, ["dso", "show", "--node", gone, "--key", str(folder / "keys" / "operator.seed")])
    one_line_error(r, f"--node {gone}", "did not answer")
    r = CliRunner().invoke(app, ["dso", "show", "--node", urls["DC1"], "--key", str(folder / "keys" / "operator.seed")])
    one_line_error(r, f"--node {urls['DC1']}", "TLS refused", "--ca")  # an https node, not verified: refused
    seed = str(folder / "keys" / "operator.seed")
    r = CliRunner().invoke(app, ["dso", "show", "--node", urls["DC1"], "--key", seed, "--ca", seed])
    one_line_error(r, "--ca", "not a readable PEM certificate")
    after = timeline(net)
    assert after["nonce"] == before["nonce"] and after["policies"] == before["policies"]


def _added(folder) -> list[dict]:
    """The nodes ``add_meter`` added to the cluster's plan (its deployment.json)."""
    return [n for n in json.loads((folder / MANIFEST).read_text())["nodes"] if n.get("added")]


def test_added_meters_are_authorized_only_in_the_order_they_were_added(tmp_path):
    """``cluster add-meter`` prints ``dso authorize … --member N``: authorizing the second added meter first is
    refused before anything is submitted, naming the meter to authorize first; in the order added, both commit. The
    running nodes serve the added meters after `cluster reload` (SIGHUP), without a restart."""
    requires.etcd()
    state = cluster.up(tmp_path, meters=2, concentrators=1, poef=True)
    try:
        net = (tmp_path, {n["id"]: n["url"] for n in state["nodes"]})
        wait_until(lambda: _nonce(net) >= 1, 60, "the enrolment policy committed")
        first, second = (add_meter(tmp_path, m, "nan1", "local", free_port()) for m in ("MI10", "MI11"))
        assert (first.member, second.member) == (2, 3)
        # the running nodes take the added meters' registry entries on `cluster reload` (SIGHUP), not a restart
        key = NodeConfig.load(next(n["config"] for n in _added(tmp_path) if n["id"] == "MI10")).key
        with NodeClient(net[1]["DC1"], "MI10", key, ca=str(tmp_path / "pki" / "ca.crt")) as mi10:
            with pytest.raises(ApiError) as refused:
                mi10.status()
            assert refused.value.status == 401
            r = CliRunner().invoke(app, ["cluster", "reload", "--dir", str(tmp_path)])
            assert r.exit_code == 0 and "reloading: DC1, DC1-backup, MI1, MI2" in r.stdout, r.output
            wait_until(mi10.status, 30, "DC1 to serve MI10")
        one_line_error(CliRunner().invoke(app, ["cluster", "reload", "--dir", str(tmp_path), "--node", "MI77"]), "MI77")

        def run(added, *extra: str):
            command = added.authorize[0].split()
            assert (
                command[:3] == ["gridledger", "dso", "authorize"] and f"--member {added.member}" in added.authorize[0]
            )
            return CliRunner().invoke(app, [*command[1:], *extra])

        before = timeline(net)
        one_line_error(run(second), "--member 3", "MI11 would become member 2", "authorize MI10 (member 2) first")
        one_line_error(
            run(first, "--member", "1"), "--member 1", "member 1 is MI2 already", "MI10 would become member 2"
        )
        assert timeline(net)["policies"] == before["policies"]  # nothing submitted
        for added in (first, second):
            r = run(added)
            assert r.exit_code == 0 and "committed at height" in r.stdout, r.output
        view = timeline(net)
        assert [a["meter"] for p in view["policies"] for a in p["authorize"]] == ["MI1", "MI2", "MI10", "MI11"]
        # an enrolled meter keeps its index: authorized again (a new key) only as that member
        one_line_error(run(first, "--member", "3"), "--member 3", "MI10 is member 2 of this chain already")
    finally:
        cluster.down(tmp_path)
