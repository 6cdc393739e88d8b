"""Hardware identity of a twin device: serial + Ed25519 public key, and the AES-GCM key provisioned with it.

The paper's DT platform "registers a unique identification of the hardware" of every device and monitors it
to prevent spoofing (Olivares-Rojas et al. 2023, section 4.5). Here the identity is the device serial bound to
an Ed25519 verification key; the paper's RSA-1024 is replaced by Ed25519 (see docs/twin.md).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from nacl.public import PrivateKey, PublicKey, SealedBox
from nacl.signing import SigningKey, VerifyKey

AES_KEY_BYTES = 16  # AES-GCM-128, the key size of the paper's AES-128
SERIAL_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class IdentityError(ValueError):
    """A hardware identity or key that cannot be used."""


def check_serial(serial: str) -> str:
    """Return ``serial`` if it is a valid device serial (1-64 of ``A-Za-z0-9_.-``), else raise IdentityError.

    Serials become MQTT topic levels, so ``/``, ``+``, ``#`` and whitespace are refused.
    """
    if not isinstance(serial, str) or not SERIAL_RE.match(serial):
        raise IdentityError(f"bad serial {serial!r}: use 1-64 characters of A-Z a-z 0-9 _ . -")
    return serial


@dataclass(frozen=True)
class HardwareIdentity:
    """What the controller knows of a device: its serial and its Ed25519 verification key (32 bytes)."""

    serial: str
    verify_key: bytes

    def __post_init__(self) -> None:
        check_serial(self.serial)
        if not isinstance(self.verify_key, bytes) or len(self.verify_key) != 32:
            raise IdentityError(f"device {self.serial}: verify key must be 32 bytes")

    def verifier(self) -> VerifyKey:
        return VerifyKey(self.verify_key)

    def box_public_key(self) -> PublicKey:
        """The X25519 public key derived from the Ed25519 key, to seal secrets to this device."""
        return PublicKey(self.verifier().to_curve25519_public_key().encode())


@dataclass(frozen=True)
class Credentials:
    """A device's secrets: Ed25519 signing key seed (32 bytes) and AES-GCM-128 key (16 bytes)."""

    serial: str
    seed: bytes
    aes_key: bytes

    def __post_init__(self) -> None:
        check_serial(self.serial)
        if len(self.seed) != 32:
            raise IdentityError(f"device {self.serial}: signing seed must be 32 bytes")
        if len(self.aes_key) != AES_KEY_BYTES:
            raise IdentityError(f"device {self.serial}: AES key must be {AES_KEY_BYTES} bytes")

    @classmethod
    def generate(cls, serial: str) -> Credentials:
        """Fresh random credentials (the AES key is the one the controller provisions at registration)."""
        return cls(serial, os.urandom(32), os.urandom(AES_KEY_BYTES))

    @property
    def signing_key(self) -> SigningKey:
        return SigningKey(self.seed)

    @property
    def identity(self) -> HardwareIdentity:
        return HardwareIdentity(self.serial, self.signing_key.verify_key.encode())

    def to_hex(self) -> dict[str, str]:
        return {"serial": self.serial, "seed": self.seed.hex(), "aes_key": self.aes_key.hex()}

    @classmethod
    def from_hex(cls, data: dict[str, str]) -> Credentials:
        try:
            return cls(data["serial"], bytes.fromhex(data["seed"]), bytes.fromhex(data["aes_key"]))
        except (KeyError, ValueError, TypeError) as exc:
            raise IdentityError(f"bad credentials record: {exc}") from None


def seal_to(identity: HardwareIdentity, secret: bytes) -> bytes:
    """Encrypt ``secret`` so only the holder of ``identity``'s signing key can read it (X25519 sealed box)."""
    return SealedBox(identity.box_public_key()).encrypt(secret)


def unseal(seed: bytes, sealed: bytes) -> bytes:
    """Open a sealed box addressed to the Ed25519 key with this 32-byte seed."""
    private = PrivateKey(SigningKey(seed).to_curve25519_private_key().encode())
    return SealedBox(private).decrypt(sealed)
