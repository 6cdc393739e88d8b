"""Privacy: how well can an adversary link trades to meters, for mixes of N = 5, 20 and 50?

The system runs for real (``gridledger.sim.market_rounds.Microgrid``, in one process): every round each of the
N prosumers extracts one 500 W EPA unit and one ECA + FA unit (the cover trade makes the issue transactions
of buyers, sellers and idle prosumers identical), mixes each unit by CoinShuffle over onion circuits, and
about 40 % sell and 40 % buy one unit at random limit prices; matched units are traded, everything is
deposited back to one-time meter addresses, and every meter bills every slot from a private measurement.

The adversary holds the whole ledger, the bid store's records (every order with its assets and one-time
address, the order and slot of each post, the exit relay it came from, the trades the store built) and the
DSO's view (each meter's energy per slot, and its bills). For each side of each committed trade it guesses
the meter, by:

* *graph*: following the traded coin back through the transaction graph to the mix that created it; the
  mix's input meters are the candidates (a uniform guess among them is the 1/N baseline);
* *mix position*: the input at the same position as the coin's output in the mix transaction;
* *timing*: the meter whose issue had the same rank in the issue block as the order's rank among the round's
  posts;
* *exit relay*: the meter whose relay delivered the post;
* *bills*: the money each meter's bills imply it paid or received (bill total minus the energy charge of its
  per-slot energy, at the public prices) must equal the payments of the orders assigned to it; an integer
  program (HiGHS) finds an assignment of orders to candidate meters meeting every meter's total (one EPA and
  one ECA unit per meter and round), preferring the timing guesses. Run once with bills per slot (what
  PETra's per-interval billing would reveal) and once with the system's bill totals per billing period.

Reported: each attack's accuracy against 1/N, for each N. Target: at most 1/N + 0.05 for N >= 20 (with the
system's billing). Run from the repository root: ``.venv/bin/python benchmarks/privacy_linking.py``.
"""

from __future__ import annotations

import asyncio
import random
import statistics
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from rich.progress import Progress
from scipy.optimize import LinearConstraint, milp
from scipy.sparse import coo_matrix

from gridledger.ledger.assets import outpoint
from gridledger.ledger.billing import energy_charge
from gridledger.ledger.kinds.meter_issue import MeterIssue
from gridledger.ledger.kinds.transfer import Transfer
from gridledger.market.orders import Side
from gridledger.petra.prosumer import Intent
from gridledger.sim.market_rounds import DsoView, Microgrid

#: N → (rounds per run, runs with different seeds); every run is one billing period.
RUNS = {5: (8, 4), 20: (8, 4), 50: (5, 2)}
MILP_SECONDS = 30


@dataclass
class Held:
    """Everything the adversary holds after the run, and the truth it is scored against."""

    n: int
    blocks: list
    history: list
    log: list
    trades: list
    relay_meter: dict[str, str]
    prices: object
    per_slot: DsoView
    per_period: DsoView
    truth: dict[str, str] = field(default_factory=dict)


async def simulate(n: int, rounds: int, seed: int) -> Held:
    g = await Microgrid.create(n, seed=seed, symmetric=True, billing_period_slots=rounds + 1)
    rng = random.Random(seed)
    base = {m: rng.uniform(-300, 500) for m in g.prosumers}
    per_slot, per_period = DsoView(period_slots=1), DsoView(period_slots=rounds + 1)
    trades = []
    for _ in range(rounds):
        intents = {}
        for m in g.prosumers:
            u = rng.random()
            if u < 0.4:
                intents[m] = Intent(Side.OFFER, 1, rng.randrange(85, 116))
            elif u < 0.8:
                intents[m] = Intent(Side.BID, 1, rng.randrange(95, 146))
            else:
                intents[m] = Intent()
        report = await g.run_round(intents)
        committed = {tx.txid for tx in report.blocks[2].transactions} if report.blocks[2] else set()
        trades += [t for t in report.trades if t.tx.txid in committed]
        for m, bill in g.bill(g.slot, {m: round(rng.gauss(base[m], 150)) for m in g.prosumers}).items():
            per_slot.record(m, bill)
            per_period.record(m, bill)
        g.next_slot()
    for m, bill in g.bill(g.slot, {m: round(rng.gauss(base[m], 150)) for m in g.prosumers}).items():
        per_slot.record(m, bill)
        per_period.record(m, bill)
    held = Held(
        n,
        list(g.chain.blocks()),
        list(g.operator.store.history),
        list(g.operator.service.log),
        trades,
        {d.node: d.meter for d in g.directory.relays.values()},
        g.chain.state.policy,
        per_slot,
        per_period,
        dict(g.truth),
    )
    await g.close()
    return held


# ----------------------------------------------------------------------------------------------- adversary
@dataclass
class Case:
    """One side of one trade, as the adversary sees it."""

    order_id: str
    round: int
    side: Side
    candidates: list[str]
    position: int
    amount: int
    timing_rank: int
    exit_meter: str


def reconstruct(h: Held) -> tuple[list[Case], dict, dict]:
    """Follow the graph: issues → mixes → orders → trades. Returns cases, issue ranks and every order."""
    issued: dict[bytes, str] = {}
    issue_rank: dict[tuple[int, str], int] = {}
    mixed: dict[bytes, tuple[list[str], int]] = {}
    round_of_height: dict[int, int] = {}
    rnd = -1
    for block in h.blocks:
        issues = [tx for tx in block.transactions if isinstance(tx, MeterIssue)]
        if issues:
            rnd += 1
            for rank, tx in enumerate(issues):
                issue_rank[(rnd, tx.meter)] = rank
                for i in range(len(tx.outputs)):
                    issued[outpoint(tx.txid, i)] = tx.meter
        round_of_height[block.height] = rnd
        for tx in block.transactions:
            is_transfer = isinstance(tx, Transfer) and len(tx.inputs) > 1
            if (
                is_transfer
                and all(op in issued for op in tx.inputs)
                and len({o.asset for o in tx.outputs}) == 1
            ):
                meters = [issued[op] for op in tx.inputs]  # equal outputs from issued coins: a mix
                for i in range(len(tx.outputs)):
                    mixed[outpoint(tx.txid, i)] = (meters, i)
    post_rank: dict[str, int] = {}
    exit_of: dict[str, str] = {}
    by_slot: dict[int, int] = defaultdict(int)
    for slot, op, oid, exit_relay in h.log:
        if op == "post":
            post_rank[oid] = by_slot[slot]
            by_slot[slot] += 1
            exit_of[oid] = exit_relay
    orders = {p.order_id: p for p in h.history}
    amounts: dict[str, int] = defaultdict(int)
    for t in h.trades:
        amounts[t.offer_id] -= t.payment
        amounts[t.bid_id] += t.payment
    cases = []
    for oid, p in orders.items():
        meters, position = mixed.get(p.order.assets[0], ([issued.get(p.order.assets[0], "?")], 0))
        rnd = p.posted_slot
        cases.append(
            Case(
                oid,
                rnd,
                p.order.side,
                meters,
                position,
                amounts.get(oid, 0),
                post_rank[oid],
                h.relay_meter.get(exit_of[oid], "?"),
            )
        )
    return cases, issue_rank, orders


def timing_guess(c: Case, issue_rank: dict) -> str:
    ranked = sorted(c.candidates, key=lambda m: abs(issue_rank.get((c.round, m), 0) - c.timing_rank))
    return ranked[0]


def money(h: Held, view: DsoView) -> dict[tuple[str, int], int]:
    """Per meter and billing period: FA issued − FA deposited, from the bills and the per-slot energy."""
    charge: dict[tuple[str, int], int] = defaultdict(int)
    for (m, slot), e in view.energy_ws.items():
        charge[(m, slot // view.period_slots)] += energy_charge(e, h.prices.prices(slot))
    return {k: total - charge[k] for k, total in view.period_bills.items()}


def bills_attack(cases: list[Case], issue_rank: dict, flows: dict, period_slots: int) -> dict[str, str]:
    """The integer program: assign orders to candidate meters so that every meter's money adds up."""
    var = [(ci, m) for ci, c in enumerate(cases) for m in c.candidates]
    index = {v: k for k, v in enumerate(var)}
    rows, cols, vals, lo, hi = [], [], [], [], []
    r = 0
    for ci, c in enumerate(cases):  # each order has one owner
        for m in c.candidates:
            rows.append(r), cols.append(index[(ci, m)]), vals.append(1)
        lo.append(1), hi.append(1)
        r += 1
    groups: dict[tuple, list[int]] = defaultdict(list)
    for ci, c in enumerate(cases):
        for m in c.candidates:
            groups[(c.round, c.side, m)].append(index[(ci, m)])
            groups[("money", m, c.round // period_slots)].append(index[(ci, m)])
    for key, ks in groups.items():
        if key[0] == "money":
            _, m, period = key
            amount = [cases[var[k][0]].amount for k in ks]
            for k, a in zip(ks, amount, strict=True):
                rows.append(r), cols.append(k), vals.append(a)
            target = flows.get((m, period), 0)
            lo.append(target), hi.append(target)
        else:  # one EPA (offer) and one ECA (bid) unit per meter and round
            for k in ks:
                rows.append(r), cols.append(k), vals.append(1)
            lo.append(0), hi.append(1)
        r += 1
    a = coo_matrix((vals, (rows, cols)), shape=(r, len(var))).tocsr()
    prior = np.array([-1.0 if timing_guess(cases[ci], issue_rank) == m else 0.0 for ci, m in var])
    res = milp(
        prior,
        constraints=LinearConstraint(a, lo, hi),
        integrality=np.ones(len(var)),
        bounds=(0, 1),
        options={"time_limit": MILP_SECONDS, "disp": False},
    )
    if res.x is None:
        return {c.order_id: timing_guess(c, issue_rank) for c in cases}
    guess = {}
    for k in np.flatnonzero(res.x > 0.5):
        ci, m = var[k]
        guess[cases[ci].order_id] = m
    return guess


def evaluate(h: Held) -> dict[str, list[float]]:
    """Per attack, the score of each side of each committed trade (1 if linked right; the graph baseline
    scores its expected 1/|candidates|)."""
    cases, issue_rank, _ = reconstruct(h)
    traded = [c for c in cases if c.amount != 0]
    guesses = {
        "graph (uniform among mix inputs)": None,
        "mix position": {c.order_id: c.candidates[min(c.position, len(c.candidates) - 1)] for c in cases},
        "timing (issue rank vs post rank)": {c.order_id: timing_guess(c, issue_rank) for c in cases},
        "exit relay": {c.order_id: c.exit_meter for c in cases},
    }
    per_round = {}
    flows_slot = money(h, h.per_slot)
    for rnd in sorted({c.round for c in cases}):
        per_round |= bills_attack([c for c in cases if c.round == rnd], issue_rank, flows_slot, 1)
    guesses["bills per slot (integer program)"] = per_round
    guesses["bills per period (integer program)"] = bills_attack(
        cases, issue_rank, money(h, h.per_period), h.per_period.period_slots
    )
    out = {"graph (uniform among mix inputs)": [1 / len(c.candidates) for c in traded]}
    for name, g in guesses.items():
        if g is not None:
            out[name] = [float(g.get(c.order_id) == h.truth[c.order_id]) for c in traded]
    return out


def main() -> None:
    print(__doc__.split("\n\n")[0])
    scores: dict[int, dict[str, list[float]]] = {}
    with Progress(transient=True) as progress:
        task = progress.add_task("simulating and attacking", total=sum(runs for _, runs in RUNS.values()))
        for n, (rounds, runs) in RUNS.items():
            scores[n] = defaultdict(list)
            for seed in range(runs):
                for name, s in evaluate(asyncio.run(simulate(n, rounds, seed))).items():
                    scores[n][name] += s
                progress.advance(task)
    acc = {n: {k: statistics.mean(v) for k, v in sc.items()} for n, sc in scores.items()}
    samples = {n: len(next(iter(sc.values()))) for n, sc in scores.items()}
    names = list(acc[5])
    print(f"\n{'linking accuracy':<40}" + "".join(f"{'N=' + str(n):>10}" for n in RUNS))
    print(f"{'1/N':<40}" + "".join(f"{1 / n:>10.3f}" for n in RUNS))
    for name in names:
        print(f"{name:<40}" + "".join(f"{acc[n][name]:>10.3f}" for n in RUNS))
    print(f"{'sides of trades scored':<40}" + "".join(f"{samples[n]:>10}" for n in RUNS))
    print(f"{'rounds x runs':<40}" + "".join(f"{f'{r}x{k}':>10}" for r, k in RUNS.values()))
    system = [k for k in names if k != "bills per slot (integer program)"]
    print("\nbest attack on the system (bill totals per billing period) minus 1/N, with a 95 % interval:")
    excess = {}
    for n in RUNS:
        best = max(system, key=lambda k: acc[n][k])
        half = 1.96 * (acc[n][best] * (1 - acc[n][best]) / samples[n]) ** 0.5
        excess[n] = acc[n][best] - 1 / n
        print(f"  N={n:<3} {best:<36} {acc[n][best]:.3f} - {1 / n:.3f} = {excess[n]:+.3f} ± {half:.3f}")
    print("  target: at most +0.05 for N >= 20")
    per_slot = ", ".join(f"N={n}: {acc[n]['bills per slot (integer program)']:.3f}" for n in RUNS)
    print(f"bills per slot (PETra's per-interval reporting) instead: {per_slot}")
    print("\nthe DSO's view (gridledger.sim.market_rounds.DsoView) holds exactly:")
    print("energy_ws[(meter, slot)] in W·s and period_bills[(meter, period)] in minor units;")
    print("no order, address, transaction or counterparty.")
    print(f"linking_excess_n20 = {excess[20]:.3f}")
    print(f"linking_excess_n50 = {excess[50]:.3f}")


if __name__ == "__main__":
    main()
