"""Resuming an interrupted community run: a journal kept in step with the chains, and recovery from the chain tips.

No committed block is ever deleted or rewritten: a resumed run continues the very chains the interrupted one left.
What a run needs besides its chains is small, and is written to ``DIR/resume/`` after every slot:

* ``run.json`` (once, at the start): the run's store location (no password), its schemas' run id, the
  community's fingerprint, the run's parameters and attacks, and the secret from which every wallet derives its
  keys (:class:`DerivedWallet`; a deployed wallet keeps its keys itself);
* ``rows.jsonl``: one line per finished slot with the output rows that slot added (readings, forecasts, trades,
  bills, alarms, rewards, blocks, control, the bid store's orders), appended and flushed;
* ``state.json``: replaced atomically (write, then rename) after that line (first after the set-up, as slot −1):
  the last finished slot, the run's counters, each market's soft state (its shuffle RNG, ECA-FA pairs, wallet key
  counters, each meter's renewed FA credit), the credit renewals due, the controllers' prices in force, the DSO's
  nonces and signed price copies, the coordinators in charge, the attacks' outcomes, the transactions still queued
  at each coordinator and every chain's tip. ``rows.jsonl`` lines after ``state.json``'s slot (or a torn last
  line) are dropped on resume.

The ledger side of the market is rebuilt from the chain, not from the journal: every wallet re-derives its keys
and rescans its NAN chain (so the coins of the day in progress are found, whatever was committed), each meter
recovers its issues (its own signed ``MeterIssue`` transactions), its deposits, nonce, issued power and FA total.

On resume every copy of a chain first catches up with the longest (a kill may come between a block's commit and
its relay to a copy); the coordinator in charge must extend the tip ``state.json`` recorded. Blocks above it belong
to the slot the run was killed in (slot ``k``): they stay, and slot ``k`` is played again (``sim.run._Run``):

* every transaction the run submits goes through ``_Run._submit``, which skips one the killed run committed on
  that chain in slot ``k`` (readings, rewards, credit renewals, attack injections: deterministic, so recognised by
  id); price relays and anchors check the chain state themselves;
* a NAN with blocks above its tip ran (part of) slot ``k``'s market round: no order is traded again in that slot
  (its trades are on chain and in the bills, but not in ``trades.parquet``/``orders.parquet``: the bid store's
  record of them died with the process); on the first slot of a trading day the day's coins are mixed again (the
  mix may have been cut short), on its last the day's coins are deposited if they were not;
* the blocks above are listed (``blocks.parquet``, alarms) and shown to the attacks as if just committed; every new
  block is timed after them; after slot ``k`` the DSO's nonces go on after any policy the killed run committed.

So a run killed between two slots resumes exactly; a run killed inside slot ``k`` differs from an uninterrupted
one only by that slot's market round on the feeders whose NAN had committed in it. Runs are not bit-for-bit
reproducible in any case: wallet keys and mixes are random, so which coin backs which order, and the trades' partial
fills, vary from run to run (the households, readings, prices, baseline bills, rewards and HAN chains do not).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from gridledger.consensus.poef import Replica
from gridledger.ledger.assets import AssetKind
from gridledger.ledger.block import Block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds import decode_transaction
from gridledger.ledger.kinds.meter_issue import MeterIssue
from gridledger.petra.wallet import Wallet
from gridledger.tiers.hierarchy import TierChain

FOLDER = "resume"
#: Addresses a wallet may have derived after its last recorded counter (a slot derives at most a few per coin).
LOOKAHEAD = 256


class ResumeError(ValueError):
    """The folder's run cannot be resumed (the message says why)."""


@dataclass
class DerivedWallet(Wallet):
    """A wallet whose ``n``-th address is derived from ``secret`` and ``n``: after a crash it finds its coins again
    by deriving its addresses and rescanning the chain (:meth:`recover`)."""

    secret: bytes = b""
    count: int = 0

    def new_address(self) -> bytes:
        key = KeyPair.from_secret(self.secret + self.count.to_bytes(8, "big"))
        self.count += 1
        self.keys[key.address] = key
        return key.address

    def recover(self, count: int) -> None:
        """Derive the addresses up to ``count`` + :data:`LOOKAHEAD` (new ones start after them: none is reused)."""
        self.count = 0
        self.keys.clear()
        for _ in range(count + LOOKAHEAD):
            self.new_address()


def wallets(secret: bytes):
    """The wallet factory of a run (``name`` → its :class:`DerivedWallet`)."""
    return lambda name: DerivedWallet(secret=secret + name.encode() + b"/")


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step (a kill leaves the old or the new file, never half of one)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Journal:
    """The resume files of one run folder (see the module docstring)."""

    def __init__(self, out: Path) -> None:
        self.dir = out / FOLDER
        self.rows_file = self.dir / "rows.jsonl"
        self.state_file = self.dir / "state.json"
        self.run_file = self.dir / "run.json"

    # ---------------------------------------------------------------- a new run
    def start(self, store: str | None, run_id: str, community: str, params: dict, attacks: list[str]) -> None:
        """Write ``run.json`` for a new run: its store (no password), schemas' run id, community fingerprint,
        parameters, attacks and a fresh wallet secret."""
        self.dir.mkdir(parents=True, exist_ok=True)
        run = {"store": store, "run_id": run_id, "community": community, "params": params, "attacks": attacks}
        atomic_write(self.run_file, json.dumps({**run, "wallet_secret": secrets.token_hex(32)}))
        self.rows_file.write_text("")
        self._rows = self.rows_file.open("a")

    def record(self, slot: int, rows: dict[str, list], state: dict) -> None:
        """Slot ``slot`` is finished: append the rows it added, then replace the state."""
        self._rows.write(json.dumps({"slot": slot, "rows": rows}, default=int) + "\n")
        self._rows.flush()
        atomic_write(self.state_file, json.dumps({"slot": slot, **state}, default=int))

    def finish(self) -> None:
        """The run is complete (its outputs are written): the resume files, wallet secret included, go."""
        self._rows.close()
        shutil.rmtree(self.dir)

    # ---------------------------------------------------------------- resuming
    def load(self) -> tuple[dict, list[dict]]:
        """``state.json`` and the rows of the slots it covers (slot −1: the set-up).

        ``rows.jsonl`` is cut back to those slots, so the resumed run appends after them."""
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError) as e:
            raise ResumeError(f"{self.state_file}: unreadable: {e}") from None
        last = state["slot"]
        lines, keep = [], 0
        with self.rows_file.open("rb") as f:
            for raw in f:
                try:
                    line = json.loads(raw)
                except ValueError:
                    break  # torn by the kill
                if line["slot"] > last:
                    break
                lines.append(line)
                keep += len(raw)
        if (lines[-1]["slot"] if lines else -1) != last:
            raise ResumeError(f"{self.rows_file}: its rows end before slot {last} of {self.state_file}")
        with self.rows_file.open("r+b") as f:
            f.truncate(keep)
        self._rows = self.rows_file.open("a")
        return state, lines


# -------------------------------------------------------------------- what the journal holds of the run
def tips(chains: Iterable[TierChain]) -> dict[str, list]:
    """Each chain's tip in its coordinator in charge's copy: name → [height, hash hex]."""
    return {n.name: [n.coordinator.chain.height, n.coordinator.chain.state.tip_hash.hex()] for n in chains}


def pending(chains: Iterable[TierChain]) -> dict[str, list[str]]:
    """The transactions queued at each coordinator in charge (anchors and price relays made after the rounds)."""
    return {n.name: [tx.encode().hex() for tx in n.coordinator.pending.values()] for n in chains}


def _copies(node: TierChain) -> list[Replica]:
    return [*(c.replica for c in node.coordinators), node.replica]


def catch_up(node: TierChain) -> None:
    """Every copy of ``node``'s chain catches up with the longest (a killed run may not have relayed its last
    blocks to every copy)."""
    longest = max(_copies(node), key=lambda r: r.height)
    for copy in _copies(node):
        if copy.height < longest.height:
            copy.catch_up(longest.chain.blocks(copy.height + 1))


def beyond(chains: Iterable[TierChain], recorded: dict[str, list]) -> dict[str, list[Block]]:
    """Check every chain extends its recorded tip; return the blocks above it (the killed slot's), by chain."""
    out = {}
    for node in chains:
        height, tip = recorded[node.name]
        chain = node.coordinator.chain
        block = next(iter(chain.blocks(height)), None) if chain.height >= height else None
        if block is None:
            raise ResumeError(
                f"chain {node.name}: its stores end at block {chain.height}, before the recorded {height}"
            )
        if block.hash.hex() != tip:
            raise ResumeError(f"chain {node.name}: block {height} is not the one the run recorded")
        above = list(chain.blocks(height + 1))
        if above:
            out[node.name] = above
    return out


def decode(raw: str):
    """A transaction the journal holds (hex of its canonical encoding)."""
    return decode_transaction(bytes.fromhex(raw))


def ledger_state(ledger) -> dict:
    """What the DSO and the coordinators hold besides the chains: the DSO's nonce per chain, the price copies it
    signed (relayed once each parent committed them) and which coordinator is in charge (a coordinator loss)."""
    return {
        "nonces": {cid.hex(): dso.nonce for cid, dso in ledger.dsos.items()},
        "price_copies": [
            [slot, list(prices), {cid.hex(): tx.encode().hex() for cid, tx in copies.items()}]
            for (slot, prices), copies in ledger.price_copies
        ],
        "in_charge": {n.name: [n.active, sorted(n.down)] for n in ledger.chains.values() if n.active or n.down},
    }


def restore_ledger(ledger, saved: dict) -> None:
    for cid, nonce in saved["nonces"].items():
        ledger.dsos[bytes.fromhex(cid)].nonce = nonce
    ledger.price_copies[:] = [
        ((slot, tuple(prices)), {bytes.fromhex(cid): decode(raw) for cid, raw in copies.items()})
        for slot, prices, copies in saved["price_copies"]
    ]
    for name, (active, down) in saved["in_charge"].items():
        ledger.chains[name].active, ledger.chains[name].down = active, set(down)


def market_state(market) -> dict:
    """What a NAN market needs to go on that its chain does not hold."""
    version, internal, gauss = market.rng.getstate()
    return {
        "rng": [version, list(internal), gauss],
        "offers_seen": market.offers_seen,
        "pairs": {a.hex(): b.hex() for a, b in market._pairs.items()},
        "wallets": {n: [p.wallet.count, p.meter.deposits.count] for n, p in market.prosumers.items()},
        "credit": {n: p.meter.limits.credit_fa for n, p in market.prosumers.items()},
    }


def restore_market(market, saved: dict) -> None:
    """Restore a market's soft state and rebuild its wallets and meters from its NAN chain."""
    version, internal, gauss = saved["rng"]
    market.rng.setstate((version, tuple(internal), gauss))
    market.offers_seen = saved["offers_seen"]
    market._pairs = {bytes.fromhex(a): bytes.fromhex(b) for a, b in saved["pairs"].items()}
    for name, p in market.prosumers.items():
        wallet_count, deposit_count = saved["wallets"][name]
        p.wallet.recover(wallet_count)
        p.meter.deposits.recover(deposit_count)
        p.meter.limits = replace(p.meter.limits, credit_fa=saved["credit"][name])
    chain = market.chain
    for block in chain.blocks(1):
        slot = chain.state.slot_of(block.header.time)
        for p in market.prosumers.values():
            p.wallet.scan(block)
            for _, out in p.meter.deposits.scan(block):
                p.meter.deposited.append((slot, out.asset))
        for tx in block.transactions:
            if isinstance(tx, MeterIssue) and tx.meter in market.prosumers:
                market.prosumers[tx.meter].meter.issued.extend((slot, o.asset) for o in tx.outputs)
    state = chain.state
    for name, p in market.prosumers.items():
        meter = p.meter
        meter.nonce = state.nonces.get(name, 0)
        meter._fa_total = state.fa_issued.get(name, 0)
        for (m, kind, slot), total in state.issued.items():
            if m == name and kind in (AssetKind.EPA, AssetKind.ECA):
                meter._issued_power[(kind, slot)] = total


def attacks_state(injector) -> list[dict]:
    """Each attack's outcome so far, and which of its transactions still await a verdict."""
    waiting = {id(o): [] for o in injector.outcomes}
    for chain, txids in injector.watched.items():
        for txid, o in txids.items():
            waiting[id(o)].append([chain, txid.hex()])
    return [
        {
            "detections": o.detections,
            "details": o.details,
            "accepted": [tx.encode().hex() for tx in o.accepted],
            "watched": waiting[id(o)],
        }
        for o in injector.outcomes
    ]


def restore_attacks(injector, saved: list[dict]) -> None:
    for o, s in zip(injector.outcomes, saved, strict=True):
        o.detections = [tuple(d) for d in s["detections"]]
        o.details = s["details"]
        o.accepted = [decode(raw) for raw in s["accepted"]]
        for chain, txid in s["watched"]:
            injector.watched.setdefault(chain, {})[bytes.fromhex(txid)] = o
