"""Flood (ledger level): a compromised meter floods the leading coordinator's API with valid, signed requests.

While the flooder sends as fast as it can from ``FLOOD_THREADS`` connections (for ``FLOOD_S`` seconds, and on until
``AFTER_S`` past its first 429, at most ``MAX_FLOOD_S``), every other meter submits ``HONEST_ISSUES`` transactions
to the same node and polls their status. The node's per-node token
bucket (``node.auth.RateLimiter``: ``rate`` requests per second, bursts of ``burst``, per calling node) answers
the flooder 429 and nobody else. Detected = the flooder got 429; time to detect = from the start of the flood to
its first 429; false alarm = an honest request answered 429 (the meter retries it); data lost = honest
submissions not committed.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

from gridledger.node.client import NodeClient
from gridledger.twin.scenarios.base import RunContext, RunResult, register
from gridledger.twin.scenarios.ledger_lab import RATE_LIMIT, LedgerLab, LedgerScenario

FLOOD_THREADS = 3
FLOOD_S = 2.0
AFTER_S = 0.5
MAX_FLOOD_S = 20.0
HONEST_ISSUES = 4
RETRY_S = 0.2
MAX_RETRIES = 20


@dataclass
class Answers:
    """Status codes one party got, with the Unix time of each."""

    codes: list[tuple[float, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, code: int) -> int:
        with self.lock:
            self.codes.append((time.time(), code))
        return code

    def count(self, code: int) -> int:
        return sum(c == code for _, c in self.codes)

    def first(self, code: int) -> float | None:
        return min((t for t, c in self.codes if c == code), default=None)


class Flood(LedgerScenario):
    name = "flood"
    threat = "flood: a meter floods a node's API (DoS)"
    detector = f"token bucket per calling node ({RATE_LIMIT[0]:g}/s, burst {RATE_LIMIT[1]:g}): HTTP 429"

    def attack(self, lab: LedgerLab, ctx: RunContext) -> RunResult:
        net = lab.network
        flooder = random.Random(ctx.seed).choice(lab.meters)
        target = net.leader()
        honest_meters = [m for m in lab.meters if m != flooder]
        flood, honest = Answers(), Answers()
        submitted: list[bytes] = []
        stop = threading.Event()
        url, key = net.node(target)["url"], net.node_key(flooder)

        def flood_loop() -> None:
            client = NodeClient(url, flooder, key, ca=net.ca)
            try:
                while not stop.is_set():
                    flood.add(client.request("GET", "/v1/status").status_code)
            finally:
                client.close()

        def honest_meter(meter: str) -> None:
            client = net.client(target, meter)
            mine = []
            for _ in range(HONEST_ISSUES):
                tx = lab.issue(meter)
                for _ in range(MAX_RETRIES):  # a refused submission is retried, as a meter would
                    if honest.add(client.submit(tx).status_code) == 202:
                        mine.append(tx.txid)
                        break
                    time.sleep(RETRY_S)
            for txid in mine:
                honest.add(client.request("GET", f"/v1/transactions/{txid.hex()}").status_code)
            submitted.extend(mine)

        started = time.time()
        flooders = [threading.Thread(target=flood_loop) for _ in range(FLOOD_THREADS)]
        meters = [threading.Thread(target=honest_meter, args=(m,)) for m in honest_meters]
        for thread in flooders + meters:
            thread.start()
        for thread in meters:
            thread.join()

        def flooded_enough() -> bool:
            first = flood.first(429)
            return time.time() >= max(started + FLOOD_S, (first or started + MAX_FLOOD_S) + AFTER_S)

        while not flooded_enough() and time.time() < started + MAX_FLOOD_S:
            time.sleep(0.05)
        stop.set()
        for thread in flooders:
            thread.join()
        flood_s = time.time() - started
        statuses = lab.wait_final(submitted)
        first_429 = flood.first(429)
        honest_requests = len(honest.codes)
        return RunResult(
            injected=f"{flooder} floods {target} ({len(flood.codes)} requests in {flood_s:.1f} s)",
            detected=first_429 is not None,
            time_to_detect_s=None if first_429 is None else first_429 - started,
            false_alarms=honest_requests - honest.count(202) - honest.count(200),
            honest_observations=honest_requests,
            data_lost=HONEST_ISSUES * len(honest_meters) - sum(s["status"] == "committed" for s in statuses.values()),
            details={
                "flooder": flooder,
                "target": target,
                "flood_requests": len(flood.codes),
                "flood_rate_per_s": round(len(flood.codes) / flood_s),
                "flood_429": flood.count(429),
                "flood_served": flood.count(200),
                "honest_429": honest.count(429),
                "honest_committed": sum(s["status"] == "committed" for s in statuses.values()),
            },
        )


register(Flood())
