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
