"""Billing (DESIGN.md, after PETra): the energy E the meter settles with the DSO, the bill B, the ECA audit.

* ``E = m − (Σ EPA deposited − Σ EPA issued)``;
* audit: ``Σ ECA dep − Σ ECA iss = Σ EPA iss − Σ EPA dep``;
* ``B = FA issued − FA deposited + (E ≥ 0 ? E·priceConsumption : E·priceProduction)``, at the prices in
  force at t.

The scenarios run the whole cycle on a real chain (meters issue, the prosumers trade atomically through their
wallets, deposit everything back to one-time addresses of their meters, the meters bill from what they saw on
the chain): seller sells all, buyer buys all, seller returns unsold EPA, partial fills (in power and in time),
no trade, a price change between slots, and an unequal trade that the audit must flag. Slots are 900 s, so
1 W over one slot is 0.25 Wh; prices are minor units per kWh (120 to consume, 80 for production).
FA moves in slot 0 (when the trades and deposits are committed), energy in slots 1 and 2: FA is billed in the
slot it moved in, energy in the slot it covers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from gridledger.ledger.assets import ECA, EPA, FA
from gridledger.ledger.billing import Bill, bill_slot, energy_charge
from gridledger.ledger.units import WS_PER_WH, energy_cost
from gridledger.petra.wallet import combine

if TYPE_CHECKING:
    from conftest import Net

TRADE_PRICE = 100  # minor units per kWh agreed in the market


# --------------------------------------------------------------------------- the formula


def test_extraction_aware_energy_and_bill() -> None:
    """A seller issued 2 kW for slot 1, sold 1.5 kW, returned 0.5 kW and produced 1.6 kW net (400 Wh)."""
    b = bill_slot(
        1,
        -400,
        issued=[EPA(2_000, 1, 2)],
        deposited=[EPA(500, 1, 2), ECA(1_500, 1, 2)],
        prices=(120, 80),
        slot_seconds=900,
    )
    assert b.measured_ws == -400 * WS_PER_WH
    assert b.energy_ws == (-400 - (125 - 500)) * WS_PER_WH  # −25 Wh: 25 Wh more exported than sold
    assert b.energy_charge == -2 and b.amount == -2  # −25 Wh × 80 /kWh = −2.0
    assert b.eca_audit_ok and b.eca_mismatch_ws == 0
    assert b.energy_wh == -25


def test_assets_outside_the_slot_do_not_count() -> None:
    b = bill_slot(
        3,
        100,
        issued=[EPA(2_000, 1, 3), ECA(5_000, 4, 9)],
        deposited=[EPA(2_000, 0, 3)],
        prices=(120, 80),
        slot_seconds=900,
    )
    assert b.energy_ws == 100 * WS_PER_WH and b.eca_audit_ok


def test_bill_adds_fa_issued_and_subtracts_fa_deposited() -> None:
    b = bill_slot(0, 0, issued=[FA(60)], deposited=[FA(22)], prices=(120, 80), slot_seconds=900)
    assert (b.fa_issued, b.fa_deposited, b.energy_charge, b.amount) == (60, 22, 0, 38)
    b = bill_slot(
        0,
        1_000,
        issued=[FA(60)],
        deposited=[],
        prices=(120, 80),
        slot_seconds=900,
        fa_issued=5,
        fa_deposited=7,
    )
    assert (b.fa_issued, b.fa_deposited, b.amount) == (5, 7, 5 - 7 + 120)


@pytest.mark.parametrize(
    ("energy_ws", "prices", "charge"),
    [
        (1_000 * WS_PER_WH, (120, 80), 120),  # consumption: priceConsumption
        (-1_000 * WS_PER_WH, (120, 80), -80),  # production: priceProduction
        (0, (120, 80), 0),
        (29_999, (120, 80), 0),  # 29 999 W·s × 120 /kWh = 0.99997 minor units: rounded down
        (30_000, (120, 80), 1),
        (-22_500, (120, 80), -1),  # −0.5 rounds down to −1 (towards −∞, the same rule on both sides)
        (-1, (120, 80), -1),
        (-45_000, (120, 80), -1),
    ],
)
def test_energy_charge_prices_and_rounding(energy_ws: int, prices: tuple[int, int], charge: int) -> None:
    assert energy_charge(energy_ws, prices) == charge


# --------------------------------------------------------------------------- the cycle on a chain


@dataclass
class Slot:
    """What the two meters billed: per meter, the bills of slots 0 (FA), 1 and 2 (energy)."""

    bills: dict[str, list[Bill]]
    payments: list[int]

    def total(self, meter: str) -> int:
        return sum(b.amount for b in self.bills[meter])


def market_cycle(
    net: Net,
    *,
    epa: tuple[int, int, int],
    eca: tuple[int, int, int],
    trades: list[tuple[int, int, int]],
    measured: dict[str, tuple[int, int]],
    budget: int = 1_000,
    eca_paid: list[int] | None = None,
) -> Slot:
    """Issue ``epa`` to the seller and ``eca`` (+ FA ``budget``) to the buyer, run ``trades`` (power W, start,
    end) one atomic transfer each, deposit everything back, and bill slots 0, 1, 2 (``measured``: Wh in 1, 2).

    ``eca_paid``: the ECA power the buyer hands over in each trade (default: the traded power).
    """
    seller, buyer = net.wallets["seller"], net.wallets["buyer"]
    net.commit(
        net.issue("MI1", (EPA(*epa), seller.new_address())),
        net.issue("MI2", (ECA(*eca), buyer.new_address()), (FA(budget), buyer.new_address())),
    )
    payments = []
    for i, (power, start, end) in enumerate(trades):
        pay = energy_cost(power * (end - start) * net.chain.genesis.slot_seconds, TRADE_PRICE)
        paid_eca = power if eca_paid is None else eca_paid[i]
        trade = combine(
            seller.leg(EPA(power, start, end), buyer.new_address()),
            buyer.leg(FA(pay), seller.new_address()),
            buyer.leg(ECA(paid_eca, start, end), seller.new_address()),
        )
        net.commit(buyer.sign(seller.sign(trade, net.chain_id), net.chain_id))
        payments.append(pay)
    net.commit(
        *(
            w.sign(combine(w.sweep(net.meters[m].deposit_address())), net.chain_id)
            for m, w in (("MI1", seller), ("MI2", buyer))
        )
    )
    bills = {}
    for m, meter in net.meters.items():
        prices = [net.state.policy.prices(t) for t in range(3)]
        bills[m] = [meter.bill(0, 0, prices[0])] + [
            meter.bill(t, measured[m][t - 1], prices[t]) for t in (1, 2)
        ]
    return Slot(bills, payments)


def energy_wh(b: Bill) -> float:
    return b.energy_ws / WS_PER_WH


def test_seller_sells_all(bare_net: Net) -> None:
    """2 kW for slot 1, all sold to a buyer who wanted 3 kW; each side measured exactly its trade."""
    s = market_cycle(
        bare_net,
        epa=(2_000, 1, 2),
        eca=(3_000, 1, 2),
        trades=[(2_000, 1, 2)],
        measured={"MI1": (-500, 0), "MI2": (500, 0)},
    )
    (pay,) = s.payments
    seller, buyer = s.bills["MI1"], s.bills["MI2"]
    assert energy_wh(seller[1]) == 0 and energy_wh(buyer[1]) == 0
    assert seller[0].fa_deposited == pay and s.total("MI1") == -pay  # the market paid the seller
    assert buyer[0].fa_issued - buyer[0].fa_deposited == pay and s.total("MI2") == pay
    assert all(b.eca_audit_ok for bills in s.bills.values() for b in bills)


def test_buyer_buys_all(bare_net: Net) -> None:
    """The buyer's 2 kW ECA is filled from a 3 kW EPA; the seller returns 1 kW and actually produced 3 kW."""
    s = market_cycle(
        bare_net,
        epa=(3_000, 1, 2),
        eca=(2_000, 1, 2),
        trades=[(2_000, 1, 2)],
        measured={"MI1": (-750, 0), "MI2": (500, 0)},
    )
    seller, buyer = s.bills["MI1"], s.bills["MI2"]
    assert energy_wh(seller[1]) == -250  # the unsold 1 kW went to the grid: credited at priceProduction
    assert seller[1].energy_charge == -20  # 250 Wh × 80 /kWh
    assert energy_wh(buyer[1]) == 0 and buyer[1].amount == 0
    assert s.total("MI1") == -s.payments[0] - 20 and s.total("MI2") == s.payments[0]
    assert seller[1].eca_audit_ok and buyer[1].eca_audit_ok


def test_seller_returns_unsold_epa(bare_net: Net) -> None:
    """No buyer: the seller deposits its EPA back. It is paid once for what it fed in, not twice."""
    s = market_cycle(
        bare_net,
        epa=(2_000, 1, 2),
        eca=(1_000, 2, 3),
        trades=[],
        measured={"MI1": (-500, 0), "MI2": (0, 250)},
    )
    seller = s.bills["MI1"][1]
    assert energy_wh(seller) == -500 and seller.energy_charge == -40 and s.total("MI1") == -40
    # PETra's published E = m − Σ EPA deposited + Σ ECA deposited would have credited it 1000 Wh (twice).
    published_wh = -500 - 500 + 0
    assert energy_charge(published_wh * WS_PER_WH, (120, 80)) == 2 * seller.energy_charge
    assert seller.eca_audit_ok


def test_partial_fills_in_power_and_time(bare_net: Net) -> None:
    """2 kW over slots [1, 3); one buyer takes 800 W over [1, 3), then 700 W in slot 2 only."""
    s = market_cycle(
        bare_net,
        epa=(2_000, 1, 3),
        eca=(2_000, 1, 3),
        trades=[(800, 1, 3), (700, 2, 3)],
        measured={"MI1": (-500, -450), "MI2": (200, 400)},
    )
    seller, buyer = s.bills["MI1"], s.bills["MI2"]
    # slot 1: sold 800 W (200 Wh) of 2000 W produced (500 Wh): 300 Wh to the grid
    assert energy_wh(seller[1]) == -300 and seller[1].energy_charge == -24
    # slot 2: sold 1500 W (375 Wh), produced 450 Wh: 75 Wh to the grid
    assert energy_wh(seller[2]) == -75 and seller[2].energy_charge == -6
    # the buyer consumed exactly what it bought in slot 1, 25 Wh more than bought in slot 2
    assert energy_wh(buyer[1]) == 0 and energy_wh(buyer[2]) == 25 and buyer[2].energy_charge == 3
    assert s.payments == [40, 17]  # 800 W × 0.5 h × 100 /kWh = 40; 700 W × 0.25 h = 17.5 → 17 (rounded down)
    assert seller[0].fa_deposited == 57 and buyer[0].fa_issued - buyer[0].fa_deposited == 57
    assert s.total("MI1") == -57 - 30 and s.total("MI2") == 57 + 3
    assert all(b.eca_audit_ok for bills in s.bills.values() for b in bills)


def test_no_trade(bare_net: Net) -> None:
    s = market_cycle(
        bare_net,
        epa=(2_000, 1, 2),
        eca=(2_000, 1, 2),
        trades=[],
        measured={"MI1": (-500, 0), "MI2": (500, 0)},
    )
    seller, buyer = s.bills["MI1"], s.bills["MI2"]
    assert energy_wh(seller[1]) == -500 and seller[1].amount == -40
    assert energy_wh(buyer[1]) == 500 and buyer[1].amount == 60
    assert buyer[0].fa_issued == buyer[0].fa_deposited == 1_000 and buyer[0].amount == 0
    assert all(b.eca_audit_ok and b.eca_mismatch_ws == 0 for bills in s.bills.values() for b in bills)


def test_prices_in_force_at_each_slot(bare_net: Net) -> None:
    """The DSO changes prices from slot 2 on; each slot is billed at the prices in force at that slot."""
    net = bare_net
    net.commit(net.dso.policy(2, prices=(150, 60)))
    s = market_cycle(
        net,
        epa=(2_000, 1, 3),
        eca=(2_000, 1, 3),
        trades=[],
        measured={"MI1": (-500, -500), "MI2": (500, 500)},
    )
    seller, buyer = s.bills["MI1"], s.bills["MI2"]
    assert [seller[1].energy_charge, seller[2].energy_charge] == [-40, -30]  # 500 Wh × 80, then × 60
    assert [buyer[1].energy_charge, buyer[2].energy_charge] == [60, 75]  # 500 Wh × 120, then × 150


def test_unequal_trade_fails_the_eca_audit(bare_net: Net) -> None:
    """The buyer hands over 1000 W of ECA for 1500 W of EPA: the chain allows it, the audit reports it."""
    s = market_cycle(
        bare_net,
        epa=(1_500, 1, 2),
        eca=(1_500, 1, 2),
        trades=[(1_500, 1, 2)],
        eca_paid=[1_000],
        measured={"MI1": (-375, 0), "MI2": (375, 0)},
    )
    seller, buyer = s.bills["MI1"][1], s.bills["MI2"][1]
    assert not seller.eca_audit_ok and seller.eca_mismatch_ws == (250 - 375) * WS_PER_WH
    assert not buyer.eca_audit_ok and buyer.eca_mismatch_ws == ((125 - 375) - (0 - 375)) * WS_PER_WH
    assert energy_wh(seller) == 0 and energy_wh(buyer) == 0  # E itself only follows the EPA


def test_meter_bills_only_issues_the_chain_committed(bare_net: Net) -> None:
    """An issue the chain refused (the meter was banned meanwhile) must not count as issued in the bill."""
    net = bare_net
    net.commit(net.dso.policy(1, ban=["MI1"]))
    net.at_slot(1)
    refused = net.issue("MI1", (EPA(2_000, 1, 2), net.wallets["seller"].new_address()))
    net.chain.submit(refused)
    res = net.chain.propose(net.coordinator, net.tick())
    assert res.block is None and res.rejected[refused.txid].code == "bad-issue-meter-banned"
    bill = net.meters["MI1"].bill(1, -500, (120, 80))
    assert energy_wh(bill) == -500  # nothing was issued on the chain: all 500 Wh went to the grid
