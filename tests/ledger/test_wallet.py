"""The prosumer wallet: one-time addresses, coin selection with change (splits in power and time), signing
its own inputs only, sweeping deposits, and PETra's atomic trade that both parties sign."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridledger.ledger.assets import ECA, EPA, FA, Asset, AssetKind
from gridledger.ledger.kinds.transfer import check_conservation
from gridledger.petra.wallet import Wallet, WalletError, combine, remainder

if TYPE_CHECKING:
    from conftest import Net


def test_remainder_splits_in_power_and_time() -> None:
    coin = EPA(2_000, 1, 9)
    assert remainder(coin, EPA(2_000, 1, 9)) == []
    assert remainder(coin, EPA(500, 1, 9)) == [EPA(1_500, 1, 9)]
    assert remainder(coin, EPA(2_000, 3, 9)) == [EPA(2_000, 1, 3)]
    assert remainder(coin, EPA(500, 3, 5)) == [EPA(2_000, 1, 3), EPA(1_500, 3, 5), EPA(2_000, 5, 9)]
    assert remainder(FA(100), FA(30)) == [FA(70)] and remainder(FA(100), FA(100)) == []


@st.composite
def coin_and_want(draw) -> tuple[Asset, Asset]:
    kind = draw(st.sampled_from(AssetKind))
    amount = draw(st.integers(1, 10_000))
    if kind == AssetKind.FA:
        return Asset(kind, amount), Asset(kind, draw(st.integers(1, amount)))
    start = draw(st.integers(0, 50))
    end = draw(st.integers(start + 1, start + 20))
    ws = draw(st.integers(start, end - 1))
    return Asset(kind, amount, start, end), Asset(
        kind, draw(st.integers(1, amount)), ws, draw(st.integers(ws + 1, end))
    )


@settings(max_examples=300, deadline=None)
@given(coin_and_want())
def test_want_plus_remainder_conserves_the_coin(pair: tuple[Asset, Asset]) -> None:
    coin, want = pair
    rest = remainder(coin, want)
    check_conservation([coin], [want, *rest])
    assert all(
        a.kind == coin.kind and a.amount > 0 and (a.kind == AssetKind.FA or a.start < a.end) for a in rest
    )


def test_addresses_are_fresh_and_owned() -> None:
    w = Wallet()
    addresses = {w.new_address() for _ in range(50)}
    assert len(addresses) == 50 and set(w.keys) == addresses
    assert all(w.keys[a].address == a for a in addresses)


def test_scan_tracks_received_and_spent_coins(net: Net) -> None:
    seller = net.wallets["seller"]
    assert sorted(o.asset.describe() for o in seller.coins.values()) == ["EPA 2000 W [1,5)", "FA 500"]
    to = Wallet()
    block = net.commit(net.pay("seller", EPA(1_500, 2, 4), to.new_address()))
    received = to.scan(block)
    assert [o.asset for _, o in received] == [EPA(1_500, 2, 4)] and len(to.coins) == 1
    # the seller keeps its FA and the change of its EPA: [1,2) and [4,5) at 2000 W, [2,4) at 500 W
    assert sorted((a.start, a.end, a.amount) for a in seller.balance(AssetKind.EPA)) == [
        (1, 2, 2_000),
        (2, 4, 500),
        (4, 5, 2_000),
    ]
    assert {op for op in seller.coins} <= set(net.state.utxos)


def test_energy_leg_needs_one_covering_coin(net: Net) -> None:
    seller = net.wallets["seller"]
    with pytest.raises(WalletError, match="no EPA coin covers 2001 W over"):
        seller.leg(EPA(2_001, 1, 2), b"\x00" * 20)
    with pytest.raises(WalletError, match="no EPA coin covers"):
        seller.leg(EPA(10, 4, 6), b"\x00" * 20)  # beyond the coin's interval
    with pytest.raises(WalletError, match="no ECA coin"):
        seller.leg(ECA(10, 1, 2), b"\x00" * 20)
    (op,) = (op for op, o in seller.coins.items() if o.asset.kind == AssetKind.EPA)
    with pytest.raises(WalletError):
        seller.leg(EPA(10, 1, 2), b"\x00" * 20, exclude=[op])


def test_fa_leg_gathers_coins_and_returns_change(net: Net) -> None:
    buyer = net.wallets["buyer"]
    net.commit(net.issue("MI2", (FA(300), buyer.new_address()), (FA(200), buyer.new_address())))
    leg = buyer.leg(FA(1_200), b"\x01" * 20)  # 1000 + 300 (largest first), change 100
    assert len(leg.inputs) == 2 and [o.asset for o in leg.outputs] == [FA(1_200), FA(100)]
    assert leg.outputs[1].owner in buyer.keys
    with pytest.raises(WalletError, match="not enough FA: have 1500, need 1501"):
        buyer.leg(FA(1_501), b"\x01" * 20)
    net.commit(buyer.sign(combine(leg), net.chain_id))
    assert sorted(a.amount for a in buyer.balance(AssetKind.FA)) == [100, 200]


def test_sign_covers_only_the_wallets_own_inputs(net: Net) -> None:
    seller, buyer = net.wallets["seller"], net.wallets["buyer"]
    trade = combine(
        seller.leg(EPA(1_000, 1, 2), buyer.new_address()), buyer.leg(FA(25), seller.new_address())
    )
    half = seller.sign(trade, net.chain_id)
    assert half.witnesses[0].pubkey != bytes(32) and half.witnesses[1].pubkey == bytes(32)
    both = buyer.sign(half, net.chain_id)
    other_order = seller.sign(buyer.sign(trade, net.chain_id), net.chain_id)
    assert both.witnesses == other_order.witnesses and both.txid == trade.txid
    with pytest.raises(WalletError, match="owns none"):
        Wallet().sign(trade, net.chain_id)
    with pytest.raises(ValueError, match="no key to sign input 1"):
        trade.signed(net.chain_id, {trade.inputs[0]: seller.keys[seller.coins[trade.inputs[0]].owner]})


def test_atomic_trade_commits_only_when_both_signed(net: Net) -> None:
    """PETra's trade: EPA seller→buyer, FA + ECA buyer→seller, in one transfer: all of it or nothing."""
    seller, buyer = net.wallets["seller"], net.wallets["buyer"]
    trade = combine(
        seller.leg(EPA(1_000, 1, 5), buyer.new_address()),
        buyer.leg(FA(100), seller.new_address()),
        buyer.leg(ECA(1_000, 1, 5), seller.new_address()),
    )
    half = seller.sign(trade, net.chain_id)
    net.chain.submit(half)
    res = net.chain.propose(net.coordinator, net.tick())
    assert res.block is None and res.rejected[trade.txid].code == "bad-txns-signature"
    block = net.commit(buyer.sign(half, net.chain_id))
    assert block.transactions[0].txid == trade.txid
    assert sorted(a.describe() for a in buyer.balance(AssetKind.EPA)) == ["EPA 1000 W [1,5)"]
    assert sorted(a.describe() for a in seller.balance(AssetKind.ECA)) == ["ECA 1000 W [1,5)"]
    assert sorted(a.amount for a in seller.balance(AssetKind.FA)) == [100, 500]


def test_sweep_moves_every_coin_unchanged(net: Net) -> None:
    seller = net.wallets["seller"]
    meter_address = net.meters["MI1"].deposit_address()
    only_fa = seller.sweep(meter_address, kinds=[AssetKind.FA])
    assert [o.asset for o in only_fa.outputs] == [FA(500)]
    leg = seller.sweep(meter_address)
    net.commit(seller.sign(combine(leg), net.chain_id))
    assert seller.coins == {}
    assert sorted(a.describe() for _, a in net.meters["MI1"].deposited) == ["EPA 2000 W [1,5)", "FA 500"]
    with pytest.raises(WalletError, match="nothing to sweep"):
        seller.sweep(meter_address)
