"""``gridledger attack``: list, run (tables and JSON), and clean errors."""

from __future__ import annotations

import json

import pytest
import typer
from tests import requires
from typer.testing import CliRunner

from gridledger.cli import twin
from gridledger.node import etcd
from gridledger.node.etcd import EtcdUnavailable
from gridledger.twin import mqtt

root = typer.Typer()
root.add_typer(twin.app, name="attack")
runner = CliRunner()


def test_list_names_every_scenario() -> None:
    result = runner.invoke(root, ["attack", "list"])
    assert result.exit_code == 0
    names = ("sensor", "spoofing", "hardware", "energy", "sniffing", "ddos", "leakage", "fault-tolerance")
    for name in names + ("tampered-store", "unregistered-node", "flood", "coordinator-loss", "fake-price"):
        assert name in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["attack", "run", "nope"], "unknown scenario"),
        (["attack", "run", "sensor", "--runs", "0"], "runs"),
        (["attack", "run", "sensor", "--seed", "-1"], "seed"),
        (["attack", "run", "sensor", "--households", "1"], "households"),
    ],
)
def test_bad_arguments_exit_2(args: list[str], message: str) -> None:
    result = runner.invoke(root, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_missing_broker_is_a_clean_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mqtt, "mosquitto_binary", lambda: None)
    result = runner.invoke(root, ["attack", "run", "sensor"])
    assert result.exit_code == 2 and "mosquitto is not installed" in result.output


@pytest.mark.mqtt
@requires.needs_mosquitto
def test_run_json() -> None:
    result = runner.invoke(root, ["attack", "run", "spoofing", "--json", "--seed", "2"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["scenario"] == "spoofing" and out["runs"] == 1
    assert out["detection_rate"] == 1.0 and out["data_lost"] == 0
    assert set(out) >= {"false_alarm_rate", "mean_time_to_detect_s"}
    assert "forged and replayed" in out["results"][0]["injected"]


def test_missing_etcd_is_a_clean_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> str:
        raise EtcdUnavailable("etcd is not installed: apt-get install etcd-server")

    monkeypatch.setattr(etcd, "etcd_binary", missing)
    result = runner.invoke(root, ["attack", "run", "flood"])
    assert result.exit_code == 2 and "etcd is not installed" in result.output and "Traceback" not in result.output


def test_a_missing_community_file_is_a_clean_error(tmp_path) -> None:
    result = runner.invoke(root, ["attack", "run", "sensor", "--community", str(tmp_path / "none.toml")])
    assert result.exit_code == 2 and "does not exist" in result.output


@pytest.mark.etcd
@pytest.mark.slow
def test_ledger_run_json_two_runs_on_one_network() -> None:
    requires.etcd()
    result = runner.invoke(root, ["attack", "run", "unregistered-node", "--json", "--runs", "2", "--households", "2"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["scenario"] == "unregistered-node" and out["runs"] == 2
    assert out["detection_rate"] == 1.0 and out["false_alarm_rate"] == 0.0 and out["data_lost"] == 0
    assert all(r["attempts"] == r["attempts_detected"] > 1 for r in out["results"])


@requires.needs_mosquitto
def test_more_households_than_homes_is_a_clean_error() -> None:
    result = runner.invoke(root, ["attack", "run", "sensor", "--households", "11"])
    assert result.exit_code == 2 and "has 10 homes, fewer than 11" in result.output
