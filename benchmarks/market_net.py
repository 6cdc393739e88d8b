"""The market across processes (`cluster up --community`): a round's duration and its trades and deposits, at 4 and
8 homes, secure (TLS, the default) and insecure (plain HTTP).

Each configuration starts a real community cluster (etcd, the nodes, one relay and one prosumer per home, the bid
store) with ``SLOT_S`` slots and watches ``market-status.json`` until ``ROUNDS`` rounds settled (every trade and at
least one deposit committed) or ``TIMEOUT_S`` passed. A round for slot t runs in slot t − 1; its duration is from
the start of that slot to the moment this watcher saw its trades committed (polled every 0.5 s; the bid store
rewrites its status once per slot, so this is an upper bound, to about one slot). Deposits are counted per settled
round: the deposits committed in the records up to one slot after the last settled round, divided by the settled
rounds (the store files a deposit under the round in force when it forwards it, often the next one).

The bid store's fail-over (:func:`failover`, 4 homes, secure): once a round settled, ``kill -9`` the active bid
store; the take-over is from the kill to the moment the standby recorded that it holds the market lease (its
``takeovers`` in ``market-status.json``), and the market is back when a round the standby cleared settled (from the
kill; the dead store's round is lost, and a round needs a whole slot).
Run from the repository root: ``.venv/bin/python benchmarks/market_net.py``.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path

from gridledger.node import cluster
from gridledger.node.market import BIDSTORE_ID, STANDBY_ID, STATUS_FILE, MarketPlan, Replica
from gridledger.node.market_up import up_community

SLOT_S = 30
ROUNDS = 3
TIMEOUT_S = 300.0
COMMUNITY = """
[community]
name = "bench"
location = "morelia"
slot_seconds = 900
start = 2024-04-11
days = 1

[prices]
consumption_per_kwh = 120
production_per_kwh = 60

[dso]
max_epa_w = 10000
max_eca_w = 10000
credit_fa = 100000

[[feeders]]
id = "F1"
internal_capacity_w = 40000
external_capacity_w = 20000
"""


def community(homes: int) -> str:
    rows = "".join(
        f'\n[[homes]]\nid = "MI{i:03d}"\nfeeder = "F1"\nannual_kwh = 2500.0\npv_kw = {3.0 if i % 2 else 0.0}\n'
        for i in range(1, homes + 1)
    )
    return COMMUNITY + rows


def run(homes: int, insecure: bool) -> dict:
    base = Path(tempfile.mkdtemp(prefix="market-bench-"))
    (base / "c.toml").write_text(community(homes))
    folder = base / "net"
    t0 = time.monotonic()
    up_community(folder, base / "c.toml", SLOT_S, insecure=insecure, timeout=120)
    up_s = time.monotonic() - t0
    genesis = Replica(MarketPlan.load(folder).genesis).genesis
    seen: dict[int, tuple[float, dict]] = {}
    rounds: list[dict] = []
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while len(seen) < ROUNDS and time.monotonic() < deadline:
            path = folder / STATUS_FILE
            rounds = json.loads(path.read_text())["rounds"] if path.exists() else []
            for r in rounds:
                done = r["trades"] and r["committed_trades"] == len(r["trades"])
                if done and r["slot"] not in seen and len(seen) < ROUNDS:
                    start = genesis.start_time + (r["slot"] - 1) * genesis.slot_seconds
                    seen[r["slot"]] = (time.time() - start, r)
            time.sleep(0.5)
        if seen:  # the last rounds' deposits: filed and committed by the store's next status
            time.sleep(1.5 * SLOT_S)
            rounds = json.loads((folder / STATUS_FILE).read_text())["rounds"]
    finally:
        cluster.down(folder)
    filed = sum(r["committed_deposits"] for r in rounds if seen and r["slot"] <= max(seen) + 1)
    rows = [r for _, r in seen.values()]
    return {
        "homes": homes,
        "mode": "insecure" if insecure else "secure",
        "up_s": up_s,
        "settled": len(rows),
        "round_s": statistics.median(d for d, _ in seen.values()) if seen else float("nan"),
        "orders": statistics.median(r["orders"] for r in rows) if rows else 0,
        "trades": statistics.median(r["committed_trades"] for r in rows) if rows else 0,
        "deposits": filed / len(seen) if seen else 0.0,
    }


def status(folder: Path) -> dict:
    path = folder / STATUS_FILE
    return json.loads(path.read_text()) if path.exists() else {"rounds": []}


def settled(folder: Path, store: str) -> list[dict]:
    """The rounds ``store`` cleared whose trades all committed."""
    return [
        r
        for r in status(folder)["rounds"]
        if r.get("store") == store and r["trades"] and r["committed_trades"] == len(r["trades"])
    ]


def failover(homes: int = 4) -> dict:
    """Kill the active bid store once one of its rounds settled; seconds to the standby's lease and to a settled
    round of the standby's (NaN if not within ``TIMEOUT_S``)."""
    base = Path(tempfile.mkdtemp(prefix="market-bench-"))
    (base / "c.toml").write_text(community(homes))
    folder = base / "net"
    state = up_community(folder, base / "c.toml", SLOT_S, timeout=120)
    took = back = float("nan")
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not settled(folder, BIDSTORE_ID) and time.monotonic() < deadline:
            time.sleep(0.5)
        victim = next(m for m in state["market"] if m["id"] == BIDSTORE_ID)
        killed = time.time()
        os.killpg(victim["pid"], signal.SIGKILL)
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            s = status(folder)
            if s.get("active") == STANDBY_ID:
                took = s["takeovers"][-1]["at"] - killed
            if settled(folder, STANDBY_ID):
                back = time.time() - killed
                break
            time.sleep(0.5)
    finally:
        cluster.down(folder)
    return {"homes": homes, "takeover_s": took, "back_s": back}


def main() -> None:
    results = [run(homes, insecure) for homes in (4, 8) for insecure in (True, False)]
    print(f"{'homes':>5} {'mode':>8} {'up s':>6} {'settled':>7} {'round s':>8} {'orders':>6} {'trades':>6} {'deps':>5}")
    for r in results:
        print(
            f"{r['homes']:>5} {r['mode']:>8} {r['up_s']:>6.1f} {r['settled']:>4}/{ROUNDS} {r['round_s']:>8.1f} "
            f"{r['orders']:>6} {r['trades']:>6} {r['deposits']:>5.1f}"
        )
    print(f"(medians over the settled rounds; {SLOT_S} s slots)")
    for r in results:
        tag = f"{r['homes']}_homes_{r['mode']}"
        print(f"market_round_{tag} = {r['round_s']:.1f} s")
        print(f"market_trades_per_round_{tag} = {r['trades']} trades")
        print(f"market_deposits_per_round_{tag} = {r['deposits']:.1f} deposits")
    f = failover()
    print(f"market_bidstore_takeover_{f['homes']}_homes_secure = {f['takeover_s']:.2f} s")
    print(f"market_bidstore_round_back_{f['homes']}_homes_secure = {f['back_s']:.1f} s")


if __name__ == "__main__":
    main()
