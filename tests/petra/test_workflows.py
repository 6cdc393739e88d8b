"""PETra's workflows as real ledger transactions: selling, buying, partial fills, refusals, cover."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.chain import verify_store
from gridledger.ledger.assets import ECA, EPA, FA, AssetKind, Output, outpoint
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.meter_issue import MeterIssue
from gridledger.ledger.kinds.transfer import Transfer, check_conservation
from gridledger.ledger.units import energy_cost
from gridledger.market import clear
from gridledger.market.orders import Match, Side
from gridledger.petra.bidstore import AnonOrder, BidStoreClient, BidStoreError, Posted
from gridledger.petra.controller import Band, MicrogridController
from gridledger.petra.meter import MeterError
from gridledger.petra.onion import OnionNode
from gridledger.petra.operator import MarketOperator
from gridledger.petra.prosumer import Intent, Prosumer
from gridledger.petra.settlement import SettlementError, Trade, build_trades, profile, runs, verify_trades
from gridledger.sim.market_rounds import DsoView, Microgrid

from .conftest import PRICES, SLOT_SECONDS, build_grid, onion_network, run

ADDR = {n: bytes([n]) * 20 for n in range(1, 40)}


# ------------------------------------------------------------------------------------- trade building
def test_runs_merge_equal_consecutive_slots():
    assert runs({1: 5, 2: 5, 3: 7, 5: 7, 6: 0}) == [(1, 3, 5), (3, 4, 7), (5, 6, 7)]
    assert profile([EPA(5, 1, 3), EPA(2, 2, 4)]) == {1: 5, 2: 7, 3: 2}


def _posted(
    oid_seed: int, side: Side, start: int, end: int, power: int, price: int, coin_power: int
) -> Posted:
    """An order backed by made-up coins (for pure tests: nothing here touches a chain)."""
    if side is Side.OFFER:
        outs = (Output(EPA(coin_power, start, end), ADDR[oid_seed]),)
    else:
        fa = energy_cost(coin_power * (end - start) * SLOT_SECONDS, price)
        outs = (
            Output(ECA(coin_power, start, end), ADDR[oid_seed]),
            Output(FA(max(fa, 1)), ADDR[oid_seed + 1]),
        )
    ops = tuple(outpoint(bytes([oid_seed, i]) * 16, i) for i in range(len(outs)))
    order = AnonOrder(side, "F0", start, end, power, price, start, ADDR[oid_seed + 2], ops)
    return Posted(order, outs, 0, oid_seed)


def _flows_ok(trades: list[Trade], posted: dict[str, Posted]) -> None:
    """Every trade conserves each asset kind (the ledger's own rule) and chains its remainders."""
    known = {op: out for p in posted.values() for op, out in zip(p.order.assets, p.outputs, strict=True)}
    for tr in trades:
        spent = [known.pop(op).asset for op in tr.tx.inputs]
        check_conservation(spent, [o.asset for o in tr.tx.outputs])
        known.update({outpoint(tr.tx.txid, i): o for i, o in enumerate(tr.tx.outputs)})


@settings(max_examples=60, deadline=None)
@given(
    offers=st.lists(
        st.tuples(st.integers(0, 3), st.integers(1, 4), st.integers(1, 900), st.integers(50, 150)),
        min_size=1,
        max_size=3,
    ),
    bids=st.lists(
        st.tuples(st.integers(0, 3), st.integers(1, 4), st.integers(1, 900), st.integers(50, 150)),
        min_size=1,
        max_size=3,
    ),
    extra=st.integers(0, 300),
)
def test_trades_conserve_and_each_party_can_verify_its_own(offers, bids, extra):
    posted: dict[str, Posted] = {}
    seed = 1
    for side, rows in ((Side.OFFER, offers), (Side.BID, bids)):
        for start, length, power, price in rows:
            p = _posted(seed, side, start, start + length, power, price, power + extra)
            posted[p.order_id] = p
            seed += 3
    result = clear([p.order.market_order() for p in posted.values()])
    trades = build_trades(posted, result.matches, SLOT_SECONDS)
    _flows_ok(trades, posted)
    assert sum(len(t.matches) for t in trades) == len(result.matches)
    for oid, p in posted.items():
        mine = {o.owner for o in p.outputs} | {p.order.pay_to}
        coins = dict(zip(p.order.assets, p.outputs, strict=True))
        verify_trades([t for t in trades if oid in (t.offer_id, t.bid_id)], p, coins, mine, SLOT_SECONDS)
        sold = sum(m.power_w for t in trades for m in t.matches if oid in (m.offer_id, m.bid_id))
        assert sold == sum(m.power_w for m in result.matches if oid in (m.offer_id, m.bid_id))


def _one_trade():
    offer = _posted(1, Side.OFFER, 1, 3, 800, 100, 1_000)
    bid = _posted(4, Side.BID, 1, 3, 800, 130, 800)
    matches = [
        Match(offer.order_id, bid.order_id, 1, 800, 115),
        Match(offer.order_id, bid.order_id, 2, 300, 115),
    ]
    posted = {offer.order_id: offer, bid.order_id: bid}
    return offer, bid, posted, matches, build_trades(posted, matches, SLOT_SECONDS)[0]


def _verify(p: Posted, trades) -> None:
    verify_trades(
        trades,
        p,
        dict(zip(p.order.assets, p.outputs, strict=True)),
        {o.owner for o in p.outputs} | {p.order.pay_to},
        SLOT_SECONDS,
    )


def test_a_partial_fill_splits_in_power_and_in_time():
    offer, bid, _, matches, trade = _one_trade()
    outs = Counter((o.asset, o.owner) for o in trade.tx.outputs)
    pay = energy_cost(800 * SLOT_SECONDS, 115) + energy_cost(300 * SLOT_SECONDS, 115)
    assert trade.payment == pay
    assert outs == Counter(
        {
            (EPA(800, 1, 2), bid.order.pay_to): 1,
            (EPA(300, 2, 3), bid.order.pay_to): 1,  # sold, per run
            (ECA(800, 1, 2), offer.order.pay_to): 1,
            (ECA(300, 2, 3), offer.order.pay_to): 1,
            (FA(pay), offer.order.pay_to): 1,
            (EPA(200, 1, 2), ADDR[1]): 1,
            (EPA(700, 2, 3), ADDR[1]): 1,  # unsold EPA
            (ECA(500, 2, 3), ADDR[4]): 1,
            (FA(bid.outputs[1].asset.amount - pay), ADDR[5]): 1,  # bid's rest
        }
    )
    _verify(offer, [trade])
    _verify(bid, [trade])


@pytest.mark.parametrize(
    "tamper",
    [
        "underpay",  # the seller gets one minor unit less
        "overtake",  # the buyer loses more ECA than it bought
        "price",  # a match above the bid's limit
        "outside",  # a match outside the order's interval
        "foreign",  # a match of other orders
    ],
)
def test_parties_refuse_to_sign_trades_that_do_not_match(tamper):
    offer, bid, posted, matches, trade = _one_trade()
    outputs = list(trade.tx.outputs)
    victim = offer if tamper == "underpay" else bid
    if tamper == "underpay":
        i = next(
            i for i, o in enumerate(outputs) if o.asset.kind == AssetKind.FA and o.owner == offer.order.pay_to
        )
        j = next(i for i, o in enumerate(outputs) if o.asset.kind == AssetKind.FA and o.owner == ADDR[5])
        outputs[i] = Output(FA(outputs[i].asset.amount - 1), outputs[i].owner)
        outputs[j] = Output(FA(outputs[j].asset.amount + 1), KeyPair.generate().address)
        bad = Trade(
            trade.offer_id,
            trade.bid_id,
            trade.matches,
            trade.payment,
            Transfer(trade.tx.inputs, tuple(outputs)),
            (),
        )
    elif tamper == "overtake":
        i = next(i for i, o in enumerate(outputs) if o.asset == ECA(500, 2, 3))
        outputs[i] = Output(ECA(400, 2, 3), ADDR[4])
        outputs.append(Output(ECA(100, 2, 3), offer.order.pay_to))
        bad = Trade(
            trade.offer_id,
            trade.bid_id,
            trade.matches,
            trade.payment,
            Transfer(trade.tx.inputs, tuple(outputs)),
            (),
        )
    else:
        m = {
            "price": Match(offer.order_id, bid.order_id, 1, 800, 131),
            "outside": Match(offer.order_id, bid.order_id, 3, 100, 115),
            "foreign": Match("x" * 32, bid.order_id, 1, 800, 115),
        }[tamper]
        bad = Trade(m.offer_id, m.bid_id, (m,), 0, trade.tx, ())
    with pytest.raises(SettlementError):
        _verify(victim, [bad])


# ----------------------------------------------------------------------------------- on a real chain
async def _market(grid, names):
    onion = await onion_network(4)
    node = OnionNode(onion.network.endpoint("bidstore"))
    operator = MarketOperator(node, grid.chain, lambda: grid.slot)
    await node.start()
    prosumers = {}
    for n in names:
        home = await OnionNode(onion.network.endpoint(f"home-{n}"), directory=onion.directory).start()
        prosumers[n] = Prosumer(grid.meters[n], grid.wallets[n], home)
    return onion, node, operator, prosumers


def _coin(grid, name, kind):
    w = grid.wallets[name]
    return next((op, w.keys[o.owner]) for op, o in w.coins.items() if o.asset.kind == kind)


def test_selling_and_buying_with_partial_fills_step_by_step():
    """Extract, post with proof of control, trade signed by both, deposit, bill — every step committed.

    (Mixing is left out here; it is the same transfer for every kind and is covered by the round tests.)
    """

    async def scenario():
        grid = build_grid(3)
        onion, node, operator, ps = await _market(grid, ["MI1", "MI2", "MI3"])
        seller, b2, b3 = ps["MI1"], ps["MI2"], ps["MI3"]
        fa2, fa3 = 200, 300
        grid.commit(
            seller.extract({EPA(1_000, 1, 5): 1}, grid.slot),
            b2.extract({ECA(300, 2, 3): 1, FA(fa2): 1}, grid.slot),
            b3.extract({ECA(500, 1, 3): 1, FA(fa3): 1}, grid.slot),
        )
        assert all(isinstance(tx, MeterIssue) for tx in grid.blocks[-1].transactions)
        (epa, ek) = _coin(grid, "MI1", AssetKind.EPA)
        orders = {
            "MI1": AnonOrder(Side.OFFER, "F0", 1, 5, 800, 100, 1, seller.wallet.new_address(), (epa,)),
        }
        for name, start, power, price in (("MI2", 2, 300, 130), ("MI3", 1, 500, 120)):
            (eca, ck), (fa, fk) = _coin(grid, name, AssetKind.ECA), _coin(grid, name, AssetKind.FA)
            orders[name] = AnonOrder(
                Side.BID, "F0", start, 3, power, price, 1, ps[name].wallet.new_address(), (eca, fa)
            )
            await ps[name].post("bidstore", [(orders[name], (ck, fk))])
        await seller.post("bidstore", [(orders["MI1"], (ek,))])
        assert len(operator.store.open_orders(grid.slot)) == 3

        settlement = operator.close()
        assert {(m.slot, m.power_w) for t in settlement.trades for m in t.matches} == {
            (1, 500),
            (2, 500),
            (2, 300),
        }
        for p in ps.values():
            await p.sign_trades(SLOT_SECONDS)
        assert len(operator.submit_signed()) == 2
        block = grid.commit()
        assert len(block.transactions) == 2  # the second trade spends the remainder the first one left
        for p in ps.values():
            for tx in p.deposits():
                grid.chain.submit(tx)
        grid.commit()
        assert all(not w.coins for w in grid.wallets.values())  # everything went back to the meters
        assert verify_store(grid.chain.store).snapshot() == grid.chain.state.snapshot()  # replays identically

        pays = {t.bid_id: t.payment for t in settlement.trades}
        measured = {"MI1": -300, "MI2": 100, "MI3": 150}
        bills = {n: {t: grid.meters[n].bill(t, measured[n], PRICES) for t in range(0, 5)} for n in ps}
        # slot 1: 500 W sold to MI3; slot 2: 500 W to MI3 and 300 W to MI2; slots 3-4 unsold and returned
        sold = {1: 500, 2: 800, 3: 0, 4: 0}
        for t, w in sold.items():
            assert bills["MI1"][t].energy_ws == -300 * 3600 + w * SLOT_SECONDS
        assert bills["MI3"][1].energy_ws == 150 * 3600 - 500 * SLOT_SECONDS
        assert bills["MI2"][2].energy_ws == 100 * 3600 - 300 * SLOT_SECONDS
        assert all(b.eca_audit_ok for bs in bills.values() for b in bs.values())
        # money: FA moves in slot 0; the seller is paid every trade, each buyer its own and gets the rest back
        assert bills["MI1"][0].fa_deposited == sum(pays.values())
        for name, fa in (("MI2", fa2), ("MI3", fa3)):
            oid = orders[name].order_id
            assert (
                bills[name][0].fa_issued - bills[name][0].fa_deposited == pays[oid]
                and fa == bills[name][0].fa_issued
            )
        for n in [node, *(p.node for p in ps.values()), *onion.relays]:
            await n.close()

    run(scenario())


def test_a_party_that_does_not_sign_blocks_only_its_own_trade():
    async def scenario():
        grid = build_grid(4)
        onion, node, operator, ps = await _market(grid, ["MI1", "MI2", "MI3", "MI4"])
        grid.commit(
            ps["MI1"].extract({EPA(500, 1, 2): 1}, grid.slot),
            ps["MI2"].extract({EPA(500, 1, 2): 1}, grid.slot),
            ps["MI3"].extract({ECA(500, 1, 2): 1, FA(100): 1}, grid.slot),
            ps["MI4"].extract({ECA(500, 1, 2): 1, FA(100): 1}, grid.slot),
        )
        for name, price in (("MI1", 90), ("MI2", 95)):
            op, k = _coin(grid, name, AssetKind.EPA)
            order = AnonOrder(Side.OFFER, "F0", 1, 2, 500, price, 1, ps[name].wallet.new_address(), (op,))
            await ps[name].post("bidstore", [(order, (k,))])
        for name, price in (("MI3", 130), ("MI4", 125)):
            (eca, ck), (fa, fk) = _coin(grid, name, AssetKind.ECA), _coin(grid, name, AssetKind.FA)
            order = AnonOrder(Side.BID, "F0", 1, 2, 500, price, 1, ps[name].wallet.new_address(), (eca, fa))
            await ps[name].post("bidstore", [(order, (ck, fk))])
        settlement = operator.close()
        assert len(settlement.trades) == 2
        for name in ("MI1", "MI2", "MI3"):  # MI4 never signs
            await ps[name].sign_trades(SLOT_SECONDS)
        committed = operator.submit_signed()
        assert len(committed) == 1
        grid.commit()
        for p in ps.values():
            for tx in p.deposits():
                grid.chain.submit(tx)
        grid.commit()
        # the unsigned trade never happened: its seller and MI4 got their assets back unchanged
        traded = {
            m for t in settlement.trades if t.tx.txid == committed[0].txid for m in (t.offer_id, t.bid_id)
        }
        assert len(traded) == 2 and not any(w.coins for w in grid.wallets.values())
        for n in [node, *(p.node for p in ps.values()), *onion.relays]:
            await n.close()

    run(scenario())


def test_operator_rejects_bad_witnesses_and_transactions():
    async def scenario():
        grid = build_grid(2)
        onion, node, operator, ps = await _market(grid, ["MI1"])
        client = BidStoreClient(await ps["MI1"].node.open_circuit("bidstore"))
        with pytest.raises(BidStoreError) as e:
            await client.call("sign", order_id="x", witnesses=[])
        assert e.value.code == "bid-no-settlement"
        operator.close()
        assert (await client.call("trades", order_id="nobody")) == {"trades": []}
        with pytest.raises(BidStoreError) as e:
            await client.call("sign", order_id="x", witnesses=[[0, 0, "00" * 32, "00" * 64]])
        assert e.value.code == "bid-bad-witness"
        with pytest.raises(BidStoreError) as e:
            await client.call("submit", tx="deadbeef")
        assert e.value.code == "bid-bad-transaction"
        for n in [node, ps["MI1"].node, *onion.relays]:
            await n.close()

    run(scenario())


def test_the_meter_enforces_maxepa_and_solvency_on_extraction():
    grid = build_grid(1)
    p = Prosumer(grid.meters["MI1"], grid.wallets["MI1"], None)
    with pytest.raises(MeterError, match="above the DSO limit"):
        p.extract({EPA(6_000, 1, 2): 2}, 0)  # 12 kW > MAXEPA 10 kW
    with pytest.raises(MeterError, match="credit"):
        p.extract({ECA(1_000, 1, 2): 1, FA(2_000_000): 1}, 0)


# ------------------------------------------------------------------------------------- whole rounds
def _intents(names, rng, cover=()):
    out = {}
    for i, n in enumerate(names):
        if n in cover:
            out[n] = Intent()
        elif i % 2 == 0:
            out[n] = Intent(Side.OFFER, 1, 90 + rng.randrange(10))
        else:
            out[n] = Intent(Side.BID, 1, 110 + rng.randrange(10))
    return out


def test_microgrid_rounds_mix_trade_deposit_and_bill():
    async def scenario():
        controller = MicrogridController(Band(-100, 100), (120, 80))
        g = await Microgrid.create(6, seed=3, billing_period_slots=4, controller=controller)
        rng = random.Random(1)
        names = list(g.prosumers)
        report = await g.run_round(_intents(names, rng, cover={"MI6"}))
        # every prosumer issued one unit of each kind: the issue block says nothing about who trades
        issues = [tx for tx in report.blocks[0].transactions if isinstance(tx, MeterIssue)]
        assert len(issues) == 6 and len({tuple(o.asset for o in tx.outputs) for tx in issues}) == 1
        assert sorted(size for _, size, _ in report.mixes) == [6, 6, 6] and report.mix_failures == 0
        assert len(report.orders) == 5 and report.committed_trades == len(report.trades) >= 1
        assert all(not p.wallet.coins for p in g.prosumers.values())
        # the controller saw the round: committed trades net out, the unmatched orders are the net load
        pred = report.prediction
        unmatched = 500 * (len(report.orders) - 2 * len(report.trades))
        assert pred.traded_w == 500 * len(report.trades) and abs(pred.net_load_w) <= unmatched
        if report.signal is not None:
            assert g.chain.state.policy.prices(report.slot) == controller.prices(pred)
        g.next_slot()
        bills = g.bill(report.slot, {n: 100 for n in names})
        sold = {n: 0 for n in names}
        for t in report.trades:
            for m in t.matches:
                sold[report.orders[m.offer_id]] += m.power_w
                sold[report.orders[m.bid_id]] -= m.power_w
        for n in names:
            assert bills[n].energy_ws == 100 * 3600 + sold[n] * g.slot_seconds
            assert bills[n].eca_audit_ok
        assert bills["MI6"].energy_ws == 100 * 3600  # the cover trade changed nothing for its owner
        # the DSO's view: energy per (meter, slot) and bill totals per (meter, period); nothing else
        view = g.dso_view
        assert set(view.__dataclass_fields__) == {"period_slots", "energy_ws", "period_bills"}
        assert all(isinstance(k[0], str) and isinstance(v, int) for k, v in view.energy_ws.items())
        assert {k[1] for k in view.period_bills} == {0}
        second = await g.run_round(_intents(names, rng))
        assert second.slot == report.slot + 1 and second.committed_trades == len(second.trades)
        await g.close()

    run(scenario())


def test_dso_view_sums_bills_per_billing_period():
    from gridledger.ledger.billing import bill_slot

    view = DsoView(period_slots=2)
    for slot in range(4):
        view.record("MI1", bill_slot(slot, 10, [], [], PRICES, SLOT_SECONDS))
    assert sorted(view.period_bills) == [("MI1", 0), ("MI1", 1)]
    assert view.period_bills[("MI1", 0)] == 2 * bill_slot(0, 10, [], [], PRICES, SLOT_SECONDS).amount
