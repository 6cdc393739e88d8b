"""``gridledger tiers simulate``, ``gridledger prove`` and ``gridledger verify`` of a run folder — and clear one-line
errors (exit 2) instead of tracebacks."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gridledger.cli import app

runner = CliRunner()


def run(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiers") / "sim"
    result = run(
        "tiers",
        "simulate",
        "--out",
        out,
        "--nans",
        "1",
        "--homes",
        "2",
        "--appliances",
        "1",
        "--minutes",
        "6",
        "--anchor-minutes",
        "3",
        "--summary-minutes",
        "3",
    )
    assert result.exit_code == 0, result.output
    assert "han:MI-0-0-1" in result.output
    return out


def test_simulate_writes_a_manifest_and_stores(sim):
    manifest = json.loads((sim / "tiers.json").read_text())
    tiers = [c["tier"] for c in manifest["chains"]]
    assert tiers == ["head", "fan", "nan", "han", "han"]
    assert all((sim / c["store"]).is_file() for c in manifest["chains"])


def test_verify_checks_every_chain_certificate_and_anchor(sim):
    result = run("verify", sim)
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


def test_prove_prints_and_checks_the_path_to_the_head_end(sim, tmp_path):
    proof_file = tmp_path / "proof.json"
    result = run("prove", sim, "--chain", "han:MI-0-0-1", "--minute", "2", "--out", proof_file)
    assert result.exit_code == 0, result.output
    for chain in ("han:MI-0-0-1", "nan:DC-0-0", "fan:FAN-0", "head:utility"):
        assert chain in result.output
    assert "valid" in result.output
    assert run("prove", sim, "--check", proof_file).exit_code == 0
    proof = json.loads(proof_file.read_text())
    proof["links"][1]["tx_path"][0]["hash"] = "00" * 32
    proof_file.write_text(json.dumps(proof))
    result = run("prove", sim, "--check", proof_file)
    assert result.exit_code == 1 and "INVALID" in result.output


def test_verify_detects_a_tampered_store(sim, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(sim, copy)
    manifest = json.loads((copy / "tiers.json").read_text())
    nan_store = copy / next(c["store"] for c in manifest["chains"] if c["tier"] == "nan")
    db = sqlite3.connect(nan_store)
    (data,) = db.execute("SELECT data FROM blocks WHERE height = 2").fetchone()
    db.execute("UPDATE blocks SET data = ? WHERE height = 2", (data[:-1] + bytes([data[-1] ^ 1]),))
    db.commit()
    db.close()
    result = run("verify", copy)
    assert result.exit_code == 1 and "INVALID" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ("prove", "{missing}"),
        ("verify", "{missing}"),
        ("prove", "{sim}", "--txid", "zz"),
        ("prove", "{sim}", "--txid", "00" * 32),
        ("prove", "{sim}", "--chain", "han:nowhere"),
        ("prove", "{sim}", "--member", "9"),
        ("prove", "{sim}", "--check", "{missing}"),
        ("tiers", "simulate", "--out", "{sim}"),
        ("tiers", "simulate", "--out", "{missing}", "--fans", "0"),
        ("tiers", "simulate", "--out", "{missing}", "--price", "-1", "5"),
        ("tiers", "simulate", "--out", "{missing}", "--seed", "-1"),
    ],
)
def test_bad_input_is_a_one_line_error(sim, tmp_path, args):
    result = run(*(a.format(sim=sim, missing=tmp_path / "missing") for a in args))
    assert result.exit_code == 2, result.output


def test_bad_json_is_a_one_line_error(sim, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert run("prove", sim, "--check", bad).exit_code == 2
    bad.write_text(json.dumps({"links": []}))
    assert run("prove", sim, "--check", bad).exit_code == 2
