"""The prosumer wallet: keys, one-time addresses, coin selection, splits, trades and deposits.

A wallet builds *legs*: the inputs it spends and the outputs it pays (the wanted asset to the counterparty,
the rest back to a fresh address of its own). A plain transfer is one leg; PETra's atomic trade combines the
seller's EPA leg with the buyer's FA and ECA legs into one transfer that each party signs for its own inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gridledger.ledger.assets import Asset, AssetKind, Output, outpoint
from gridledger.ledger.block import Block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.transfer import Transfer


class WalletError(Exception):
    """The wallet cannot build what was asked (not enough assets, unknown coin, …)."""


@dataclass(frozen=True)
class Leg:
    """Part of a transfer: inputs one party spends and the outputs it pays."""

    inputs: tuple[bytes, ...]
    outputs: tuple[Output, ...]


def combine(*legs: Leg) -> Transfer:
    """One unsigned transfer made of several parties' legs (e.g. an atomic trade)."""
    return Transfer(tuple(op for leg in legs for op in leg.inputs), tuple(o for leg in legs for o in leg.outputs))


def remainder(coin: Asset, want: Asset) -> list[Asset]:
    """What is left of ``coin`` after taking ``want`` out of it (split in power and in time)."""
    if coin.kind == AssetKind.FA:
        return [Asset(coin.kind, coin.amount - want.amount)] if coin.amount > want.amount else []
    rest = []
    if coin.start < want.start:
        rest.append(Asset(coin.kind, coin.amount, coin.start, want.start))
    if coin.amount > want.amount:
        rest.append(Asset(coin.kind, coin.amount - want.amount, want.start, want.end))
    if want.end < coin.end:
        rest.append(Asset(coin.kind, coin.amount, want.end, coin.end))
    return rest


@dataclass
class Wallet:
    """Keys and unspent coins of one prosumer (or of one meter's deposit addresses).

    ``keep``: called with each new key before its address is handed out (e.g. a durable journal, so that a process
    that is killed and started again still holds the keys of the coins paid to it)."""

    keys: dict[bytes, KeyPair] = field(default_factory=dict)
    coins: dict[bytes, Output] = field(default_factory=dict)
    keep: Callable[[KeyPair], None] | None = None

    def new_address(self) -> bytes:
        """A fresh one-time address."""
        key = KeyPair.generate()
        if self.keep is not None:
            self.keep(key)
        self.keys[key.address] = key
        return key.address

    def scan(self, block: Block) -> list[tuple[bytes, Output]]:
        """Update coins from a committed block; return the new coins paid to this wallet."""
        received = []
        for tx in block.transactions:
            for op in getattr(tx, "inputs", ()):
                self.coins.pop(op, None)
            for i, out in enumerate(getattr(tx, "outputs", ())):
                if out.owner in self.keys:
                    op = outpoint(tx.txid, i)
                    self.coins[op] = out
                    received.append((op, out))
        return received

    def balance(self, kind: AssetKind) -> list[Asset]:
        return [o.asset for o in self.coins.values() if o.asset.kind == kind]

    def leg(self, want: Asset, to: bytes, *, exclude: Iterable[bytes] = ()) -> Leg:
        """Spend coins to pay ``want`` to address ``to``, with the remainder back to fresh own addresses.

        EPA/ECA: one coin covering ``want``'s interval with at least its power. FA: as many coins as needed.
        """
        skip = set(exclude)
        if want.kind == AssetKind.FA:
            chosen, total = [], 0
            for op, out in sorted(self.coins.items(), key=lambda kv: -kv[1].asset.amount):
                if op in skip or out.asset.kind != AssetKind.FA:
                    continue
                chosen.append(op)
                total += out.asset.amount
                if total >= want.amount:
                    break
            if total < want.amount:
                raise WalletError(f"not enough FA: have {total}, need {want.amount}")
            outs = [Output(want, to)]
            if total > want.amount:
                outs.append(Output(Asset(AssetKind.FA, total - want.amount), self.new_address()))
            return Leg(tuple(chosen), tuple(outs))
        for op, out in self.coins.items():
            a = out.asset
            if (
                op not in skip
                and a.kind == want.kind
                and a.start <= want.start
                and want.end <= a.end
                and a.amount >= want.amount
            ):
                outs = [Output(want, to)] + [Output(r, self.new_address()) for r in remainder(a, want)]
                return Leg((op,), tuple(outs))
        raise WalletError(f"no {want.kind.name} coin covers {want.amount} W over [{want.start},{want.end})")

    def sign(self, tx: Transfer, chain_id: bytes) -> Transfer:
        """Sign the inputs of ``tx`` that this wallet owns; leave others for their owners."""
        keys = {op: self.keys[self.coins[op].owner] for op in tx.inputs if op in self.coins}
        if not keys:
            raise WalletError("this wallet owns none of the transfer's inputs")
        return tx.signed(chain_id, keys, partial=True)

    def sweep(self, to: bytes, kinds: Iterable[AssetKind] = tuple(AssetKind)) -> Leg:
        """Spend every coin of ``kinds`` to ``to`` unchanged (e.g. deposit everything to the meter)."""
        ops = tuple(op for op, o in self.coins.items() if o.asset.kind in set(kinds))
        if not ops:
            raise WalletError("nothing to sweep")
        return Leg(ops, tuple(Output(self.coins[op].asset, to) for op in ops))
