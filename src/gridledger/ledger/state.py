"""The ledger state and the context-dependent rules (a deterministic state machine fed blocks; no I/O).

The state is: the unspent outputs, each meter's issued EPA/ECA totals per slot and cumulative FA, the nonces of
meters and of the DSO, and the DSO policy timeline. ``apply_block`` validates a block against the state and
applies it atomically: on any reject the state is rolled back exactly (an undo log), so a bad block or
transaction never leaves a trace. The state does not know where its blocks come from (in-process orderer,
etcd, a peer): it only checks them, by the rule set its genesis names (:mod:`gridledger.ledger.ruleset`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from gridledger.ledger import crypto
from gridledger.ledger.assets import Output, outpoint
from gridledger.ledger.block import MAX_FUTURE_SLOTS, ZERO_HASH, Block
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds import check_transaction, decode_transaction
from gridledger.ledger.kinds.dso_policy import DsoPolicy
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.ledger.kinds.transfer import Transfer
from gridledger.ledger.policy import PolicyTimeline
from gridledger.ledger.ruleset import Ruleset, ruleset_of
from gridledger.ledger.transactions import Transaction
from gridledger.ledger.units import MAX_SLOT

#: Signature batches of at least this many are verified on a thread pool (libsodium releases the GIL).
_PARALLEL_MIN = 256
_WORKERS = max(2, os.cpu_count() or 2)
_POOL = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="sigverify")


class _SignatureChecks:
    """Signature checks of one block, running on the thread pool (small batches run inline)."""

    def __init__(self, items: list[tuple[bytes, bytes, bytes]], where: list[tuple[int, int]]) -> None:
        self.where = where
        self.size = max(1, -(-len(items) // _WORKERS))
        self.items = items
        if len(items) < _PARALLEL_MIN:
            self.futures = None  # checked inline, when the result is asked for
        else:
            chunks = [items[k : k + self.size] for k in range(0, len(items), self.size)]
            self.futures = [_POOL.submit(crypto.verify_batch, c) for c in chunks]

    def result(self) -> None:
        """Wait for the checks; raise ``bad-txns-signature`` naming the first invalid signature."""
        bad = crypto.verify_batch(self.items) if self.futures is None else -1
        if self.futures is not None:
            for k, f in enumerate(self.futures):
                r = f.result()
                if r >= 0 and bad < 0:
                    bad = k * self.size + r
        if bad >= 0:
            i, j = self.where[bad]
            raise Reject("bad-txns-signature", f"signature of input {j} is invalid", tx_index=i)


def _confirmed() -> None:
    """``confirm`` when every signature was checked inline already."""


@dataclass
class StateChanges:
    """What one block changed, for a store to persist atomically with the block."""

    utxo_added: dict[bytes, bytes] = field(default_factory=dict)
    utxo_spent: list[bytes] = field(default_factory=list)
    issued: dict[tuple[str, int, int], int] = field(default_factory=dict)
    fa_issued: dict[str, int] = field(default_factory=dict)
    nonces: dict[str, int] = field(default_factory=dict)
    policies: list[DsoPolicy] = field(default_factory=list)


class LedgerState:
    """Unspent outputs, issued totals, nonces and policy of one chain, at its tip."""

    def __init__(self, genesis_block: Block) -> None:
        txs = genesis_block.transactions
        if genesis_block.height != 0 or len(txs) != 1 or not isinstance(txs[0], Genesis):
            raise Reject("bad-genesis", "block 0 must hold exactly one genesis transaction", height=0)
        genesis: Genesis = txs[0]
        check_transaction(genesis)
        #: The chain's rules, named by its genesis (never by what this process imported).
        self.ruleset: Ruleset = ruleset_of(genesis)
        h = genesis_block.header
        if h.chain_id != genesis.chain_id or h.prev_hash != ZERO_HASH:
            raise Reject(
                "bad-genesis", "genesis header must name the genesis txid as chain id and have no parent", height=0
            )
        if h.merkle_root != genesis_block.compute_merkle_root():
            raise Reject("bad-blk-merkle", "genesis Merkle root does not match its transaction", height=0)
        if h.proposer not in genesis.proposers or not crypto.verify(
            h.proposer, h.signing_message(), genesis_block.signature
        ):
            raise Reject("bad-blk-signature", "genesis block is not signed by one of its proposers", height=0)
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.utxos: dict[bytes, bytes] = {}
        self.issued: dict[tuple[str, int, int], int] = {}
        self.fa_issued: dict[str, int] = {}
        self.nonces: dict[str, int] = {}
        self.policy = PolicyTimeline()
        self.height = 0
        self.tip_hash = h.hash
        self.tip_time = h.time
        self._log: list[tuple] = []
        self._spent_in_block: dict[bytes, int] = {}
        self._issuers_in_block: set[str] = set()

    # ----------------------------------------------------------------- queries
    def slot_of(self, time: int) -> int:
        """The slot index of Unix time ``time`` (s)."""
        if time < self.genesis.start_time:
            raise Reject("bad-blk-time", f"time {time} is before the chain's start {self.genesis.start_time}")
        slot = (time - self.genesis.start_time) // self.genesis.slot_seconds
        if slot > MAX_SLOT:
            # Asset intervals are u32 slots: a later block time would make every meter issue unencodable.
            raise Reject("bad-blk-time", f"time {time} is beyond the last slot {MAX_SLOT} of the chain")
        return slot

    def output(self, op: bytes) -> Output | None:
        raw = self.utxos.get(op)
        return None if raw is None else Output.decode(raw)

    # ----------------------------------------------------------------- blocks
    def apply_block(
        self,
        block: Block,
        *,
        parallel_signatures: bool = True,
        proposal: bool = False,
        now: int | None = None,
        persist: Callable[[StateChanges, Callable[[], None]], None] | None = None,
    ) -> StateChanges:
        """Validate ``block`` against the state and apply it; if invalid, raise a located ``Reject``, change nothing.

        Transfer signatures are checked on the thread pool while the contextual rules run (``parallel_signatures``),
        or inline, one transaction at a time; never skipped. With ``proposal`` the block is a proposal still waiting
        for its quorum certificate: it is validated by every rule except the rule set's whole-block checks, and the
        state is left unchanged (the returned changes are empty). ``now`` is the validating node's clock (Unix s): a
        block dated more than ``max_future_s`` after it is refused (``bad-blk-time-future``); ``None`` (a replay of
        stored blocks, ``gridledger verify``) checks no clock.

        ``persist(changes, confirm)`` lets the caller write the block's changes (to a store) while the signatures are
        still being checked: it is called once every contextual rule has passed, and must call ``confirm()`` — which
        waits for the signature checks and raises their ``Reject`` — before it makes anything durable, undoing its
        writes if ``confirm`` raises. If ``persist`` raises, the state is rolled back and the exception re-raised
        (a ``Reject`` located at the block); the state is sealed at the block only after ``persist`` returns.
        """
        h = block.header
        try:
            self._check_header(block, now)
            # The header is signed by a coordinator of this chain: start the signature checks on the worker
            # threads now, so that they run beside every remaining check (their Reject, if any, is raised only
            # after those checks, so which Reject a block gets does not change).
            pending = self._start_signature_checks(block.transactions) if parallel_signatures else None
            self._check_body(block)
            if not proposal:
                for check in self.ruleset.block_checks:
                    check(self, block)
            for i, tx in enumerate(block.transactions):
                try:
                    self.ruleset.check_transaction(tx)
                except Reject as e:
                    raise e.at(tx_index=i) from None
        except Reject as e:
            raise e.at(height=h.height) from None
        slot = self.slot_of(h.time)
        mark = self.begin_block()
        try:
            for i, tx in enumerate(block.transactions):
                try:
                    self.apply_tx(tx, slot, signatures_checked=parallel_signatures)
                except Reject as e:
                    raise e.at(tx_index=i, height=h.height) from None
            confirm = _confirmed if pending is None else pending.result
            if persist is not None and not proposal:
                ch = self.changes_since(mark)
                persist(ch, confirm)
            else:
                confirm()
        except Reject as e:
            self.rollback(mark)
            raise e.at(height=h.height) from None
        except BaseException:
            self.rollback(mark)
            raise
        if proposal:
            self.rollback(mark)
            return StateChanges()
        if persist is None:
            ch = self.changes_since(mark)
        self.seal_block(mark, h.height, h.hash, h.time)
        return ch

    @property
    def max_future_s(self) -> int:
        """How far (s) a block's time may be ahead of a validating node's clock: ``MAX_FUTURE_SLOTS`` slots."""
        return MAX_FUTURE_SLOTS * self.genesis.slot_seconds

    def _check_header(self, block: Block, now: int | None = None) -> None:
        h = block.header
        if h.chain_id != self.chain_id:
            raise Reject("bad-blk-chain", "block belongs to another chain")
        if h.height != self.height + 1:
            raise Reject("bad-blk-height", f"block height {h.height} does not follow the tip {self.height}")
        if h.prev_hash != self.tip_hash:
            raise Reject(
                "bad-blk-prev", f"previous hash {h.prev_hash.hex()[:16]}… is not the tip {self.tip_hash.hex()[:16]}…"
            )
        if h.time < self.tip_time:
            raise Reject("bad-blk-time", f"block time {h.time} is before its parent's {self.tip_time}")
        self.slot_of(h.time)
        if now is not None and h.time > now + self.max_future_s:
            raise Reject(
                "bad-blk-time-future",
                f"block time {h.time} is {h.time - now} s ahead of this node's clock (at most {self.max_future_s} s)",
            )
        if h.proposer not in self.genesis.proposers:
            raise Reject("bad-blk-proposer", "block proposer is not a coordinator of this chain")
        if not crypto.verify(h.proposer, h.signing_message(), block.signature):
            raise Reject("bad-blk-signature", "proposer signature is invalid")

    def _check_body(self, block: Block) -> None:
        """The transactions are the ones the header commits to (Merkle root), each once."""
        h = block.header
        if h.merkle_root != block.compute_merkle_root():
            raise Reject("bad-blk-merkle", "Merkle root does not match the transactions")
        seen: dict[bytes, int] = {}
        for i, tx in enumerate(block.transactions):
            if tx.txid in seen:
                raise Reject(
                    "bad-blk-txns-duplicate", f"transaction {i} repeats transaction {seen[tx.txid]}", tx_index=i
                )
            seen[tx.txid] = i

    def _start_signature_checks(self, txs: Iterable[Transaction]) -> _SignatureChecks:
        """Start checking every transfer witness signature (context-free: the key is in the witness).

        A malformed transaction cannot make this skip a signature: whatever it raises here (an unencodable field)
        the Merkle root check would raise too, and a witness that is not a key and a signature fails its check; either
        way an earlier check of ``apply_block`` rejects the block before this result is asked for.
        """
        items, where = [], []
        for i, tx in enumerate(txs):
            if isinstance(tx, Transfer):
                msg = tx.sighash(self.chain_id)
                for j, wit in enumerate(tx.witnesses):
                    items.append((wit.pubkey, msg, wit.signature))
                    where.append((i, j))
        return _SignatureChecks(items, where)

    # ----------------------------------------------------- transactions, undo log
    def begin_block(self) -> int:
        self._spent_in_block = {}
        self._issuers_in_block = set()
        return len(self._log)

    def tx_mark(self) -> int:
        return len(self._log)

    def rollback(self, mark: int) -> None:
        """Undo every change logged since ``mark``."""
        while len(self._log) > mark:
            entry = self._log.pop()
            op = entry[0]
            if op == "utxo+":
                del self.utxos[entry[1]]
            elif op == "utxo-":
                self.utxos[entry[1]] = entry[2]
                self._spent_in_block.pop(entry[1], None)
            elif op == "issued":
                if entry[2] is None:
                    del self.issued[entry[1]]
                else:
                    self.issued[entry[1]] = entry[2]
            elif op == "fa":
                if entry[2] is None:
                    del self.fa_issued[entry[1]]
                else:
                    self.fa_issued[entry[1]] = entry[2]
            elif op == "nonce":
                if entry[2] is None:
                    del self.nonces[entry[1]]
                else:
                    self.nonces[entry[1]] = entry[2]
            elif op == "policy":
                self.policy.pop()
            elif op == "issuer":
                self._issuers_in_block.discard(entry[1])

    def finish_block(self, mark: int, height: int, block_hash: bytes, time: int) -> StateChanges:
        """Seal the changes since ``mark`` as block ``height`` and return them for the store."""
        ch = self.changes_since(mark)
        self.seal_block(mark, height, block_hash, time)
        return ch

    def changes_since(self, mark: int) -> StateChanges:
        """What the changes logged since ``mark`` amount to, for a store (the state is left as it is)."""
        ch = StateChanges()
        created: set[bytes] = set()
        for entry in self._log[mark:]:
            op = entry[0]
            if op == "utxo+":
                created.add(entry[1])
            elif op == "utxo-" and entry[1] not in created:
                ch.utxo_spent.append(entry[1])
            elif op == "policy":
                ch.policies.append(entry[1])
        ch.utxo_added = {o: self.utxos[o] for o in created if o in self.utxos}
        for entry in self._log[mark:]:
            op = entry[0]
            if op == "issued":
                ch.issued[entry[1]] = self.issued[entry[1]]
            elif op == "fa":
                ch.fa_issued[entry[1]] = self.fa_issued[entry[1]]
            elif op == "nonce":
                ch.nonces[entry[1]] = self.nonces[entry[1]]
        return ch

    def seal_block(self, mark: int, height: int, block_hash: bytes, time: int) -> None:
        """Make the changes logged since ``mark`` final as block ``height``: the new tip (no undo past it)."""
        del self._log[mark:]
        self._spent_in_block = {}
        self._issuers_in_block = set()
        self.height, self.tip_hash, self.tip_time = height, block_hash, time

    def apply_tx(self, tx: Transaction, slot: int, *, signatures_checked: bool = False) -> None:
        """Check ``tx``'s context-dependent rules at ``slot`` and apply it (the caller rolls back on Reject).

        Context-free checks (``self.ruleset.check_transaction``) must have passed already.
        """
        self.ruleset.rules_of(tx).apply(self, tx, slot, signatures_checked)

    def add_outputs(self, txid: bytes, outputs: tuple[Output, ...]) -> None:
        """Create the outputs of transaction ``txid``."""
        for i, out in enumerate(outputs):
            op = outpoint(txid, i)
            self.utxos[op] = out.encode()
            self._log.append(("utxo+", op))

    def spend(self, op: bytes, raw: bytes) -> None:
        """Spend the unspent output ``op`` (whose encoding is ``raw``)."""
        del self.utxos[op]
        self._spent_in_block[op] = 1
        self._log.append(("utxo-", op, raw))

    def spent_in_block(self, op: bytes) -> bool:
        """True if an earlier transaction of the block being applied spent ``op``."""
        return op in self._spent_in_block

    def note_issue(self, meter: str) -> None:
        """Record that ``meter`` issued in the block being applied (a ban from this block's slot must come first)."""
        if meter not in self._issuers_in_block:
            self._issuers_in_block.add(meter)
            self._log.append(("issuer", meter))

    def issued_in_block(self, meter: str) -> bool:
        """True if an earlier transaction of the block being applied is an issue of ``meter``."""
        return meter in self._issuers_in_block

    def set_entry(self, table: dict, tag: str, key, value: int) -> None:
        """Set ``table[key]`` (one of the state's tables, logged as ``tag`` for rollback and the store)."""
        self._log.append((tag, key, table.get(key)))
        table[key] = value

    def add_policy(self, policy: DsoPolicy) -> None:
        """Add a DSO policy to the timeline."""
        self.policy.add(policy)
        self._log.append(("policy", policy))

    # ----------------------------------------------------------------- snapshots
    def snapshot(self) -> dict:
        """The whole state as plain data (for comparing a replay with what a store holds)."""
        return {
            "height": self.height,
            "tip_hash": self.tip_hash,
            "utxos": dict(self.utxos),
            "issued": dict(self.issued),
            "fa_issued": dict(self.fa_issued),
            "nonces": dict(self.nonces),
            "policies": [p.encode() for p in self.policy.policies],
        }

    def load(self, snap: dict) -> None:
        """Adopt a stored snapshot (tip, outputs, totals, nonces, policies) without replaying blocks."""
        self.height, self.tip_hash = snap["height"], snap["tip_hash"]
        self.tip_time = snap.get("tip_time", self.tip_time)
        self.utxos = dict(snap["utxos"])
        self.issued = dict(snap["issued"])
        self.fa_issued = dict(snap["fa_issued"])
        self.nonces = dict(snap["nonces"])
        self.policy = PolicyTimeline()
        for raw in snap["policies"]:
            self.policy.add(decode_transaction(raw))
