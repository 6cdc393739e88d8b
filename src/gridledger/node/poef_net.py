"""Proof-of-Efficiency across processes: the PoEf round of a tier-tagged chain, run over the orderer's board.

The roles are those of :mod:`gridledger.consensus.poef`; this module only carries their messages through a
:class:`~gridledger.node.poef_board.PoefOrderer` (etcd across machines). One round for height *h*:

1. The **leading coordinator** (it holds the etcd lease) orders pending transactions into a block
   (``Coordinator.propose``: every ledger rule, the plausibility check, an ALARM after each implausible reading),
   posts each committee member's sealed disclosure, then the block at ``proposals/<h>/<round>``.
2. Every **committee member** (a meter: ``Validator`` over its own replica) reads the newest proposal for its
   tip + 1, opens its disclosure, validates the block for real (every ledger rule, plausibility, alarms,
   replicated prices) and posts its vote — or its ``Reject``, for diagnosis — at ``votes/<h>/<hash>/<member>``.
   A member votes for at most one block per height: its ``Validator`` remembers its votes, and after a restart it
   finds its earlier vote on the board and refuses any other block at that height.
3. With a strict majority of the drawn committee the leader builds the quorum certificate
   (``Coordinator.certify``) and publishes the certified block at ``blocks/<h>`` (create-if-absent). Every node,
   the leader included, appends it like any other block: the core re-checks every rule and the certificate.
4. Without a quorum after ``round_timeout`` seconds the leader re-proposes: if members refused transactions of
   the block (rejects with a transaction index) it drops those and proposes a new block in a new round;
   otherwise (members offline or behind) it posts the same block again in a new round, so members that judged
   an earlier round look again.

**Take-over.** A coordinator that gains the lease first looks at the proposals already on the board for its
tip + 1: if members voted for one, it adopts the most-voted block and finishes it (re-posting its disclosures and
the block in a new round) — a block that may already hold a quorum is finished, never replaced by a different
one. Only if nobody voted does it propose its own block, and then in a new round. It also queues a
COORDINATOR_DOWN alarm naming the coordinator it replaced (as ``consensus.failover.take_over`` does in process).
Pending transactions stay in the orderer until their block is final, so none is lost.

**Child chains (the 51 % scenario across processes).** A node of a FAN/WAN that replicates child chains (a
concentrator holds its NAN: ``children`` in its configuration) follows each child's certified blocks from the
child's orderer before every step of its own loop, re-validating every rule (a plain follower: no key on the child).
When a colluding majority of the child's committee certifies a block that breaks a ledger rule, the child replica
refuses it (``Replica.refused``); this node then votes no on any anchor covering that height or differing from its
copy (``bad-poef-anchor-refused``, ``bad-poef-anchor-mismatch``), and queues a TAMPERING alarm about the block on its
own chain (``consensus.anchoring.refusal_alarms``, signed by its key), where the captured child coordinator cannot
censor it and the DSO reads it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gridledger.chain import Chain
from gridledger.consensus.anchoring import refusal_alarms
from gridledger.consensus.plausibility import Plausibility, RobustWindowCheck
from gridledger.consensus.poef import Coordinator, Disclosure, Replica, Validator
from gridledger.ledger.block import Block, Vote
from gridledger.ledger.committee import committee_for
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds import decode_transaction
from gridledger.ledger.kinds.alarm import AlarmCode, raise_alarm
from gridledger.ledger.kinds.reading import ChainKeys
from gridledger.ledger.kinds.reading_batch import readings_of
from gridledger.ledger.members import member_of_key
from gridledger.node.poef_board import PoefOrderer, Verdict
from gridledger.node.sequencer import MAX_BLOCK_TXS, Sequencer

log = logging.getLogger("gridledger.node")

#: Seconds a leader waits for a quorum before it re-proposes (the etcd lease is 1 s; a round takes ~0.1 s).
ROUND_TIMEOUT_S = 3.0


@dataclass
class InFlight:
    """The leader's round in progress: the block it waits votes for, its round number and since when (monotonic s)."""

    height: int
    round_no: int
    block: Block
    since: float


@dataclass(frozen=True)
class Waiting:
    """A height the leader has not committed within ``round_timeout``: since when (monotonic s, its first round),
    rounds posted, the committee's votes and the quorum it needs, and the members that posted no verdict at all
    (offline, hung or behind: if they hold the quorum, the height commits only once enough of them come back)."""

    height: int
    since: float
    rounds: int
    votes: int
    needed: int
    silent: tuple[bytes, ...]
    refused: int

    def to_json(self, now: float, names: dict[bytes, str]) -> dict:
        """For ``/v1/status``: members by node id where ``names`` knows them, else by public key (hex)."""
        return {
            "height": self.height,
            "for_s": round(now - self.since, 1),
            "rounds": self.rounds,
            "votes": self.votes,
            "needed": self.needed,
            "refused": self.refused,
            "silent": [names.get(k, k.hex()) for k in self.silent],
        }


class PoefSequencer(Sequencer):
    """One node's loop on a PoEf chain: sync certified blocks; lead rounds as coordinator; vote as member.

    Parameters
    ----------
    replica : the node's copy of the chain (its appends index the readings the plausibility history needs).
    orderer : the orderer with the round board (:class:`~gridledger.node.poef_board.EtcdPoefOrderer`).
    node_id : the node's id (the leader key's value in etcd).
    coordinator : set on coordinators (primary or backup): the proposing role, with the chain's content key.
    validator : set on members: the validating role, with the member's key.
    round_timeout : seconds without a quorum after which the leader re-proposes.
    monotonic : the clock of round timeouts (s).
    children : followers of the child chains this node replicates (see the module's *Child chains*).
    """

    def __init__(
        self,
        replica: Replica,
        orderer: PoefOrderer,
        node_id: str,
        *,
        coordinator: Coordinator | None = None,
        validator: Validator | None = None,
        round_timeout: float = ROUND_TIMEOUT_S,
        monotonic: Callable[[], float] = time.monotonic,
        children: Sequence[PoefSequencer] = (),
        **options,
    ) -> None:
        super().__init__(replica.chain, orderer, node_id, coordinator.key if coordinator else None, **options)
        self.children = list(children)
        #: TAMPERING alarms this node queued about certified child blocks its replicas refused.
        self.alarms_raised = 0
        self.orderer: PoefOrderer = orderer
        self.replica = replica
        self.coordinator = coordinator
        self.validator = validator
        self.round_timeout = round_timeout
        self.monotonic = monotonic
        self.round: InFlight | None = None
        #: The height this leader has been waiting a quorum for beyond ``round_timeout`` (None when it is not).
        self.waiting: Waiting | None = None
        self._in_charge = False
        self._abandoned: set[bytes] = set()
        self._judged: set[tuple[int, int]] = set()

    @classmethod
    def for_node(
        cls,
        chain: Chain,
        orderer: PoefOrderer,
        node_id: str,
        key: KeyPair,
        content: ChainKeys | None,
        plausibility: Plausibility | None = None,
        children: Sequence[PoefSequencer] = (),
        **options,
    ) -> PoefSequencer:
        """The loop of a node holding ``key``: a coordinator if the genesis lists the key as a proposer (it needs
        the chain's master content key ``content``), else a (possible) committee member; ``children`` follow the
        child chains it replicates."""
        plausibility = plausibility or RobustWindowCheck()  # the consensus default (docs/consensus.md)
        replica = Replica(chain, plausibility.window)
        options["children"] = children
        if key.public not in chain.genesis.proposers:
            held = {child.chain.chain_id: child.replica for child in children}
            validator = Validator(key, replica, plausibility, children=held)
            return cls(replica, orderer, node_id, validator=validator, **options)
        if content is None:
            raise ValueError("a coordinator of a PoEf chain needs the chain's content key (content_key)")
        max_txs = options.get("max_block_txs", MAX_BLOCK_TXS)
        coordinator = Coordinator(replica, key, content, plausibility, max_txs=max_txs)
        return cls(replica, orderer, node_id, coordinator=coordinator, **options)

    def _append(self, block: Block) -> None:
        self.replica.commit(block, now=int(self.clock()))

    def _rings(self, kind: str) -> bool:
        """Also a proposal (members judge it) and a vote (the leader collects it)."""
        return (
            super()._rings(kind)
            or (kind == "proposals" and self.validator is not None)
            or (kind == "votes" and self.leading)
        )

    def _watch(self, ring: Callable[[str], None]) -> bool:
        """The round board's proposals (members) or votes (coordinators), and the blocks of every child chain."""
        kinds = ("blocks", "proposals") if self.validator is not None else ("blocks", "mempool", "votes")
        watched = self.orderer.wake_on(kinds, ring)
        for child in self.children:
            watched = child.orderer.wake_on(("blocks",), ring) and watched
        return watched

    def _step(self) -> Block | None:
        self._watch_children()
        return super()._step()

    def _watch_children(self) -> None:
        """Follow every child chain (re-validated); queue a TAMPERING alarm about each certified child block
        refused since (this node's key signs it: a FAN member's, or the FAN coordinator's)."""
        role = self.validator or self.coordinator
        for child in self.children:
            child.sync()
            for alarm in refusal_alarms(child.replica, self.chain.chain_id, self.chain.height, role.key):
                self.orderer.submit(alarm.txid, alarm.encode())
                self.alarms_raised += 1
                height, (_, reject) = max(child.replica.refused.items())
                log.warning(
                    "%s: refused certified block %d of child chain %s… (%s); TAMPERING alarm %s… queued",
                    self.node_id,
                    height,
                    child.chain.chain_id.hex()[:16],
                    reject,
                    alarm.txid.hex()[:16],
                )

    # ------------------------------------------------------------------ the leading coordinator
    def _lead(self) -> Block | None:
        height = self.chain.height + 1
        if self.round is not None and self.round.height != height:
            self.round = None
        if self.waiting is not None and self.waiting.height != height:
            self.waiting = None
        if not self._in_charge:  # the lease just came to this coordinator
            self._in_charge = True
            if height > 1:
                self.orderer.clear(height - 1)  # left over if the previous leader died right after publishing
            self._raise_coordinator_down(height)
            self.round = self._take_over(height)
        if self.round is None:
            self.round = self._propose(height)
            if self.round is None:
                return None
        return self._collect(self.round)

    def _next_round(self, height: int) -> int:
        posted = self.orderer.proposals(height)
        return posted[-1][0] + 1 if posted else 0

    def _take_over(self, height: int) -> InFlight | None:
        """Adopt the most-voted proposal already on the board for ``height`` (None if nobody voted for any)."""
        tally = {h: sum(isinstance(v, Vote) for v in vs.values()) for h, vs in self.orderer.verdicts(height).items()}
        best: tuple[int, int, Block] | None = None
        for round_no, raw in self.orderer.proposals(height):
            try:
                block = Block.decode(raw)
            except Reject:
                continue
            votes = tally.get(block.hash, 0)
            if votes and block.hash not in self._abandoned and (best is None or (votes, round_no) > best[:2]):
                best = (votes, round_no, block)
        if best is None:
            return None
        block = best[2]
        self.coordinator.adopt(block)
        return self._post(height, block)

    def _propose(self, height: int) -> InFlight | None:
        """Order pending transactions into a block and post it in a new round (None if nothing is pending)."""
        invalid = []
        for txid, raw in self.orderer.pending(self.max_block_txs):
            try:
                self.coordinator.submit(decode_transaction(raw))
            except Reject as e:
                self.rejected[txid] = e
                invalid.append(txid)
        queued = {tx.txid for tx in self.chain.mempool.values()}
        block = self.coordinator.propose(int(self.clock()))
        # refused by a ledger rule while proposing (every queued copy of them)
        dropped = list(queued - {tx.txid for tx in self.chain.mempool.values()})
        for txid in dropped:
            self.rejected[txid] = self.coordinator.rejected[txid]
        self.orderer.drop(invalid + dropped)
        return None if block is None else self._post(height, block)

    def _post(self, height: int, block: Block) -> InFlight | None:
        """Post the committee's sealed disclosures, then ``block`` in the next round of ``height``."""
        if any(readings_of(tx) for tx in block.transactions):  # READINGs, or READING_BATCHes: each minute disclosed
            for _, member in self.coordinator.committee(block).members:
                sealed = self.coordinator.disclose(block, member).seal(member)
                self.orderer.disclose(height, block.hash, member, sealed)
        round_no = self._next_round(height)
        if not self.orderer.propose(height, round_no, block.encode()):
            return None  # another coordinator posted this round meanwhile; look again next step
        return InFlight(height, round_no, block, self.monotonic())

    def _collect(self, rnd: InFlight) -> Block | None:
        """Certify and publish the block once a strict majority of its committee voted for it."""
        verdicts = self.orderer.verdicts(rnd.height).get(rnd.block.hash, {})
        try:
            committed = self.coordinator.certify(rnd.block, [v for v in verdicts.values() if isinstance(v, Vote)])
        except Reject:  # no quorum yet
            if self.monotonic() - rnd.since >= self.round_timeout:
                self._time_out(rnd, verdicts)
            return None
        if not self._make_final(committed.block, []):
            # another entry is at this height: the next sync appends it (a block) or the next step voids it (junk),
            # and the round is published again once the height is free
            return None
        self.round = self.waiting = None
        self.orderer.clear(rnd.height)
        return committed.block

    def _time_out(self, rnd: InFlight, verdicts: dict[bytes, Verdict]) -> None:
        self._note_waiting(rnd, verdicts)
        txs = rnd.block.transactions
        refused = {
            txs[r.tx_index].txid: r
            for r in verdicts.values()
            if isinstance(r, Reject) and r.tx_index is not None and 0 <= r.tx_index < len(txs)
        }
        if refused:  # members refused transactions: drop them, and propose a new block in a new round
            self.rejected.update(refused)
            self._abandoned.add(rnd.block.hash)
            self.coordinator.abandon(refused)
            self.orderer.drop(list(refused))
            self.round = None
        else:  # members offline or behind: the same block again, in a new round
            self.round = self._post(rnd.height, rnd.block)

    def _note_waiting(self, rnd: InFlight, verdicts: dict[bytes, Verdict]) -> None:
        """Record (and log) that ``rnd`` timed out: who voted, who refused, who is silent."""
        committee = self.coordinator.committee(rnd.block)
        votes = sum(isinstance(v, Vote) for v in verdicts.values())
        refused = len(verdicts) - votes
        silent = tuple(k for _, k in committee.members if k not in verdicts)
        before = self.waiting if self.waiting is not None and self.waiting.height == rnd.height else None
        since, rounds = (before.since, before.rounds + 1) if before else (rnd.since, 1)
        self.waiting = Waiting(rnd.height, since, rounds, votes, committee.required, silent, refused)
        log.warning(
            "%s: height %d has no quorum after %.1f s (%d of %d votes needed, %d refusals; %d of the %d committee "
            "members silent)",
            *(self.node_id, rnd.height, self.monotonic() - since, votes, committee.required, refused),
            *(len(silent), len(committee.members)),
        )

    def _raise_coordinator_down(self, height: int) -> None:
        """On taking the lease: a COORDINATOR_DOWN alarm naming the coordinator in charge before, if another one."""
        posted = self.orderer.proposals(height)
        if posted:
            try:
                previous = Block.decode(posted[-1][1]).header.proposer
            except Reject:
                return
        elif self.chain.height >= 1:
            previous = next(iter(self.chain.blocks(self.chain.height))).header.proposer
        else:
            return
        if previous == self.key.public:
            return
        alarm = raise_alarm(self.chain.chain_id, AlarmCode.COORDINATOR_DOWN, previous, height, "failover", self.key)
        self.orderer.submit(alarm.txid, alarm.encode())

    # ------------------------------------------------------------------ a committee member
    def _follow(self) -> None:
        self._in_charge = False
        if self.validator is None:
            return
        state = self.chain.state
        if member_of_key(state, self.validator.key.public, state.slot_of(int(self.clock()))) is None:
            return  # not an authorized member now: no committee will draw this node
        height = state.height + 1
        posted = self.orderer.proposals(height)
        if not posted or (height, posted[-1][0]) in self._judged:
            return
        round_no, raw = posted[-1]
        self._judge(height, raw)
        self._judged = {k for k in self._judged if k[0] >= height}
        self._judged.add((height, round_no))

    def _judge(self, height: int, raw: bytes) -> None:
        """Validate one proposal for real and post the vote (or the reject)."""
        try:
            block = Block.decode(raw)
        except Reject:
            return
        me = self.validator.key.public
        if me not in committee_for(self.chain.state, block.header):
            return
        verdict = self._voted_elsewhere(height, block.hash)
        if verdict is None:
            sealed = self.orderer.disclosure(height, block.hash, me)
            try:
                disclosure = None if sealed is None else Disclosure.open(sealed, self.validator.key)
                verdict = self.validator.validate(block, disclosure, now=int(self.clock()))
            except Reject as e:
                verdict = e.at(height=height)
        self.orderer.vote(height, block.hash, me, verdict)

    def _voted_elsewhere(self, height: int, block_hash: bytes) -> Reject | None:
        """An equivocation reject if this member's vote at ``height`` on the board is for another block.

        The ``Validator`` remembers its votes in memory; the board remembers them across a restart of the node.
        """
        if self.validator.last_vote(height) is not None:
            return None  # the validator decides (it refuses any other block itself)
        me = self.validator.key.public
        for other, verdicts in self.orderer.verdicts(height).items():
            if other != block_hash and isinstance(verdicts.get(me), Vote):
                return Reject(
                    "bad-poef-equivocation",
                    f"already voted for block {other.hex()[:16]}… at height {height}",
                    height=height,
                )
        return None
