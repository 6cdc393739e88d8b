"""The embedded demo: one neighbourhood chain in one process, SQLite store, the whole PETra cycle once.

A DSO authorizes two meters and sets prices; the seller's meter issues EPA, the buyer's meter ECA + FA; they
trade part of it atomically; both deposit everything back to one-time addresses of their meters; the meters
measure the slot and bill it. The DSO, coordinator and meter keys and the block times are fixed (so the genesis
block and the bills are the same on every run); the prosumers' one-time addresses are fresh each run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gridledger.chain import Chain
from gridledger.ledger.assets import ECA, EPA, FA
from gridledger.ledger.billing import Bill
from gridledger.ledger.block import Block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.dso_policy import MeterLimits
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.ledger.units import DEFAULT_SLOT_SECONDS, energy_cost
from gridledger.petra.dso import DSO
from gridledger.petra.meter import SmartMeter
from gridledger.petra.wallet import Wallet, combine
from gridledger.store.sqlite import SqliteStore

START_TIME = 1_767_225_600  # 2026-01-01T00:00:00Z, slot 0
PRICES = (120, 80)  # centavos per kWh: priceConsumption, priceProduction
TRADE_PRICE = 100  # centavos per kWh agreed in the market
STORE_NAME = "chain.sqlite"


@dataclass
class DemoResult:
    path: Path
    blocks: list[Block] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    bills: dict[str, list[Bill]] = field(default_factory=dict)


def run_demo(out_dir: Path) -> DemoResult:
    """Run the demo into ``out_dir`` (created; must not hold a chain yet)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    store = SqliteStore(out_dir / STORE_NAME)
    result = DemoResult(out_dir / STORE_NAME)
    dso_key, coordinator = KeyPair.from_secret("dso"), KeyPair.from_secret("concentrator-DC1")
    genesis = Genesis("nan-demo", DEFAULT_SLOT_SECONDS, START_TIME, dso_key.public, (coordinator.public,))
    chain = Chain.create(store, genesis, coordinator, START_TIME)
    result.blocks.append(chain.genesis_block)
    dso = DSO(dso_key, chain.chain_id)
    meters = {
        name: SmartMeter(name, KeyPair.from_secret(f"meter-{name}"), chain.chain_id, chain.genesis.slot_seconds)
        for name in ("MI1", "MI2")
    }
    seller, buyer = Wallet(), Wallet()
    clock = [START_TIME]

    def commit(step: str) -> Block:
        clock[0] += 60
        res = chain.propose(coordinator, clock[0])
        if res.rejected or res.block is None:
            raise RuntimeError(f"demo step {step!r} was rejected: {list(res.rejected.values())}")
        slot = chain.state.slot_of(res.block.header.time)
        for w in (seller, buyer):
            w.scan(res.block)
        for m in meters.values():
            m.scan(res.block, slot)
        result.blocks.append(res.block)
        result.steps.append(step)
        return res.block

    # 1. The DSO authorizes both meters, sets prices and limits, in force from slot 0.
    limits = [MeterLimits(n, 5_000, 5_000, 100_000) for n in meters]
    chain.submit(dso.policy(0, prices=PRICES, authorize={n: m.key.public for n, m in meters.items()}, limits=limits))
    commit("DSO authorizes MI1 and MI2, prices 120/80 centavos per kWh, MAXEPA = MAXECA = 5 kW")
    for m in meters.values():
        m.limits = next(lim for lim in limits if lim.meter == m.meter_id)

    # 2. Assets for the next slot: the seller expects a 2 kW surplus, the buyer a 2 kW deficit.
    t = 1
    chain.submit(meters["MI1"].issue([(EPA(2_000, t, t + 1), seller.new_address())], slot=0))
    slot_seconds = chain.genesis.slot_seconds
    budget = energy_cost(2_000 * slot_seconds, PRICES[0])
    chain.submit(
        meters["MI2"].issue([(ECA(2_000, t, t + 1), buyer.new_address()), (FA(budget), buyer.new_address())], slot=0)
    )
    commit(f"MI1 issues EPA 2000 W for slot {t}; MI2 issues ECA 2000 W and FA {budget}")

    # 3. An atomic trade of 1500 W (a partial fill): EPA seller->buyer, FA + ECA buyer->seller.
    power = 1_500
    pay = energy_cost(power * slot_seconds, TRADE_PRICE)
    trade = combine(
        seller.leg(EPA(power, t, t + 1), buyer.new_address()),
        buyer.leg(FA(pay), seller.new_address()),
        buyer.leg(ECA(power, t, t + 1), seller.new_address()),
    )
    trade = buyer.sign(seller.sign(trade, chain.chain_id), chain.chain_id)
    chain.submit(trade)
    commit(f"trade: 1500 W in slot {t} for {pay} centavos (EPA to buyer; FA + ECA to seller), signed by both")

    # 4. Both deposit everything back to one-time addresses of their own meters (leftovers included).
    for wallet, meter in ((seller, meters["MI1"]), (buyer, meters["MI2"])):
        leg = wallet.sweep(meter.deposit_address())
        chain.submit(wallet.sign(combine(leg), chain.chain_id))
    commit("deposits: each prosumer returns all its assets to its own meter")

    # 5. The meters measure slot t and bill; FA is billed in the slot it moved in (slot 0).
    measured = {"MI1": -400, "MI2": 450}  # Wh in slot t: MI1 produced 1.6 kW net, MI2 drew 1.8 kW
    for name, m in meters.items():
        result.bills[name] = [m.bill(0, 0, PRICES), m.bill(t, measured[name], PRICES)]
    store.close()
    return result
