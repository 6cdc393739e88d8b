"""Hardware identities, sealed provisioning, discovery announces and access requests."""

from __future__ import annotations

import json

import pytest
from nacl.exceptions import CryptoError
from nacl.signing import SigningKey

from gridledger.twin.identity import Credentials, HardwareIdentity, IdentityError, check_serial, seal_to, unseal
from gridledger.twin.messages import AccessRequest, Announce, MessageError


@pytest.mark.parametrize("serial", ["", "a/b", "a+b", "#", "x" * 65, "a b", None, 5])
def test_bad_serials_are_refused(serial: object) -> None:
    with pytest.raises(IdentityError):
        check_serial(serial)  # type: ignore[arg-type]


def test_credentials_round_trip_and_identity() -> None:
    creds = Credentials.generate("meter-1")
    again = Credentials.from_hex(creds.to_hex())
    assert again == creds
    assert creds.identity == HardwareIdentity("meter-1", creds.signing_key.verify_key.encode())


@pytest.mark.parametrize(
    "record", [{}, {"serial": "m", "seed": "zz", "aes_key": "00" * 16}, {"serial": "m", "seed": "00", "aes_key": "00"}]
)
def test_bad_credentials_records(record: dict) -> None:
    with pytest.raises(IdentityError):
        Credentials.from_hex(record)


def test_identity_needs_32_byte_key() -> None:
    with pytest.raises(IdentityError):
        HardwareIdentity("m1", b"short")


def test_sealed_secret_opens_only_for_its_device() -> None:
    device, other = Credentials.generate("m1"), Credentials.generate("m2")
    sealed = seal_to(device.identity, b"aes-key-16-bytes")
    assert unseal(device.seed, sealed) == b"aes-key-16-bytes"
    with pytest.raises(CryptoError):
        unseal(other.seed, sealed)


def test_announce_round_trip_and_tamper() -> None:
    key = SigningKey.generate()
    raw = Announce.make(key, "m1", {"ID": 1, "Name": "Iron", "On": 0})
    announce = Announce.parse(raw)
    assert announce.verify_key == key.verify_key.encode() and announce.twin["Name"] == "Iron"
    obj = json.loads(raw)
    obj["twin"]["Name"] = "Blender"
    with pytest.raises(MessageError, match="announce rejected"):
        Announce.parse(json.dumps(obj).encode())


@pytest.mark.parametrize("raw", [b"nope", b"[]", b'{"serial": "m1"}'])
def test_malformed_announce(raw: bytes) -> None:
    with pytest.raises(MessageError):
        Announce.parse(raw)


def test_access_request_round_trip() -> None:
    key = SigningKey.generate()
    request = AccessRequest.parse(AccessRequest.make(key, "analyst", "export", "m1"))
    assert (request.party, request.action, request.serial) == ("analyst", "export", "m1")
    key.verify_key.verify(request.signed_bytes(), request.signature)


def test_access_requests_have_fresh_nonces() -> None:
    key = SigningKey.generate()
    a = AccessRequest.parse(AccessRequest.make(key, "p", "read", "m1"))
    b = AccessRequest.parse(AccessRequest.make(key, "p", "read", "m1"))
    assert a.nonce != b.nonce
