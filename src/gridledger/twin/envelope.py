"""The signed, encrypted envelope every twin message travels in.

Encrypt-then-sign: the payload (canonical JSON) is encrypted with AES-GCM-128 under the device's provisioned
key, with the header (version, serial, counter, kind) as associated data; the header, nonce and ciphertext are
then signed with the sender's Ed25519 key. A receiver checks, in order: shape, size, signature, then decrypts.
The per-sender ``counter`` must increase strictly (replay protection is the receiver's job: see
``controller.TwinController``). A sniffer on the broker sees only the header and ciphertext.

Reject codes are short and stable, in the manner of Bitcoin Core's ``tx_check.cpp``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from gridledger.twin.identity import IdentityError, check_serial

VERSION = 1
MAX_ENVELOPE_BYTES = 65536
KINDS = frozenset({"report", "announce", "command", "ack", "heartbeat", "replica", "access-request"})
NONCE_BYTES = 12  # the 96-bit nonce AES-GCM is specified for

MALFORMED = "malformed-envelope"
OVERSIZE = "oversize-envelope"
BAD_SIGNATURE = "bad-signature"
BAD_CIPHERTEXT = "bad-ciphertext"
MALFORMED_PAYLOAD = "malformed-payload"
UNREGISTERED = "unregistered-device"
REPLAYED = "replayed-counter"


class EnvelopeRejected(ValueError):
    """An envelope that must not be accepted; ``code`` is a stable reject code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def canonical(obj: Any) -> bytes:
    """One byte string per JSON object: sorted keys, no spaces, ASCII."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: Any, name: str) -> bytes:
    if not isinstance(text, str):
        raise EnvelopeRejected(MALFORMED, f"{name} must be base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeRejected(MALFORMED, f"{name} is not valid base64") from None


@dataclass(frozen=True)
class Envelope:
    """A parsed (not yet verified) envelope."""

    serial: str
    counter: int
    kind: str
    nonce: bytes
    ciphertext: bytes
    signature: bytes

    def header(self) -> dict[str, Any]:
        return {"v": VERSION, "serial": self.serial, "counter": self.counter, "kind": self.kind}

    def signed_bytes(self) -> bytes:
        return canonical({**self.header(), "nonce": _b64(self.nonce), "ct": _b64(self.ciphertext)})

    def verify(self, verify_key: bytes) -> None:
        """Raise ``bad-signature`` unless the envelope is signed by ``verify_key`` (32-byte Ed25519)."""
        try:
            VerifyKey(verify_key).verify(self.signed_bytes(), self.signature)
        except (BadSignatureError, ValueError):
            raise EnvelopeRejected(BAD_SIGNATURE, f"signature of {self.serial!r} does not verify") from None

    def decrypt(self, aes_key: bytes) -> dict[str, Any]:
        """Decrypt and parse the payload; ``bad-ciphertext`` or ``malformed-payload`` on failure."""
        try:
            plain = AESGCM(aes_key).decrypt(self.nonce, self.ciphertext, canonical(self.header()))
        except (InvalidTag, ValueError):
            raise EnvelopeRejected(BAD_CIPHERTEXT, f"payload of {self.serial!r} does not decrypt") from None
        try:
            payload = json.loads(plain)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise EnvelopeRejected(MALFORMED_PAYLOAD, "payload is not JSON") from None
        if not isinstance(payload, dict):
            raise EnvelopeRejected(MALFORMED_PAYLOAD, "payload must be a JSON object")
        return payload

    def to_bytes(self) -> bytes:
        return canonical(
            {
                **self.header(),
                "nonce": _b64(self.nonce),
                "ct": _b64(self.ciphertext),
                "sig": _b64(self.signature),
            }
        )


def seal(
    signing_key: SigningKey, aes_key: bytes, serial: str, counter: int, kind: str, payload: dict[str, Any]
) -> bytes:
    """Encrypt ``payload`` under ``aes_key`` and sign the result; returns the envelope's bytes."""
    if kind not in KINDS:
        raise ValueError(f"unknown envelope kind {kind!r}")
    if not isinstance(counter, int) or counter < 0:
        raise ValueError("counter must be a non-negative integer")
    check_serial(serial)
    nonce = os.urandom(NONCE_BYTES)
    header = {"v": VERSION, "serial": serial, "counter": counter, "kind": kind}
    ciphertext = AESGCM(aes_key).encrypt(nonce, canonical(payload), canonical(header))
    unsigned = Envelope(serial, counter, kind, nonce, ciphertext, b"")
    signature = signing_key.sign(unsigned.signed_bytes()).signature
    return Envelope(serial, counter, kind, nonce, ciphertext, signature).to_bytes()


def parse(raw: bytes) -> Envelope:
    """Parse an envelope's bytes; raises EnvelopeRejected (``malformed-envelope`` / ``oversize-envelope``)."""
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise EnvelopeRejected(OVERSIZE, f"{len(raw)} bytes > {MAX_ENVELOPE_BYTES}")
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise EnvelopeRejected(MALFORMED, "not JSON") from None
    if not isinstance(obj, dict):
        raise EnvelopeRejected(MALFORMED, "not a JSON object")
    want = {"v", "serial", "counter", "kind", "nonce", "ct", "sig"}
    if set(obj) != want:
        raise EnvelopeRejected(MALFORMED, f"fields must be exactly {sorted(want)}")
    if obj["v"] != VERSION:
        raise EnvelopeRejected(MALFORMED, f"unsupported version {obj['v']!r}")
    try:
        serial = check_serial(obj["serial"])
    except IdentityError as exc:
        raise EnvelopeRejected(MALFORMED, str(exc)) from None
    counter = obj["counter"]
    if not isinstance(counter, int) or isinstance(counter, bool) or counter < 0:
        raise EnvelopeRejected(MALFORMED, "counter must be a non-negative integer")
    if obj["kind"] not in KINDS:
        raise EnvelopeRejected(MALFORMED, f"unknown kind {obj['kind']!r}")
    nonce = _unb64(obj["nonce"], "nonce")
    if len(nonce) != NONCE_BYTES:
        raise EnvelopeRejected(MALFORMED, f"nonce must be {NONCE_BYTES} bytes")
    signature = _unb64(obj["sig"], "sig")
    if len(signature) != 64:
        raise EnvelopeRejected(MALFORMED, "signature must be 64 bytes")
    return Envelope(serial, counter, obj["kind"], nonce, _unb64(obj["ct"], "ct"), signature)
