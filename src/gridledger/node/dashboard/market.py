"""The market rounds a node's own chain holds, per slot, for the dashboard: what anyone reading the chain sees.

Per slot (of the block that committed them): the extractions (``MeterIssue`` transactions, and the EPA and ECA
energy they issued, Wh), the mixes, the trades and the energy they delivered (Wh), and the deposits, each transfer
read by :func:`gridledger.petra.onchain.classify` without the meters' deposit addresses (which only the meters
hold). Orders are not on the chain and are not shown. Updated block by block as the node indexes them, keeping only
the latest ``kept`` slots with market activity and running totals, so the view costs the same on any chain length.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from gridledger.ledger.assets import AssetKind
from gridledger.ledger.block import Block
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.ledger.kinds.meter_issue import MeterIssue
from gridledger.ledger.kinds.transfer import Transfer
from gridledger.ledger.units import WS_PER_WH
from gridledger.petra.onchain import Move, classify, traded_ws


@dataclass
class Round:
    """One slot's market on the chain (energy in W·s)."""

    extractions: int = 0
    epa_issued_ws: int = 0
    eca_issued_ws: int = 0
    mixes: int = 0
    trades: int = 0
    traded_ws: int = 0
    deposits: int = 0

    def add(self, other: Round) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def json(self) -> dict:
        """Counts, and energy in Wh."""
        wh = lambda ws: ws / WS_PER_WH  # noqa: E731
        return {
            "extractions": self.extractions,
            "epa_issued_wh": wh(self.epa_issued_ws),
            "eca_issued_wh": wh(self.eca_issued_ws),
            "mixes": self.mixes,
            "trades": self.trades,
            "traded_wh": wh(self.traded_ws),
            "deposits": self.deposits,
        }


class MarketRounds:
    """The market per slot of the blocks given to :meth:`add` in height order, the genesis block first (its clock).
    Not thread-safe: the caller (``Activity``) holds its lock."""

    def __init__(self, kept: int) -> None:
        self.kept = kept
        self.slots: dict[int, Round] = {}
        self.total = Round()
        self.active_slots = 0  # slots with market activity, over the whole chain
        self._clock: tuple[int, int] | None = None  # start time (Unix s), slot length (s)

    def add(self, block: Block) -> None:
        if self._clock is None:
            g = block.transactions[0] if block.transactions else None
            if isinstance(g, Genesis):
                self._clock = (g.start_time, g.slot_seconds)
            return
        start, slot_s = self._clock
        r = Round()
        for tx in block.transactions:
            if isinstance(tx, MeterIssue):
                r.extractions += 1
                r.epa_issued_ws += sum(o.asset.energy_ws(slot_s) for o in tx.outputs if o.asset.kind == AssetKind.EPA)
                r.eca_issued_ws += sum(o.asset.energy_ws(slot_s) for o in tx.outputs if o.asset.kind == AssetKind.ECA)
            elif isinstance(tx, Transfer):
                move = classify(tx)
                if move is Move.TRADE:
                    r.trades += 1
                    r.traded_ws += traded_ws(tx, slot_s)
                elif move is Move.MIX:
                    r.mixes += 1
                elif move is Move.DEPOSIT:
                    r.deposits += 1
        if r == Round():
            return
        slot = max(0, block.header.time - start) // slot_s
        if slot not in self.slots:
            self.active_slots += 1  # block times never go back: a slot left behind does not return
            self.slots[slot] = Round()
        self.slots[slot].add(r)
        self.total.add(r)
        while len(self.slots) > self.kept:
            del self.slots[min(self.slots)]

    def view(self) -> dict:
        """The latest slots with market activity, oldest first, and the totals over the whole chain."""
        return {
            "slots": [{"slot": s, **r.json()} for s, r in sorted(self.slots.items())],
            "total": {"slots": self.active_slots, **self.total.json()},
        }
