"""Tampered store (ledger level; the paper's scenario on meter MI2): a meter node's SQLite store is edited while
the node is down.

Even seeds flip one byte of a committed block (seeded block and position); odd seeds change an unspent-output row
(a seeded FA output is raised by a million minor units: the prosumer's balance inflated). The network goes on
meanwhile (the other meters keep committing). On restart the node replays and re-validates its stored chain
(``node.run.open_chain``), finds the change, reports it (``/v1/status`` ``tamper_report``), moves the store aside and
rebuilds its chain from the orderer and its peers, re-validating every block.

A second meter is stopped and restarted with its store intact at the same time, as a control: a report there
is a false alarm (so is one on any node left running). Time to detect = from the restart to the report; data
lost = transactions committed on the network that are missing from the rebuilt chain.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import time
from pathlib import Path

from gridledger.ledger.assets import Asset, AssetKind, Output
from gridledger.node.testnet import wait_until
from gridledger.twin.scenarios.base import RunContext, RunResult, register
from gridledger.twin.scenarios.ledger_lab import POLL_S, LedgerLab, LedgerScenario

ISSUES_WHILE_DOWN = 2  # per meter still up
INFLATE = 1_000_000  # minor units added to an unspent FA output
REPORT_TIMEOUT_S = 30.0


def flip_block_byte(db: sqlite3.Connection, rng: random.Random) -> str:
    """Flip one bit of one byte of a committed block (not the genesis); returns what was changed."""
    (tip,) = db.execute("SELECT MAX(height) FROM blocks").fetchone()
    height = rng.randint(1, tip)
    raw = bytearray(db.execute("SELECT data FROM blocks WHERE height = ?", (height,)).fetchone()[0])
    pos = rng.randrange(len(raw))
    raw[pos] ^= 1 << rng.randrange(8)
    db.execute("UPDATE blocks SET data = ? WHERE height = ?", (bytes(raw), height))
    return f"byte {pos} of block {height} flipped"


def inflate_output(db: sqlite3.Connection, rng: random.Random) -> str:
    """Raise the amount of one unspent FA output by ``INFLATE``; returns what was changed."""
    rows = db.execute("SELECT op, output FROM utxos ORDER BY op").fetchall()
    fa = [(op, Output.decode(raw)) for op, raw in rows if Output.decode(raw).asset.kind == AssetKind.FA]
    op, out = rng.choice(fa)
    richer = Output(Asset(AssetKind.FA, out.asset.amount + INFLATE), out.owner)
    db.execute("UPDATE utxos SET output = ? WHERE op = ?", (richer.encode(), op))
    return f"unspent output {op.hex()[:16]}… raised from FA {out.asset.amount} to {richer.asset.amount}"


def tamper(store: Path, seed: int) -> str:
    """Edit a stopped node's store as an attacker with file access would (sqlite3, not the node's code)."""
    rng = random.Random(seed)
    db = sqlite3.connect(store)
    try:
        change = flip_block_byte(db, rng) if seed % 2 == 0 else inflate_output(db, rng)
        db.commit()
    finally:
        db.close()
    return change


class TamperedStore(LedgerScenario):
    name = "tampered-store"
    threat = "tampered store: a node's stored blocks or state edited while it was down"
    detector = "replay and re-validation of the stored chain at start (tamper report), rebuild from peers"

    def attack(self, lab: LedgerLab, ctx: RunContext) -> RunResult:
        net = lab.network
        rng = random.Random(ctx.seed)
        target = rng.choice(lab.meters)
        control = rng.choice([m for m in lab.meters if m != target])
        lab.wait_final(lab.submit_issues(target, lab.coordinators[0], 1))  # the target holds an FA output
        lab.wait_idle()
        for node in (target, control):
            net.kill(node, signal.SIGTERM)
        change = tamper(net.store_path(target), ctx.seed)
        up = [m for m in lab.meters if m not in (target, control)] or lab.coordinators[:1]
        while_down = [t for m in lab.meters for t in lab.submit_issues(m, up[0], ISSUES_WHILE_DOWN)]
        lab.wait_final(while_down)
        net.restart(control)
        restarted = net.restart(target)
        try:
            report = wait_until(lambda: net.status(target)["tamper_report"], REPORT_TIMEOUT_S, "a report", POLL_S)
        except TimeoutError:
            report = None
        detected_at = time.time()
        height = lab.wait_idle()
        # a node keeps the report of its last start: those tampered in earlier runs (and not restarted) are not
        # honest observations of this run
        lab.tampered = (lab.tampered - {control}) | {target}
        honest = [n for n in lab.nodes if n not in lab.tampered]
        false_alarms = [n for n in honest if net.status(n)["tamper_report"]]
        on_network, rebuilt = net.txids(up[0]), net.txids(target)
        return RunResult(
            injected=f"{target}'s store edited while down: {change}",
            detected=report is not None,
            time_to_detect_s=detected_at - restarted if report is not None else None,
            false_alarms=len(false_alarms),
            honest_observations=len(honest),
            data_lost=len(on_network - rebuilt),
            details={
                "target": target,
                "control_restart": control,
                "tamper_report": report,
                "height": height,
                "committed_while_down": len(while_down),
                "transactions_rebuilt": len(rebuilt),
                "false_reports": false_alarms,
            },
        )


register(TamperedStore())
