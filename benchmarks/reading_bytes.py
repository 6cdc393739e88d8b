"""Bytes on disk per signed reading on the NAN chain (SQLite store), measured from the growth of the file: one READING
per meter and minute, and READING_BATCHes of ``m`` minutes per meter and signature, on the same workload.

The NAN of benchmarks/nan_latency.py — 2,000 meters reporting once a minute at their own second, a block every
``INTERVAL_S`` (so 25 readings per block), each block with its quorum certificate from a committee of
the NAN rule set's ``committee_size`` — run in simulated time (no waiting), with the full PoEf round on every
block (every minute of a batch disclosed, opened and checked). After a warm-up (every meter has reported, so the
per-meter counters exist), ``MINUTES`` minutes of readings are committed (for batches: a whole number of batches);
the concentrator's SQLite file (WAL checkpointed) is measured before and after: bytes per reading = growth /
readings committed in between (a batch of ``m`` minutes counts ``m``; fsync per block is turned off for speed; it
does not change the bytes). The same certified blocks are then appended by nodes whose stores use other SQLite page
sizes: a block of 1–4 KB takes a whole 4 KiB page (SQLite's default), hence the tiers' 512 B pages.

Batching meters are staggered: meter ``i`` sends its first batch after ``i mod m + 1`` minutes, then every ``m``
minutes, so the NAN carries the same 33 readings a second as without batches (all meters on one boundary would put
every batch in one minute of ``m``). A meter sends minute ``t`` of a batch when the batch's last minute has ended:
its reading reaches the chain up to ``m − 1`` minutes later than as a READING ((m − 1) / 2 on average), on top of
the NAN's submit-to-commit latency.

The paper measured 375 B per transaction on its NAN chain, 100 B without the ledger (Olivares-Rojas et al. 2023,
§4.4). Run: ``.venv/bin/python benchmarks/reading_bytes.py`` (about 4 minutes at a load of 5–12; the bytes do not
depend on the load: simulated time, fixed seed).
"""

from __future__ import annotations

import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rich.progress import track

from gridledger.chain import Chain
from gridledger.ledger.committee import quorum
from gridledger.ledger.crypto import SIGNATURE_BYTES
from gridledger.ledger.kinds.reading import TAG_BYTES, ReadingValues
from gridledger.ledger.kinds.reading_batch import readings_of
from gridledger.ledger.ruleset import Tier, tier_ruleset
from gridledger.ledger.state import StateChanges
from gridledger.store.sqlite import SqliteStore
from gridledger.tiers.hierarchy import PAGE_SIZE, START_TIME, build_neighbourhood, simulated_minute, sqlite_store

METERS = 2_000
INTERVAL_S = 0.75
WARM_UP_MINUTES = 3
MINUTES = 10
#: Minutes per batch measured besides one READING per minute, and the one recommended.
BATCHES = (5, 15)
RECOMMENDED = 15
#: Page sizes (B) of the other stores the same blocks are appended to, for comparison (all for single readings).
OTHER_PAGES = (1024, 2048, 4096)
TARGET_B = 64
#: Bytes of the length prefix of each transaction in a block.
LENGTH_B = 4


@dataclass(frozen=True)
class Run:
    """What one NAN run measured (bytes; per reading unless said)."""

    m: int
    blocks: int
    txs: int
    readings: int
    tx_bytes: float  # transaction bytes per reading
    block_share: float  # block header, proposer signature, certificate (and any alarm) per reading
    on_disk: float
    other_pages: dict[int, float]
    votes_per_block: float

    @property
    def store_share(self) -> float:
        return self.on_disk - self.tx_bytes - LENGTH_B * self.txs / self.readings - self.block_share


def file_size(store: SqliteStore) -> int:
    """Bytes of the SQLite file with every committed page written back from the WAL."""
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return os.path.getsize(store.path)


def measure(m: int, pages: tuple[int, ...]) -> Run:
    """The NAN workload with meters sending batches of ``m`` minutes (1: a READING a minute)."""
    warm_up = WARM_UP_MINUTES if m == 1 else m + 1
    minutes = MINUTES if m == 1 else m * max(1, -(-MINUTES // m))
    with tempfile.TemporaryDirectory(prefix="reading-bytes-") as tmp:
        node = build_neighbourhood(METERS, directory=Path(tmp), batch_minutes=m)
        store = node.coordinator.chain.store
        store.db.execute("PRAGMA synchronous = NORMAL")  # no fsync per block: same bytes, a faster run
        rng = random.Random(7)
        profile = [(rng.uniform(0, 60), rng.randint(3, 40), member) for member in node.members.values()]
        profile.sort(key=lambda p: p[0])
        clock, next_cut = float(START_TIME), START_TIME + INTERVAL_S
        first_block = size0 = counted = 0
        for minute in track(range(warm_up + minutes), description=f"NAN minutes, batches of {m} (simulated time)"):
            if minute == warm_up:
                size0, first_block = file_size(store), node.coordinator.chain.height + 1
            minute_start = START_TIME + 60 * (minute + 1)
            for phase, base, member in profile:
                sent = minute_start + phase
                while sent >= next_cut:
                    node.round(int(next_cut))
                    next_cut += INTERVAL_S
                clock = sent
                device = member.device
                txs = device.report(minute, ReadingValues(simulated_minute(rng, base), 0))
                if m > 1 and minute == member.index % m:  # stagger: the first batch is shorter
                    txs += device.flush()
                for tx in txs:
                    node.coordinator.submit(tx)
                    if minute >= warm_up:
                        counted += len(readings_of(tx))
        while node.coordinator.pending or node.coordinator.in_flight:
            node.round(int(max(clock, next_cut)))
            next_cut += INTERVAL_S
        size1 = file_size(store)
        chain = node.coordinator.chain
        blocks = list(chain.blocks(first_block))
        carried = [(tx, len(readings_of(tx))) for b in blocks for tx in b.transactions]
        readings = sum(n for _, n in carried)
        txs = sum(1 for _, n in carried if n)
        if readings < counted:
            raise RuntimeError(f"{counted} readings submitted, only {readings} committed")
        tx_bytes = sum(len(tx.raw) for tx, n in carried if n) / readings
        block_bytes = sum(len(b.encode()) for b in blocks) / readings
        votes = sum(len(b.certificate) for b in blocks) / len(blocks)
        # the same certified blocks, appended (and re-validated) by nodes whose stores use other page sizes
        other = {size: growth(chain, first_block, Path(tmp) / f"pages-{size}.sqlite", size) for size in pages}
        node.close()
    share = block_bytes - tx_bytes - LENGTH_B * txs / readings
    per_page = {size: grown / readings for size, grown in other.items()}
    return Run(m, len(blocks), txs, readings, tx_bytes, share, (size1 - size0) / readings, per_page, votes)


def main() -> None:
    k = tier_ruleset(Tier.NAN).committee_size
    runs = {1: measure(1, OTHER_PAGES)}
    for m in BATCHES:
        runs[m] = measure(m, (4096,))
    single = runs[1]
    print(
        f"NAN of {METERS} meters, a block every {INTERVAL_S} s, committee {k} (certificates of {quorum(k)} votes; "
        f"{single.votes_per_block:.1f} per block)"
    )
    for run in runs.values():
        what = "one READING per minute" if run.m == 1 else f"batches of {run.m} minutes (staggered)"
        print(
            f"{what}: {run.blocks} blocks, {run.txs} transactions, {run.readings} readings "
            f"({run.readings / run.blocks:.1f} per block); transaction {run.tx_bytes * run.readings / run.txs:.0f} B "
            f"(+{LENGTH_B} B length in its block), {run.tx_bytes:.1f} B per reading; block share "
            f"{run.block_share:.1f} B; on disk (SQLite, {PAGE_SIZE} B pages): {run.on_disk:.1f} B per reading"
        )
        for size, grown in run.other_pages.items():
            print(f"  the same blocks in a store with {size} B pages: {grown:.1f} B per reading")
    print("paper: 375 B per transaction on the NAN chain, 100 B without the blockchain (Olivares-Rojas et al. 2023)")
    budget(single)
    for m in BATCHES:
        budget(runs[m])
    print(
        f"latency: a batch goes out when its last minute has ended, so a reading reaches the chain up to m − 1 "
        f"minutes later than as a READING ({RECOMMENDED - 1} min at m = {RECOMMENDED}, {(RECOMMENDED - 1) / 2:.1f} on "
        f"average), on top of the submit-to-commit latency"
    )
    best = runs[RECOMMENDED]
    print(f"recommended: batches of {RECOMMENDED} minutes (a NAN slot; <= {TARGET_B} B: {best.on_disk <= TARGET_B})")
    print(f"reading_bytes = {best.on_disk:.1f} B")
    print(f"reading_bytes_single = {single.on_disk:.1f} B")
    print(f"reading_tx_bytes = {best.tx_bytes:.1f} B")
    print(f"reading_tx_bytes_single = {single.tx_bytes:.0f} B")
    print(f"reading_bytes_4k_pages = {best.other_pages[4096]:.1f} B")
    print(f"reading_bytes_single_4k_pages = {single.other_pages[4096]:.1f} B")


def budget(run: Run) -> None:
    """Where a reading's bytes go, field by field, with ``run.m`` minutes per transaction and signature.

    Every field is one a verifier needs: the member and minute (whose reading, for which interval; the GCM nonce
    and key derive from them), the flags (the plaintext's length), the ciphertext and its tag (each reading
    decrypts alone with its own disclosed key, as PoEf needs), the member's signature. A batch shares the
    signature, member, version, kind, first minute, count and length prefix among its ``m`` minutes (later minutes
    implied); the block and page shares are the run's measured ones.
    """
    m, sig, tag, energies, flags = run.m, SIGNATURE_BYTES, TAG_BYTES, 4, 1
    member, minute, envelope = 2, 4, 2
    count = 0 if m == 1 else 1
    shared = sig + member + minute + envelope + count + LENGTH_B
    each = tag + energies + flags
    computed = shared / m + each
    what = "a READING" if m == 1 else f"a batch of {m}"
    print(
        f"per reading, {what}: (signature {sig} + member {member} + minute {minute} + version/kind {envelope}"
        + (f" + count {count}" if count else "")
        + f" + length {LENGTH_B}) / {m} + (GCM tag {tag} + energies {energies} + flags {flags}) = {computed:.1f} B "
        f"of transaction; + {run.block_share:.1f} B block header, proposer signature and certificate; "
        f"+ {run.store_share:.1f} B SQLite (row, b-tree, free page space) = {run.on_disk:.1f} B"
    )
    if m == 1:
        print(f"the signature alone is {sig} B: one signature per reading cannot reach <= {TARGET_B} B")


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
