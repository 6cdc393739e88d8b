"""READING (kind 4): signed, encrypted meter readings.

A reading is one member's measurement: an appliance's on a HAN chain, a smart meter's on a NAN chain, a
concentrator's summary of its whole NAN on a FAN/WAN chain. It holds the energy consumed and produced (Wh) over
the interval that ends with minute ``minute`` (minutes since the chain's ``start_time``) and starts where the
member's previous reading ended, and optionally the RMS voltage, current and the power factor at that time.

Layout, 93 bytes for a plain reading (the paper measured 375 B per transaction, 100 B without the ledger)::

    version u8 ‖ kind u8 ‖ member u16 ‖ minute u32 ‖ flags u8 ‖ ciphertext ‖ GCM tag 16  ‖  signature 64

``flags`` (in clear, 0x01 WIDE: energies are u32, else u16; 0x02 voltage; 0x04 current; 0x08 power factor) fix
the plaintext's length, so no length field is stored. The plaintext is ``consumption ‖ production
[‖ voltage dV u16] [‖ current cA u16] [‖ power factor + 1000, per mille, u16]``.

**Confidentiality** (AES-GCM-128, as the paper's AES-128 content encryption): only the member, its coordinator
and the DSO can read a reading. The DSO holds a root secret; HKDF-SHA256 derives from it each chain's master key
(given to the chain's coordinators), from that each member's key (provisioned in the member's device), and from
that a key per reading, ``HKDF-Expand(member key, chain_id ‖ member ‖ minute)``. A per-reading key can be
disclosed for that one reading without revealing any other (the PoEf committee gets exactly those it needs:
:mod:`gridledger.consensus.poef`). The 12-byte GCM nonce is derived from (chain, member, minute) and not stored;
the device refuses to encrypt twice for one minute, so no (key, nonce) pair is ever reused. The associated data
is the chain id and the clear header, which binds the ciphertext to its chain, member and minute.

**Commitment.** The ledger needs no separate hash commitment: the Merkle leaf ``SHA-256(0x00 ‖ whole reading)``
commits to the exact ciphertext, and GCM decryption is a function of (key, nonce, ciphertext), with key and
nonce fixed by (chain, member, minute). Anyone entitled to the key therefore gets one plaintext only, and the
meter's signature and the block's Merkle root make it tamper-evident.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from gridledger.ledger import crypto
from gridledger.ledger.crypto import SIGNATURE_BYTES, KeyPair
from gridledger.ledger.encoding import Reader, Writer
from gridledger.ledger.errors import Reject
from gridledger.ledger.members import member_key
from gridledger.ledger.policy import AUTHORIZED, BANNED
from gridledger.ledger.transactions import KindRules, Transaction, TxKind

if TYPE_CHECKING:
    from gridledger.ledger.state import LedgerState

WIDE, VOLTAGE, CURRENT, POWER_FACTOR = 0x01, 0x02, 0x04, 0x08
KNOWN_FLAGS = WIDE | VOLTAGE | CURRENT | POWER_FACTOR
TAG_BYTES = 16
KEY_BYTES = 16
NONCE_BYTES = 12
MAX_NARROW = 0xFFFF
MAX_WIDE = 0xFFFF_FFFF

_MASTER_TAG = b"gridledger/content-master/v1"
_MEMBER_TAG = b"gridledger/content-member/v1"
_READING_TAG = b"gridledger/reading-key/v1"
_NONCE_TAG = b"gridledger/reading-nonce/v1"


class ReadingError(ValueError):
    """A reading's content cannot be built or opened (value out of range, wrong key, tampered ciphertext)."""


def _layout_of(flags: int) -> struct.Struct:
    optional = sum(bool(flags & f) for f in (VOLTAGE, CURRENT, POWER_FACTOR))
    return struct.Struct(">" + ("II" if flags & WIDE else "HH") + "H" * optional)


#: The plaintext layout of each combination of known flags: two energies (u16, or u32 if WIDE), then each optional
#: u16 (unknown flag bits do not change it).
_LAYOUTS = tuple(_layout_of(flags) for flags in range(KNOWN_FLAGS + 1))


def _layout(flags: int) -> struct.Struct:
    return _LAYOUTS[flags & KNOWN_FLAGS]


def plaintext_size(flags: int) -> int:
    """Bytes of the plaintext that ``flags`` describe."""
    return _layout(flags).size


def sealed_size(flags: int) -> int:
    """Bytes of ciphertext and tag that ``flags`` describe."""
    return plaintext_size(flags) + TAG_BYTES


@dataclass(frozen=True)
class ReadingValues:
    """What a member measured over one reading interval.

    ``consumption_wh``, ``production_wh``: energy (Wh, 0..2^32 − 1); ``voltage_dv``: RMS voltage (0.1 V);
    ``current_ca``: RMS current (0.01 A); ``power_factor_pm``: power factor in per mille, −1000..1000
    (negative: leading). The optional ones are None when not measured.
    """

    consumption_wh: int
    production_wh: int = 0
    voltage_dv: int | None = None
    current_ca: int | None = None
    power_factor_pm: int | None = None

    @property
    def flags(self) -> int:
        f = WIDE if max(self.consumption_wh, self.production_wh) > MAX_NARROW else 0
        optional = ((self.voltage_dv, VOLTAGE), (self.current_ca, CURRENT), (self.power_factor_pm, POWER_FACTOR))
        for value, flag in optional:
            if value is not None:
                f |= flag
        return f

    def check(self) -> None:
        """Raise ``ReadingError`` naming the first field out of range."""
        ranges = {
            "consumption_wh": (0, MAX_WIDE),
            "production_wh": (0, MAX_WIDE),
            "voltage_dv": (0, 0xFFFF),
            "current_ca": (0, 0xFFFF),
            "power_factor_pm": (-1000, 1000),
        }
        for name, (lo, hi) in ranges.items():
            value = getattr(self, name)
            if value is None and name not in ("consumption_wh", "production_wh"):
                continue
            if type(value) is not int or not lo <= value <= hi:
                raise ReadingError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")

    def encode(self) -> bytes:
        self.check()
        w = Writer()
        energy = w.u32 if self.flags & WIDE else w.u16
        energy(self.consumption_wh, "consumption_wh")
        energy(self.production_wh, "production_wh")
        if self.voltage_dv is not None:
            w.u16(self.voltage_dv, "voltage_dv")
        if self.current_ca is not None:
            w.u16(self.current_ca, "current_ca")
        if self.power_factor_pm is not None:
            w.u16(self.power_factor_pm + 1000, "power factor")
        return w.bytes()

    @classmethod
    def decode(cls, flags: int, data: bytes) -> ReadingValues:
        layout = _layout(flags)
        if len(data) != layout.size:
            raise ReadingError(
                f"reading content does not match its flags: {len(data)} bytes, flags {flags:#04x} need {layout.size}"
            )
        fields = iter(layout.unpack(data))
        consumption, production = next(fields), next(fields)
        voltage = next(fields) if flags & VOLTAGE else None
        current = next(fields) if flags & CURRENT else None
        pf = next(fields) - 1000 if flags & POWER_FACTOR else None
        values = cls(consumption, production, voltage, current, pf)
        if values.flags != flags:
            raise ReadingError(f"reading content is not canonical for flags {flags:#04x}")
        if pf is not None:  # the other fields are unsigned of their own width: in range by construction
            values.check()
        return values


def summarize(values: Iterable[ReadingValues]) -> ReadingValues:
    """The summary an upper tier stores instead of raw readings: total consumption and production (Wh)."""
    consumption = production = 0
    for v in values:
        consumption += v.consumption_wh
        production += v.production_wh
    if max(consumption, production) > MAX_WIDE:
        raise ReadingError(f"summary of {max(consumption, production)} Wh does not fit a reading")
    return ReadingValues(consumption, production)


@dataclass(frozen=True)
class Reading(Transaction):
    """A member's signed, encrypted reading for the interval ending with ``minute``."""

    KIND: ClassVar[TxKind] = TxKind.READING
    member: int
    minute: int
    flags: int
    sealed: bytes
    signature: bytes = field(default=bytes(SIGNATURE_BYTES), compare=False)

    def write_body(self, w: Writer) -> None:
        w.u16(self.member, "member index").u32(self.minute, "minute").u8(self.flags, "reading flags")
        w.fixed(self.sealed, sealed_size(self.flags), "reading ciphertext")

    def write_witness(self, w: Writer) -> None:
        w.fixed(self.signature, SIGNATURE_BYTES, "reading signature")

    @classmethod
    def read(cls, r: Reader) -> Reading:
        member, minute, flags = r.u16("member index"), r.u32("minute"), r.u8("reading flags")
        if flags & ~KNOWN_FLAGS:
            raise Reject("bad-reading-flags", f"unknown reading flags {flags:#04x}")
        sealed = r.take(sealed_size(flags), "reading ciphertext")
        r.end_body()
        return cls(member, minute, flags, sealed, r.take(SIGNATURE_BYTES, "reading signature"))

    @property
    def header_bytes(self) -> bytes:
        """The clear part of the body (authenticated as GCM associated data)."""
        return self.body_bytes[: len(self.body_bytes) - len(self.sealed)]

    def signed(self, chain_id: bytes, key: KeyPair) -> Reading:
        return Reading(self.member, self.minute, self.flags, self.sealed, key.sign(self.sighash(chain_id)))


# ------------------------------------------------------------------ keys
def _hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    return HKDFExpand(hashes.SHA256(), length, info).derive(prk)


def _who(member: int, minute: int) -> bytes:
    return member.to_bytes(2, "big") + minute.to_bytes(4, "big")


def reading_key(member_key: bytes, chain_id: bytes, member: int, minute: int) -> bytes:
    """The AES-128 key of one reading (16 B), from the member's content key."""
    return _hkdf_expand(member_key, _READING_TAG + chain_id + _who(member, minute), KEY_BYTES)


def reading_nonce(chain_id: bytes, member: int, minute: int) -> bytes:
    """The deterministic 12-byte GCM nonce of (chain, member, minute); never stored."""
    return crypto.sha256(_NONCE_TAG + chain_id + _who(member, minute))[:NONCE_BYTES]


@dataclass(frozen=True)
class ChainKeys:
    """A chain's master content key (held by its coordinators and the DSO): derives every member's key."""

    chain_id: bytes
    master: bytes = field(repr=False)
    _members: dict[int, bytes] = field(default_factory=dict, repr=False, compare=False)

    def member_key(self, member: int) -> bytes:
        """Member ``member``'s 32-byte content key (provisioned in its device at enrolment)."""
        key = self._members.get(member)
        if key is None:
            key = _hkdf_expand(self.master, _MEMBER_TAG + self.chain_id + member.to_bytes(2, "big"), 32)
            self._members[member] = key
        return key

    def key_of(self, reading: Reading) -> bytes:
        """The per-reading key of ``reading``."""
        return reading_key(self.member_key(reading.member), self.chain_id, reading.member, reading.minute)


@dataclass(frozen=True)
class ContentKeys:
    """The DSO's root of content keys (32 B secret)."""

    root: bytes = field(repr=False)

    def chain(self, chain_id: bytes) -> ChainKeys:
        """The master content key of one chain."""
        master = HKDF(hashes.SHA256(), 32, salt=None, info=_MASTER_TAG + chain_id).derive(self.root)
        return ChainKeys(chain_id, master)


def seal(chain_id: bytes, member: int, minute: int, values: ReadingValues, key: bytes) -> Reading:
    """An unsigned reading of ``values`` encrypted under the per-reading ``key``."""
    plaintext = values.encode()
    flags = values.flags
    head = Reading(member, minute, flags, bytes(sealed_size(flags)))
    sealed = AESGCM(key).encrypt(reading_nonce(chain_id, member, minute), plaintext, chain_id + head.header_bytes)
    return Reading(member, minute, flags, sealed)


def open_reading(chain_id: bytes, reading: Reading, key: bytes) -> ReadingValues:
    """Decrypt and authenticate a reading with its per-reading ``key``; ``ReadingError`` if that fails."""
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        raise ReadingError(f"a reading key is {KEY_BYTES} bytes")
    nonce = reading_nonce(chain_id, reading.member, reading.minute)
    try:
        plaintext = AESGCM(key).decrypt(nonce, reading.sealed, chain_id + reading.header_bytes)
    except InvalidTag:
        raise ReadingError(
            f"reading of member {reading.member} at minute {reading.minute} does not open with this key "
            "(wrong key or tampered ciphertext)"
        ) from None
    return ReadingValues.decode(reading.flags, plaintext)


@dataclass
class ReadingDevice:
    """A member's reading device (a smart meter, an appliance, a concentrator): encrypts and signs readings.

    It refuses a minute at or before its last one, so it never encrypts twice under one (key, nonce).
    """

    chain_id: bytes
    member: int
    key: KeyPair
    content_key: bytes = field(repr=False)
    last_minute: int = -1

    def reading(self, minute: int, values: ReadingValues) -> Reading:
        """The signed, encrypted reading of ``values`` for the interval ending with ``minute``."""
        return self.seal_minute(minute, values).signed(self.chain_id, self.key)

    def seal_minute(self, minute: int, values: ReadingValues) -> Reading:
        """The *unsigned* reading of ``values`` for ``minute``, encrypted under its per-reading key (a batch of
        minutes signs several of them at once: :mod:`.reading_batch`)."""
        if minute <= self.last_minute:
            raise ReadingError(f"minute {minute} is not after this device's last reading ({self.last_minute})")
        key = reading_key(self.content_key, self.chain_id, self.member, minute)
        tx = seal(self.chain_id, self.member, minute, values, key)
        self.last_minute = minute
        return tx


# ------------------------------------------------------------------ rules
def check_reading(tx: Reading) -> None:
    """Context-free: known flags, a ciphertext of the length the flags give."""
    if type(tx.flags) is not int or tx.flags & ~KNOWN_FLAGS:
        raise Reject("bad-reading-flags", f"unknown reading flags {tx.flags!r}")
    if not isinstance(tx.sealed, bytes) or len(tx.sealed) != sealed_size(tx.flags):
        raise Reject(
            "bad-reading-length",
            f"ciphertext of {len(tx.sealed)} bytes; flags {tx.flags:#04x} need {sealed_size(tx.flags)}",
        )


def reading_counter(member: int) -> str:
    """State key of the first minute member ``member`` may report next."""
    return f"reading:{member}"


def apply_reading(state: LedgerState, tx: Reading, slot: int, _: bool) -> None:
    """Contextual: see :func:`admit_minutes` (the one minute ``tx.minute``)."""
    admit_minutes(state, tx, tx.member, tx.minute, tx.minute, slot)


def admit_minutes(state: LedgerState, tx: Transaction, member: int, first: int, last: int, slot: int) -> None:
    """The contextual rules of a member's readings of minutes ``first..last`` signed in ``tx`` (one READING, or a
    READING_BATCH: :mod:`.reading_batch`), then the state change: the member is authorized (not banned) at the
    block's slot, signed ``tx``, minute ``last`` ends by the end of that slot and ``first`` follows the member's
    previous reading; the member's counter moves past ``last``."""
    status, pubkey = member_key(state, member, slot)
    if status == BANNED:
        raise Reject("bad-reading-member-banned", f"member {member} is banned at slot {slot}")
    if status != AUTHORIZED:
        raise Reject("bad-reading-member-unknown", f"member {member} is not authorized at slot {slot}")
    if not crypto.verify(pubkey, tx.sighash(state.chain_id), tx.signature):
        raise Reject("bad-reading-signature", f"reading is not signed by member {member}'s key")
    if 60 * last >= (slot + 1) * state.genesis.slot_seconds:
        raise Reject("bad-reading-future", f"minute {last} ends after the block's slot {slot}")
    counter = reading_counter(member)
    previous = state.nonces.get(counter, 0)
    if first < previous:
        raise Reject(
            "bad-reading-replay",
            f"member {member} already reported up to minute {previous - 1}; minute {first} is a replay",
        )
    state.set_entry(state.nonces, "nonce", counter, last + 1)


RULES = KindRules(Reading, check_reading, apply_reading)
