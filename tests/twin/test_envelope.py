"""The signed, encrypted envelope: round trip, tamper evidence, and a corpus of malformed inputs."""

from __future__ import annotations

import base64
import json
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from gridledger.twin import envelope
from gridledger.twin.envelope import EnvelopeRejected

KEY = SigningKey(b"\x01" * 32)
AES = b"\x02" * 16
payloads = st.dictionaries(
    st.text(max_size=8), st.one_of(st.integers(-(2**53), 2**53), st.text(max_size=20), st.booleans()), max_size=6
)


def sealed(payload: dict | None = None, counter: int = 7, kind: str = "report") -> bytes:
    return envelope.seal(KEY, AES, "m1", counter, kind, payload if payload is not None else {"P": 1})


@settings(deadline=None)
@given(payload=payloads, counter=st.integers(0, 2**62))
def test_round_trip(payload: dict, counter: int) -> None:
    env = envelope.parse(sealed(payload, counter))
    env.verify(KEY.verify_key.encode())
    assert env.decrypt(AES) == payload
    assert (env.serial, env.counter, env.kind) == ("m1", counter, "report")


def test_payload_is_not_visible() -> None:
    raw = sealed({"Voltage": 231.5, "secret": "household-42"})
    assert b"Voltage" not in raw and b"household-42" not in raw


def test_wrong_signer_is_bad_signature() -> None:
    env = envelope.parse(sealed())
    with pytest.raises(EnvelopeRejected) as exc:
        env.verify(SigningKey.generate().verify_key.encode())
    assert exc.value.code == envelope.BAD_SIGNATURE


def _edit(raw: bytes, **fields: object) -> bytes:
    obj = json.loads(raw)
    obj.update(fields)
    return json.dumps(obj).encode()


def test_changed_counter_breaks_signature() -> None:
    env = envelope.parse(_edit(sealed(), counter=8))
    with pytest.raises(EnvelopeRejected) as exc:
        env.verify(KEY.verify_key.encode())
    assert exc.value.code == envelope.BAD_SIGNATURE


def test_changed_ciphertext_breaks_signature_and_tag() -> None:
    obj = json.loads(sealed())
    ct = bytearray(base64.b64decode(obj["ct"]))
    ct[0] ^= 1
    env = envelope.parse(_edit(sealed(), ct=base64.b64encode(bytes(ct)).decode()))
    with pytest.raises(EnvelopeRejected) as exc:
        env.verify(KEY.verify_key.encode())
    assert exc.value.code == envelope.BAD_SIGNATURE
    with pytest.raises(EnvelopeRejected) as exc:
        env.decrypt(AES)
    assert exc.value.code == envelope.BAD_CIPHERTEXT


def test_wrong_aes_key_is_bad_ciphertext() -> None:
    with pytest.raises(EnvelopeRejected) as exc:
        envelope.parse(sealed()).decrypt(os.urandom(16))
    assert exc.value.code == envelope.BAD_CIPHERTEXT


GOOD = json.loads(sealed())
MALFORMED = {
    "not json": b"{not json",
    "not an object": b"[1, 2]",
    "missing field": json.dumps({k: v for k, v in GOOD.items() if k != "sig"}).encode(),
    "extra field": json.dumps({**GOOD, "x": 1}).encode(),
    "bad version": json.dumps({**GOOD, "v": 2}).encode(),
    "serial with slash": json.dumps({**GOOD, "serial": "a/b"}).encode(),
    "negative counter": json.dumps({**GOOD, "counter": -1}).encode(),
    "boolean counter": json.dumps({**GOOD, "counter": True}).encode(),
    "float counter": json.dumps({**GOOD, "counter": 1.5}).encode(),
    "unknown kind": json.dumps({**GOOD, "kind": "exfiltrate"}).encode(),
    "nonce not base64": json.dumps({**GOOD, "nonce": "***"}).encode(),
    "short nonce": json.dumps({**GOOD, "nonce": base64.b64encode(b"123").decode()}).encode(),
    "short signature": json.dumps({**GOOD, "sig": base64.b64encode(b"123").decode()}).encode(),
    "ciphertext not text": json.dumps({**GOOD, "ct": 5}).encode(),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_envelopes_are_rejected(case: str) -> None:
    with pytest.raises(EnvelopeRejected) as exc:
        envelope.parse(MALFORMED[case])
    assert exc.value.code == envelope.MALFORMED


def test_oversize_envelope() -> None:
    with pytest.raises(EnvelopeRejected) as exc:
        envelope.parse(b" " * (envelope.MAX_ENVELOPE_BYTES + 1))
    assert exc.value.code == envelope.OVERSIZE


def test_non_object_payload_is_malformed_payload() -> None:
    raw = envelope.seal(KEY, AES, "m1", 1, "report", {"x": 1})
    env = envelope.parse(raw)
    # re-encrypt a JSON list under the same header to reach the payload check
    ct = AESGCM(AES).encrypt(env.nonce, b"[1]", envelope.canonical(env.header()))
    with pytest.raises(EnvelopeRejected) as exc:
        envelope.Envelope(env.serial, env.counter, env.kind, env.nonce, ct, env.signature).decrypt(AES)
    assert exc.value.code == envelope.MALFORMED_PAYLOAD


@pytest.mark.parametrize(("kind", "counter"), [("bogus", 1), ("report", -1)])
def test_seal_refuses_bad_arguments(kind: str, counter: int) -> None:
    with pytest.raises(ValueError):
        envelope.seal(KEY, AES, "m1", counter, kind, {})


def test_canonical_is_key_order_independent() -> None:
    assert envelope.canonical({"b": 1, "a": [1, 2]}) == envelope.canonical({"a": [1, 2], "b": 1})
