"""The ledger-level scenarios: each run on one small network of real processes (etcd, a process per node), and
their building blocks without a network (store tampering, the tiers' fake-price checks)."""

from __future__ import annotations

import random
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests import requires

from gridledger.chain import Chain, verify_store
from gridledger.ledger.assets import EPA, FA, AssetKind, Output
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds.dso_policy import MeterLimits
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.node.testnet import wait_until
from gridledger.petra.dso import DSO
from gridledger.petra.meter import SmartMeter
from gridledger.petra.wallet import Wallet
from gridledger.store.sqlite import SqliteStore
from gridledger.twin.scenarios import RunContext, RunResult, get, scenarios, summarize
from gridledger.twin.scenarios.fake_price import prices_for, tier_attempts
from gridledger.twin.scenarios.ledger_lab import LedgerLab
from gridledger.twin.scenarios.tampered_store import INFLATE, tamper

LEDGER = ("tampered-store", "unregistered-node", "flood", "coordinator-loss", "fake-price")
FAKE_PRICE_CODES = [
    "bad-policy-signature",
    "bad-policy-signature",
    "bad-blk-merkle",
    "bad-blk-signature",
    "bad-policy-fake-price",
    "bad-policy-fake-price",
    "bad-policy-fake-price",
]


def test_the_ledger_scenarios_are_registered_and_need_etcd() -> None:
    for name in LEDGER:
        assert scenarios()[name].needs_etcd and not scenarios()[name].needs_broker
    assert not any(scenarios()[name].needs_etcd for name in ("sensor", "ddos", "fault-tolerance"))


def test_detection_rate_counts_attempts() -> None:
    runs = [
        RunResult("a", False, 0.1, 0, 10, 0, attempts=7, attempts_detected=5),
        RunResult("b", True, 0.3, 1, 10, 0),
    ]
    s = summarize("x", runs)
    assert s.detection_rate == pytest.approx(6 / 8)
    assert s.to_json()["results"][0]["attempts_detected"] == 5
    with pytest.raises(ValueError, match="attempts"):
        RunResult("c", True, 0.1, 0, 1, 0, attempts=2, attempts_detected=3)
    with pytest.raises(ValueError, match="attempts"):
        RunResult("c", True, 0.1, 0, 1, 0, attempts=0)


def test_wait_until_returns_the_value_and_names_what_timed_out() -> None:
    calls = iter([0, None, 7])
    assert wait_until(lambda: next(calls), timeout=5, interval=0.001) == 7
    with pytest.raises(TimeoutError, match="the moon"):
        wait_until(lambda: False, timeout=0.05, what="the moon", interval=0.01)


# ------------------------------------------------------------------ tampering a real store (no network)
START = 1_767_225_600  # slot 0 of the test chain


@pytest.fixture(scope="module")
def chain_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite chain store: genesis, the DSO's policy authorizing meter MI1, and an issue of FA and EPA."""
    path = tmp_path_factory.mktemp("chain") / "chain.sqlite"
    dso, coordinator, meter_key = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    store = SqliteStore(path)
    chain = Chain.create(store, Genesis("nan-test", 900, START, dso.public, (coordinator.public,)), coordinator, START)
    meter = SmartMeter("MI1", meter_key, chain.chain_id, 900, MeterLimits("MI1", 5_000, 5_000, 10_000))
    policy = DSO(dso, chain.chain_id).policy(
        0, prices=(120, 80), authorize={"MI1": meter_key.public}, limits=[meter.limits]
    )
    wallet = Wallet()
    issue = meter.issue([(FA(500), wallet.new_address()), (EPA(1_000, 1, 3), wallet.new_address())], 0)
    for k, tx in enumerate((policy, issue), start=1):
        chain.submit(tx)
        assert not chain.propose(coordinator, START + k).rejected
    store.close()
    return path


def _copy(source: Path, path: Path) -> Path:
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(path)) as dst:
        src.backup(dst)
    return path


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 100_000))
def test_every_tampering_is_found_by_replaying_the_store(chain_file: Path, tmp_path: Path, seed: int) -> None:
    """Any flipped bit of a committed block (even seeds), or an inflated unspent output (odd), fails verification."""
    copy = _copy(chain_file, tmp_path / f"copy-{seed}.sqlite")
    change = tamper(copy, seed)
    store = SqliteStore(copy)
    try:
        with pytest.raises(Reject) as info:
            verify_store(store)
    finally:
        store.close()
    assert ("flipped" in change) == (seed % 2 == 0)
    if seed % 2:
        assert info.value.code == "bad-chain-state"


def test_inflating_an_output_raises_it_by_a_million(chain_file: Path, tmp_path: Path) -> None:
    copy = _copy(chain_file, tmp_path / "copy.sqlite")
    before = _fa_total(copy)
    tamper(copy, 1)
    assert _fa_total(copy) == before + INFLATE


def _fa_total(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        outs = [Output.decode(raw) for (raw,) in db.execute("SELECT output FROM utxos")]
    finally:
        db.close()
    return sum(o.asset.amount for o in outs if o.asset.kind == AssetKind.FA)


# ------------------------------------------------------------------ the tiers' fake-price checks (no network)
@pytest.mark.parametrize("seed", [0, 1])
def test_fake_prices_are_caught_down_the_tiers(seed: int) -> None:
    genuine, fake = prices_for(random.Random(seed))
    outcome = tier_attempts(seed, genuine, fake)
    assert [a.code for a in outcome.attempts] == ["bad-policy-fake-price"] * 3
    assert outcome.holding == outcome.chains == 5  # the genuine price reached every tier
    assert outcome.honest_message_passed


# ------------------------------------------------------------------ on a network of real processes
@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    requires.etcd()
    with LedgerLab(tmp_path_factory.mktemp("ledger") / "network", households=3) as lab:
        yield lab


CASES = [(name, 0) for name in LEDGER] + [("tampered-store", 1)]


@pytest.mark.etcd
@pytest.mark.slow
@pytest.mark.parametrize(("name", "seed"), CASES)
def test_ledger_scenario_detects_without_losing_data(lab: LedgerLab, name: str, seed: int, tmp_path: Path) -> None:
    result = get(name).run(RunContext(seed=seed, households=3, workdir=tmp_path, shared=lab))
    assert result.detected and result.caught == result.attempts, result
    assert result.time_to_detect_s is not None and result.time_to_detect_s >= 0
    assert result.data_lost == 0, result
    assert result.false_alarms == 0 and result.honest_observations > 0, result
    details = result.details
    if name == "tampered-store":
        assert details["tamper_report"] and details["committed_while_down"] > 0
        assert ("bad-chain-state" in details["tamper_report"]) == (seed % 2 == 1)
    if name == "unregistered-node":
        assert details["intruder_answers_2xx"] == 0
    if name == "flood":
        assert details["flood_429"] > 0 and details["honest_429"] == 0
    if name == "coordinator-loss":
        assert details["took_over"] != details["killed"] and details["now_leading"] == details["took_over"]
    if name == "fake-price":
        assert [a["code"] for a in details["attempts"]] == FAKE_PRICE_CODES
    lab.network.wait_agree(lab.nodes, timeout=30)  # the network is whole for the next run (a block in flight may
    # reach one node a moment after another on a loaded machine)


@pytest.mark.etcd
@pytest.mark.slow
def test_a_run_after_a_failed_one_finds_the_network_whole(lab: LedgerLab) -> None:
    victim = lab.meters[-1]
    lab.network.kill(victim)  # as a run that failed half-way could leave it
    assert not lab.network.alive(victim)
    lab.heal()
    assert lab.network.alive(victim)
    lab.network.wait_agree(lab.nodes, timeout=30)
