"""Files a process keeps across a crash: a JSON document replaced at once, and an append-only journal of key seeds.

Both are written through to the disk (``fsync`` of the file, and of its folder when a name changes) before the call
returns, so what a process handed out before it was killed is there when it starts again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from gridledger.ledger.crypto import KeyPair

SEED_BYTES = 32


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, data: dict) -> None:
    """Replace ``path`` with ``data`` at once and durably (a reader never sees half a file; a crash leaves the old
    file or the new one)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(data, indent=1))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class KeyJournal:
    """The seeds of the one-time keys a wallet created, one 32-byte record each, appended and synced before the
    key's address is handed out (:meth:`keep`, a :class:`~gridledger.petra.wallet.Wallet`'s ``keep`` hook). Only
    the owner may read it (mode 0600). A record torn by a crash (shorter than a seed) is cut off when it is opened:
    its address was never handed out."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self.file = os.fdopen(fd, "r+b", buffering=0)
        data = path.read_bytes()
        whole = len(data) - len(data) % SEED_BYTES
        if whole != len(data):
            os.ftruncate(fd, whole)
            os.fsync(fd)
        self.keys = [KeyPair(data[i : i + SEED_BYTES]) for i in range(0, whole, SEED_BYTES)]
        _fsync_dir(path.parent)  # a new file's name is durable too

    def keep(self, key: KeyPair) -> None:
        """Append ``key``'s seed durably."""
        self.file.write(key.seed)
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()
