"""The smart meter's ledger side: it issues assets within the DSO's limits, receives deposits, and bills.

The meter is trusted hardware (PETra): it enforces MAXEPA/MAXECA and the prosumer's FA credit before it signs
an issue (the chain re-checks), keeps what it issued per slot, gives out one-time deposit addresses, watches
the chain for what is deposited to them, and bills each slot from its measurement and those records only.
It reports only energy and bill totals to the DSO: never the trades. (The meter as a measuring device, what the
digital twin mirrors, is :class:`gridledger.devices.MeterDevice`.)
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from gridledger.ledger.assets import Asset, AssetKind, Output
from gridledger.ledger.billing import Bill, bill_slot
from gridledger.ledger.block import Block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.dso_policy import MeterLimits
from gridledger.ledger.kinds.meter_issue import MeterIssue
from gridledger.petra.wallet import Wallet


class MeterError(Exception):
    """The meter refuses a request (over a DSO limit, beyond the prosumer's credit)."""


@dataclass
class SmartMeter:
    meter_id: str
    key: KeyPair
    chain_id: bytes
    slot_seconds: int
    limits: MeterLimits | None = None
    nonce: int = 0
    issued: list[tuple[int, Asset]] = field(default_factory=list)
    pending: dict[bytes, list[Asset]] = field(default_factory=dict)
    deposited: list[tuple[int, Asset]] = field(default_factory=list)
    deposits: Wallet = field(default_factory=Wallet)
    _issued_power: dict[tuple[int, int], int] = field(default_factory=lambda: defaultdict(int))
    _fa_total: int = 0

    def issue(self, assets: list[tuple[Asset, bytes]], slot: int) -> MeterIssue:
        """A signed issue of ``assets`` (each with the prosumer's address) at the current ``slot``."""
        lim = self.limits
        if lim is None:
            raise MeterError(f"meter {self.meter_id} has no DSO limits yet")
        power = dict(self._issued_power)
        fa_total = self._fa_total
        for a, _ in assets:
            if a.kind == AssetKind.FA:
                fa_total += a.amount
                if fa_total > lim.credit_fa:
                    raise MeterError(f"FA {fa_total} beyond the prosumer's credit {lim.credit_fa}")
                continue
            cap = lim.max_epa_w if a.kind == AssetKind.EPA else lim.max_eca_w
            for t in a.slots:
                power[(a.kind, t)] = power.get((a.kind, t), 0) + a.amount
                if power[(a.kind, t)] > cap:
                    raise MeterError(f"{a.kind.name} {power[(a.kind, t)]} W at slot {t} above the DSO limit {cap} W")
        # Limits count pending issues too (conservative); the bill counts only what the chain committed (``scan``).
        self._issued_power.update(power)
        self._fa_total = fa_total
        self.nonce += 1
        tx = MeterIssue(self.meter_id, self.nonce, tuple(Output(a, to) for a, to in assets)).signed(
            self.chain_id, self.key
        )
        self.pending[tx.txid] = [a for a, _ in assets]
        return tx

    def deposit_address(self) -> bytes:
        """A fresh one-time address of this meter, for the prosumer to deposit assets back."""
        return self.deposits.new_address()

    def scan(self, block: Block, slot: int) -> None:
        """Record this meter's issues that a committed block holds, and what it deposited to this meter.

        FA counts in ``slot``, the block's slot. A meter started again scans the chain from its first block: it
        recovers the issues it signed before (nonce, limits, what it issued) and, with its deposit keys, what was
        deposited to it.
        """
        for tx in block.transactions:
            assets = self.pending.pop(tx.txid, None)
            if assets is None and isinstance(tx, MeterIssue) and tx.meter == self.meter_id:
                assets = self._recover(tx)
            if assets is not None:
                self.issued.extend((slot, a) for a in assets)
        for _, out in self.deposits.scan(block):
            self.deposited.append((slot, out.asset))

    def _recover(self, tx: MeterIssue) -> list[Asset]:
        """An issue of this meter's that it no longer holds as pending (it was signed before the meter's process
        restarted): count it against the limits and take its nonce, as when it was signed; its assets."""
        self.nonce = max(self.nonce, tx.nonce)
        assets = [o.asset for o in tx.outputs]
        for a in assets:
            if a.kind == AssetKind.FA:
                self._fa_total += a.amount
            else:
                for t in a.slots:
                    self._issued_power[(a.kind, t)] += a.amount
        return assets

    def bill(self, slot: int, measured_wh: int, prices: tuple[int, int]) -> Bill:
        """The bill for ``slot`` from the measured net consumption (Wh) and the prices in force."""
        issued = [a for s, a in self.issued if a.kind != AssetKind.FA or s == slot]
        deposited = [a for s, a in self.deposited if a.kind != AssetKind.FA or s == slot]
        return bill_slot(slot, measured_wh, issued, deposited, prices, self.slot_seconds)
