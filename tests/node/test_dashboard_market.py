"""The dashboard's market (``/v1/dashboard``'s ``market``): per slot what the node's own chain holds, on a chain where
known extractions, trades and deposits were committed by the real PETra roles (``tests/conftest.py``'s ``net``), served
by a node built as ``gridledger node run`` builds it; a deposit committed through the running node's API shows up
at once; and the window stays bounded while the totals cover the whole chain."""

from __future__ import annotations

from pathlib import Path

import httpx
from tests.conftest import Net, build_net

from gridledger.client import NodeClient
from gridledger.ledger.assets import ECA, EPA, FA
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.units import energy_cost
from gridledger.node.config import NodeConfig
from gridledger.node.dashboard.market import MarketRounds
from gridledger.node.run import build_service
from gridledger.node.service import NodeService
from gridledger.node.testnet import serve
from gridledger.petra.wallet import combine
from gridledger.store.sqlite import SqliteStore

DSO_SECRET, COORDINATOR_SECRET = "dso", "concentrator-DC1"  # those of tests/conftest.py's chain
PRICE = 100  # minor units per kWh agreed in the market


def trade(net, power: int, start: int, end: int) -> None:
    """One atomic trade of ``power`` W over slots ``[start, end)`` from the seller to the buyer, committed."""
    seller, buyer = net.wallets["seller"], net.wallets["buyer"]
    pay = energy_cost(power * (end - start) * net.chain.genesis.slot_seconds, PRICE)
    tx = combine(
        seller.leg(EPA(power, start, end), buyer.new_address()),
        buyer.leg(FA(pay), seller.new_address()),
        buyer.leg(ECA(power, start, end), seller.new_address()),
    )
    net.commit(buyer.sign(seller.sign(tx, net.chain_id), net.chain_id))


def deposit(net, wallet: str, meter: str):
    """Everything ``wallet`` holds, to a fresh deposit address of ``meter`` (one transfer)."""
    w = net.wallets[wallet]
    return w.sign(combine(w.sweep(net.meters[meter].deposit_address())), net.chain_id)


def market_chain(net) -> None:
    """On ``net`` (slot 0: MI1 and MI2 extracted 2 kW of EPA and of ECA over slots [1, 5) and FA): a mix-free
    market: in slot 1 a trade of 800 W over [1, 3) (400 Wh), in slot 2 one of 700 W over [3, 5) (350 Wh), in slot 3
    the seller's deposit; then a payment with change (neither a trade nor a deposit)."""
    net.at_slot(1)
    trade(net, 800, 1, 3)
    net.at_slot(2)
    trade(net, 700, 3, 5)
    net.at_slot(3)
    net.commit(deposit(net, "seller", "MI1"))
    buyer = net.wallets["buyer"]
    net.commit(buyer.sign(combine(buyer.leg(FA(5), buyer.new_address())), net.chain_id))


def market_node(folder: Path) -> tuple[NodeService, Net]:
    """A node (DC1, the chain's coordinator, built as ``gridledger node run`` builds it) over the chain of
    :func:`market_chain`, written to ``folder``; the DSO may call it as ``operator``. Not started."""
    store = SqliteStore(folder / "chain.sqlite")
    net = build_net(store)
    market_chain(net)
    store.close()
    cfg = NodeConfig(
        "DC1",
        "concentrator",
        KeyPair.from_secret(COORDINATOR_SECRET),
        str(folder / "chain.sqlite"),
        net.chain.genesis_block.encode(),
        "127.0.0.1",
        0,
        "inprocess",
        registry=[("operator", "dso", KeyPair.from_secret(DSO_SECRET).public)],
    )
    return build_service(cfg), net


def row(slot: int, **counts) -> dict:
    base = {"extractions": 0, "epa_issued_wh": 0, "eca_issued_wh": 0, "mixes": 0, "trades": 0, "traded_wh": 0}
    return {"slot": slot, **base, "deposits": 0, **counts}


EXPECTED = [
    row(0, extractions=2, epa_issued_wh=2_000, eca_issued_wh=2_000),  # 2 kW over 4 slots of 15 min, each
    row(1, trades=1, traded_wh=400),
    row(2, trades=1, traded_wh=350),
    row(3, deposits=1),
]


def test_the_dashboard_shows_each_slots_extractions_trades_and_deposits(tmp_path):
    svc, net = market_node(tmp_path)
    svc.start()
    try:
        with serve(svc.app) as url:
            market = httpx.get(url + "/v1/dashboard").json()["market"]
            assert market["slots"] == EXPECTED
            assert market["total"] == {
                "slots": 4,
                "extractions": 2,
                "epa_issued_wh": 2_000,
                "eca_issued_wh": 2_000,
                "mixes": 0,
                "trades": 2,
                "traded_wh": 750,
                "deposits": 1,
            }
            # the buyer's deposit, committed by the running node now (its clock: today's slot)
            with NodeClient(url, "operator", KeyPair.from_secret(DSO_SECRET)) as c:
                height = c.wait(c.send(deposit(net, "buyer", "MI2")))["height"]
            block_time = svc.chain.state.tip_time
            assert svc.chain.state.height == height
            slot = (block_time - net.chain.genesis.start_time) // net.chain.genesis.slot_seconds
            market = httpx.get(url + "/v1/dashboard").json()["market"]
            assert market["slots"] == [*EXPECTED, row(slot, deposits=1)]
            assert market["total"]["deposits"] == 2 and market["total"]["slots"] == 5
    finally:
        svc.stop()


def test_only_the_latest_slots_are_kept_and_the_totals_cover_every_slot(net):
    market_chain(net)
    rounds = MarketRounds(kept=2)
    for block in net.chain.blocks(0):
        rounds.add(block)
    view = rounds.view()
    assert view["slots"] == EXPECTED[-2:]
    assert view["total"]["slots"] == 4 and view["total"]["trades"] == 2 and view["total"]["extractions"] == 2


def test_blocks_before_the_genesis_clock_are_not_counted(net):
    """Without the genesis block first there is no slot clock: nothing is counted (never a guessed slot)."""
    market_chain(net)
    rounds = MarketRounds(kept=5)
    for block in net.chain.blocks(1):
        rounds.add(block)
    view = rounds.view()
    assert view["slots"] == [] and view["total"]["slots"] == view["total"]["extractions"] == 0
