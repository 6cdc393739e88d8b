"""Bytes on disk per signed reading on the NAN chain (SQLite store), measured from the growth of the file.

The NAN of benchmarks/nan_latency.py — 2,000 meters reporting once a minute at their own second, a block every
``INTERVAL_S`` (so 25 readings per block), each block with its quorum certificate from a committee of
the NAN rule set's ``committee_size`` — run in simulated time (no waiting), with the full PoEf round on every
block. After a warm-up (every meter has reported, so the per-meter counters exist), ``MINUTES`` minutes of
readings are committed;
the concentrator's SQLite file (WAL checkpointed) is measured before and after: bytes per reading = growth /
readings committed in between (fsync per block is turned off for speed; it does not change the bytes). The same
certified blocks are then appended by nodes whose stores use other SQLite page sizes: a block of 1–4 KB takes a
whole 4 KiB page (SQLite's default), hence the tiers' 512 B pages.

The paper measured 375 B per transaction on its NAN chain, 100 B without the blockchain (Olivares-Rojas et al. 2023,
§4.4). Run: ``.venv/bin/python benchmarks/reading_bytes.py`` (a few minutes).
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

from rich.progress import track

from gridledger.chain import Chain
from gridledger.ledger.committee import quorum
from gridledger.ledger.crypto import SIGNATURE_BYTES
from gridledger.ledger.kinds.reading import TAG_BYTES, Reading, ReadingValues
from gridledger.ledger.ruleset import Tier, tier_ruleset
from gridledger.ledger.state import StateChanges
from gridledger.store.sqlite import SqliteStore
from gridledger.tiers.hierarchy import PAGE_SIZE, START_TIME, build_neighbourhood, simulated_minute, sqlite_store

METERS = 2_000
INTERVAL_S = 0.75
WARM_UP_MINUTES = 3
MINUTES = 10
#: Page sizes (B) of the other stores the same blocks are appended to, for comparison.
OTHER_PAGES = (1024, 2048, 4096)
TARGET_B = 64


def file_size(store: SqliteStore) -> int:
    """Bytes of the SQLite file with every committed page written back from the WAL."""
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return os.path.getsize(store.path)


def main() -> None:
    k = tier_ruleset(Tier.NAN).committee_size
    with tempfile.TemporaryDirectory(prefix="reading-bytes-") as tmp:
        node = build_neighbourhood(METERS, directory=Path(tmp))
        store = node.coordinator.chain.store
        store.db.execute("PRAGMA synchronous = NORMAL")  # no fsync per block: same bytes, a faster run
        rng = random.Random(7)
        profile = [(rng.uniform(0, 60), rng.randint(3, 40), m) for m in node.members.values()]
        profile.sort(key=lambda p: p[0])
        clock, next_cut = float(START_TIME), START_TIME + INTERVAL_S
        first_block = size0 = 0
        counted = 0
        for minute in track(range(WARM_UP_MINUTES + MINUTES), description="NAN minutes (simulated time)"):
            if minute == WARM_UP_MINUTES:
                size0, first_block = file_size(store), node.coordinator.chain.height + 1
            minute_start = START_TIME + 60 * (minute + 1)
            for phase, base, member in profile:
                sent = minute_start + phase
                while sent >= next_cut:
                    node.round(int(next_cut))
                    next_cut += INTERVAL_S
                clock = sent
                node.coordinator.submit(member.device.reading(minute, ReadingValues(simulated_minute(rng, base), 0)))
                if minute >= WARM_UP_MINUTES:
                    counted += 1
        while node.coordinator.pending or node.coordinator.in_flight:
            node.round(int(max(clock, next_cut)))
            next_cut += INTERVAL_S
        size1 = file_size(store)
        chain = node.coordinator.chain
        blocks = [b for b in chain.blocks(first_block)]
        readings = sum(isinstance(tx, Reading) for b in blocks for tx in b.transactions)
        if readings < counted:
            raise RuntimeError(f"{counted} readings submitted, only {readings} committed")
        tx_bytes = sum(len(tx.raw) for b in blocks for tx in b.transactions if isinstance(tx, Reading)) / readings
        block_bytes = sum(len(b.encode()) for b in blocks)
        votes = sum(len(b.certificate) for b in blocks)

        # the same certified blocks, appended (and re-validated) by nodes whose stores use other page sizes
        other = {size: growth(chain, first_block, Path(tmp) / f"pages-{size}.sqlite", size) for size in OTHER_PAGES}
        node.close()

    per_reading = (size1 - size0) / readings
    print(
        f"NAN of {METERS} meters, a block every {INTERVAL_S} s: {len(blocks)} blocks, {readings} readings "
        f"({readings / len(blocks):.1f} per block), committee {k} (certificates of {quorum(k)} votes; "
        f"{votes / len(blocks):.1f} per block)"
    )
    print(
        f"a reading transaction: {tx_bytes:.0f} B (+4 B length in its block); block bytes per reading: "
        f"{block_bytes / readings:.1f} B; header, signature and certificate per reading: "
        f"{block_bytes / readings - tx_bytes - 4:.1f} B"
    )
    print(f"on disk (SQLite, {PAGE_SIZE} B pages, as the tiers' stores): {per_reading:.1f} B per reading")
    for size, grown in other.items():
        print(f"  the same blocks in a store with {size} B pages: {grown / readings:.1f} B per reading")
    print("paper: 375 B per transaction on the NAN chain, 100 B without the blockchain (Olivares-Rojas et al. 2023)")
    budget(per_reading, tx_bytes, block_bytes / readings - tx_bytes - 4)
    print(f"reading_bytes = {per_reading:.1f} B")
    print(f"reading_tx_bytes = {tx_bytes:.0f} B")
    print(f"reading_bytes_4k_pages = {other[4096] / readings:.1f} B")


def budget(per_reading: float, tx_bytes: float, block_share: float) -> None:
    """Where a reading's bytes go, and what a batch of ``m`` readings per meter and signature would take.

    Every field is one a verifier needs: the member and minute (whose reading, for which interval; the GCM nonce
    and key derive from them), the flags (the plaintext's length), the ciphertext and its tag (each reading
    decrypts alone with its own disclosed key, as PoEf needs), the member's signature. The projection keeps every
    per-reading field and shares the signature, member, version, kind and first minute among ``m`` consecutive
    minutes of one meter (later minutes implied); block and page overheads per reading are held at the measured.
    """
    sig, tag, energies, clear, framing = SIGNATURE_BYTES, TAG_BYTES, 4, 2 + 4 + 1, 1 + 1 + 4
    store_share = per_reading - tx_bytes - 4 - block_share
    print(
        f"per reading: signature {sig} + GCM tag {tag} + energies {energies} + member/minute/flags {clear} + "
        f"version/kind/length {framing} = {sig + tag + energies + clear + framing} B of transaction; "
        f"+ {block_share:.1f} B block header, proposer signature and certificate; + {store_share:.1f} B SQLite "
        f"(row, b-tree, free page space) = {per_reading:.1f} B"
    )
    print(f"the signature alone is {sig} B: one signature per reading cannot reach <= {TARGET_B} B")
    for m in (1, 5, 15):
        shared = sig + 2 + framing + 4  # signature, member, version/kind/length, first minute
        each = tag + energies + 1  # tag, energies, flags
        total = shared / m + each + block_share + store_share
        tx = shared / m + each
        print(f"  batch of {m:>2} minutes per meter and signature: {tx:.1f} B of transaction, ~{total:.0f} B")


def growth(chain: Chain, first_block: int, path: Path, page_size: int) -> int:
    """Bytes a node's store with ``page_size`` pages grows by while it appends ``chain``'s blocks from
    ``first_block`` on (every block re-validated, certificates checked)."""
    store = sqlite_store(path, page_size=page_size)
    store.db.execute("PRAGMA synchronous = NORMAL")
    genesis = next(chain.blocks(0))
    store.commit_block(0, genesis.hash, genesis.header.time, genesis.encode(), StateChanges())
    copy = Chain.open(store)
    for block in chain.blocks(1):
        if block.height == first_block:
            before = file_size(store)
        copy.append(block)
    after = file_size(store)
    store.close()
    return after - before


if __name__ == "__main__":
    main()
