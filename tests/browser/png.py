"""Is a screenshot blank? PNG chunks parsed and inflated with the standard library (no Pillow).

Each PNG scanline is stored filtered: every byte is coded as its difference from a prediction made from its
left, upper and upper-left neighbours. A uniform image codes to (almost) all zero bytes whatever the filter,
so the share of non-zero filtered bytes and their entropy measure how much the picture varies.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections import Counter
from dataclasses import dataclass

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel (8-bit images)


@dataclass(frozen=True)
class PngStats:
    width: int
    height: int
    varying: float  # share of non-zero filtered bytes
    entropy: float  # bits per filtered byte


def png_stats(data: bytes) -> PngStats:
    """Size and variation of an 8-bit, non-interlaced PNG (what Chromium writes)."""
    if not data.startswith(SIGNATURE):
        raise ValueError("not a PNG file")
    pos, idat, header = len(SIGNATURE), [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if zlib.crc32(kind + body) != struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0]:
            raise ValueError(f"bad CRC in chunk {kind!r}")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    if header is None or not idat:
        raise ValueError("PNG without IHDR or IDAT")
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in CHANNELS or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour}, interlace {interlace}")
    raw = zlib.decompress(b"".join(idat))
    stride = 1 + width * CHANNELS[colour]
    if len(raw) != stride * height:
        raise ValueError(f"image data of {len(raw)} bytes, expected {stride * height}")
    rows = memoryview(raw)
    counts: Counter[int] = Counter()
    for y in range(height):
        counts.update(rows[y * stride + 1 : (y + 1) * stride])
    total = stride * height - height
    entropy = -sum(n / total * math.log2(n / total) for n in counts.values())
    return PngStats(width, height, 1 - counts[0] / total, entropy)


def png(width: int, height: int, pixel) -> bytes:
    """An RGB PNG of ``pixel(x, y) -> (r, g, b)``, each row Sub-filtered as encoders do for smooth rows."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    def sub(row: bytes) -> bytes:
        return b"\x01" + bytes((row[i] - (row[i - 3] if i >= 3 else 0)) % 256 for i in range(len(row)))

    rows = b"".join(sub(b"".join(bytes(pixel(x, y)) for x in range(width))) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
