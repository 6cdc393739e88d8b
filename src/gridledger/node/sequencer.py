"""The sequencer: keeps one node's chain in step with its orderer; a coordinator also proposes while it leads.

Every node (meter, concentrator, DSO, head-end) reads final blocks from the orderer in height order and appends
them to its own chain, re-validating every rule (it trusts no one, the leader included). A coordinator (it holds a
proposer key listed in the genesis) campaigns for leadership; while it leads it turns pending transactions into
blocks, publishes each at its height (create-if-absent) and only then appends it. A backup coordinator runs the same
loop: when the leader dies it wins the campaign, catches up, and goes on from the pending transactions, so no
committed transaction is lost and pending ones are only delayed.

**Entries a node cannot validate.** Anyone with write access to the orderer (etcd) can write bytes under the next
block's key. A node never trusts an entry: one that fails is logged with its reject code, counted
(``entries_rejected``) and not applied; the loop goes on. Such an entry is **void** when it is not a block signed
for this chain and this height by one of the genesis proposers (it does not decode, names another chain or height,
another proposer, or its signature fails) — a judgement that depends only on the genesis and the entry's bytes, so
every node makes it alike whatever its own state — or, on a PoEf chain, a block without a valid quorum certificate
(``bad-qc-*``: e.g. a coordinator's proposal copied off the round board; judged against the tip every honest node
shares). The leading coordinator moves a void entry to ``quarantine/`` (compare-and-delete: only those exact bytes)
and proposes (or publishes its certified block for) the height again, and every node goes on with the block that
replaces it. A coordinator-signed (and certified) block that breaks a ledger rule is *not* void (only a compromised
coordinator key or a colluding committee makes one): every node refuses it and holds at that height, reporting it
on ``/v1/status`` (``last_rejected``) until the DSO acts. A block dated too far ahead of the node's own clock
(``bad-blk-time-future``: a proposer whose clock runs ahead) is refused the same way, but judged again at every sync:
it is appended once the node's clock has come within the bound.

That is the coordinator-only rule of untagged chains. On a tier-tagged (PoEf) chain the subclass
:class:`gridledger.node.poef_net.PoefSequencer` replaces what a leader does (``_lead``: a PoEf round), what the
others do between syncs (``_follow``: committee members vote) and how a block is appended (``_append``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from gridledger.chain import Chain
from gridledger.ledger import crypto
from gridledger.ledger.block import Block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds import decode_transaction
from gridledger.node import ordering
from gridledger.node.ordering import Orderer
from gridledger.store.base import StoreError

log = logging.getLogger("gridledger.node")

#: Reject codes of a block without a valid quorum certificate (``ledger.committee``): such an entry is void.
UNCERTIFIED = "bad-qc-"

#: The reject code of a block dated too far ahead of this node's clock: judged again later, not held for good.
EARLY = "bad-blk-time-future"

#: Most pending transactions one block takes.
MAX_BLOCK_TXS = 5_000


class Sequencer:
    """One node's loop over an orderer. ``key`` is set for coordinators (primary or backup)."""

    def __init__(
        self,
        chain: Chain,
        orderer: Orderer,
        node_id: str,
        key: KeyPair | None = None,
        *,
        max_block_txs: int = MAX_BLOCK_TXS,
        clock: Callable[[], float] = time.time,
        on_block: Callable[[Block], None] | None = None,
    ) -> None:
        self.chain = chain
        self.orderer = orderer
        self.node_id = node_id
        self.key = key
        self.max_block_txs = max_block_txs
        self.clock = clock
        self.on_block = on_block
        self.rejected: dict[bytes, Reject] = {}
        self._leading = False
        #: Ordering-log entries this node refused (each distinct entry counted once), and the last one refused.
        self.entries_rejected = 0
        self.last_rejected: Reject | None = None
        #: Unexpected failures of the loop (logged with their traceback; the loop goes on).
        self.errors = 0
        #: The refused entry at each height above the tip (height → raw bytes, whether it is void, its reject code).
        self._refused: dict[int, tuple[bytes, bool, str]] = {}
        #: Held while the chain changes; readers of the chain's store from other threads take it too.
        self.lock = threading.RLock()

    @property
    def leading(self) -> bool:
        """True while this coordinator leads: its last campaign won and its lease still holds (read from any thread:
        a leader cut off from the orderer stops claiming as soon as its lease may have lapsed, even while its loop
        still waits on the orderer)."""
        return self._leading and self.orderer.holds_lease()

    @leading.setter
    def leading(self, value: bool) -> None:
        self._leading = value

    def sync(self) -> int:
        """Append every final block above our tip (re-validated); returns how many."""
        with self.lock:
            return self._sync()

    def _sync(self) -> int:
        n = 0
        while True:
            rows = self.orderer.blocks(self.chain.height + 1)
            if not rows:
                return n
            for height, raw in rows:
                judged = self._refused.get(height, (None, False, ""))
                seen = judged[0] == raw
                if seen and judged[2] != EARLY:
                    return n  # judged already; waits for the leader to replace it (or for the DSO)
                try:
                    block = self._coordinator_block(height, raw)
                except Reject as e:
                    self._refuse(height, raw, e, void=True)
                    return n
                try:
                    self._append(block)
                except Reject as e:  # void if uncertified (a PoEf proposal copied off the board), else held
                    if not seen:  # an early block judged again is counted once
                        self._refuse(height, raw, e, void=e.code.startswith(UNCERTIFIED))
                    return n
                self._refused = {h: v for h, v in self._refused.items() if h > height}
                n += 1
                if self.on_block:
                    self.on_block(block)

    def _coordinator_block(self, height: int, raw: bytes) -> Block:
        """The entry at ``height`` as a block signed for it by a coordinator of this chain; ``Reject`` if it is not
        (the entry is then void: this depends only on the genesis and the entry's bytes)."""
        block = Block.decode(raw)
        h = block.header
        if h.chain_id != self.chain.chain_id or h.height != height:
            raise Reject("bad-blk-height", f"the entry is block {h.height} of chain {h.chain_id.hex()[:16]}…")
        if h.proposer not in self.chain.genesis.proposers:
            raise Reject("bad-blk-proposer", "the entry's proposer is not a coordinator of this chain")
        if not crypto.verify(h.proposer, h.signing_message(), block.signature):
            raise Reject("bad-blk-signature", "the entry's proposer signature is invalid")
        return block

    def _refuse(self, height: int, raw: bytes, e: Reject, *, void: bool) -> None:
        self._refused[height] = (raw, void, e.code)
        self.entries_rejected += 1
        self.last_rejected = e.at(height=height)
        what = "void" if void else "signed by a coordinator, held"
        log.warning(
            "%s: refused the ordering-log entry at height %d (%d bytes, %s): %s",
            self.node_id,
            height,
            len(raw),
            what,
            self.last_rejected,
        )

    def _clear_void(self) -> None:
        """As leader: quarantine a void entry at the next height so that the height can be proposed again."""
        height = self.chain.height + 1
        raw, void, _ = self._refused.get(height, (None, False, ""))
        if void and self.orderer.void(height, raw):
            log.warning("%s: moved the void entry at height %d to quarantine", self.node_id, height)

    def _append(self, block: Block) -> None:
        """Validate and append one final block (every rule, and the certificate on a PoEf chain)."""
        self.chain.append(block, now=int(self.clock()))

    def step(self) -> Block | None:
        """Catch up; then a coordinator that leads makes the next block final, any other node follows."""
        with self.lock:
            return self._step()

    def _step(self) -> Block | None:
        self._sync()
        if self.key is not None:
            self.leading = self.orderer.campaign(self.node_id)
        if self.leading:
            self._clear_void()
            return self._lead()
        self._follow()
        return None

    def _lead(self) -> Block | None:
        """Propose one block of pending transactions and publish it (the coordinator-only rule of untagged chains)."""
        pending = self.orderer.pending(self.max_block_txs)
        if not pending:
            return None
        invalid = []
        for txid, raw in pending:
            try:
                self.chain.submit(decode_transaction(raw))
            except Reject as e:
                self.rejected[txid] = e
                invalid.append(txid)
        result = self.chain.propose(self.key, int(self.clock()), self.max_block_txs, commit=False)
        self.rejected.update(result.rejected)
        invalid += list(result.rejected)
        if result.block is not None and self._make_final(result.block, invalid):
            return result.block
        self.orderer.drop(invalid)
        return None

    def _follow(self) -> None:
        """What a node that does not lead does after each sync (PoEf members vote: :mod:`.poef_net`)."""

    def _make_final(self, block: Block, invalid: list[bytes]) -> bool:
        """Publish ``block`` at its height (create-if-absent); if it won, append it like any other block and drop its
        transactions and ``invalid`` from the queue. False if another block is final there already."""
        if not self.orderer.publish(block.height, block.encode()):
            return False
        self._sync()  # appends our own block like any other, re-validated
        self.orderer.drop([tx.txid for tx in block.transactions] + invalid)
        return True

    def _rings(self, kind: str) -> bool:
        """True if a write of an orderer record of ``kind`` gives this node work: a block (everyone), a pending
        transaction (the leader)."""
        return kind == "blocks" or (kind == "mempool" and self.leading)

    def _watch(self, ring: Callable[[str], None]) -> bool:
        """Have the orderer call ``ring`` on writes this node may act on; False if it cannot (then the loop polls)."""
        return self.orderer.wake_on(("blocks", "mempool") if self.key is not None else ("blocks",), ring)

    def _pause(self) -> float:
        """Seconds the loop may sleep unless woken: a backup coordinator looks at the leader key every
        ``BACKUP_POLL_S`` (a key that stands still is what lets it take over); any other node wakes on writes, else
        every ``POLL_S``."""
        return ordering.BACKUP_POLL_S if self.key is not None and not self.leading else ordering.POLL_S

    def run(self, stop: threading.Event, idle: float = 0.02) -> None:
        """Loop until ``stop`` is set: after a step that made no block, sleep until the orderer signals a write this
        node acts on (at most ``_pause()``; ``idle`` s on a backend that cannot signal). Transient orderer and store
        failures are retried; any other failure is logged with its traceback, counted (``errors``) and retried after
        a second: no input stops the loop."""
        bell = threading.Event()  # set by the orderer's watch threads (and by ``stop``)
        watched = self._watch(lambda kind: self._rings(kind) and bell.set())
        if watched:
            threading.Thread(target=lambda: stop.wait() or bell.set(), name=f"stop-{self.node_id}", daemon=True).start()
        try:
            while not stop.is_set():
                bell.clear()  # before the step: a write during it rings again, and the wait below returns at once
                try:
                    block = self.step()
                except (ConnectionError, StoreError) as e:
                    log.warning("%s: %s; retrying", self.node_id, e)
                    self.leading = False  # unknown until a campaign succeeds again (its lease may have expired)
                    block = None
                    stop.wait(0.2)
                except Exception:
                    self.errors += 1
                    log.exception("%s: sequencer step failed; retrying in 1 s", self.node_id)
                    self.leading = False
                    block = None
                    stop.wait(1.0)
                if block is None:
                    bell.wait(self._pause()) if watched else stop.wait(idle)
        finally:
            if self.leading:
                self.leading = False
                with contextlib.suppress(ConnectionError):
                    self.orderer.resign()
