"""The smart meter's bill for one slot, from what it measured, issued and got deposited back.

For meter i and slot t, with m the measured net consumption (Wh; consumption positive, production negative):

* energy to settle with the DSO, extraction-aware (DESIGN.md): ``E = m − (Σ EPA deposited − Σ EPA issued)``.
  PETra's published ``E = m − Σ EPA deposited + Σ ECA deposited`` pays twice a prosumer who returns unsold EPA;
  the meter knows what it issued, so it nets that out.
* audit of the ECA legs: when every trade moves equal EPA and ECA,
  ``Σ ECA deposited − Σ ECA issued = Σ EPA issued − Σ EPA deposited``; a mismatch is reported, not hidden.
* bill: ``B = FA issued − FA deposited + (E ≥ 0 ? E · priceConsumption : E · priceProduction)``.

Energy is kept exactly in W·s (J); prices are minor units per kWh; the energy charge is rounded once, down, to
whole minor units (:func:`gridledger.ledger.units.energy_cost`, the system's one rounding rule). EPA/ECA
covering slot t count with their power × slot length; FA counts in the slot in which the meter issued or
received it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gridledger.ledger.assets import Asset, AssetKind
from gridledger.ledger.units import WS_PER_WH, energy_cost


@dataclass(frozen=True)
class Bill:
    """One meter's settlement for one slot. Energies in W·s (J), money in minor units."""

    slot: int
    measured_ws: int
    energy_ws: int
    energy_charge: int
    fa_issued: int
    fa_deposited: int
    amount: int
    eca_audit_ok: bool
    eca_mismatch_ws: int

    @property
    def energy_wh(self) -> float:
        return self.energy_ws / WS_PER_WH


def _power_at(assets: Iterable[Asset], kind: AssetKind, slot: int) -> int:
    return sum(a.amount for a in assets if a.kind == kind and a.start <= slot < a.end)


def _fa(assets: Iterable[Asset]) -> int:
    return sum(a.amount for a in assets if a.kind == AssetKind.FA)


def energy_charge(energy_ws: int, prices: tuple[int, int]) -> int:
    """``E · priceConsumption`` if E ≥ 0 else ``E · priceProduction``, in minor units, rounded down."""
    return energy_cost(energy_ws, prices[0] if energy_ws >= 0 else prices[1])


def bill_slot(
    slot: int,
    measured_wh: int,
    issued: Iterable[Asset],
    deposited: Iterable[Asset],
    prices: tuple[int, int],
    slot_seconds: int,
    fa_issued: int | None = None,
    fa_deposited: int | None = None,
) -> Bill:
    """The bill of one meter for ``slot``.

    Parameters
    ----------
    measured_wh : net energy measured in the slot (Wh, consumption positive).
    issued, deposited : the EPA/ECA (and FA) assets this meter issued, and received back at its deposit addresses.
    prices : (priceConsumption, priceProduction) in force at ``slot``, minor units per kWh.
    slot_seconds : slot length (s).
    fa_issued, fa_deposited : FA attributed to this slot; by default the FA among ``issued``/``deposited``.
    """
    issued, deposited = list(issued), list(deposited)
    epa_issued = _power_at(issued, AssetKind.EPA, slot) * slot_seconds
    epa_deposited = _power_at(deposited, AssetKind.EPA, slot) * slot_seconds
    eca_issued = _power_at(issued, AssetKind.ECA, slot) * slot_seconds
    eca_deposited = _power_at(deposited, AssetKind.ECA, slot) * slot_seconds
    measured_ws = measured_wh * WS_PER_WH
    energy_ws = measured_ws - (epa_deposited - epa_issued)
    mismatch = (eca_deposited - eca_issued) - (epa_issued - epa_deposited)
    fa_in = _fa(issued) if fa_issued is None else fa_issued
    fa_out = _fa(deposited) if fa_deposited is None else fa_deposited
    charge = energy_charge(energy_ws, prices)
    return Bill(slot, measured_ws, energy_ws, charge, fa_in, fa_out, fa_in - fa_out + charge, mismatch == 0, mismatch)
