"""PETra's assets: energy production (EPA), energy consumption (ECA) and financial (FA) assets.

An EPA or ECA is a power ``amount`` in W over the slot interval ``[start, end)``: the right to feed in (EPA) or the
permission to draw (ECA) that power in every slot of the interval. An FA is an ``amount`` of money in minor units
(e.g. centavos); its ``start`` and ``end`` are 0. Slots are indexes of fixed-length market intervals (the chain's
``slot_seconds``, e.g. 900 s) counted from the chain's start time.
An output is an asset with the 20-byte address that owns it; an outpoint names an output as txid ‖ index.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from dataclasses import dataclass
from enum import IntEnum

from gridledger.ledger.crypto import ADDRESS_BYTES, HASH_BYTES
from gridledger.ledger.encoding import Reader, Writer
from gridledger.ledger.errors import Reject

#: Largest amount of one asset and of any per-kind sum in one transaction (2^53: exact in every JSON reader).
MAX_AMOUNT = 2**53
OUTPUT_BYTES = 1 + 8 + 4 + 4 + ADDRESS_BYTES
OUTPOINT_BYTES = HASH_BYTES + 2
_OUTPUT = struct.Struct(f">BQII{ADDRESS_BYTES}s")
_OUTPOINT = struct.Struct(f">{HASH_BYTES}sH")


class AssetKind(IntEnum):
    """The three asset kinds of PETra."""

    EPA = 1
    ECA = 2
    FA = 3


@dataclass(frozen=True, slots=True)
class Asset:
    """One asset: ``kind``, ``amount`` (W for EPA/ECA, minor money units for FA), slots ``[start, end)``."""

    kind: AssetKind
    amount: int
    start: int = 0
    end: int = 0

    @property
    def is_energy(self) -> bool:
        return self.kind != AssetKind.FA

    @property
    def slots(self) -> range:
        """The slots the asset covers (empty for FA)."""
        return range(self.start, self.end)

    def energy_ws(self, slot_seconds: int) -> int:
        """Energy in W·s (J) over the whole interval, for EPA/ECA."""
        return self.amount * (self.end - self.start) * slot_seconds

    def split_power(self, part: int) -> tuple[Asset, Asset]:
        """Split into ``part`` W and the rest, both over the same interval (or FA into two amounts)."""
        if not 0 < part < self.amount:
            raise ValueError(f"split part {part} must be strictly between 0 and {self.amount}")
        return Asset(self.kind, part, self.start, self.end), Asset(self.kind, self.amount - part, self.start, self.end)

    def split_time(self, at: int) -> tuple[Asset, Asset]:
        """Split an EPA/ECA into ``[start, at)`` and ``[at, end)`` at the same power."""
        if not self.is_energy or not self.start < at < self.end:
            raise ValueError(f"split slot {at} must be strictly inside [{self.start}, {self.end})")
        return Asset(self.kind, self.amount, self.start, at), Asset(self.kind, self.amount, at, self.end)

    def describe(self) -> str:
        if self.kind == AssetKind.FA:
            return f"FA {self.amount}"
        return f"{self.kind.name} {self.amount} W [{self.start},{self.end})"


_KINDS = {int(k): k for k in AssetKind}


def EPA(power_w: int, start: int, end: int) -> Asset:  # noqa: N802 - named as the paper names it
    """An energy production asset of ``power_w`` W over slots ``[start, end)``."""
    return Asset(AssetKind.EPA, power_w, start, end)


def ECA(power_w: int, start: int, end: int) -> Asset:  # noqa: N802
    """An energy consumption asset of ``power_w`` W over slots ``[start, end)``."""
    return Asset(AssetKind.ECA, power_w, start, end)


def FA(amount: int) -> Asset:  # noqa: N802
    """A financial asset of ``amount`` minor money units."""
    return Asset(AssetKind.FA, amount)


def check_asset(asset: Asset, what: str = "asset") -> None:
    """Context-free checks of one asset (types, signs, ranges, interval)."""
    # Fast path: a well-formed asset passes these few comparisons; anything else takes the path below, which names
    # the exact fault (the two accept exactly the same assets).
    if type(asset) is Asset and type(asset.amount) is int and 0 < asset.amount <= MAX_AMOUNT:
        kind, start, end = asset.kind, asset.start, asset.end
        if type(start) is int and type(end) is int and kind in _KINDS:
            if kind == AssetKind.FA:
                if start == 0 and end == 0:
                    return
            elif 0 <= start < end <= 0xFFFF_FFFF:
                return
    if not isinstance(asset, Asset):
        raise Reject("bad-asset-type", f"{what} is not an asset")
    for name in ("amount", "start", "end"):
        value = getattr(asset, name)
        if type(value) is not int:
            raise Reject("bad-asset-type", f"{what} {name} must be an integer, got {type(value).__name__}")
    if asset.kind not in _KINDS:
        raise Reject("bad-asset-kind", f"{what} has unknown kind {asset.kind!r}")
    if asset.amount < 0:
        raise Reject("bad-asset-negative", f"{what} amount is negative ({asset.amount})")
    if asset.amount == 0:
        raise Reject("bad-asset-zero", f"{what} amount is zero")
    if asset.amount > MAX_AMOUNT:
        raise Reject("bad-asset-toolarge", f"{what} amount {asset.amount} exceeds the maximum {MAX_AMOUNT}")
    if asset.kind == AssetKind.FA:
        if asset.start or asset.end:
            raise Reject("bad-asset-interval", f"{what} is an FA and must have start = end = 0")
    elif not 0 <= asset.start < asset.end <= 0xFFFF_FFFF:
        raise Reject("bad-asset-interval", f"{what} interval [{asset.start},{asset.end}) is empty or out of range")


@dataclass(frozen=True, slots=True)
class Output:
    """An asset paid to an owner address."""

    asset: Asset
    owner: bytes

    def encode(self) -> bytes:
        a = self.asset
        try:
            if len(self.owner) == ADDRESS_BYTES:
                return _OUTPUT.pack(a.kind, a.amount, a.start, a.end, self.owner)
        except (struct.error, TypeError):
            pass
        # Slow path only to name the offending field precisely.
        w = Writer().u8(a.kind, "asset kind").u64(a.amount, "asset amount").u32(a.start, "asset start")
        return w.u32(a.end, "asset end").fixed(self.owner, ADDRESS_BYTES, "owner address").bytes()

    @staticmethod
    def decode(raw: bytes) -> Output:
        kind, amount, start, end, owner = _OUTPUT.unpack(raw)
        k = _KINDS.get(kind)
        if k is None:
            raise Reject("bad-asset-kind", f"unknown asset kind {kind}")
        return Output(Asset(k, amount, start, end), owner)

    @staticmethod
    def read_many(r: Reader, what: str = "outputs") -> tuple[Output, ...]:
        """A u16-counted list of outputs."""
        n = r.count(what)
        raw = r.take(n * OUTPUT_BYTES, f"{n} × output") if n else b""
        outputs = []
        for kind, amount, start, end, owner in _OUTPUT.iter_unpack(raw):
            k = _KINDS.get(kind)
            if k is None:
                raise Reject("bad-asset-kind", f"unknown asset kind {kind}")
            outputs.append(Output(Asset(k, amount, start, end), owner))
        return tuple(outputs)


def outpoint(txid: bytes, index: int) -> bytes:
    """The 34-byte name of output ``index`` of transaction ``txid``."""
    return _OUTPOINT.pack(txid, index)


def split_outpoint(op: bytes) -> tuple[bytes, int]:
    """(txid, index) of an outpoint."""
    return _OUTPOINT.unpack(op)


#: At most this many inputs and outputs per transaction (bounds validation work per byte).
MAX_IO = 1024


def check_outputs(outputs: tuple[Output, ...], what: str = "output") -> None:
    """Every output holds a valid asset and a 20-byte owner; per-kind totals stay within ``MAX_AMOUNT``."""
    if not outputs:
        raise Reject("bad-txns-vout-empty", "transaction has no outputs")
    if len(outputs) > MAX_IO:
        raise Reject("bad-txns-too-many", f"{len(outputs)} outputs; at most {MAX_IO}")
    totals: dict[int, int] = defaultdict(int)
    for i, out in enumerate(outputs):
        if not isinstance(out, Output):
            raise Reject("bad-asset-type", f"{what} {i} is not an output")
        check_asset(out.asset, f"{what} {i}")
        if not isinstance(out.owner, bytes) or len(out.owner) != ADDRESS_BYTES:
            raise Reject("bad-txns-owner", f"{what} {i} owner must be a {ADDRESS_BYTES}-byte address")
        totals[out.asset.kind] += out.asset.amount
        # Sums bounded like Bitcoin's MAX_MONEY check (CVE-2010-5139: an overflowing sum minted coins).
        if totals[out.asset.kind] > MAX_AMOUNT:
            raise Reject(
                "bad-txns-outputs-toolarge",
                f"total {AssetKind(out.asset.kind).name} amount of the outputs exceeds {MAX_AMOUNT}",
            )
