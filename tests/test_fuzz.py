"""Fuzzing in CI: a short budget of ``benchmarks/fuzz.py`` over every target, and hypothesis properties of the
decoders (any bytes: only the documented error; whatever decodes re-encodes to the same bytes)."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridledger.ledger.block import Block
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds import decode_transaction
from gridledger.ledger.transactions import TxKind
from gridledger.twin import envelope
from gridledger.twin.messages import Announce, MessageError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import fuzz  # noqa: E402

#: Inputs per target in CI (the benchmark runs a time budget of its own).
CI_INPUTS = 1_500


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    ts = fuzz.all_targets(tmp_path_factory.mktemp("fuzz"))
    yield {t.name: t for t in ts}
    for t in ts:
        t.close()


def test_every_decoder_and_the_api_is_a_target(targets):
    kinds = {f"tx-{k.name.lower()}" for k in TxKind}
    others = {"block", "qc", "mqtt-envelope", "mqtt-smartpi", "mqtt-announce", "mqtt-access", "onion-cell"}
    assert kinds | others | {"bidstore", "api"} == set(targets)
    assert all(t.seeds for t in targets.values())


def test_the_seeds_are_valid_inputs(targets):
    """Mutations start from inputs that go deep: every seed passes its decoder."""
    for name in (*(f"tx-{k.name.lower()}" for k in TxKind), "block", "qc"):
        for seed in targets[name].seeds:
            decoded = Block.decode(seed) if name in ("block", "qc") else decode_transaction(seed)
            assert decoded.encode() == seed


@pytest.mark.parametrize("name", sorted(f"tx-{k.name.lower()}" for k in TxKind) + ["block", "qc"])
def test_ledger_decoders_do_not_crash(targets, name):
    result = fuzz.fuzz(targets[name], inputs=CI_INPUTS, seed=7)
    assert result.inputs == CI_INPUTS
    assert not result.crashes, result.crashes[0][1]


@pytest.mark.parametrize(
    "name", ["mqtt-envelope", "mqtt-smartpi", "mqtt-announce", "mqtt-access", "onion-cell", "bidstore", "api"]
)
def test_network_decoders_and_the_api_do_not_crash(targets, name):
    inputs = 300 if name == "api" else CI_INPUTS
    result = fuzz.fuzz(targets[name], inputs=inputs, seed=7)
    assert result.inputs == inputs
    assert not result.crashes, result.crashes[0][1]


def test_the_harness_reports_a_crash():
    """A decoder that lets an undocumented error out on some inputs is caught (the fuzzer is not vacuous)."""

    def fragile(data: bytes) -> None:
        if len(data) > 3 and data[3] == 0xFF:
            raise KeyError("boom")
        raise Reject("bad-x", "refused")

    target = fuzz.Target("fragile", [b"\x00\x01\x02\x03\x04"], fragile, (Reject,))
    result = fuzz.fuzz(target, inputs=5_000, seed=1)
    assert result.crashes and "KeyError" in result.crashes[0][1]


def test_inputs_that_meet_a_new_outcome_join_the_corpus(tmp_path):
    def coded(data: bytes) -> None:
        if data and data[0] % 3:
            raise Reject(f"bad-x-{data[0] % 3}", "refused")

    target = fuzz.Target("coded", [b"\x00\x00"], coded, (Reject,))
    result = fuzz.fuzz(target, inputs=2_000, seed=3)
    outcomes = {(d[0] % 3) if d else 0 for d in result.new}
    assert result.new and len(outcomes) == len(result.new)  # one input per outcome the seed did not meet
    assert fuzz.save_corpus("coded", result.new, tmp_path) == len(result.new)
    assert fuzz.save_corpus("coded", result.new, tmp_path) == 0  # named by content: kept once
    corpus = fuzz.load_corpus("coded", tmp_path)
    assert sorted(corpus) == sorted(result.new)
    again = fuzz.fuzz(target, inputs=len(corpus) + 1, seed=4, corpus=corpus)
    assert again.inputs == len(corpus) + 1  # the corpus is fed first, then mutated


def test_the_ledger_sums_every_run_and_tops_up_what_is_short(tmp_path):
    ledger = tmp_path / "ledger.tsv"
    fuzz.append_ledger([("block", "mutation", 400_000, 0, 100.0), ("api", "mutation", 10, 1, 1.0)], ledger)
    fuzz.append_ledger([("block", "atheris", 500_000, 0, 20.0)], ledger)
    assert fuzz.ledger_totals(ledger) == {"block": (900_000, 0), "api": (10, 1)}
    assert ledger.read_text().splitlines()[0].split("\t") == list(fuzz.LEDGER_COLUMNS)
    ran = fuzz.Result("block", inputs=50_000, seconds=10.0)
    ((name, secs),) = fuzz.topups([ran], fuzz.ledger_totals(ledger))
    assert name == "block" and secs == pytest.approx(1.05 * 50_000 / 5_000)  # 50,000 short at 5,000 inputs/s
    assert fuzz.topups([fuzz.Result("block", inputs=100_000, seconds=1.0)], fuzz.ledger_totals(ledger)) == []


def test_the_committed_ledger_names_only_targets(targets):
    totals = fuzz.ledger_totals()
    assert set(totals) <= set(targets)


# ------------------------------------------------------------------------------------------- properties
_FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FAST
@given(st.binary(max_size=600))
def test_any_bytes_decode_to_a_transaction_or_a_reject(raw):
    try:
        tx = decode_transaction(raw)
    except Reject:
        return
    assert tx.encode() == raw  # canonical: nothing else decodes


@_FAST
@given(st.binary(max_size=600))
def test_any_bytes_decode_to_a_block_or_a_reject(raw):
    try:
        block = Block.decode(raw)
    except Reject:
        return
    assert block.encode() == raw


@_FAST
@given(st.sampled_from(list(TxKind)), st.binary(max_size=300))
def test_any_body_after_a_valid_kind_byte_decodes_or_is_rejected(kind, body):
    raw = bytes([1, int(kind)]) + body
    try:
        tx = decode_transaction(raw)
    except Reject:
        return
    assert tx.encode() == raw and kind == tx.KIND


@_FAST
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=6),
        max_leaves=20,
    )
)
def test_any_json_is_an_envelope_or_its_documented_rejection(obj):
    for raw in (
        json.dumps(obj).encode(),
        json.dumps(
            {"v": 1, "serial": "SP-1", "counter": 0, "kind": "report", "nonce": obj, "ct": obj, "sig": obj}
        ).encode(),
    ):
        with contextlib.suppress(envelope.EnvelopeRejected):
            envelope.parse(raw)
        with contextlib.suppress(MessageError):
            Announce.parse(raw)
