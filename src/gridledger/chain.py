"""A node's chain: the ledger state machine, its store, a mempool and in-process ordering (the embedded default).

The chain's rules are the rule set its genesis names (``state.ruleset``). ``Chain.create`` writes a genesis
block; ``Chain.open`` reopens a store (optionally replaying and re-verifying every block); ``submit`` queues a
transaction after its context-free checks; ``propose`` orders the mempool into a block as a coordinator would,
dropping (and reporting) transactions the state rejects; ``append`` validates and commits a block received from
elsewhere. ``verify_store`` is the whole-chain verifier.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from gridledger.ledger import crypto
from gridledger.ledger.block import ZERO_HASH, Block, make_block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds.dso_policy import DsoPolicy
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.ledger.kinds.transfer import Transfer
from gridledger.ledger.state import LedgerState, StateChanges
from gridledger.ledger.transactions import Transaction
from gridledger.store.base import Store, StoreError

_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="propose-verify")


@dataclass
class ProposeResult:
    """The block made (None if nothing was valid) and why each left-out transaction was refused (txid → reject;
    a txid one copy of which made it into the block is not listed)."""

    block: Block | None
    rejected: dict[bytes, Reject] = field(default_factory=dict)


def proposal_order(txs: list[Transaction]) -> list[Transaction]:
    """The order a proposer applies queued transactions in: DSO policies first, the rest as queued.

    A policy in force from the block's slot then governs every other transaction of the block (a meter banned from
    this slot cannot issue in it, wherever the DSO's policy was queued).
    """
    return sorted(txs, key=lambda tx: not isinstance(tx, DsoPolicy))


class Chain:
    """One chain of one tier, as one node holds it."""

    def __init__(self, store: Store, state: LedgerState, genesis_block: Block) -> None:
        self.store = store
        self.state = state
        self.genesis_block = genesis_block
        #: Queued transactions by wtxid: copies of one txid with different witnesses wait side by side, so a copy
        #: with a garbage signature queued first cannot shadow the validly signed one.
        self.mempool: dict[bytes, Transaction] = {}

    # ----------------------------------------------------------------- set-up
    @classmethod
    def create(cls, store: Store, genesis: Genesis, proposer: KeyPair, time: int) -> Chain:
        """Start a new chain in an empty store."""
        return cls.from_genesis_block(store, make_block(genesis.chain_id, 0, ZERO_HASH, time, (genesis,), proposer))

    @classmethod
    def from_genesis_block(cls, store: Store, block: Block) -> Chain:
        """Start a chain in an empty store from a genesis block made elsewhere (validated first)."""
        if store.tip_height() is not None:
            raise StoreError("the store already holds a chain")
        state = LedgerState(block)
        store.commit_block(0, block.hash, block.header.time, block.encode(), StateChanges())
        return cls(store, state, block)

    @classmethod
    def open(cls, store: Store, *, replay: bool = False) -> Chain:
        """Reopen a chain. With ``replay`` every block is re-validated and the rebuilt state compared to the store's."""
        if store.tip_height() is None:
            raise StoreError("the store holds no chain")
        genesis_block = Block.decode(store.block_bytes(0))
        state = verify_store(store) if replay else _stored_state(store, genesis_block)
        return cls(store, state, genesis_block)

    @property
    def chain_id(self) -> bytes:
        return self.state.chain_id

    @property
    def genesis(self) -> Genesis:
        return self.state.genesis

    @property
    def height(self) -> int:
        return self.state.height

    # ----------------------------------------------------------------- mempool
    def submit(self, tx: Transaction) -> bytes:
        """Queue ``tx`` after its context-free checks (idempotent by wtxid: the same bytes again change nothing; a
        copy with another witness is queued beside it and the block takes the first valid copy); returns the txid."""
        self.state.ruleset.check_transaction(tx)
        self.mempool.setdefault(tx.wtxid, tx)
        return tx.txid

    def forget(self, txids: set[bytes]) -> None:
        """Drop every queued copy of the transactions ``txids``."""
        if txids and self.mempool:
            for w in [w for w, tx in self.mempool.items() if tx.txid in txids]:
                del self.mempool[w]

    def propose(self, proposer: KeyPair, time: int, max_txs: int = 10_000, *, commit: bool = True) -> ProposeResult:
        """Order up to ``max_txs`` queued transactions into a block and report the rejected ones.

        With ``commit`` the block is committed at once (the embedded, single-coordinator mode); without, the state
        is left unchanged and the block is returned for an ordering service to make final (then ``append`` it).
        """
        state = self.state
        slot = state.slot_of(max(time, state.tip_time))
        batch = proposal_order(list(self.mempool.values())[:max_txs])
        sig_ok = list(_POOL.map(lambda tx: _transfer_signatures_valid(tx, self.chain_id), batch, chunksize=64))
        mark = state.begin_block()
        accepted, rejected, taken = [], {}, set()
        for tx, ok in zip(batch, sig_ok, strict=True):
            self.mempool.pop(tx.wtxid, None)
            if tx.txid in taken:  # another copy of it is in the block already
                continue
            if not ok:
                rejected[tx.txid] = Reject("bad-txns-signature", "an input signature is invalid")
                continue
            tx_mark = state.tx_mark()
            try:
                state.apply_tx(tx, slot, signatures_checked=True)
            except Reject as e:
                state.rollback(tx_mark)
                rejected[tx.txid] = e
                continue
            accepted.append(tx)
            taken.add(tx.txid)
            rejected.pop(tx.txid, None)
        if not accepted:
            state.rollback(mark)
            return ProposeResult(None, rejected)
        block = make_block(
            self.chain_id, state.height + 1, state.tip_hash, max(time, state.tip_time), tuple(accepted), proposer
        )
        if commit and not state.ruleset.block_checks:
            self._commit(block, mark)
        else:
            state.rollback(mark)
            if commit:  # the rule set's whole-block checks (e.g. a quorum certificate) apply: validate it as any block
                self.append(block)
        return ProposeResult(block, rejected)

    def append(self, block: Block, now: int | None = None) -> StateChanges:
        """Validate a block from elsewhere against the tip and commit it; a ``Reject`` leaves everything unchanged.
        ``now``: the node's clock (Unix s), to refuse a block dated too far ahead of it (``bad-blk-time-future``)."""

        def persist(ch: StateChanges, confirm: Callable[[], None]) -> None:
            # Written while the signatures are checked on the worker threads; confirmed before COMMIT.
            self.store.commit_block(
                block.height, block.hash, block.header.time, block.encode(), ch, before_commit=confirm
            )

        try:
            ch = self.state.apply_block(block, now=now, persist=persist)
        except Reject:
            raise  # the store rolled back and the state undid the block: both exactly as before
        except BaseException:
            # A store failure (or an interruption) may have left the outcome of the commit unknown: take the state
            # from the store, so nothing half-applied remains.
            self.state = _stored_state(self.store, self.genesis_block)
            raise
        self.forget({tx.txid for tx in block.transactions})
        return ch

    def _commit(self, block: Block, mark: int) -> None:
        h = block.header
        ch = self.state.finish_block(mark, h.height, h.hash, h.time)
        try:
            self.store.commit_block(h.height, h.hash, h.time, block.encode(), ch)
        except BaseException:
            self.state = _stored_state(self.store, self.genesis_block)
            raise
        self.forget({tx.txid for tx in block.transactions})

    # ----------------------------------------------------------------- reading
    def blocks(self, start: int = 0) -> Iterator[Block]:
        for _, raw in self.store.iter_blocks(start):
            yield Block.decode(raw)


def _stored_state(store: Store, genesis_block: Block) -> LedgerState:
    """The ledger state as the store holds it at its tip (not replayed), read in one streamed snapshot."""
    state = LedgerState(genesis_block)
    with store.streaming_snapshot() as snap:
        state.load(snap)
    return state


def _transfer_signatures_valid(tx: Transaction, chain_id: bytes) -> bool:
    if not isinstance(tx, Transfer):
        return True
    msg = tx.sighash(chain_id)
    return all(crypto.verify(w.pubkey, msg, w.signature) for w in tx.witnesses)


def replay(store: Store) -> Iterator[tuple[Block, LedgerState, StateChanges]]:
    """Decode and re-validate every stored block in height order from genesis.

    Yields (block, the state after it, the changes it made); raises ``Reject`` located at the first bad block,
    including a stored hash or time column that differs from the block's own.
    """
    state = None
    for height, stored_hash, stored_time, raw in store.iter_block_rows(0):
        try:
            block = Block.decode(raw)
        except Reject as e:
            raise e.at(height=height) from None
        if block.height != height:
            raise Reject(
                "bad-chain-height", f"block stored at height {height} says it is at {block.height}", height=height
            )
        if (stored_hash, stored_time) != (block.hash, block.header.time):
            raise Reject("bad-chain-state", "the stored hash or time column differs from the block's", height=height)
        if state is None:
            try:
                state = LedgerState(block)
            except Reject as e:
                raise e.at(height=0) from None
            yield block, state, StateChanges()
        else:
            yield block, state, state.apply_block(block)


def verify_store(store: Store) -> LedgerState:
    """Check the database's integrity, replay and re-validate every stored block; compare every stored state table
    with the rebuilt state (the policies with their sequence numbers: their order decides who is banned).

    Returns the rebuilt state; raises ``Reject('bad-store-integrity', ...)`` when the database's own check finds a
    corrupted page or index, ``Reject`` naming the first bad block (and transaction), or
    ``Reject('bad-chain-state', ...)`` when the stored state tables differ from the replay.
    """
    problems = store.integrity_problems()
    if problems:
        raise Reject("bad-store-integrity", f"the database's integrity check failed: {'; '.join(problems[:5])}")
    last = deque(replay(store), maxlen=1)
    if not last:
        raise Reject("bad-chain-empty", "the store holds no blocks")
    state = last[0][1]
    with store.streaming_snapshot() as stored:
        for key in ("height", "tip_hash", "issued", "fa_issued", "nonces"):
            if stored[key] != getattr(state, key):
                raise Reject("bad-chain-state", f"stored {key} differ from the state rebuilt by replaying the blocks")
        if not _same_utxos(stored["utxos"], state.utxos):
            raise Reject("bad-chain-state", "stored utxos differ from the state rebuilt by replaying the blocks")
    if store.policy_rows() != [(seq, p.encode()) for seq, p in enumerate(state.policy.policies)]:
        raise Reject("bad-chain-state", "stored policies differ from the state rebuilt by replaying the blocks")
    return state


def _same_utxos(stored: Iterator[tuple[bytes, bytes]], utxos: dict[bytes, bytes]) -> bool:
    """Whether the (outpoint, output) pairs ``stored``, in strictly increasing outpoint order, are exactly ``utxos``.

    Streamed, so that the verifier never holds a second copy of the unspent outputs.
    """
    n, last = 0, b""
    for op, out in stored:
        if (n and op <= last) or utxos.get(op) != out:
            return False
        n, last = n + 1, op
    return n == len(utxos)


def copy_chain(source: Store, target: Store, on_block: Callable[[int], None] | None = None) -> LedgerState:
    """Copy every block of ``source`` into the empty ``target``; return the ledger state at the tip.

    Raises ``StoreError`` if the target already holds a chain or the source holds none, and a located
    ``Reject`` at the first invalid source block (the target then holds the valid blocks before it).
    ``on_block(height)`` is called after each block is committed.
    """
    if source.tip_height() is None:
        raise StoreError("the source store holds no chain")
    if target.tip_height() is not None:
        raise StoreError("the target store already holds a chain; copy into an empty one")
    state = None
    for block, after, ch in replay(source):
        target.commit_block(block.height, block.hash, block.header.time, block.encode(), ch)
        state = after
        if on_block is not None:
            on_block(block.height)
    return state
