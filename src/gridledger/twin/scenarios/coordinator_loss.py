"""Coordinator loss (ledger level): the leading coordinator is killed (SIGKILL) under a stream of transactions.

Every meter submits ``ISSUES_PER_METER`` transactions, one every ``GAP_S`` seconds, to its own node; at
``KILL_AT_S`` into the stream the coordinator that leads the NAN chain is killed. Pending transactions wait in
etcd; the leader's term lapses (no renewal for 0.4 s), the backup concentrator takes over, catches up and goes on
(``node.sequencer``). Detected = a block proposed by the backup is committed; time to detect = from the kill to
the first such block seen by a meter; data lost = submitted transactions never committed; false alarm = a valid
transaction rejected. The killed coordinator is restarted afterwards and catches up (it is then the backup).
"""

from __future__ import annotations

import threading
import time

from gridledger.node.testnet import wait_until
from gridledger.twin.scenarios.base import RunContext, RunResult, register
from gridledger.twin.scenarios.ledger_lab import POLL_S, LedgerLab, LedgerScenario

ISSUES_PER_METER = 12
GAP_S = 0.15
KILL_AT_S = 0.6
TAKEOVER_TIMEOUT_S = 30.0


class CoordinatorLoss(LedgerScenario):
    name = "coordinator-loss"
    threat = "coordinator loss: the leading coordinator killed under load"
    detector = "etcd leader term unrenewed for 0.4 s; the backup coordinator takes over and commits the pending blocks"

    def attack(self, lab: LedgerLab, ctx: RunContext) -> RunResult:
        net = lab.network
        leader = net.leader()
        survivor = next(c for c in lab.coordinators if c != leader)
        backup_key = net.node_key(survivor).public
        observer = lab.meters[ctx.seed % len(lab.meters)]
        submitted: list[bytes] = []

        def stream(meter: str) -> None:
            submitted.extend(lab.submit_issues(meter, meter, ISSUES_PER_METER, GAP_S))

        threads = [threading.Thread(target=stream, args=(m,)) for m in lab.meters]
        for thread in threads:
            thread.start()
        time.sleep(KILL_AT_S)
        height_at_kill = net.status(observer)["height"]
        net.kill(leader)
        killed_at = time.time()
        seen = {"height": height_at_kill}

        def backup_block() -> bool:
            for block in net.blocks(observer, seen["height"] + 1):
                seen["height"] = block.height
                if block.header.proposer == backup_key:
                    return True
            return False

        try:
            wait_until(backup_block, TAKEOVER_TIMEOUT_S, "a block of the backup coordinator", POLL_S)
            detect: float | None = time.time() - killed_at
        except TimeoutError:
            detect = None
        for thread in threads:
            thread.join()
        statuses = lab.wait_final(submitted)
        net.restart(leader)
        height = lab.wait_idle()
        codes = [s.get("code") for s in statuses.values() if s["status"] == "rejected"]
        return RunResult(
            injected=f"leading coordinator {leader} killed (SIGKILL) under {len(submitted)} transactions",
            detected=detect is not None,
            time_to_detect_s=detect,
            false_alarms=len(codes),
            honest_observations=len(submitted),
            data_lost=sum(s["status"] != "committed" for s in statuses.values()),
            details={
                "killed": leader,
                "took_over": survivor,
                "now_leading": net.leader(),
                "height_at_kill": height_at_kill,
                "height": height,
                "rejected": codes,
            },
        )


register(CoordinatorLoss())
