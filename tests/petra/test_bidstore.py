"""The bid storage service: proof of control, every reject code, cancel, pruning, the onion service."""

from __future__ import annotations

import json
import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridledger.ledger.assets import ECA, EPA, FA, AssetKind, Output, outpoint
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds.transfer import Transfer
from gridledger.ledger.units import energy_cost
from gridledger.market.orders import Match, Side
from gridledger.petra.bidstore import (
    AnonOrder,
    BidStore,
    BidStoreClient,
    BidStoreError,
    BidStoreService,
    cancel_proofs,
)
from gridledger.petra.onion import OnionNode
from gridledger.petra.settlement import build_trades

from .conftest import SLOT_SECONDS, build_grid, onion_network, run


class Book:
    """A grid with one EPA coin (seller, MI1) and one ECA + FA pair (buyer, MI2), and a store on its chain."""

    def __init__(self) -> None:
        self.grid = build_grid(3)
        g = self.grid
        (self.epa_key, self.epa), (self.spare_key, self.spare) = g.coins(EPA(1_000, 1, 5), 2)
        (self.eca_key, self.eca), *_ = g.coins(ECA(1_000, 1, 5), 1)
        (self.fa_key, self.fa), *_ = g.coins(FA(500), 1)
        self.store = BidStore(g.chain)
        self.keys = {
            self.epa: self.epa_key,
            self.spare: self.spare_key,
            self.eca: self.eca_key,
            self.fa: self.fa_key,
        }

    def spend(self, op: bytes) -> None:
        """Spend a coin elsewhere (a committed transfer to a stranger)."""
        out = self.grid.chain.state.output(op)
        tx = Transfer((op,), (Output(out.asset, KeyPair.generate().address),))
        self.grid.commit(tx.signed(self.grid.chain_id, {op: self.keys[op]}))

    def offer(self, **kw) -> AnonOrder:
        fields = dict(
            side=Side.OFFER,
            feeder="F0",
            start_slot=1,
            end_slot=3,
            power_w=800,
            limit_price=100,
            expiry=1,
            pay_to=KeyPair.generate().address,
            assets=(self.epa,),
        )
        return AnonOrder(**(fields | kw))

    def bid(self, **kw) -> AnonOrder:
        fields = dict(
            side=Side.BID,
            feeder="F0",
            start_slot=1,
            end_slot=3,
            power_w=800,
            limit_price=120,
            expiry=1,
            pay_to=KeyPair.generate().address,
            assets=(self.eca, self.fa),
        )
        return AnonOrder(**(fields | kw))

    def post(self, order: AnonOrder, keys=None, slot: int = 0, challenge: bytes | None = None) -> str:
        """Post with proofs by ``keys`` (default: the owners of the order's assets)."""
        challenge = self.store.challenge() if challenge is None else challenge
        keys = keys or [self.keys.get(op, KeyPair.generate()) for op in order.assets]
        try:
            proofs = order.prove(challenge, keys)
        except Reject:  # fields that cannot even be encoded: send a well-formed but useless proof
            proofs = tuple((k.public, bytes(64)) for k in keys)
        return self.store.post(order, challenge, proofs, slot)

    def code(self, order: AnonOrder, **kw) -> str:
        with pytest.raises(BidStoreError) as e:
            self.post(order, **kw)
        return e.value.code


@pytest.fixture
def book() -> Book:
    return Book()


def test_post_and_list_an_offer_and_a_bid(book):
    oid = book.post(book.offer())
    bid = book.post(book.bid())
    assert [p.order_id for p in book.store.open_orders(0)] == [oid, bid]
    assert [p.order_id for p in book.store.open_orders(0, Side.BID)] == [bid]
    posted = book.store.orders[oid]
    assert posted.outputs[0].asset == EPA(1_000, 1, 5) and posted.order.market_order().power_w == 800


@pytest.mark.parametrize(
    ("change", "code", "words"),
    [
        (lambda b: b.offer(assets=(outpoint(secrets.token_bytes(32), 0),)), "bid-asset-unknown", "no output"),
        (lambda b: b.offer(assets=(outpoint(b.epa[:32], 7),)), "bid-asset-unknown", "no output"),
        (lambda b: b.offer(expiry=0), "bid-expired", "not after slot 0"),
        (lambda b: b.offer(start_slot=0), "bid-expired", "not after slot 0"),
        (lambda b: b.bid(assets=(b.epa, b.fa)), "bid-asset-mismatch", "needs ECA"),
        (lambda b: b.offer(assets=(b.eca,)), "bid-asset-mismatch", "needs EPA"),
        (lambda b: b.offer(power_w=1_001), "bid-asset-mismatch", "does not cover 1001 W"),
        (lambda b: b.offer(end_slot=6), "bid-asset-mismatch", "over [1,6)"),
        (
            lambda b: b.bid(power_w=1_000, limit_price=1_002),
            "bid-asset-mismatch",
            "below the bid's maximum payment",
        ),
        (lambda b: b.offer(assets=(b.epa, b.spare)), "bid-bad-order", "references 1 asset(s), got 2"),
        (lambda b: b.bid(assets=(b.eca,)), "bid-bad-order", "references 2 asset(s)"),
        (lambda b: b.offer(power_w=0), "bid-bad-order", "power must be positive"),
        (lambda b: b.offer(start_slot=3, end_slot=3), "bid-bad-order", "start_slot < end_slot"),
        (lambda b: b.bid(assets=(b.eca, b.eca)), "bid-bad-order", "referenced twice"),
        (lambda b: b.offer(feeder="no spaces"), "bid-bad-order", "feeder"),
        (lambda b: b.offer(pay_to=b"short"), "bid-bad-order", "pay_to"),
        (lambda b: b.offer(limit_price=-1), "bid-bad-order", "negative"),
    ],
)
def test_bad_orders_are_rejected_with_a_specific_code(book, change, code, words):
    with pytest.raises(BidStoreError) as e:
        book.post(change(book))
    assert e.value.code == code and words in e.value.message
    assert not book.store.orders


def test_spent_asset_is_rejected(book):
    book.spend(book.epa)
    assert book.code(book.offer()) == "bid-asset-spent"


def test_asset_that_ended_is_expired(book):
    book.grid.time += 6 * SLOT_SECONDS
    book.grid.commit(book.grid.dso.policy(book.grid.slot, prices=(1, 1)))  # the chain moves to slot 6
    with pytest.raises(BidStoreError) as e:
        book.post(book.offer(start_slot=7, end_slot=8, expiry=8), slot=6)
    assert e.value.code == "bid-expired" and "ended before slot 6" in e.value.message


def test_proof_must_come_from_the_owner_and_be_valid(book):
    assert book.code(book.offer(), keys=[KeyPair.generate()]) == "bid-not-owner"
    order = book.offer()
    challenge = book.store.challenge()
    wrong = order.prove(book.store.challenge(), [book.epa_key])  # signs another challenge
    with pytest.raises(BidStoreError) as e:
        book.store.post(order, challenge, wrong, 0)
    assert e.value.code == "bid-bad-signature"
    with pytest.raises(BidStoreError) as e:
        book.store.post(order, book.store.challenge(), (), 0)
    assert e.value.code == "bid-bad-order" and "0 proofs for 1 assets" in e.value.message


def test_challenges_are_single_use_and_must_be_issued(book):
    assert book.code(book.offer(), challenge=secrets.token_bytes(32)) == "bid-bad-challenge"
    c = book.store.challenge()
    book.post(book.offer(), challenge=c)
    assert book.code(book.bid(), challenge=c) == "bid-bad-challenge"


def test_an_asset_backs_one_open_order_only(book):
    first = book.post(book.offer())
    with pytest.raises(BidStoreError) as e:
        book.post(book.offer(limit_price=90))
    assert e.value.code == "bid-double-posted" and first in e.value.message


def test_cancel_needs_the_owner_and_frees_the_asset(book):
    order = book.offer()
    oid = book.post(order)
    c = book.store.challenge()
    with pytest.raises(BidStoreError) as e:
        book.store.cancel(oid, c, cancel_proofs(order, c, [KeyPair.generate()]))
    assert e.value.code == "bid-not-owner"
    c = book.store.challenge()
    with pytest.raises(BidStoreError) as e:
        book.store.cancel(oid, c, order.prove(c, [book.epa_key]))  # a post proof is not a cancel proof
    assert e.value.code == "bid-bad-signature"
    c = book.store.challenge()
    book.store.cancel(oid, c, cancel_proofs(order, c, [book.epa_key]))
    assert not book.store.orders
    with pytest.raises(BidStoreError) as e:
        book.store.cancel(oid, c, cancel_proofs(order, c, [book.epa_key]))
    assert e.value.code == "bid-unknown-order"
    book.post(book.offer(limit_price=90))  # the asset is free again


def test_open_orders_drop_expired_and_spent_ones(book):
    book.post(book.offer(expiry=2))
    book.post(book.bid(start_slot=2, expiry=2))
    assert len(book.store.open_orders(1)) == 1  # the offer's interval began
    book.spend(book.fa)
    assert book.store.open_orders(1) == []  # the bid's FA was spent
    book.post(book.offer(limit_price=90, start_slot=3, end_slot=4, expiry=4))
    assert len(book.store.open_orders(2)) == 1 and book.store.open_orders(4) == []


@pytest.mark.parametrize("power_w", [1_012, 1_028])  # 25.3 and 25.7 minor units: old half-up and floor differ
def test_the_backing_the_store_requires_is_what_the_settlement_pays(book, power_w):
    slot_seconds = book.grid.chain.genesis.slot_seconds
    need = energy_cost(power_w * slot_seconds, 100)
    assert need == 25
    (epa_key, epa), *_ = book.grid.coins(EPA(2_000, 1, 2), 1)
    (eca_key, eca), *_ = book.grid.coins(ECA(2_000, 1, 2), 1)
    (short_key, short), (fa_key, fa) = book.grid.coins(FA(need - 1), 1) + book.grid.coins(FA(need), 1)
    book.keys |= {epa: epa_key, eca: eca_key, short: short_key, fa: fa_key}
    bid = dict(start_slot=1, end_slot=2, power_w=power_w, limit_price=100)
    assert book.code(book.bid(**bid, assets=(eca, short))) == "bid-asset-mismatch"
    bid_id = book.post(book.bid(**bid, assets=(eca, fa)))
    offer_id = book.post(book.offer(start_slot=1, end_slot=2, power_w=power_w, limit_price=90, assets=(epa,)))
    posted = {p.order_id: p for p in book.store.open_orders(0)}
    (trade,) = build_trades(posted, [Match(offer_id, bid_id, 1, power_w, 100)], slot_seconds)
    assert trade.payment == need  # fully matched at its limit: it pays exactly the backing, nothing is left
    assert FA(need) in [o.asset for o in trade.tx.outputs] and not any(
        o.asset.kind is AssetKind.FA and o.owner != posted[offer_id].order.pay_to for o in trade.tx.outputs
    )


@given(st.lists(st.integers(1, 10_000), min_size=1, max_size=8), st.integers(1, 10_000))
def test_partial_fills_never_pay_more_than_the_backing(powers, price):
    assert sum(energy_cost(p * 900, price) for p in powers) <= energy_cost(sum(powers) * 900, price)


@given(
    side=st.sampled_from([Side.OFFER, Side.BID]),
    start=st.integers(0, 1000),
    length=st.integers(1, 96),
    power=st.integers(1, 10**9),
    price=st.integers(0, 10**6),
    assets=st.lists(st.binary(min_size=34, max_size=34), min_size=1, max_size=2),
)
def test_order_json_round_trip_keeps_its_id(side, start, length, power, price, assets):
    o = AnonOrder(side, "F1", start, start + length, power, price, start, bytes(20), tuple(assets))
    again = AnonOrder.from_json(json.loads(json.dumps(o.to_json())))
    assert again == o and again.order_id == o.order_id
    assert AnonOrder.from_json(o.to_json() | {"power_w": power + 1}).order_id != o.order_id


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"side": "sell"},
        {"side": "offer", "feeder": "F", "start_slot": "1"},
        {"side": "bid", "pay_to": "zz"},
    ],
)
def test_malformed_json_orders(data):
    base = AnonOrder(Side.OFFER, "F", 1, 2, 1, 1, 1, bytes(20), (bytes(34),)).to_json()
    with pytest.raises(BidStoreError) as e:
        AnonOrder.from_json(base | data if data else data)
    assert e.value.code == "bid-bad-order"


# ---------------------------------------------------------------------------------------- the service
def test_service_over_onion_circuits_sees_only_exit_relays():
    async def scenario():
        book = Book()
        onion = await onion_network(4)
        node = await OnionNode(onion.network.endpoint("bidstore")).start()
        service = BidStoreService(book.store, lambda: 0)
        node.serve(service.handle)
        seller = await OnionNode(onion.network.endpoint("seller-home"), directory=onion.directory).start()
        client = BidStoreClient(await seller.open_circuit("bidstore"))
        order = book.offer()
        oid = await client.post(order, [book.epa_key])
        listed = await client.list()
        assert [o["order_id"] for o in listed] == [oid] and listed[0]["pay_to"] == order.pay_to.hex()
        assert await client.list(Side.BID) == []
        with pytest.raises(BidStoreError) as e:
            await client.post(order, [book.epa_key])
        assert e.value.code == "bid-double-posted"
        await client.cancel(order, [book.epa_key])
        assert await client.list() == []
        for raw in (b"not json", b"[1]", json.dumps({"op": "teleport"}).encode(), b'{"op": "post"}'):
            answer = json.loads(await client.circuit.request(raw, 5))
            assert answer["error"] in ("bid-bad-request", "bid-bad-order")
        assert service.refused == {"bid-double-posted": 1, "bid-bad-request": 4}
        relays = {r.name for r in onion.relays}
        assert service.senders and set(service.senders) <= relays
        assert [op for _, op, _, _ in service.log] == ["post", "cancel"]
        assert all(exit_relay in relays for *_, exit_relay in service.log)
        for n in [node, seller, *onion.relays]:
            await n.close()

    run(scenario())


def test_the_store_reads_the_chain_the_meters_wrote(book):
    assert book.store.ledger.output(book.epa).owner == book.epa_key.address
    assert book.store.ledger.output(book.fa).asset == FA(500)


def test_a_store_that_is_not_active_refuses_orders_with_its_code_and_neither_clears_nor_submits():
    """A standby store answers ``active`` and forwards deposits (``submit``), but refuses every other operation with
    ``bid-not-active`` and will not clear or submit trades; once active it takes the same order."""
    from gridledger.petra.bidstore import NOT_ACTIVE
    from gridledger.petra.operator import MarketOperator

    async def scenario():
        book = Book()
        onion = await onion_network(4)
        node = await OnionNode(onion.network.endpoint("bidstore")).start()
        active = False
        operator = MarketOperator(node, book.grid.chain, lambda: 0, active=lambda: active)
        home = await OnionNode(onion.network.endpoint("seller-home"), directory=onion.directory).start()
        client = BidStoreClient(await home.open_circuit("bidstore"))
        assert await client.call("active") == {"active": False}
        order = book.offer()
        for call in (client.post(order, [book.epa_key]), client.list(), client.call("trades", order_id="00")):
            with pytest.raises(BidStoreError) as e:
                await call
            assert e.value.code == NOT_ACTIVE
        with pytest.raises(BidStoreError) as e:  # passive: forwarded, and the chain's own refusal comes back
            await client.call("submit", tx="00")
        assert e.value.code == "bid-bad-transaction"
        for step in (operator.close, operator.submit_signed):
            with pytest.raises(BidStoreError) as e:
                step()
            assert e.value.code == NOT_ACTIVE
        assert operator.service.refused[NOT_ACTIVE] == 3 and book.store.orders == {}
        active = True
        assert await client.call("active") == {"active": True}
        oid = await client.post(order, [book.epa_key])
        assert [o["order_id"] for o in await client.list()] == [oid]
        assert operator.close().trades == [] and operator.submit_signed() == []
        for n in [node, home, *onion.relays]:
            await n.close()

    run(scenario())
