"""The one rule that tells a trade, a mix and a deposit apart on the chain (``gridledger.petra.onchain``), as the audit
(knowing the meters' deposit addresses) and a node's dashboard (knowing none) apply it, on transfers built by the
real PETra code: the bid store's trades, an atomic trade of wallet legs, a CoinShuffle mix, the prosumer's deposits,
the cover trade's mix and deposit of one unit, and a plain payment."""

from __future__ import annotations

import pytest

from gridledger.ledger.assets import ECA, EPA, FA, Asset, Output, outpoint
from gridledger.ledger.kinds.transfer import Transfer
from gridledger.petra.coinshuffle import Run
from gridledger.petra.onchain import Move, classify, traded_ws
from gridledger.petra.settlement import deposit
from gridledger.petra.wallet import Wallet, combine

from .conftest import SLOT_SECONDS
from .test_workflows import _one_trade

CHAIN = b"\x07" * 32
METER = Wallet()  # a meter's deposit addresses
UNIT = EPA(500, 1, 2)


def _wallet(*assets: Asset) -> Wallet:
    """A wallet holding one coin of each of ``assets``, each at its own fresh address."""
    w = Wallet()
    for i, a in enumerate(assets):
        w.coins[outpoint(bytes([len(METER.keys), i]) * 16, i)] = Output(a, w.new_address())
    return w


def _legs_trade() -> Transfer:
    """An atomic trade of wallet legs: 800 W over slots [1, 3) for 40 FA, the seller's leg first."""
    seller, buyer = _wallet(EPA(2_000, 1, 3)), _wallet(ECA(2_000, 1, 3), FA(500))
    return combine(
        seller.leg(EPA(800, 1, 3), buyer.new_address()),
        buyer.leg(FA(40), seller.new_address()),
        buyer.leg(ECA(800, 1, 3), seller.new_address()),
    )


def _mix(unit: Asset) -> Transfer:
    """A CoinShuffle mix of three coins of ``unit`` to three fresh addresses."""
    ops = tuple(outpoint(bytes([9, i]) * 16, i) for i in range(3))
    run = Run(b"\x01" * 32, 0, unit, ops, (b"\x02" * 32,) * 3)
    return run.transfer(Wallet().new_address() for _ in ops)


def _deposit(*assets: Asset) -> Transfer:
    """A prosumer's deposit of coins of ``assets`` (one order's holdings, or one coin) to a deposit address."""
    w = _wallet(*assets)
    return deposit(w, list(w.coins), METER.new_address(), CHAIN)


def _payment() -> Transfer:
    """A plain payment: 30 FA of a 100 FA coin to someone, the change back to a fresh address of the payer."""
    w = _wallet(FA(100))
    return combine(w.leg(FA(30), Wallet().new_address()))


def _exact_payment() -> Transfer:
    """A whole coin paid to someone's single address: on the chain alike a deposit unless its addresses are known."""
    w = _wallet(FA(100))
    return combine(w.leg(FA(100), Wallet().new_address()))


CASES = [  # (what, transfer, as read without the deposit addresses, as read knowing them)
    ("bid store's trade (partial fill)", _one_trade()[-1].tx, Move.TRADE, Move.TRADE),
    ("trade of wallet legs", _legs_trade(), Move.TRADE, Move.TRADE),
    ("mix of EPA units", _mix(UNIT), Move.MIX, Move.MIX),
    ("mix of FA units", _mix(FA(50)), Move.MIX, Move.MIX),
    ("deposit of one coin", _deposit(ECA(500, 1, 2)), Move.DEPOSIT, Move.DEPOSIT),
    (
        "deposit of an offer's holdings: EPA left, ECA and FA got",
        _deposit(UNIT, ECA(300, 1, 2), FA(7)),
        Move.DEPOSIT,
        Move.DEPOSIT,
    ),
    ("cover trade: its unit mixed", _mix(ECA(500, 1, 2)), Move.MIX, Move.MIX),
    ("cover trade: its unit deposited back", _deposit(UNIT), Move.DEPOSIT, Move.DEPOSIT),
    ("payment with change", _payment(), Move.OTHER, Move.OTHER),
    ("payment of a whole coin", _exact_payment(), Move.DEPOSIT, Move.OTHER),
]


@pytest.mark.parametrize(("what", "tx", "blind", "known"), CASES, ids=[c[0] for c in CASES])
def test_each_transfer_is_read_as_what_it_is(what, tx, blind, known):
    assert classify(tx) is blind, what
    assert classify(tx, set(METER.keys)) is known, what


def test_a_trade_paying_its_remainder_to_a_deposit_address_is_still_a_trade():
    """Outputs to deposit addresses do not count: the EPA to the bid and the ECA to the offer make the trade."""
    tx = _legs_trade()
    to_meter = Transfer(tx.inputs, (*tx.outputs, Output(FA(1), METER.new_address())))
    assert classify(to_meter, set(METER.keys)) is Move.TRADE


def test_a_transfer_moving_epa_and_eca_only_to_deposit_addresses_is_a_deposit():
    a, b = METER.new_address(), METER.new_address()
    tx = Transfer((outpoint(b"\x05" * 32, 0),), (Output(UNIT, a), Output(ECA(500, 1, 2), b)))
    assert classify(tx, set(METER.keys)) is Move.DEPOSIT
    assert classify(tx) is Move.TRADE  # two addresses: without the meter's list, it reads as a trade


def test_traded_energy_is_the_epa_paid_to_the_buyer():
    offer, bid, _, matches, trade = _one_trade()
    assert traded_ws(trade.tx, SLOT_SECONDS) == sum(m.power_w for m in matches) * SLOT_SECONDS  # 800 W + 300 W
    assert traded_ws(_legs_trade(), SLOT_SECONDS) == 800 * 2 * SLOT_SECONDS  # the 1 200 W unsold stay the seller's
    assert traded_ws(_payment(), SLOT_SECONDS) == 0
