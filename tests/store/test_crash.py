"""Crash safety: a writer process is killed with SIGKILL at seeded random moments while it commits blocks.

The writer (``workload.commit_forever``, a process of its own, forked from a ``multiprocessing`` forkserver
that has the modules imported already, so a run starts in milliseconds) opens the store, a new chain or the
one its killed predecessor left, and commits workload blocks in a loop: issues, transfers spending earlier
outputs and policies, so every table is written. Around each ``commit_block`` it reports ``B height`` before
the call and ``C height hash`` after it returned. The parent waits for ``R`` (ready), sleeps a seeded random
delay and sends SIGKILL. Then it reopens the store: ``verify_store`` must pass (every block re-validated, the
state tables equal to the replay) and the block last reported committed must be stored with the same hash, so
no committed block is lost. A kill whose last report is a ``B`` landed inside a commit. Every
``KILLS_PER_STORE`` kills the test moves on to a fresh store, which keeps the replay after each kill short.
"""

from __future__ import annotations

import multiprocessing
import random
import signal
import time
from collections import Counter

import pytest

from gridledger.chain import verify_store
from gridledger.ledger.block import Block
from gridledger.store import open_store
from workload import commit_forever

SEED = 20_260_101
KILLS_PER_STORE = 10
MAX_DELAY_S = 0.3  # a few blocks' worth after the writer is ready: kills land before, inside and between commits
SIZES = {"txs_per_block": 8, "outputs_per_tx": 32}  # about 300 rows per block: a commit takes milliseconds
#: Imported once by the forkserver; ``__main__`` (pytest's) too, or every writer would import it again.
PRELOAD = ["__main__", "workload", "gridledger.store.sqlite", "gridledger.store.postgres"]


@pytest.fixture(scope="module")
def forkserver():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def kill_and_check(ctx, url: str, rng: random.Random, where: Counter) -> None:
    """One writer on ``url``, killed after a random delay; then the store is checked."""
    reports, child_end = ctx.Pipe(duplex=False)
    writer = ctx.Process(target=commit_forever, args=(url, rng.getrandbits(32), child_end), kwargs=SIZES)
    writer.start()
    child_end.close()
    try:
        assert reports.poll(60), "the writer did not start"
        assert reports.recv_bytes() == b"R"
        time.sleep(rng.uniform(0, MAX_DELAY_S))
    finally:
        writer.kill()
        writer.join()
    lines = []
    while True:
        try:
            lines.append(reports.recv_bytes().decode())
        except EOFError:
            break
    assert not any(ln.startswith("E ") for ln in lines), lines[-1]
    assert writer.exitcode == -signal.SIGKILL
    where["inside a commit" if lines and lines[-1].startswith("B ") else "between commits"] += 1
    committed = [ln.split() for ln in lines if ln.startswith("C ")]
    if url.startswith("postgresql://"):
        _wait_for_dead_sessions(url)
    store = open_store(url)
    try:
        tip = store.tip_height()
        if committed:
            height, block_hash = int(committed[-1][1]), committed[-1][2]
            assert tip is not None and tip >= height, f"block {height} was reported committed; the tip is {tip}"
            assert Block.decode(store.block_bytes(height)).hash.hex() == block_hash
        if tip is not None:
            assert verify_store(store).height == tip
    finally:
        store.close()


def _wait_for_dead_sessions(url: str, timeout: float = 30.0) -> None:
    """Wait until the killed writer's server session is gone.

    SIGKILL ends the PostgreSQL *client*; the server may still finish a COMMIT it had received, a moment later.
    Checking before that would read a tip that then moves (a race of the test, not a lost or torn block).
    """
    import psycopg

    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as db:
        while True:
            (others,) = db.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND state IS DISTINCT FROM 'idle'"
            ).fetchone()
            if not others:
                return
            assert time.monotonic() < deadline, "the killed writer's session never ended"
            time.sleep(0.02)


def crash_run(ctx, new_url, kills: int, seed: int) -> Counter:
    """``kills`` writer runs, a fresh store every ``KILLS_PER_STORE``; where the kills landed."""
    rng = random.Random(seed)
    where: Counter = Counter()
    url = None
    for k in range(kills):
        if k % KILLS_PER_STORE == 0:
            url = new_url()
        kill_and_check(ctx, url, rng, where)
    return where


@pytest.mark.slow
def test_sqlite_survives_sigkill_during_commits(forkserver, tmp_path):
    stores = iter(range(1000))
    where = crash_run(forkserver, lambda: f"sqlite:///{tmp_path / f'c{next(stores)}.sqlite'}", 50, SEED)
    print(f"\nSQLite, 50 SIGKILLs (seed {SEED}): {dict(where)}")
    assert where["inside a commit"] >= 1


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_survives_sigkill_during_commits(forkserver, pg_schema_url):
    where = crash_run(forkserver, pg_schema_url, 20, SEED + 1)
    print(f"\nPostgreSQL, 20 SIGKILLs (seed {SEED + 1}): {dict(where)}")
    assert where["inside a commit"] >= 1
