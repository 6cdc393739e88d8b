"""Canonical binary encoding of consensus objects.

Every consensus object has exactly one byte string: fixed-width big-endian unsigned integers, fixed-size byte
fields, and length-prefixed lists and strings, in a fixed field order. There are no optional encodings, no
padding and no trailing bytes, so ``decode(encode(x)) == x`` and ``encode(decode(b)) == b`` for every valid ``b``;
hashes and signatures are stable. Each top-level object starts with a format version byte.
See docs/ledger.md for the layout of each object.
"""

from __future__ import annotations

import struct

from gridledger.ledger.errors import Reject

FORMAT_VERSION = 1

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_LIMITS = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFF_FFFF, 8: 0xFFFF_FFFF_FFFF_FFFF}
MAX_NAME_BYTES = 32


def _check_range(value: int, width: int, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise Reject("bad-encoding-type", f"{what} must be an integer, got {type(value).__name__}")
    if value < 0:
        raise Reject("bad-encoding-negative", f"{what} is negative ({value}); only unsigned integers are encoded")
    if value > _LIMITS[width]:
        raise Reject("bad-encoding-overflow", f"{what} = {value} does not fit in {8 * width} bits")


class Writer:
    """Appends canonical fields to a buffer."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def u8(self, value: int, what: str = "u8") -> Writer:
        _check_range(value, 1, what)
        self.parts.append(_U8.pack(value))
        return self

    def u16(self, value: int, what: str = "u16") -> Writer:
        _check_range(value, 2, what)
        self.parts.append(_U16.pack(value))
        return self

    def u32(self, value: int, what: str = "u32") -> Writer:
        _check_range(value, 4, what)
        self.parts.append(_U32.pack(value))
        return self

    def u64(self, value: int, what: str = "u64") -> Writer:
        _check_range(value, 8, what)
        self.parts.append(_U64.pack(value))
        return self

    def fixed(self, data: bytes, size: int, what: str = "field") -> Writer:
        if not isinstance(data, bytes | bytearray) or len(data) != size:
            raise Reject("bad-encoding-size", f"{what} must be exactly {size} bytes")
        self.parts.append(bytes(data))
        return self

    def blob(self, data: bytes, what: str = "blob") -> Writer:
        """Length-prefixed bytes (u32 length)."""
        self.u32(len(data), f"length of {what}")
        self.parts.append(bytes(data))
        return self

    def name(self, text: str, what: str = "name") -> Writer:
        """A short ASCII identifier (1..32 printable bytes, u8 length)."""
        check_name(text, what)
        raw = text.encode("ascii")
        self.parts.append(_U8.pack(len(raw)) + raw)
        return self

    def count(self, n: int, what: str = "list") -> Writer:
        """A list length (u16)."""
        return self.u16(n, f"length of {what}")

    def raw(self, data: bytes) -> Writer:
        self.parts.append(data)
        return self

    def bytes(self) -> bytes:
        return b"".join(self.parts)


def check_name(text: str, what: str = "name") -> None:
    """Reject anything but 1..32 characters of [A-Za-z0-9_.:-]."""
    if not isinstance(text, str) or not 1 <= len(text) <= MAX_NAME_BYTES:
        raise Reject("bad-encoding-name", f"{what} must be 1..{MAX_NAME_BYTES} characters, got {text!r}")
    if not all(c.isascii() and (c.isalnum() or c in "_.:-") for c in text):
        raise Reject("bad-encoding-name", f"{what} {text!r} may only use letters, digits and _ . : -")


class Reader:
    """Reads canonical fields from bytes; any shortfall or leftover is a ``Reject``."""

    __slots__ = ("body_end", "data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise Reject("bad-encoding-type", f"expected bytes, got {type(data).__name__}")
        self.data = bytes(data)
        self.pos = pos
        self.body_end = -1

    def end_body(self) -> None:
        """Mark where a transaction's body ends and its witness begins."""
        self.body_end = self.pos

    def _truncated(self, n: int, what: str) -> Reject:
        return Reject(
            "bad-encoding-truncated",
            f"truncated while reading {what}: need {n} bytes at offset {self.pos}, have {len(self.data) - self.pos}",
        )

    # The readers below format their messages only on failure and read integers in place (``unpack_from``), so the
    # common case costs no slicing and no string building.
    def take(self, n: int, what: str = "field") -> bytes:
        pos = self.pos
        end = pos + n
        if end > len(self.data):
            raise self._truncated(n, what)
        self.pos = end
        return self.data[pos:end]

    def take_many(self, count: int, size: int, what: str = "field") -> list[bytes]:
        """``count`` consecutive fields of ``size`` bytes each."""
        pos = self.pos
        end = pos + count * size
        if end > len(self.data):
            raise self._truncated(count * size, f"{count} × {what}")
        self.pos = end
        data = self.data
        return [data[i : i + size] for i in range(pos, end, size)]

    def _int(self, st: struct.Struct, what: str) -> int:
        pos = self.pos
        if pos + st.size > len(self.data):
            raise self._truncated(st.size, what)
        self.pos = pos + st.size
        return st.unpack_from(self.data, pos)[0]

    def u8(self, what: str = "u8") -> int:
        return self._int(_U8, what)

    def u16(self, what: str = "u16") -> int:
        return self._int(_U16, what)

    def u32(self, what: str = "u32") -> int:
        return self._int(_U32, what)

    def u64(self, what: str = "u64") -> int:
        return self._int(_U64, what)

    def blob(self, what: str = "blob") -> bytes:
        pos = self.pos
        if pos + 4 > len(self.data):
            raise self._truncated(4, f"length of {what}")
        self.pos = pos + 4
        return self.take(_U32.unpack_from(self.data, pos)[0], what)

    def name(self, what: str = "name") -> str:
        raw = self.take(self.u8(f"length of {what}"), what)
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise Reject("bad-encoding-name", f"{what} is not ASCII") from None
        check_name(text, what)
        return text

    def count(self, what: str = "list") -> int:
        pos = self.pos
        if pos + 2 > len(self.data):
            raise self._truncated(2, f"length of {what}")
        self.pos = pos + 2
        return _U16.unpack_from(self.data, pos)[0]

    def version(self, what: str) -> None:
        v = self.u8(f"format version of {what}")
        if v != FORMAT_VERSION:
            raise Reject(
                "bad-encoding-version", f"{what} has format version {v}; this node reads version {FORMAT_VERSION}"
            )

    def end(self, what: str) -> None:
        if self.pos != len(self.data):
            raise Reject("bad-encoding-trailing", f"{len(self.data) - self.pos} unexpected trailing bytes after {what}")
