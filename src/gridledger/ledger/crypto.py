"""Keys, signatures, hashes and addresses.

Ed25519 signatures (libsodium via PyNaCl; strict verification rejects non-canonical signatures, so signatures
are not malleable) and SHA-256. An address is the first 20 bytes of SHA-256 over a domain tag and the public key,
so a fresh one-time address costs one key generation (about 20 µs).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import nacl.bindings
import nacl.exceptions
import nacl.signing

PUBKEY_BYTES = 32
SIGNATURE_BYTES = 64
ADDRESS_BYTES = 20
HASH_BYTES = 32
_ADDRESS_TAG = b"gridledger/address/v1"


def sha256(data: bytes) -> bytes:
    """SHA-256 digest (32 bytes)."""
    return hashlib.sha256(data).digest()


def address_of(pubkey: bytes) -> bytes:
    """The 20-byte address of an Ed25519 public key."""
    return hashlib.sha256(_ADDRESS_TAG + pubkey).digest()[:ADDRESS_BYTES]


def verify(pubkey: bytes, message: bytes, signature: bytes) -> bool:
    """True iff ``signature`` is a valid Ed25519 signature of ``message`` by ``pubkey``.

    Never raises on malformed keys or signatures: they are simply invalid.
    """
    if len(pubkey) != PUBKEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + message, pubkey)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        return False
    return True


def verify_batch(items: list[tuple[bytes, bytes, bytes]]) -> int:
    """Index of the first invalid (pubkey, message, signature) triple, or -1 if all are valid."""
    for i, (pubkey, message, signature) in enumerate(items):
        if not verify(pubkey, message, signature):
            return i
    return -1


@dataclass(frozen=True)
class KeyPair:
    """An Ed25519 key pair; ``seed`` is the 32-byte private seed."""

    seed: bytes
    _signing: nacl.signing.SigningKey = field(init=False, repr=False, compare=False)
    public: bytes = field(init=False, compare=False)
    address: bytes = field(init=False, compare=False)

    def __post_init__(self) -> None:
        signing = nacl.signing.SigningKey(self.seed)
        object.__setattr__(self, "_signing", signing)
        object.__setattr__(self, "public", bytes(signing.verify_key))
        object.__setattr__(self, "address", address_of(self.public))

    @classmethod
    def generate(cls) -> KeyPair:
        """A fresh random key pair (e.g. for a one-time address)."""
        return cls(bytes(nacl.signing.SigningKey.generate()))

    @classmethod
    def from_secret(cls, secret: bytes | str) -> KeyPair:
        """A deterministic key pair derived from a secret (for tests, demos and benchmarks only)."""
        data = secret.encode() if isinstance(secret, str) else secret
        return cls(sha256(b"gridledger/test-key/v1" + data))

    def sign(self, message: bytes) -> bytes:
        """The 64-byte detached signature of ``message``."""
        return self._signing.sign(message).signature
