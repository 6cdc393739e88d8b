"""Digital-twin benchmark: the cost of securing a twin message, and detection over the attack scenarios.

1. Per message: seal (AES-GCM-128 + Ed25519) and the controller's full accept path (verify, decrypt, map,
   store, detectors), compared with parsing the same report as plain JSON (what an unsecured twin would do).
2. Every registered scenario, RUNS seeded runs on a 3-household community (the twin lab's on mosquitto; the
   ledger ones on one local network of node processes, on etcd, which they share): detection rate, false-alarm
   rate, mean time to detect (wall clock), data lost.

Run from the repo root: ``.venv/bin/python benchmarks/twin_attacks.py`` (about 4 minutes on a busy 2-core
machine; needs mosquitto and etcd, each part is skipped without its server).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from gridledger.node.etcd import EtcdUnavailable, etcd_binary
from gridledger.twin import envelope
from gridledger.twin.device_process import prepare
from gridledger.twin.identity import Credentials
from gridledger.twin.mapping import twin_from_report
from gridledger.twin.mqtt import mosquitto_binary
from gridledger.twin.scenarios import RunContext, scenarios, summarize
from gridledger.twin.scenarios.ledger_lab import LedgerLab
from gridledger.twin.twin_controller import Thresholds, TwinController
from gridledger.twin.twin_store import TwinStore

MESSAGES = 2000
REPEATS = 5
RUNS = 2
# MI002 of the example community, one report per simulated minute from an evening (2000 minutes: 33 h)
HOUSEHOLD = {
    "community": "examples/community.toml",
    "home": "MI002",
    "days": 3,
    "start": "2024-04-11T18:00:00-06:00",
    "interval_s": 60,
    "history_reports": 0,
}


def per_message_us(fn, n: int) -> float:
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn(n)
        times.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(times)


def message_costs() -> dict[str, float]:
    creds = Credentials.generate("m1")
    signal, _ = prepare("m1", HOUSEHOLD)
    payloads = [signal.step() for _ in range(MESSAGES)]
    plain = [envelope.canonical(p) for p in payloads]
    sealed = [envelope.seal(creds.signing_key, creds.aes_key, "m1", i + 1, "report", p) for i, p in enumerate(payloads)]

    def seal(n: int) -> None:
        for i in range(n):
            envelope.seal(creds.signing_key, creds.aes_key, "m1", i, "report", payloads[i])

    def plain_parse(n: int) -> None:
        for raw in plain[:n]:
            twin_from_report(json.loads(raw))

    def accept(n: int) -> None:
        controller = TwinController(TwinStore(), os.urandom(32), thresholds=Thresholds(rate_max_messages=10**9))
        controller.register_physical(creds.identity, {"ID": 1, "Name": "Smart_Meter", "On": 1}, creds.aes_key)
        for raw in sealed[:n]:
            assert controller.receive(raw).accepted

    return {
        "seal_us": per_message_us(seal, MESSAGES),
        "accept_us": per_message_us(accept, MESSAGES),
        "plain_parse_us": per_message_us(plain_parse, MESSAGES),
        "envelope_bytes": statistics.median(len(r) for r in sealed),
        "plain_bytes": statistics.median(len(r) for r in plain),
    }


def etcd_available() -> bool:
    try:
        etcd_binary()
    except EtcdUnavailable:
        return False
    return True


def main() -> None:
    costs = message_costs()
    print(f"per message (median of {REPEATS} x {MESSAGES}):")
    print(f"  device seal (AES-GCM-128 + Ed25519)      {costs['seal_us']:8.1f} us")
    print(f"  controller accept (verify..detectors)    {costs['accept_us']:8.1f} us")
    print(f"  plain JSON parse + map (no security)     {costs['plain_parse_us']:8.1f} us")
    print(f"  size: envelope {costs['envelope_bytes']:.0f} B vs plain {costs['plain_bytes']:.0f} B")
    headline = {
        "twin_seal_us": (costs["seal_us"], "us"),
        "twin_accept_us": (costs["accept_us"], "us"),
        "twin_envelope_overhead": (costs["envelope_bytes"] / costs["plain_bytes"], "x"),
    }
    runnable = {"twin lab": mosquitto_binary() is not None, "ledger": etcd_available()}
    for part, ok in runnable.items():
        if not ok:
            print(f"{part} scenarios skipped: {'mosquitto' if part == 'twin lab' else 'etcd'} is not installed")
    if any(runnable.values()):
        print(f"\nscenarios ({RUNS} runs each, 3 households, wall-clock time to detect):")
        rates, mttds, lost = [], [], 0
        with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
            network = stack.enter_context(LedgerLab(Path(tmp) / "network", 3)) if runnable["ledger"] else None
            for name, scenario in sorted(scenarios().items()):
                if not runnable["ledger" if scenario.needs_etcd else "twin lab"]:
                    continue
                shared = network if scenario.needs_etcd else None
                results = [scenario.run(RunContext(i, 3, Path(tmp) / f"{name}-{i}", shared)) for i in range(RUNS)]
                s = summarize(name, results)
                rates.append(s.detection_rate)
                lost += s.data_lost
                if s.mean_time_to_detect_s is not None:
                    mttds.append(s.mean_time_to_detect_s)
                mttd = "-" if s.mean_time_to_detect_s is None else f"{s.mean_time_to_detect_s:.3f} s"
                print(
                    f"  {name:16s} detection {s.detection_rate:4.0%}  false alarms {s.false_alarm_rate:.4f}"
                    f"  time to detect {mttd:>9s}  data lost {s.data_lost}"
                )
        headline["twin_detection_rate"] = (statistics.fmean(rates), "fraction")
        headline["twin_median_time_to_detect_s"] = (statistics.median(mttds), "s")
        headline["twin_data_lost"] = (lost, "readings or transactions")
    print()
    for key, (value, unit) in headline.items():
        print(f"{key} = {value:.4g} {unit}")


if __name__ == "__main__":
    main()
