"""The sequencer: keeps one node's chain in step with its orderer; a coordinator also proposes while it leads.

Every node (meter, concentrator, DSO, head-end) reads final blocks from the orderer in height order and appends
them to its own chain, re-validating every rule (it trusts no one, the leader included). A coordinator (it holds a
proposer key listed in the genesis) campaigns for leadership; while it leads it turns pending transactions into
blocks, publishes each at its height (create-if-absent) and only then appends it. A backup coordinator runs the same
loop: when the leader dies it wins the campaign, catches up, and goes on from the pending transactions, so no
committed transaction is lost and pending ones are only delayed.

That is the coordinator-only rule of untagged chains. On a tier-tagged (PoEf) chain the subclass
:class:`gridledger.node.poef_net.PoefSequencer` replaces what a leader does (``_lead``: a PoEf round), what the
others do between syncs (``_follow``: committee members vote) and how a block is appended (``_append``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from gridledger.chain import Chain
from gridledger.ledger.block import Block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds import decode_transaction
from gridledger.node.ordering import Orderer

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
        self.leading = False
        #: Held while the chain changes; readers of the chain's store from other threads take it too.
        self.lock = threading.RLock()

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
            for _, raw in rows:
                block = Block.decode(raw)
                self._append(block)
                n += 1
                if self.on_block:
                    self.on_block(block)

    def _append(self, block: Block) -> None:
        """Validate and append one final block (every rule, and the certificate on a PoEf chain)."""
        self.chain.append(block)

    def step(self) -> Block | None:
        """Catch up; then a coordinator that leads makes the next block final, any other node follows."""
        with self.lock:
            return self._step()

    def _step(self) -> Block | None:
        self._sync()
        if self.key is not None:
            self.leading = self.orderer.campaign(self.node_id)
        if self.leading:
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

    def run(self, stop: threading.Event, idle: float = 0.02) -> None:
        """Loop until ``stop`` is set; transient orderer failures are retried."""
        while not stop.is_set():
            try:
                block = self.step()
            except ConnectionError:
                block = None
                stop.wait(0.2)
            if block is None:
                stop.wait(idle)
        if self.leading:
            self.orderer.resign()
