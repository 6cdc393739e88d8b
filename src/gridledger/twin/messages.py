"""Signed plain-text messages that travel before a device or party has an AES key: discovery announces and
data-access requests. Both are canonical JSON signed with the sender's Ed25519 key (field ``sig``)."""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from gridledger.twin.envelope import MAX_ENVELOPE_BYTES, canonical
from gridledger.twin.identity import IdentityError, check_serial
from gridledger.twin.mapping import MappingError, check_twin


class MessageError(ValueError):
    """A malformed or badly signed announce / access request."""


def _load(raw: bytes, fields: set[str]) -> dict[str, Any]:
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise MessageError("message too large")
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise MessageError("not JSON") from None
    if not isinstance(obj, dict) or set(obj) != fields:
        raise MessageError(f"fields must be exactly {sorted(fields)}")
    try:
        check_serial(obj.get("serial", obj.get("party")))
        obj["sig"] = base64.b64decode(obj["sig"], validate=True)
    except (IdentityError, binascii.Error, TypeError, ValueError) as exc:
        raise MessageError(str(exc)) from None
    return obj


def _sign(signing_key: SigningKey, body: dict[str, Any]) -> bytes:
    sig = signing_key.sign(canonical(body)).signature
    return canonical({**body, "sig": base64.b64encode(sig).decode()})


@dataclass(frozen=True)
class Announce:
    """Discovery: a device offers its serial, Ed25519 key and twin object, signed by that key."""

    serial: str
    verify_key: bytes
    twin: dict[str, Any]

    @staticmethod
    def make(signing_key: SigningKey, serial: str, twin: dict[str, Any]) -> bytes:
        body = {"serial": serial, "verify_key": signing_key.verify_key.encode().hex(), "twin": twin}
        return _sign(signing_key, body)

    @classmethod
    def parse(cls, raw: bytes) -> Announce:
        """Parse and check the self-signature; raises MessageError."""
        obj = _load(raw, {"serial", "verify_key", "twin", "sig"})
        try:
            key = bytes.fromhex(obj["verify_key"])
            VerifyKey(key).verify(canonical({k: obj[k] for k in ("serial", "verify_key", "twin")}), obj["sig"])
            twin = check_twin(obj["twin"])
        except (ValueError, TypeError, BadSignatureError, MappingError) as exc:
            raise MessageError(f"announce rejected: {exc}") from None
        return cls(obj["serial"], key, twin)


@dataclass(frozen=True)
class AccessRequest:
    """A party asks to ``read`` (current twin) or ``export`` (history) one device's data."""

    party: str
    action: str
    serial: str
    nonce: str
    signature: bytes

    @staticmethod
    def make(signing_key: SigningKey, party: str, action: str, serial: str) -> bytes:
        return _sign(signing_key, {"party": party, "action": action, "serial": serial, "nonce": os.urandom(16).hex()})

    def signed_bytes(self) -> bytes:
        return canonical({"party": self.party, "action": self.action, "serial": self.serial, "nonce": self.nonce})

    @classmethod
    def parse(cls, raw: bytes) -> AccessRequest:
        obj = _load(raw, {"party", "action", "serial", "nonce", "sig"})
        if not isinstance(obj["action"], str) or not isinstance(obj["nonce"], str) or len(obj["nonce"]) > 64:
            raise MessageError("action and nonce must be text")
        try:
            check_serial(obj["serial"])
        except IdentityError as exc:
            raise MessageError(str(exc)) from None
        return cls(obj["party"], obj["action"], obj["serial"], obj["nonce"], obj["sig"])
