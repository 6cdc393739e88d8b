"""Transactions: one shared envelope, one class per kind.

Envelope: ``version u8 | kind u8 | body | witness``. The transaction id is SHA-256 over ``version | kind | body``
(the witness — signatures — is excluded, as in Bitcoin's segregated witness), and every signature signs
SHA-256(``"gridledger/sighash/v1" | chain_id | txid``), which binds it to one chain of one tier.
The Merkle leaf of a transaction in a block covers the whole encoding, witness included.

Kinds here: ``GENESIS`` (chain parameters), ``TRANSFER`` (trades, mixing, deposits, proofs of control),
``METER_ISSUE`` (a smart meter creates EPA/ECA/FA), ``DSO_POLICY`` (authorize, ban, prices, limits).
Later kinds (readings, anchors, alarms, rewards) register themselves with :func:`register_kind`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from functools import cached_property
from typing import ClassVar

from gridledger.ledger.assets import OUTPOINT_BYTES, Output
from gridledger.ledger.crypto import PUBKEY_BYTES, SIGNATURE_BYTES, KeyPair, sha256
from gridledger.ledger.encoding import FORMAT_VERSION, Reader, Writer
from gridledger.ledger.errors import Reject

_SIGHASH_TAG = b"gridledger/sighash/v1"


class TxKind(IntEnum):
    """Transaction kinds; values are part of the encoding and never reused."""

    GENESIS = 0
    TRANSFER = 1
    METER_ISSUE = 2
    DSO_POLICY = 3
    READING = 4
    ANCHOR = 5
    ALARM = 6
    REWARD = 7


def sighash(chain_id: bytes, txid: bytes) -> bytes:
    """The 32-byte message every signature of transaction ``txid`` on chain ``chain_id`` signs."""
    return sha256(_SIGHASH_TAG + chain_id + txid)


class Transaction:
    """Base of all kinds: subclasses define ``KIND``, ``write_body``, ``write_witness`` and ``read``."""

    KIND: ClassVar[TxKind]

    def write_body(self, w: Writer) -> None:
        raise NotImplementedError

    def write_witness(self, w: Writer) -> None:
        raise NotImplementedError

    @classmethod
    def read(cls, r: Reader) -> Transaction:
        """Read body then witness; call ``r.end_body()`` between the two."""
        raise NotImplementedError

    @cached_property
    def body_bytes(self) -> bytes:
        w = Writer().u8(FORMAT_VERSION).u8(self.KIND)
        self.write_body(w)
        return w.bytes()

    @cached_property
    def txid(self) -> bytes:
        return sha256(self.body_bytes)

    @cached_property
    def raw(self) -> bytes:
        """The canonical encoding (computed once: transactions are immutable)."""
        w = Writer().raw(self.body_bytes)
        self.write_witness(w)
        return w.bytes()

    def encode(self) -> bytes:
        return self.raw

    def sighash(self, chain_id: bytes) -> bytes:
        return sighash(chain_id, self.txid)


_KINDS: dict[int, type[Transaction]] = {}


def register_kind(cls: type[Transaction]) -> type[Transaction]:
    """Class decorator: make a transaction kind decodable."""
    _KINDS[int(cls.KIND)] = cls
    return cls


def decode_transaction(raw: bytes) -> Transaction:
    """Decode one transaction; malformed, truncated or trailing bytes raise ``Reject``."""
    r = Reader(raw)
    r.version("transaction")
    kind = r.u8("transaction kind")
    cls = _KINDS.get(kind)
    if cls is None:
        raise Reject("bad-tx-kind-unknown", f"unknown transaction kind {kind}")
    tx = cls.read(r)
    r.end("transaction")
    # Cache the body bytes as received (identical to re-encoding, since the encoding is canonical).
    tx.__dict__["body_bytes"] = r.data[: r.body_end]
    tx.__dict__["raw"] = r.data
    return tx


def _write_outputs(w: Writer, outputs: tuple[Output, ...], what: str) -> None:
    w.count(len(outputs), what)
    for o in outputs:
        w.raw(o.encode())


@dataclass(frozen=True)
class Witness:
    """The public key and signature that unlock one input."""

    pubkey: bytes
    signature: bytes


@register_kind
@dataclass(frozen=True)
class Genesis(Transaction):
    """Chain parameters, the only transaction of block 0.

    ``slot_seconds``: market interval length (s); ``start_time``: Unix time (s) of slot 0; ``dso_pubkey``: the key
    that signs DSO policy; ``proposers``: public keys allowed to propose blocks (the coordinators);
    ``max_issue_slots``: longest interval one meter issue may cover.
    """

    KIND: ClassVar[TxKind] = TxKind.GENESIS
    chain: str
    slot_seconds: int
    start_time: int
    dso_pubkey: bytes
    proposers: tuple[bytes, ...]
    max_issue_slots: int = 7 * 96

    def write_body(self, w: Writer) -> None:
        w.name(self.chain, "chain name").u32(self.slot_seconds, "slot_seconds").u64(self.start_time, "start_time")
        w.fixed(self.dso_pubkey, PUBKEY_BYTES, "DSO public key").count(len(self.proposers), "proposers")
        for p in self.proposers:
            w.fixed(p, PUBKEY_BYTES, "proposer public key")
        w.u32(self.max_issue_slots, "max_issue_slots")

    def write_witness(self, w: Writer) -> None:
        pass

    @classmethod
    def read(cls, r: Reader) -> Genesis:
        chain, slot_seconds, start_time = r.name("chain name"), r.u32("slot_seconds"), r.u64("start_time")
        dso = r.take(PUBKEY_BYTES, "DSO public key")
        proposers = tuple(r.take(PUBKEY_BYTES, "proposer public key") for _ in range(r.count("proposers")))
        genesis = cls(chain, slot_seconds, start_time, dso, proposers, r.u32("max_issue_slots"))
        r.end_body()
        return genesis

    @property
    def chain_id(self) -> bytes:
        """A chain is named by its genesis transaction id."""
        return self.txid


@register_kind
@dataclass(frozen=True)
class Transfer(Transaction):
    """Spends outpoints (each unlocked by a witness) and creates outputs; conserves every asset kind per slot."""

    KIND: ClassVar[TxKind] = TxKind.TRANSFER
    inputs: tuple[bytes, ...]
    outputs: tuple[Output, ...]
    witnesses: tuple[Witness, ...] = field(default=(), compare=False)

    def write_body(self, w: Writer) -> None:
        w.count(len(self.inputs), "inputs")
        for op in self.inputs:
            w.fixed(op, OUTPOINT_BYTES, "input outpoint")
        _write_outputs(w, self.outputs, "outputs")

    def write_witness(self, w: Writer) -> None:
        w.count(len(self.witnesses), "witnesses")
        for wit in self.witnesses:
            w.fixed(wit.pubkey, PUBKEY_BYTES, "witness public key").fixed(wit.signature, SIGNATURE_BYTES, "signature")

    @classmethod
    def read(cls, r: Reader) -> Transfer:
        inputs = tuple(r.take_many(r.count("inputs"), OUTPOINT_BYTES, "input outpoint"))
        outputs = Output.read_many(r)
        r.end_body()
        witnesses = tuple(
            Witness(w[:PUBKEY_BYTES], w[PUBKEY_BYTES:])
            for w in r.take_many(r.count("witnesses"), PUBKEY_BYTES + SIGNATURE_BYTES, "witness")
        )
        return cls(inputs, outputs, witnesses)

    def signed(self, chain_id: bytes, keys: dict[bytes, KeyPair], partial: bool = False) -> Transfer:
        """Fill in the witnesses of the inputs whose keys are given (``keys``: outpoint → owner key pair).

        Witnesses already present are kept, so several owners can sign one transfer in turn (an atomic trade).
        With ``partial`` an input without a key keeps an empty witness slot to be filled later.
        """
        msg = self.sighash(chain_id)
        current = list(self.witnesses) + [None] * (len(self.inputs) - len(self.witnesses))
        for i, op in enumerate(self.inputs):
            key = keys.get(op)
            if key is not None:
                current[i] = Witness(key.public, key.sign(msg))
            elif current[i] is None or not current[i].pubkey.strip(b"\0"):
                if not partial:
                    raise ValueError(f"no key to sign input {i}")
                current[i] = Witness(bytes(PUBKEY_BYTES), bytes(SIGNATURE_BYTES))
        return Transfer(self.inputs, self.outputs, tuple(current))


@register_kind
@dataclass(frozen=True)
class MeterIssue(Transaction):
    """A smart meter creates assets for its prosumer (``nonce`` strictly increases per meter)."""

    KIND: ClassVar[TxKind] = TxKind.METER_ISSUE
    meter: str
    nonce: int
    outputs: tuple[Output, ...]
    signature: bytes = field(default=bytes(SIGNATURE_BYTES), compare=False)

    def write_body(self, w: Writer) -> None:
        w.name(self.meter, "meter id").u64(self.nonce, "nonce")
        _write_outputs(w, self.outputs, "outputs")

    def write_witness(self, w: Writer) -> None:
        w.fixed(self.signature, SIGNATURE_BYTES, "meter signature")

    @classmethod
    def read(cls, r: Reader) -> MeterIssue:
        meter, nonce, outputs = r.name("meter id"), r.u64("nonce"), Output.read_many(r)
        r.end_body()
        return cls(meter, nonce, outputs, r.take(SIGNATURE_BYTES, "meter signature"))

    def signed(self, chain_id: bytes, key: KeyPair) -> MeterIssue:
        return MeterIssue(self.meter, self.nonce, self.outputs, key.sign(self.sighash(chain_id)))


@dataclass(frozen=True)
class MeterLimits:
    """DSO limits for one meter: MAXEPA and MAXECA (W per slot) and its FA credit (minor units, cumulative)."""

    meter: str
    max_epa_w: int
    max_eca_w: int
    credit_fa: int


@register_kind
@dataclass(frozen=True)
class DsoPolicy(Transaction):
    """The DSO's policy, in force from slot ``time`` on (``nonce`` strictly increases).

    ``prices`` is ``(priceConsumption, priceProduction)`` in minor units per kWh, or ``None`` to keep the prices;
    ``authorize`` maps meter IDs to their public keys; ``limits`` sets MAXEPA/MAXECA/credit; ``ban`` bans meters.
    """

    KIND: ClassVar[TxKind] = TxKind.DSO_POLICY
    nonce: int
    time: int
    prices: tuple[int, int] | None = None
    authorize: tuple[tuple[str, bytes], ...] = ()
    limits: tuple[MeterLimits, ...] = ()
    ban: tuple[str, ...] = ()
    signature: bytes = field(default=bytes(SIGNATURE_BYTES), compare=False)

    def write_body(self, w: Writer) -> None:
        w.u64(self.nonce, "nonce").u64(self.time, "effective time")
        if self.prices is None:
            w.u8(0)
        else:
            w.u8(1).u64(self.prices[0], "priceConsumption").u64(self.prices[1], "priceProduction")
        w.count(len(self.authorize), "authorize")
        for meter, pubkey in self.authorize:
            w.name(meter, "meter id").fixed(pubkey, PUBKEY_BYTES, "meter public key")
        w.count(len(self.limits), "limits")
        for lim in self.limits:
            w.name(lim.meter, "meter id").u64(lim.max_epa_w, "MAXEPA").u64(lim.max_eca_w, "MAXECA")
            w.u64(lim.credit_fa, "FA credit")
        w.count(len(self.ban), "ban")
        for meter in self.ban:
            w.name(meter, "meter id")

    def write_witness(self, w: Writer) -> None:
        w.fixed(self.signature, SIGNATURE_BYTES, "DSO signature")

    @classmethod
    def read(cls, r: Reader) -> DsoPolicy:
        nonce, time = r.u64("nonce"), r.u64("effective time")
        flag = r.u8("prices flag")
        if flag not in (0, 1):
            raise Reject("bad-encoding-flag", f"prices flag must be 0 or 1, got {flag}")
        prices = (r.u64("priceConsumption"), r.u64("priceProduction")) if flag else None
        authorize = tuple((r.name("meter id"), r.take(PUBKEY_BYTES, "meter public key")) for _ in range(r.count()))
        limits = tuple(
            MeterLimits(r.name("meter id"), r.u64("MAXEPA"), r.u64("MAXECA"), r.u64("FA credit"))
            for _ in range(r.count())
        )
        ban = tuple(r.name("meter id") for _ in range(r.count()))
        r.end_body()
        return cls(nonce, time, prices, authorize, limits, ban, r.take(SIGNATURE_BYTES, "DSO signature"))

    def signed(self, chain_id: bytes, key: KeyPair) -> DsoPolicy:
        return DsoPolicy(
            self.nonce, self.time, self.prices, self.authorize, self.limits, self.ban, key.sign(self.sighash(chain_id))
        )
