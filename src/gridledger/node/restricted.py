"""Restricted data: a reading's values go only to the meter that made it, its coordinators and the DSO.

Readings are encrypted on every chain (AES-GCM, ``docs/tiers.md``): anyone may hold the ciphertext, only the
member, its coordinator and the DSO can open it (Olivares-Rojas et al. 2023, §3.1: the content is protected, the
parties entitled to it hold the keys). A node serves a reading's values through its API when both hold:

* **the caller is entitled**, judged by the key the caller signs its requests with (``node.auth``), never by a
  name it claims: the chain's DSO (the genesis ``dso_pubkey``), one of its coordinators (the genesis
  ``proposers``), or the meter itself (a key the DSO authorized for the reading's member). Anyone else — another
  meter included — is refused (``Forbidden``, HTTP 403);
* **this node holds a key that opens it**: a coordinator its chain's master content key (every reading), a meter
  its own member key (its own readings only). Otherwise ``NotHeld`` (HTTP 404): ask the coordinator.

A committee member also receives per-reading keys of other meters in PoEf disclosures; those serve the
plausibility check only and are never used here.
"""

from __future__ import annotations

from dataclasses import dataclass

from gridledger.ledger.kinds.genesis import Genesis
from gridledger.ledger.kinds.reading import ChainKeys, Reading, ReadingError, ReadingValues, open_reading, reading_key
from gridledger.ledger.members import roster
from gridledger.ledger.state import LedgerState

DSO, COORDINATOR, METER = "dso", "coordinator", "meter"


class Forbidden(Exception):
    """The caller is not entitled to the data it asked for (the message says who is)."""


class NotHeld(Exception):
    """This node cannot open the reading (it does not hold its key)."""


def meter_id(state: LedgerState, member: int) -> str:
    """The ID the DSO enrolled as member ``member`` (``#<index>`` if it is not enrolled)."""
    ids = roster(state).ids
    return ids[member] if 0 <= member < len(ids) else f"#{member}"


def meter_keys(state: LedgerState, meter: str) -> frozenset[bytes]:
    """Every key the DSO authorized for ``meter`` on this chain (a meter keeps its data across key changes)."""
    return frozenset(key for p in state.policy.policies for m, key in p.authorize if m == meter)


def entitlement(genesis: Genesis, caller: str, caller_key: bytes, meter: str, keys: frozenset[bytes]) -> str:
    """Why ``caller`` (signing with ``caller_key``) may read ``meter``'s readings: ``dso``, ``coordinator`` or
    ``meter``; ``Forbidden`` naming who may otherwise. ``keys``: the keys the DSO authorized for ``meter``."""
    if caller_key == genesis.dso_pubkey:
        return DSO
    if caller_key in genesis.proposers:
        return COORDINATOR
    if caller_key in keys:
        return METER
    raise Forbidden(
        f"node {caller} may not read the readings of meter {meter}: only the meter itself, "
        "the chain's coordinators and the DSO may"
    )


@dataclass(frozen=True)
class ReadingKeys:
    """The content keys one node holds: a coordinator's chain master key, or a meter's own member key."""

    master: ChainKeys | None = None
    #: (meter ID, its 32-byte member content key), on a meter.
    own: tuple[str, bytes] | None = None

    def open(self, state: LedgerState, reading: Reading) -> ReadingValues:
        """The reading's values; ``NotHeld`` if this node has no key that opens it."""
        who = meter_id(state, reading.member)
        if self.master is not None:
            key = self.master.key_of(reading)
        elif self.own is not None and self.own[0] == who:
            key = reading_key(self.own[1], state.chain_id, reading.member, reading.minute)
        else:
            raise NotHeld(f"this node does not hold the content key of meter {who}'s readings; ask its coordinator")
        try:
            return open_reading(state.chain_id, reading, key)
        except ReadingError as e:
            raise NotHeld(f"the reading does not open with this node's key: {e}") from None


def reading_json(state: LedgerState, reading: Reading, height: int, values: ReadingValues, alarm: bool) -> dict:
    """A reading's clear view: who, when, where, the values (Wh, 0.1 V, 0.01 A, per mille) and its alarm flag."""
    return {
        "txid": reading.txid.hex(),
        "meter": meter_id(state, reading.member),
        "member": reading.member,
        "minute": reading.minute,
        "height": height,
        "consumption_wh": values.consumption_wh,
        "production_wh": values.production_wh,
        "voltage_dv": values.voltage_dv,
        "current_ca": values.current_ca,
        "power_factor_pm": values.power_factor_pm,
        "implausible": alarm,
    }
