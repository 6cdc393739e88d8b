"""The corpus of bad inputs: every validity rule of the ledger core, each broken on purpose.

Each case builds one kind of invalid transaction, block, byte string or store on the funded ``net`` chain and
names the exact reject code (and the gist of the message) it must produce. The runner checks, for every
attempt, that the ``Reject`` carries that code, is located at the right block height and transaction index,
and that nothing moved: every SQLite table byte for byte, the ledger state snapshot, the tip and the
mempool. Then the chain must still commit a valid block and pass ``verify_store`` (a bad input never blocks
a node).

Block-level cases go through ``Chain.append`` with a block from ``make_block``: validly signed by the
coordinator, bad in content. Each such block starts with a valid *warm-up* (a meter issue, a transfer spending
its output, a DSO policy) so that the rollback of outputs, issued totals, nonces and the policy timeline is
exercised, not just the early exit. Context-free cases are also tried through ``Chain.submit``.
``test_every_reject_code_is_in_the_corpus`` parses the core and fails when a code has no case here.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import pytest

import gridledger.chain
import gridledger.ledger
from gridledger.chain import Chain, verify_store
from gridledger.ledger.assets import ECA, EPA, FA, MAX_IO, Asset, AssetKind, Output, outpoint
from gridledger.ledger.block import MAX_BLOCK_TXS, ZERO_HASH, Block, make_block
from gridledger.ledger.crypto import KeyPair, sha256
from gridledger.ledger.encoding import Writer
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds import check_transaction, decode_transaction
from gridledger.ledger.kinds.dso_policy import DsoPolicy, MeterLimits
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.ledger.kinds.meter_issue import MeterIssue
from gridledger.ledger.kinds.reading import Reading, sealed_size
from gridledger.ledger.kinds.transfer import Transfer, Witness
from gridledger.ledger.state import LedgerState
from gridledger.ledger.transactions import Transaction
from gridledger.petra.wallet import combine
from gridledger.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from conftest import Net

#: Slot 0 (Unix s) of the other chains some cases create.
T0 = 1_700_000_000

# --------------------------------------------------------------------------- harness


def fresh() -> bytes:
    """A fresh one-time address."""
    return KeyPair.generate().address


#: Default of ``Attempt.store`` / ``Attempt.state``: compare the fixture chain's (None: compare nothing).
NET = object()


@dataclass
class Attempt:
    """One try at feeding a bad input; ``action`` must raise the case's ``Reject``."""

    action: Callable[[], object]
    tx_index: int | None = None
    height: int | None = None
    store: object = NET
    state: object = NET
    #: Whether the chain must still accept a valid block afterwards (not for stores tampered on purpose).
    live: bool = True


@dataclass(frozen=True)
class Case:
    name: str
    code: str
    match: str
    build: Callable[[Harness], Attempt | list[Attempt]]


CASES: list[Case] = []


def case(code: str, match: str):
    """Register a corpus case: ``code`` is the exact reject code, ``match`` a regex on its message."""

    def register(build: Callable[[Harness], Attempt | list[Attempt]]):
        CASES.append(Case(build.__name__.replace("_", "-"), code, match, build))
        return build

    return register


class Orphan(Transaction):
    """A transaction kind no rule, decoder or state handler knows (kind 250 is never assigned)."""

    KIND: ClassVar[int] = 250

    def write_body(self, w: Writer) -> None:
        w.u8(0)

    def write_witness(self, w: Writer) -> None:
        pass


@dataclass
class Harness:
    """Builds bad inputs on a funded ``Net``.

    Set-up that must be committed first goes through ``net`` directly; the transactions of the bad block go
    through the harness (``issue``, ``raw_issue``, ``policy``, ``dso_nonce``), which builds the warm-up first,
    so that nonces keep the order of the block: warm-up, then the case.
    """

    net: Net

    @cached_property
    def warm(self) -> list[Transaction]:
        """The valid warm-up: a meter issue, a transfer spending its output, a DSO policy."""
        net, key = self.net, KeyPair.generate()
        issue = net.issue("MI1", (EPA(100, 40, 41), key.address))
        op = outpoint(issue.txid, 0)
        spend = Transfer((op,), (Output(EPA(100, 40, 41), fresh()),)).signed(net.chain_id, {op: key})
        return [issue, spend, net.dso.policy(90, ban=["ghost"])]

    # ----------------------------------------------------------- inputs
    def coin(self, wallet: str, kind: AssetKind) -> tuple[bytes, Asset, KeyPair]:
        """(outpoint, asset, owner key) of the wallet's first coin of ``kind``."""
        w = self.net.wallets[wallet]
        op, out = next((op, o) for op, o in w.coins.items() if o.asset.kind == kind)
        return op, out.asset, w.keys[out.owner]

    def transfer(self, spends: list[tuple[bytes, KeyPair]], outputs: list[Output | Asset]) -> Transfer:
        """A transfer of ``spends`` (outpoint, signing key) to ``outputs`` (an asset: to a fresh address)."""
        outs = tuple(o if isinstance(o, Output) else Output(o, fresh()) for o in outputs)
        tx = Transfer(tuple(op for op, _ in spends), outs)
        # A body that cannot be encoded has no txid to sign; the context-free rules reject it first anyway.
        try:
            return tx.signed(self.net.chain_id, dict(spends))
        except Exception:
            return replace(tx, witnesses=tuple(Witness(k.public, bytes(64)) for _, k in spends))

    def spend(self, wallet: str, kind: AssetKind, *outputs: Output | Asset) -> Transfer:
        op, _, key = self.coin(wallet, kind)
        return self.transfer([(op, key)], list(outputs))

    def issue(self, meter: str, *assets: tuple[Asset, bytes]) -> MeterIssue:
        assert self.warm
        return self.net.issue(meter, *assets)

    def policy(self, time: int, **changes: object) -> DsoPolicy:
        assert self.warm
        return self.net.dso.policy(time, **changes)

    def dso_nonce(self) -> int:
        """The DSO's next nonce (for hand-made policies)."""
        assert self.warm
        self.net.dso.nonce += 1
        return self.net.dso.nonce

    def raw_issue(self, meter: str, *assets: Asset, key: KeyPair | None = None) -> MeterIssue:
        """An issue the meter's firmware would refuse (over limits), signed with ``key`` or the meter's."""
        assert self.warm
        m = self.net.meters.get(meter)
        nonce = 1
        if m is not None:
            m.nonce += 1
            nonce = m.nonce
        tx = MeterIssue(meter, nonce, tuple(Output(a, fresh()) for a in assets))
        return tx.signed(self.net.chain_id, key or m.key)

    # ----------------------------------------------------------- attempts
    def in_block(self, *txs: Transaction) -> Attempt:
        """Append a block [warm-up, *txs]; the reject must name the last of ``txs``."""
        block = self.net.next_block(*self.warm, *txs)
        return Attempt(
            partial(self.net.chain.append, block), tx_index=len(self.warm) + len(txs) - 1, height=block.height
        )

    def header(self, proposer: KeyPair | None = None, **changes: object) -> Attempt:
        """Append a block [warm-up] whose header has ``changes`` (validly signed by ``proposer``)."""
        block = self.net.next_block(*self.warm, proposer=proposer, **changes)
        return Attempt(partial(self.net.chain.append, block), height=block.height)

    def submit(self, tx: Transaction) -> Attempt:
        return Attempt(partial(self.net.chain.submit, tx))

    def both(self, tx: Transaction) -> list[Attempt]:
        """A context-free reject: through the mempool, and (when it can be encoded) inside a block."""
        attempts = [self.submit(tx)]
        try:
            tx.encode()
        except Exception:  # not encodable at all: it can only be met in-process, never in a block
            return attempts
        return [*attempts, self.in_block(tx)]

    def raw_block(self, raw: bytes, *, tx_index: int | None = None, located: bool = False) -> Attempt:
        """Bytes from the network: decode, then append. ``located``: the reject names the block's height."""
        height = self.net.state.height + 1 if located or tx_index is not None else None
        return Attempt(lambda: self.net.chain.append(Block.decode(raw)), tx_index=tx_index, height=height)

    def block_bytes(self, *tx_raws: bytes) -> bytes:
        """A block encoding around arbitrary transaction bytes (header and signature are valid)."""
        b = self.net.next_block()
        w = Writer().raw(b.header.encode()).fixed(b.signature, 64).count(0).u32(len(tx_raws))
        for raw in tx_raws:
            w.blob(raw)
        return w.bytes()


def run_case(c: Case, net: Net) -> None:
    h = Harness(net)
    built = c.build(h)
    attempts = built if isinstance(built, list) else [built]
    for a in attempts:
        db = net.store.db if a.store is NET else a.store
        state = net.state if a.state is NET else a.state
        tables = net.tables(db) if db is not None else None
        snap = (state.snapshot(), state.tip_time) if state is not None else None
        mempool = dict(net.chain.mempool)
        with pytest.raises(Reject) as exc:
            a.action()
        e = exc.value
        assert e.code == c.code, f"expected {c.code}, got {e}"
        assert re.search(c.match, e.message), f"message {e.message!r} does not match {c.match!r}"
        assert str(e).endswith(f"{e.code}: {e.message}")
        if a.height is not None:
            assert e.height == a.height, str(e)
        if a.tx_index is not None:
            assert e.tx_index == a.tx_index, str(e)
        if db is not None:
            assert net.tables(db) == tables, "a rejected input changed the store"
        if state is not None:
            now = net.state if a.state is NET else state  # Chain.append may rebuild its state object
            assert (now.snapshot(), now.tip_time) == snap, "a rejected input changed the ledger state"
        assert dict(net.chain.mempool) == mempool
    if all(a.live for a in attempts):
        # The node is not stuck: the next valid block commits and the whole store still verifies.
        net.commit(net.dso.policy(net.slot + 1, prices=(121, 81)))
        assert verify_store(net.store).snapshot() == net.state.snapshot()


# --------------------------------------------------------------------------- transfers: spending


@case("bad-txns-inputs-missingorspent", r"input 0 .* is unknown or already spent")
def double_spend_in_chain(h: Harness) -> Attempt:
    op, asset, key = h.coin("seller", AssetKind.FA)
    h.net.commit(h.transfer([(op, key)], [asset]))
    return h.in_block(h.transfer([(op, key)], [FA(200), FA(300)]))


@case("bad-txns-inputs-missingorspent", r"input 0 .* is unknown or already spent")
def replayed_transfer(h: Harness) -> Attempt:
    tx = h.spend("seller", AssetKind.EPA, EPA(2_000, 1, 3), EPA(2_000, 3, 5))
    h.net.commit(tx)
    return h.in_block(tx)


@case("bad-txns-inputs-missingorspent", r"input 1 .* is unknown or already spent")
def unknown_outpoint(h: Harness) -> Attempt:
    op, asset, key = h.coin("seller", AssetKind.FA)
    return h.in_block(h.transfer([(op, key), (outpoint(sha256(b"nowhere"), 0), key)], [asset]))


@case("bad-blk-double-spend", r"input 0 .* was spent by an earlier transaction of this block")
def double_spend_inside_one_block(h: Harness) -> Attempt:
    op, asset, key = h.coin("buyer", AssetKind.FA)
    return h.in_block(h.transfer([(op, key)], [asset]), h.transfer([(op, key)], [FA(600), FA(400)]))


@case("bad-txns-inputs-duplicate", r"spends the same outpoint twice")
def same_input_twice_in_one_transfer(h: Harness) -> list[Attempt]:
    op, _, key = h.coin("buyer", AssetKind.FA)
    return h.both(h.transfer([(op, key), (op, key)], [FA(2_000)]))


@case("bad-txns-signature", r"signature of input 0 is invalid")
def forged_signature(h: Harness) -> Attempt:
    tx = h.spend("seller", AssetKind.FA, FA(500))
    wit = tx.witnesses[0]
    forged = bytes([wit.signature[0] ^ 1]) + wit.signature[1:]
    return h.in_block(replace(tx, witnesses=(Witness(wit.pubkey, forged),)))


@case("bad-txns-signature", r"signature of input 1 is invalid")
def missing_signature(h: Harness) -> Attempt:
    """The owner's key is named but the owner never signed (all-zero signature)."""
    (op1, _, k1), (op2, _, k2) = h.coin("seller", AssetKind.FA), h.coin("buyer", AssetKind.FA)
    tx = Transfer((op1, op2), (Output(FA(1_500), fresh()),)).signed(h.net.chain_id, {op1: k1}, partial=True)
    return h.in_block(replace(tx, witnesses=(tx.witnesses[0], Witness(k2.public, bytes(64)))))


@case("bad-txns-signature", r"signature of input 0 is invalid")
def forged_signature_applied_directly(h: Harness) -> Attempt:
    """``LedgerState.apply_tx`` without pre-checked signatures checks each input itself."""
    tx = h.spend("seller", AssetKind.FA, FA(500))
    tx = replace(tx, witnesses=(Witness(tx.witnesses[0].pubkey, bytes(64)),))
    state = h.net.state

    def apply() -> None:
        mark = state.tx_mark()
        try:
            state.apply_tx(tx, h.net.slot)
        except Reject:
            state.rollback(mark)
            raise

    return Attempt(apply)


@case("bad-txns-signature", r"an input signature is invalid")
def half_signed_trade_proposed(h: Harness) -> Attempt:
    """An atomic trade signed by the seller only: the coordinator drops it when it orders the mempool."""
    net = h.net
    seller, buyer = net.wallets["seller"], net.wallets["buyer"]
    trade = combine(seller.leg(EPA(1_000, 1, 2), buyer.new_address()), buyer.leg(FA(30), seller.new_address()))
    trade = seller.sign(trade, net.chain_id)

    def propose() -> None:
        net.chain.submit(trade)
        res = net.chain.propose(net.coordinator, net.tick())
        assert res.block is None and list(res.rejected) == [trade.txid]
        raise res.rejected[trade.txid]

    return Attempt(propose)


@case("bad-txns-wrong-owner", r"input 0 is not owned by the key that signs it")
def wrong_owner(h: Harness) -> Attempt:
    op, asset, _ = h.coin("seller", AssetKind.FA)
    _, _, buyer_key = h.coin("buyer", AssetKind.FA)
    return h.in_block(h.transfer([(op, buyer_key)], [asset]))


@case("bad-txns-witness-count", r"0 witnesses for 1 inputs")
def no_witness(h: Harness) -> list[Attempt]:
    op, asset, _ = h.coin("seller", AssetKind.FA)
    return h.both(Transfer((op,), (Output(asset, fresh()),)))


# --------------------------------------------------------------------------- transfers: conservation


@case("bad-txns-epa-conservation", r"EPA power of outputs differs from inputs by 100 W from slot 1 on")
def epa_power_created(h: Harness) -> Attempt:
    return h.in_block(h.spend("seller", AssetKind.EPA, EPA(1_000, 1, 5), EPA(1_100, 1, 5)))


@case("bad-txns-epa-conservation", r"by 2000 W from slot 5 on")
def epa_stretched_in_time(h: Harness) -> Attempt:
    return h.in_block(h.spend("seller", AssetKind.EPA, EPA(2_000, 1, 3), EPA(2_000, 3, 6)))


@case("bad-txns-epa-conservation", r"from slot 1 on")
def epa_shifted_in_time(h: Harness) -> Attempt:
    return h.in_block(h.spend("seller", AssetKind.EPA, EPA(2_000, 2, 6)))


@case("bad-txns-epa-conservation", r"EPA power .* by -2000 W from slot 1 on")
def epa_turned_into_eca(h: Harness) -> Attempt:
    return h.in_block(h.spend("seller", AssetKind.EPA, ECA(2_000, 1, 5)))


@case("bad-txns-eca-conservation", r"ECA power of outputs differs from inputs by 1 W from slot 2 on")
def eca_power_created(h: Harness) -> Attempt:
    return h.in_block(h.spend("buyer", AssetKind.ECA, ECA(2_000, 1, 5), ECA(1, 2, 3)))


@case("bad-txns-fa-conservation", r"FA outputs differ from FA inputs by 1 minor units")
def fa_minted(h: Harness) -> Attempt:
    return h.in_block(h.spend("seller", AssetKind.FA, FA(250), FA(251)))


@case("bad-txns-fa-conservation", r"FA outputs differ from FA inputs by -1 minor units")
def fa_burnt(h: Harness) -> Attempt:
    return h.in_block(h.spend("seller", AssetKind.FA, FA(499)))


# --------------------------------------------------------------------------- transfers: context-free shape


@case("bad-txns-vin-empty", r"transfer has no inputs")
def transfer_without_inputs(h: Harness) -> list[Attempt]:
    return h.both(Transfer((), (Output(FA(1), fresh()),), ()))


@case("bad-txns-vout-empty", r"transaction has no outputs")
def transfer_without_outputs(h: Harness) -> list[Attempt]:
    return h.both(h.spend("seller", AssetKind.FA))


@case("bad-txns-too-many", rf"{MAX_IO + 1} inputs; at most {MAX_IO}")
def too_many_inputs(h: Harness) -> list[Attempt]:
    ops = tuple(outpoint(sha256(b"x"), i) for i in range(MAX_IO + 1))
    return h.both(Transfer(ops, (Output(FA(1), fresh()),), (Witness(bytes(32), bytes(64)),) * len(ops)))


@case("bad-txns-too-many", rf"{MAX_IO + 1} outputs; at most {MAX_IO}")
def too_many_outputs(h: Harness) -> list[Attempt]:
    return h.both(h.spend("buyer", AssetKind.FA, *[FA(1)] * (MAX_IO + 1)))


@case("bad-asset-negative", r"output 1 amount is negative \(-5\)")
def negative_amount(h: Harness) -> list[Attempt]:
    return h.both(h.spend("seller", AssetKind.FA, FA(505), FA(-5)))


@case("bad-asset-zero", r"output 0 amount is zero")
def zero_amount(h: Harness) -> list[Attempt]:
    return h.both(h.spend("seller", AssetKind.EPA, EPA(0, 1, 5), EPA(2_000, 1, 5)))


@case("bad-asset-toolarge", r"exceeds the maximum 9007199254740992")
def amount_above_2_pow_53(h: Harness) -> list[Attempt]:
    return h.both(h.spend("seller", AssetKind.FA, FA(2**53 + 1)))


@case("bad-asset-toolarge", r"amount 18446744073709551616 exceeds")
def amount_overflowing_u64(h: Harness) -> list[Attempt]:
    return h.both(h.spend("seller", AssetKind.FA, FA(2**64)))


@case("bad-txns-outputs-toolarge", r"total FA amount of the outputs exceeds")
def output_sum_overflows(h: Harness) -> list[Attempt]:
    return h.both(h.spend("seller", AssetKind.FA, FA(2**53), FA(2**53)))


@case("bad-asset-interval", r"output 0 interval \[3,3\) is empty")
def empty_interval(h: Harness) -> list[Attempt]:
    return h.both(h.spend("seller", AssetKind.EPA, EPA(2_000, 3, 3), EPA(2_000, 1, 5)))


@case("bad-asset-interval", r"is an FA and must have start = end = 0")
def fa_with_interval(h: Harness) -> list[Attempt]:
    return h.both(h.spend("seller", AssetKind.FA, Asset(AssetKind.FA, 500, 1, 2)))


@case("bad-asset-kind", r"output 0 has unknown kind 9")
def unknown_asset_kind(h: Harness) -> list[Attempt]:
    return h.both(h.spend("seller", AssetKind.FA, Asset(9, 500)))


@case("bad-asset-type", r"output 0 amount must be an integer, got float")
def fractional_amount(h: Harness) -> list[Attempt]:
    return h.both(h.spend("seller", AssetKind.FA, FA(500.0)))


@case("bad-asset-type", r"output 0 is not an asset")
def output_without_asset(h: Harness) -> list[Attempt]:
    return h.both(h.spend("seller", AssetKind.FA, Output("500 FA", fresh())))


@case("bad-asset-type", r"output 1 is not an output")
def not_an_output(h: Harness) -> list[Attempt]:
    tx = h.spend("seller", AssetKind.FA, FA(500))
    return h.both(replace(tx, outputs=(*tx.outputs, FA(1))))


@case("bad-txns-owner", r"output 0 owner must be a 20-byte address")
def short_owner_address(h: Harness) -> list[Attempt]:
    return h.both(h.spend("seller", AssetKind.FA, Output(FA(500), bytes(19))))


@case("bad-encoding-size", r"input outpoint must be exactly 34 bytes")
def malformed_outpoint(h: Harness) -> list[Attempt]:
    tx = h.spend("seller", AssetKind.FA, FA(500))
    return h.both(replace(tx, inputs=(tx.inputs[0][:33],)))


# --------------------------------------------------------------------------- meter issues


@case("bad-issue-meter-unknown", r"meter MI9 is not authorized at slot 0")
def unknown_meter(h: Harness) -> Attempt:
    return h.in_block(h.raw_issue("MI9", EPA(100, 1, 2), key=KeyPair.from_secret("meter-MI9")))


@case("bad-issue-meter-unknown", r"meter MI3 is not authorized at slot 1")
def meter_authorized_only_later(h: Harness) -> Attempt:
    """The policy in force at t is the latest with time ≤ t: an authorization from slot 5 is not yet valid."""
    net, key = h.net, KeyPair.from_secret("meter-MI3")
    net.commit(net.dso.policy(5, authorize={"MI3": key.public}, limits=[MeterLimits("MI3", 1_000, 1_000, 0)]))
    net.at_slot(1)
    return h.in_block(h.raw_issue("MI3", EPA(100, 5, 6), key=key))


@case("bad-issue-meter-banned", r"meter MI2 is banned at slot 3")
def banned_meter(h: Harness) -> Attempt:
    net = h.net
    net.commit(net.dso.policy(3, ban=["MI2"]))
    net.at_slot(2)
    net.commit(net.issue("MI2", (ECA(100, 3, 4), fresh())))  # slot 2: still authorized
    net.at_slot(3)
    return h.in_block(h.issue("MI2", (ECA(100, 3, 4), fresh())))


@case("bad-issue-signature", r"signature is not meter MI1's")
def issue_signed_by_another_meter(h: Harness) -> Attempt:
    return h.in_block(h.raw_issue("MI1", EPA(100, 1, 2), key=h.net.meters["MI2"].key))


@case("bad-issue-signature", r"signature is not meter MI2's")
def unsigned_issue(h: Harness) -> Attempt:
    return h.in_block(MeterIssue("MI2", 99, (Output(ECA(100, 1, 2), fresh()),)))


@case("bad-issue-nonce", r"nonce 1 of meter MI1 is not above its last \d+ \(replay\?\)")
def replayed_issue(h: Harness) -> Attempt:
    first_issue = h.net.chain.blocks(2).__next__().transactions[0]
    assert isinstance(first_issue, MeterIssue) and first_issue.nonce == 1
    return h.in_block(first_issue)


@case("bad-issue-nonce", r"nonce 1 of meter MI2 is not above its last 1")
def reused_nonce(h: Harness) -> Attempt:
    tx = MeterIssue("MI2", 1, (Output(ECA(10, 6, 7), fresh()),))
    return h.in_block(tx.signed(h.net.chain_id, h.net.meters["MI2"].key))


@case("bad-issue-over-limit", r"MI1 would have 5001 W of EPA at slot 1, above MAXEPA 5000 W")
def epa_over_limit_in_one_issue(h: Harness) -> Attempt:
    h.net.at_slot(1)
    return h.in_block(h.raw_issue("MI1", EPA(3_001, 1, 2)))


@case("bad-issue-over-limit", r"MI1 would have 5001 W of EPA at slot 4, above MAXEPA 5000 W")
def epa_over_limit_over_all_issues(h: Harness) -> Attempt:
    """2000 W were issued for [1, 5) in the funding block; 3001 W more over [4, 6) break MAXEPA at slot 4."""
    return h.in_block(h.raw_issue("MI1", EPA(3_001, 4, 6)))


@case("bad-issue-over-limit", r"MI1 would have 6000 W of EPA at slot 7")
def epa_over_limit_across_issues_in_one_block(h: Harness) -> Attempt:
    return h.in_block(h.raw_issue("MI1", EPA(3_000, 6, 8)), h.raw_issue("MI1", EPA(3_000, 7, 9)))


@case("bad-issue-over-limit", r"MI1 would have 6000 W of EPA at slot 9")
def overlapping_outputs_of_one_issue(h: Harness) -> Attempt:
    return h.in_block(h.raw_issue("MI1", EPA(3_000, 8, 10), EPA(3_000, 9, 11)))


@case("bad-issue-over-limit", r"MI2 would have 5001 W of ECA at slot 2, above MAXECA 5000 W")
def eca_over_limit(h: Harness) -> Attempt:
    return h.in_block(h.raw_issue("MI2", ECA(3_001, 2, 3)))


@case("bad-issue-over-limit", r"above MAXEPA 0 W")
def meter_without_limits(h: Harness) -> Attempt:
    net, key = h.net, KeyPair.from_secret("meter-MI3")
    net.commit(net.dso.policy(0, authorize={"MI3": key.public}))
    return h.in_block(h.raw_issue("MI3", EPA(1, 1, 2), key=key))


@case("bad-issue-over-limit", r"4000 W of EPA at slot 6, above MAXEPA 3000 W")
def limit_lowered_from_a_later_slot(h: Harness) -> Attempt:
    """Limits follow the policy in force at each slot the asset covers, not at the issue's slot."""
    h.net.commit(h.net.dso.policy(6, limits=[MeterLimits("MI1", 3_000, 3_000, 100_000)]))
    return h.in_block(h.raw_issue("MI1", EPA(4_000, 5, 7)))


@case("bad-issue-insolvent", r"MI2 would issue 100001 FA in all, beyond its credit 100000")
def fa_beyond_credit(h: Harness) -> Attempt:
    return h.in_block(h.raw_issue("MI2", FA(99_001)))


@case("bad-issue-past-interval", r"output 0 starts at slot 1, before the current slot 2")
def issue_for_a_past_slot(h: Harness) -> Attempt:
    h.net.at_slot(2)
    return h.in_block(h.raw_issue("MI1", EPA(100, 1, 3)))


@case("bad-issue-interval-too-long", r"output 0 covers 97 slots; at most 96")
def issue_interval_too_long(h: Harness) -> Attempt:
    assert h.net.chain.genesis.max_issue_slots == 96
    return h.in_block(h.raw_issue("MI1", EPA(1, 10, 107)))


@case("bad-encoding-name", r"meter id 'MI 1' may only use letters, digits and _ . : -")
def meter_id_with_space(h: Harness) -> list[Attempt]:
    return h.both(MeterIssue("MI 1", 5, (Output(EPA(1, 1, 2), fresh()),)))


@case("bad-encoding-name", r"meter id must be 1..32 characters, got ''")
def empty_meter_id(h: Harness) -> list[Attempt]:
    return h.both(MeterIssue("", 5, (Output(EPA(1, 1, 2), fresh()),)))


@case("bad-encoding-overflow", r"nonce = 18446744073709551616 does not fit in 64 bits")
def nonce_overflows_u64(h: Harness) -> list[Attempt]:
    return h.both(MeterIssue("MI1", 2**64, (Output(EPA(1, 1, 2), fresh()),)))


@case("bad-encoding-negative", r"nonce is negative \(-1\)")
def negative_nonce(h: Harness) -> list[Attempt]:
    return h.both(MeterIssue("MI1", -1, (Output(EPA(1, 1, 2), fresh()),)))


@case("bad-encoding-type", r"nonce must be an integer, got str")
def nonce_as_text(h: Harness) -> list[Attempt]:
    return h.both(MeterIssue("MI1", "7", (Output(EPA(1, 1, 2), fresh()),)))


# --------------------------------------------------------------------------- DSO policy


@case("bad-policy-signature", r"policy is not signed by the DSO")
def unsigned_policy(h: Harness) -> Attempt:
    return h.in_block(DsoPolicy(h.dso_nonce(), 5, prices=(1, 1)))


@case("bad-policy-signature", r"policy is not signed by the DSO")
def policy_signed_by_a_meter(h: Harness) -> Attempt:
    tx = DsoPolicy(h.dso_nonce(), 5, prices=(1, 1)).signed(h.net.chain_id, h.net.meters["MI1"].key)
    return h.in_block(tx)


@case("bad-policy-stale", r"effective slot 1 is in the past \(current slot 2\)")
def stale_policy(h: Harness) -> Attempt:
    h.net.at_slot(2)
    return h.in_block(h.policy(1, prices=(500, 1)))


@case("bad-policy-nonce", r"policy nonce 1 is not above the last \d+ \(replay\?\)")
def replayed_policy(h: Harness) -> Attempt:
    first_policy = next(h.net.chain.blocks(1)).transactions[0]
    assert isinstance(first_policy, DsoPolicy) and first_policy.nonce == 1
    return h.in_block(first_policy)


@case("bad-policy-empty", r"policy changes nothing")
def empty_policy(h: Harness) -> list[Attempt]:
    return h.both(DsoPolicy(h.dso_nonce(), 5).signed(h.net.chain_id, h.net.dso.key))


@case("bad-policy-price", r"prices must be two integers in 0..9007199254740992")
def negative_price(h: Harness) -> list[Attempt]:
    return h.both(DsoPolicy(h.dso_nonce(), 5, prices=(120, -1)))


@case("bad-policy-price", r"prices must be two integers")
def three_prices(h: Harness) -> list[Attempt]:
    return h.both(DsoPolicy(h.dso_nonce(), 5, prices=(120, 80, 1)))


@case("bad-policy-duplicate-meter", r"a meter appears twice in authorize")
def meter_authorized_twice(h: Harness) -> list[Attempt]:
    key = KeyPair.from_secret("x").public
    return h.both(DsoPolicy(h.dso_nonce(), 5, authorize=(("MI5", key), ("MI5", key))))


@case("bad-policy-duplicate-meter", r"a meter appears twice in ban")
def meter_banned_twice(h: Harness) -> list[Attempt]:
    return h.both(DsoPolicy(h.dso_nonce(), 5, ban=("MI1", "MI1")))


@case("bad-policy-pubkey", r"public key of meter MI5 must be 32 bytes")
def short_meter_key(h: Harness) -> list[Attempt]:
    return h.both(DsoPolicy(h.dso_nonce(), 5, authorize=(("MI5", bytes(31)),)))


@case("bad-policy-conflict", r"a meter is both authorized and banned by one policy")
def authorized_and_banned(h: Harness) -> list[Attempt]:
    key = KeyPair.from_secret("x").public
    return h.both(DsoPolicy(h.dso_nonce(), 5, authorize=(("MI5", key),), ban=("MI5",)))


@case("bad-policy-limit", r"max_eca_w of meter MI1 must be an integer in 0..")
def negative_limit(h: Harness) -> list[Attempt]:
    return h.both(DsoPolicy(h.dso_nonce(), 5, limits=(MeterLimits("MI1", 10, -10, 0),)))


@case("bad-policy-limit", r"credit_fa of meter MI1 must be an integer")
def fractional_credit(h: Harness) -> list[Attempt]:
    return h.both(DsoPolicy(h.dso_nonce(), 5, limits=(MeterLimits("MI1", 10, 10, 0.5),)))


@case("bad-encoding-name", r"meter id 'MI#1' may only use")
def banned_meter_with_bad_id(h: Harness) -> list[Attempt]:
    return h.both(DsoPolicy(h.dso_nonce(), 5, ban=("MI#1",)))


@case("bad-policy-slot", r"effective slot 18446744073709551616 is beyond the chain's last slot 4294967295")
def policy_time_overflows(h: Harness) -> list[Attempt]:
    return h.both(DsoPolicy(h.dso_nonce(), 2**64, prices=(1, 1)))


@case("bad-policy-slot", r"effective slot 4294967296 is beyond the chain's last slot 4294967295")
def policy_slot_past_the_last(h: Harness) -> list[Attempt]:
    """Slots are u32 on the ledger: a policy from a later slot could never take effect."""
    return h.both(h.policy(2**32, prices=(1, 1)))


@case("bad-policy-ban-after-issue", r"meter MI2 is banned from slot \d+, but an earlier transaction of this block")
def ban_after_issue_in_one_block(h: Harness) -> Attempt:
    """A ban takes effect from its slot wherever it stands in the block: an issue before it is no loophole."""
    slot = h.net.slot
    return h.in_block(h.issue("MI2", (ECA(100, slot, slot + 1), fresh())), h.policy(slot, ban=["MI2"]))


@case("bad-issue-meter-banned", r"meter MI2 is banned at slot \d+")
def issue_after_ban_in_one_block(h: Harness) -> Attempt:
    slot = h.net.slot
    return h.in_block(h.policy(slot, ban=["MI2"]), h.issue("MI2", (ECA(100, slot, slot + 1), fresh())))


# --------------------------------------------------------------------------- genesis


@case("bad-genesis-misplaced", r"a genesis transaction may only appear in block 0")
def genesis_in_a_later_block(h: Harness) -> Attempt:
    return h.in_block(h.net.chain.genesis)


def _genesis(**changes: object) -> Genesis:
    """A valid genesis of another chain, with ``changes``."""
    g = Genesis("nan-x", 900, T0, KeyPair.from_secret("dso").public, (KeyPair.from_secret("c").public,))
    return replace(g, **changes)


def _create(h: Harness, genesis: Genesis, tmp_name: str) -> Attempt:
    """Chain.create on an empty store: a bad genesis must leave the store empty."""
    store = SqliteStore(Path(h.net.store.path).parent / tmp_name)

    def create() -> None:
        try:
            Chain.create(store, genesis, KeyPair.from_secret("c"), T0)
        finally:
            assert store.tip_height() is None

    return Attempt(create, store=store.db, state=None)


@case("bad-genesis-ruleset", r"chain 'nan-x' names rule set 'wan' v1, which this software does not know")
def genesis_of_an_unknown_rule_set(h: Harness) -> Attempt:
    return _create(h, _genesis(ruleset="wan"), "unknown-ruleset.sqlite")


@case("bad-genesis-ruleset", r"chain 'nan-x' names rule set nan v2; this software implements nan v1")
def genesis_of_a_newer_rule_set(h: Harness) -> Attempt:
    return _create(h, _genesis(ruleset="nan", ruleset_version=2), "newer-ruleset.sqlite")


@case("bad-genesis-params", r"slot_seconds must be 1..86400")
def zero_slot_length(h: Harness) -> Attempt:
    return _create(h, _genesis(slot_seconds=0), "zero-slot.sqlite")


@case("bad-genesis-params", r"at least one proposer")
def no_coordinator(h: Harness) -> Attempt:
    return _create(h, _genesis(proposers=()), "no-proposer.sqlite")


@case("bad-genesis-params", r"max_issue_slots must be at least 1")
def zero_issue_slots(h: Harness) -> Attempt:
    return _create(h, _genesis(max_issue_slots=0), "zero-issue.sqlite")


@case("bad-genesis", r"block 0 must hold exactly one genesis transaction")
def genesis_block_with_two_transactions(h: Harness) -> Attempt:
    g, key = _genesis(), KeyPair.from_secret("c")
    block = make_block(g.chain_id, 0, ZERO_HASH, T0, (g, h.net.dso.policy(0, prices=(1, 1))), key)
    return Attempt(partial(LedgerState, block), height=0, store=None, state=None)


@case("bad-genesis", r"genesis header must name the genesis txid as chain id")
def genesis_block_of_another_chain(h: Harness) -> Attempt:
    g = _genesis()
    block = make_block(sha256(b"other"), 0, ZERO_HASH, T0, (g,), KeyPair.from_secret("c"))
    return Attempt(partial(LedgerState, block), height=0, store=None, state=None)


@case("bad-blk-merkle", r"genesis Merkle root does not match")
def genesis_block_with_wrong_root(h: Harness) -> Attempt:
    g, key = _genesis(), KeyPair.from_secret("c")
    header = replace(make_block(g.chain_id, 0, ZERO_HASH, T0, (g,), key).header, merkle_root=sha256(b"x"))
    block = Block(header, key.sign(header.signing_message()), (g,))
    return Attempt(partial(LedgerState, block), height=0, store=None, state=None)


@case("bad-blk-signature", r"genesis block is not signed by one of its proposers")
def genesis_block_signed_by_an_outsider(h: Harness) -> Attempt:
    g = _genesis()
    block = make_block(g.chain_id, 0, ZERO_HASH, T0, (g,), KeyPair.from_secret("outsider"))
    return Attempt(partial(LedgerState, block), height=0, store=None, state=None)


# --------------------------------------------------------------------------- block headers


@case("bad-blk-chain", r"block belongs to another chain")
def block_of_another_chain(h: Harness) -> Attempt:
    return h.header(chain_id=sha256(b"another chain"))


@case("bad-blk-height", r"block height 4 does not follow the tip 2")
def height_gap(h: Harness) -> Attempt:
    return h.header(height=4)


@case("bad-blk-height", r"block height 2 does not follow the tip 2")
def height_repeated(h: Harness) -> Attempt:
    return h.header(height=2)


@case("bad-blk-prev", r"previous hash [0-9a-f]{16}… is not the tip")
def wrong_previous_hash(h: Harness) -> Attempt:
    return h.header(prev_hash=h.net.chain.genesis_block.hash)


@case("bad-blk-time", r"block time \d+ is before its parent's \d+")
def time_before_parent(h: Harness) -> Attempt:
    return h.header(time=h.net.state.tip_time - 1)


@case("bad-blk-time", rf"time {T0 - 1} is before the chain's start {T0}")
def time_before_chain_start(h: Harness) -> Attempt:
    """A chain whose genesis block is dated before slot 0: the next block may not be, too."""
    g, key = _genesis(), KeyPair.from_secret("c")
    store = SqliteStore(Path(h.net.store.path).parent / "early.sqlite")
    chain = Chain.create(store, g, key, T0 - 100)
    block = make_block(g.chain_id, 1, chain.state.tip_hash, T0 - 1, (chain.genesis,), key)
    return Attempt(partial(chain.append, block), height=1, store=store.db, state=chain.state)


@case("bad-blk-time-future", r"block time \d+ is \d+ s ahead of this node's clock \(at most \d+ s\)")
def time_too_far_ahead_of_the_node_clock(h: Harness) -> Attempt:
    """A block dated more than two slots after the validating node's clock (a proposer whose clock runs ahead)."""
    state = h.net.state
    now = state.tip_time
    block = h.net.next_block(*h.warm, time=now + state.max_future_s + 1)
    return Attempt(partial(h.net.chain.append, block, now), height=block.height)


@case("bad-blk-proposer", r"block proposer is not a coordinator of this chain")
def proposer_not_a_coordinator(h: Harness) -> Attempt:
    return h.header(proposer=KeyPair.from_secret("rogue"))


@case("bad-blk-signature", r"proposer signature is invalid")
def forged_block_signature(h: Harness) -> Attempt:
    block = h.net.next_block(*h.warm)
    forged = Block(block.header, KeyPair.from_secret("rogue").sign(block.header.signing_message()), block.transactions)
    return Attempt(partial(h.net.chain.append, forged), height=block.height)


@case("bad-blk-merkle", r"Merkle root does not match the transactions")
def wrong_merkle_root(h: Harness) -> Attempt:
    return h.header(merkle_root=sha256(b"not the root"))


@case("bad-blk-merkle", r"Merkle root does not match the transactions")
def transactions_swapped_after_signing(h: Harness) -> Attempt:
    block = h.net.next_block(*h.warm)
    tampered = Block(block.header, block.signature, (h.warm[0], h.warm[2], h.warm[1]))
    return Attempt(partial(h.net.chain.append, tampered), height=block.height)


@case("bad-blk-txns-duplicate", r"transaction 4 repeats transaction 3")
def same_transaction_twice_in_a_block(h: Harness) -> Attempt:
    tx = h.spend("seller", AssetKind.FA, FA(500))
    return h.in_block(tx, tx)


@case("bad-blk-txns-duplicate", r"transaction 4 repeats transaction 3")
def same_transfer_with_another_witness(h: Harness) -> Attempt:
    """Witnesses are not part of the txid: a re-signed copy is the same transaction."""
    tx = h.spend("seller", AssetKind.FA, FA(500))
    return h.in_block(tx, replace(tx, witnesses=(Witness(bytes(32), bytes(64)),)))


# --------------------------------------------------------------------------- bytes from the network


@case("bad-encoding-truncated", r"truncated while reading")
def truncated_block(h: Harness) -> list[Attempt]:
    raw = h.net.next_block(*h.warm).encode()
    return [*(h.raw_block(raw[:n]) for n in (0, 5, 100)), h.raw_block(raw[:-1], tx_index=2)]


@case("bad-encoding-truncated", r"truncated while reading meter signature")
def truncated_transaction_in_block(h: Harness) -> Attempt:
    raw = h.warm[0].encode()
    return h.raw_block(h.block_bytes(h.warm[2].encode(), raw[:-1]), tx_index=1)


@case("bad-encoding-trailing", r"1 unexpected trailing bytes after block")
def trailing_bytes_after_block(h: Harness) -> Attempt:
    return h.raw_block(h.net.next_block(*h.warm).encode() + b"\x00")


@case("bad-encoding-trailing", r"2 unexpected trailing bytes after transaction")
def trailing_bytes_after_transaction(h: Harness) -> Attempt:
    return h.raw_block(h.block_bytes(h.warm[1].encode() + b"\x00\x00"), tx_index=0)


@case("bad-encoding-version", r"transaction has format version 2")
def transaction_of_a_future_format(h: Harness) -> Attempt:
    raw = h.warm[1].encode()
    return h.raw_block(h.block_bytes(raw, b"\x02" + raw[1:]), tx_index=1)


@case("bad-encoding-version", r"block header has format version 0")
def block_of_another_format(h: Harness) -> Attempt:
    return h.raw_block(b"\x00" + h.net.next_block(*h.warm).encode()[1:])


@case("bad-tx-kind-unknown", r"unknown transaction kind 250")
def unknown_transaction_kind(h: Harness) -> Attempt:
    return h.raw_block(h.block_bytes(h.warm[1].encode(), Orphan().encode()), tx_index=1)


@case("bad-tx-kind-unknown", r"no rules for transaction kind Orphan")
def transaction_kind_without_rules(h: Harness) -> Attempt:
    return Attempt(partial(check_transaction, Orphan()))


@case("bad-tx-kind-not-in-ruleset", r"rule set petra v1 has no Orphan transactions")
def transaction_kind_outside_every_rule_set(h: Harness) -> Attempt:
    return h.submit(Orphan())


def _reading() -> Reading:
    return Reading(0, 0, 0, bytes(sealed_size(0))).signed(bytes(32), KeyPair.from_secret("meter"))


@case("bad-tx-kind-not-in-ruleset", r"rule set petra v1 has no READING transactions")
def reading_on_a_petra_chain(h: Harness) -> list[Attempt]:
    """A core kind that the chain's rule set lacks: refused in the mempool, in a block and by the state."""
    return [h.submit(_reading()), h.in_block(_reading()), Attempt(partial(h.net.state.apply_tx, _reading(), 0))]


@case("bad-encoding-flag", r"prices flag must be 0 or 1, got 2")
def policy_prices_flag(h: Harness) -> Attempt:
    raw = bytearray(h.warm[2].encode())
    raw[2 + 8 + 8] = 2  # version, kind, nonce u64, time u64, then the flag
    return h.raw_block(h.block_bytes(bytes(raw)), tx_index=0)


@case("bad-encoding-name", r"meter id is not ASCII")
def meter_id_not_ascii(h: Harness) -> Attempt:
    raw = bytearray(h.warm[0].encode())
    raw[3] = 0xC3  # version, kind, name length, then the name
    return h.raw_block(h.block_bytes(bytes(raw)), tx_index=0)


@case("bad-asset-kind", r"unknown asset kind 7")
def output_of_unknown_kind_in_bytes(h: Harness) -> Attempt:
    issue = h.warm[0]
    raw = bytearray(issue.encode())
    raw[2 + 1 + len(issue.meter) + 8 + 2] = 7  # version, kind, name, nonce, output count, then the asset kind
    return h.raw_block(h.block_bytes(bytes(raw)), tx_index=0)


@case("bad-blk-length", rf"{MAX_BLOCK_TXS + 1} transactions; a block holds at most {MAX_BLOCK_TXS}")
def too_many_transactions(h: Harness) -> Attempt:
    b = h.net.next_block()
    raw = Writer().raw(b.header.encode()).fixed(b.signature, 64).count(0).u32(MAX_BLOCK_TXS + 1).bytes()
    return h.raw_block(raw, located=True)


@case("bad-encoding-type", r"expected bytes, got str")
def text_instead_of_bytes(h: Harness) -> Attempt:
    return Attempt(partial(decode_transaction, h.warm[0].encode().hex()))


# --------------------------------------------------------------------------- stores


@case("bad-chain-empty", r"the store holds no blocks")
def verify_an_empty_store(h: Harness) -> Attempt:
    store = SqliteStore(Path(h.net.store.path).parent / "empty.sqlite")
    return Attempt(partial(verify_store, store), store=store.db, state=None)


@case("bad-store-integrity", r"the database's integrity check failed: .*sqlite_autoindex_nonces_1")
def index_page_corrupted(h: Harness) -> Attempt:
    """The last byte of the nonces index's page (a row id in the index entry) changed in a copy of the file: rows
    read the same by a table scan, only the database's own check sees it."""
    h.net.store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    src = Path(h.net.store.path)
    ((page_size,),) = h.net.store.db.execute("PRAGMA page_size").fetchall()
    ((root,),) = h.net.store.db.execute(
        "SELECT rootpage FROM sqlite_schema WHERE name = 'sqlite_autoindex_nonces_1'"
    ).fetchall()
    data = bytearray(src.read_bytes())
    data[root * page_size - 1] ^= 0x01
    copy = src.parent / "index-corrupted.sqlite"
    copy.write_bytes(bytes(data))
    store = SqliteStore(copy)
    return Attempt(partial(verify_store, store), store=store.db, state=None)


@case("bad-chain-height", r"block stored at height 2 says it is at 1")
def block_stored_at_the_wrong_height(h: Harness) -> Attempt:
    h.net.store.db.execute("UPDATE blocks SET data = (SELECT data FROM blocks WHERE height = 1) WHERE height = 2")
    return Attempt(partial(verify_store, h.net.store), height=2, live=False)


@case("bad-chain-state", r"stored utxos differ from the state rebuilt")
def utxo_deleted_from_the_store(h: Harness) -> Attempt:
    h.net.store.db.execute("DELETE FROM utxos WHERE op = (SELECT MIN(op) FROM utxos)")
    return Attempt(partial(verify_store, h.net.store), live=False)


@case("bad-chain-state", r"stored utxos differ from the state rebuilt")
def utxo_added_to_the_store(h: Harness) -> Attempt:
    """An extra row after the last outpoint: the streamed comparison must count the rows, not only look them up."""
    h.net.store.db.execute(
        "INSERT INTO utxos SELECT CAST(op || x'00' AS BLOB), output FROM utxos WHERE op = (SELECT MAX(op) FROM utxos)"
    )
    return Attempt(partial(verify_store, h.net.store), live=False)


@case("bad-chain-state", r"stored utxos differ from the state rebuilt")
def utxo_output_altered_in_the_store(h: Harness) -> Attempt:
    h.net.store.db.execute(
        "UPDATE utxos SET output = (SELECT output FROM utxos WHERE op = (SELECT MAX(op) FROM utxos))"
        " WHERE op = (SELECT MIN(op) FROM utxos)"
    )
    return Attempt(partial(verify_store, h.net.store), live=False)


@case("bad-chain-state", r"stored nonces differ")
def nonce_rewound_in_the_store(h: Harness) -> Attempt:
    h.net.store.db.execute("UPDATE nonces SET nonce = 0")
    return Attempt(partial(verify_store, h.net.store), live=False)


@case("bad-chain-state", r"stored policies differ from the state rebuilt")
def policy_deleted_from_the_store(h: Harness) -> Attempt:
    h.net.store.db.execute("DELETE FROM policies")
    return Attempt(partial(verify_store, h.net.store), live=False)


@case("bad-chain-state", r"the stored hash or time column differs from the block's")
def stored_tip_time_altered(h: Harness) -> Attempt:
    """A reopened node trusts the tip time for the next block's check, so verify must catch a changed one."""
    h.net.store.db.execute("UPDATE blocks SET time = time - 100000 WHERE height = 2")
    return Attempt(partial(verify_store, h.net.store), height=2, live=False)


@case("bad-chain-state", r"the stored hash or time column differs from the block's")
def stored_block_hash_altered(h: Harness) -> Attempt:
    h.net.store.db.execute("UPDATE blocks SET hash = zeroblob(32) WHERE height = 1")
    return Attempt(partial(verify_store, h.net.store), height=1, live=False)


@case("bad-blk-merkle", r"Merkle root does not match the transactions")
def stored_transaction_altered(h: Harness) -> list[Attempt]:
    """Tamper evidence: an output's owner rewritten in stored block 2 is caught on replay (and on reopen)."""
    store = h.net.store
    raw = store.block_bytes(2)
    owner = h.net.chain.blocks(2).__next__().transactions[0].outputs[0].owner
    at = raw.index(owner)
    tampered = raw[:at] + fresh() + raw[at + len(owner) :]
    store.db.execute("UPDATE blocks SET data = ? WHERE height = 2", (tampered,))
    return [
        Attempt(partial(verify_store, store), height=2, live=False),
        Attempt(partial(Chain.open, store, replay=True), height=2, live=False),
    ]


# --------------------------------------------------------------------------- the runner


@pytest.mark.parametrize("c", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_rejected_and_changes_nothing(c: Case, net: Net) -> None:
    run_case(c, net)


def test_warm_up_alone_is_valid(net: Net) -> None:
    """The valid prefix of every bad block commits on its own (so rejects are due to the case, not to it)."""
    h = Harness(net)
    net.chain.append(net.next_block(*h.warm))
    assert net.state.policy.status("ghost", 90)[0] == "banned"


def _reject_codes(path: Path) -> set[str]:
    """Reject codes raised in a module: literals, and f-strings as regexes (``{…}`` → ``[a-z]+``)."""
    codes = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Reject" and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant):
                codes.add(re.escape(arg.value))
            elif isinstance(arg, ast.JoinedStr):
                codes.add("".join(re.escape(v.value) if isinstance(v, ast.Constant) else "[a-z]+" for v in arg.values))
    return codes


CORE_MODULES = (
    "state",
    "assets",
    "encoding",
    "block",
    "transactions",
    "ruleset",
    "kinds/__init__",
    "kinds/genesis",
    "kinds/transfer",
    "kinds/meter_issue",
    "kinds/dso_policy",
)


def test_every_reject_code_is_in_the_corpus() -> None:
    ledger = Path(gridledger.ledger.__file__).parent
    paths = [ledger / f"{m}.py" for m in CORE_MODULES] + [Path(gridledger.chain.__file__)]
    patterns = set().union(*(_reject_codes(p) for p in paths))
    exercised = {c.code for c in CASES}
    missing = sorted(p for p in patterns if not any(re.fullmatch(p, code) for code in exercised))
    assert not missing, f"reject codes without a corpus case: {missing}"
    stray = sorted(code for code in exercised if not any(re.fullmatch(p, code) for p in patterns))
    assert not stray, f"corpus codes the core never raises: {stray}"
    assert len(exercised) >= 35 and len(CASES) >= 20


#: Core modules of the multi-tier kinds and PoEf validity: their cases live with the tiers' and consensus tests.
TIER_MODULES = (
    "kinds/reading",
    "kinds/reading_batch",
    "kinds/anchor",
    "kinds/alarm",
    "kinds/reward",
    "committee",
    "members",
)


def test_every_reject_code_of_the_tier_kinds_has_a_test() -> None:
    ledger = Path(gridledger.ledger.__file__).parent
    patterns = set().union(*(_reject_codes(ledger / f"{m}.py") for m in TIER_MODULES))
    tests = Path(__file__).parents[1]
    strings = {
        node.value
        for path in tests.rglob("test_*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    missing = sorted(p for p in patterns if not any(re.fullmatch(p, s) for s in strings))
    assert not missing, f"reject codes of the tier kinds that no test expects: {missing}"
    assert len(patterns) >= 30
