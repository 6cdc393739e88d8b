"""Proof-of-Efficiency (PoEf) consensus: the coordinator and validator roles, as plain objects with no networking.

One PoEf round for block *h* (Olivares-Rojas et al. 2023, §3.2–3.3 and §4.3, made exact):

1. The **coordinator** (the meter on a HAN, the concentrator on a NAN, …) orders pending transactions into a
   block (:meth:`Coordinator.propose`): it applies every ledger rule, drops what fails, opens each reading (it
   is entitled to) and runs the plausibility check; for each implausible reading it adds an ALARM right after it.
   A READING_BATCH is checked minute by minute, each minute as the reading it carries
   (:attr:`~gridledger.ledger.kinds.reading_batch.ReadingBatch.readings`: its txid names the minute in
   disclosures and alarms); the alarms of its implausible minutes follow the batch.
2. It sends the block to the block's committee (:mod:`.committee`) with, for each member, a :class:`Disclosure`:
   the per-reading keys of the block's readings and of the history the check needs — and nothing else.
3. Each **validator** (:meth:`Validator.validate`) re-runs every ledger rule against its own replica, opens the
   disclosed readings, re-runs the plausibility check, checks every implausible reading has its alarm and every
   price policy is the one committed on the tier above; then it signs a vote over the header — or returns the
   ``Reject`` that explains its no. A validator votes for at most one block per height.
4. With a strict majority of the committee's votes the coordinator **commits** (:meth:`Coordinator.commit`): the
   block and its quorum certificate are stored; every node appends it after checking both (:class:`Replica`).

The objects exchange only blocks, votes, disclosures and rejects, so :func:`run_round` drives them in one
process while the node API can carry the same calls over HTTP (a disclosure is sealed to its recipient's key
with :meth:`Disclosure.seal`).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from time import time as wall_clock

import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.signing

from gridledger.chain import Chain, proposal_order
from gridledger.consensus.anchoring import check_anchor_replicated
from gridledger.consensus.plausibility import Plausibility, RobustWindowCheck
from gridledger.consensus.policy_sync import ParentView, check_replicated
from gridledger.ledger.block import Block, Vote, make_block
from gridledger.ledger.committee import Committee, certify, check_vote, committee_for
from gridledger.ledger.crypto import HASH_BYTES, KeyPair
from gridledger.ledger.encoding import Reader, Writer, check_name
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds.alarm import Alarm, AlarmCode, raise_alarm
from gridledger.ledger.kinds.reading import KEY_BYTES, ChainKeys, Reading, ReadingError, ReadingValues, open_reading
from gridledger.ledger.kinds.reading_batch import readings_of
from gridledger.ledger.state import LedgerState
from gridledger.ledger.transactions import Transaction

#: Votes a validator remembers (heights below the newest minus this are forgotten).
_VOTE_MEMORY = 64


# ------------------------------------------------------------------ disclosures
@dataclass(frozen=True)
class Disclosure:
    """Per-reading keys a coordinator discloses to one committee member for one block (txid → 16-byte key)."""

    block_hash: bytes
    keys: Mapping[bytes, bytes]

    def encode(self) -> bytes:
        w = Writer().fixed(self.block_hash, HASH_BYTES, "block hash").u32(len(self.keys), "disclosed keys")
        for txid in sorted(self.keys):
            w.fixed(txid, HASH_BYTES, "reading txid").fixed(self.keys[txid], KEY_BYTES, "reading key")
        return w.bytes()

    @classmethod
    def decode(cls, raw: bytes) -> Disclosure:
        r = Reader(raw)
        block_hash, n = r.take(HASH_BYTES, "block hash"), r.u32("disclosed keys")
        keys = {}
        for _ in range(n):
            txid = r.take(HASH_BYTES, "reading txid")
            keys[txid] = r.take(KEY_BYTES, "reading key")
        r.end("disclosure")
        return cls(block_hash, keys)

    def seal(self, recipient: bytes) -> bytes:
        """Encrypt to a committee member's Ed25519 public key (X25519 sealed box), for transport."""
        curve = nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(recipient)
        return nacl.public.SealedBox(nacl.public.PublicKey(curve)).encrypt(self.encode())

    @classmethod
    def open(cls, sealed: bytes, key: KeyPair) -> Disclosure:
        """Decrypt a sealed disclosure with the recipient's key pair; ``Reject`` if it is not for this key."""
        private = nacl.signing.SigningKey(key.seed).to_curve25519_private_key()
        try:
            raw = nacl.public.SealedBox(private).decrypt(sealed)
        except nacl.exceptions.CryptoError:
            raise Reject("bad-poef-disclosure", "the disclosure is not sealed to this member's key") from None
        return cls.decode(raw)


# ------------------------------------------------------------------ replicas
class Replica:
    """One node's copy of a chain: the store-backed ``Chain`` and each member's recent readings.

    :meth:`commit` appends a committed block through the core, which re-validates every transaction and checks
    the quorum certificate; a block that fails changes nothing. ``window`` readings per member are indexed for
    the plausibility history.
    """

    def __init__(self, chain: Chain, window: int = 32) -> None:
        self.chain = chain
        self.window = window
        #: Certified blocks this replica refused, by height: (block hash, the ledger's reject) — a colluding
        #: committee majority signed a block that breaks a rule (:mod:`.anchoring`).
        self.refused: dict[int, tuple[bytes, Reject]] = {}
        #: Hashes of refused blocks already reported in an alarm.
        self.reported: set[bytes] = set()
        self._recent: dict[int, deque[Reading]] = defaultdict(lambda: deque(maxlen=window))
        for block in chain.blocks(1):
            self._index(block)

    @property
    def state(self) -> LedgerState:
        return self.chain.state

    @property
    def height(self) -> int:
        return self.chain.height

    def commit(self, block: Block, now: int | None = None) -> None:
        """Validate and append a committed block (``Reject`` if invalid or not certified; a block with a valid
        certificate that a ledger rule refuses is recorded in ``refused``). ``now``: the node's clock (Unix s; a
        block dated too far ahead of it is refused, ``bad-blk-time-future``, but not recorded: it may pass later)."""
        try:
            self.chain.append(block, now=now)
        except Reject as e:
            if e.code != "bad-blk-time-future" and block.height == self.height + 1 and self._certified(block):
                self.refused[block.height] = (block.hash, e)
            raise
        self._index(block)

    def _certified(self, block: Block) -> bool:
        """True if ``block`` passes the rule set's whole-block checks (its quorum certificate) at this tip."""
        checks = self.state.ruleset.block_checks
        try:
            for check in checks:
                check(self.state, block)
        except Reject:
            return False
        return bool(checks)

    def catch_up(self, blocks: Iterable[Block]) -> int:
        """Append, re-verifying each, the blocks above this replica's tip (from any peer); returns how many."""
        n = 0
        for block in blocks:
            if block.height > self.height:
                self.commit(block)
                n += 1
        return n

    def history(self, member: int) -> list[Reading]:
        """The member's most recent committed readings, oldest first."""
        return list(self._recent.get(member, ()))

    def _index(self, block: Block) -> None:
        for tx in block.transactions:
            for r in readings_of(tx):
                self._recent[r.member].append(r)


def _history_of(replica: Replica, block: Block, window: int) -> list[tuple[Reading, list[Reading]]]:
    """Each reading of ``block`` (each minute of a batch) with the readings before it of the same member (at most
    ``window``)."""
    in_block: dict[int, list[Reading]] = defaultdict(list)
    out = []
    for tx in block.transactions:
        for r in readings_of(tx):
            before = replica.history(r.member) + in_block[r.member]
            out.append((r, before[-window:] if window else []))
            in_block[r.member].append(r)
    return out


# ------------------------------------------------------------------ coordinator
@dataclass(frozen=True)
class Committed:
    """A committed block and the votes the coordinator refused (voter → reject)."""

    block: Block
    refused: dict[bytes, Reject] = field(default_factory=dict)


class _Recent(OrderedDict):
    """A dict that keeps only its ``size`` most recently set entries (a long-running node's memory stays bounded)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        if len(self) > self.size:
            self.popitem(last=False)


class Coordinator:
    """The proposing role of one chain: a coordinator key listed in the genesis ``proposers``.

    Parameters
    ----------
    replica : the coordinator's own copy of the chain (its mempool is the coordinator's).
    key : the coordinator's key pair.
    content : the chain's master content key (the coordinator is entitled to open every reading).
    plausibility : the analytics check (default :class:`RobustWindowCheck`).
    parent : the coordinator's view of the tier above (None at the head-end): price policies not committed there
        are not proposed.
    max_txs : most pending transactions one block takes.
    """

    def __init__(
        self,
        replica: Replica,
        key: KeyPair,
        content: ChainKeys,
        plausibility: Plausibility | None = None,
        parent: ParentView | None = None,
        max_txs: int = 10_000,
    ) -> None:
        self.replica = replica
        self.key = key
        self.content = content
        self.plausibility = plausibility or RobustWindowCheck()
        check_name(self.plausibility.name, "plausibility detector name")
        self.parent = parent
        self.max_txs = max_txs
        self.in_flight: Block | None = None
        #: Why the most recent dropped transactions were refused (txid → reject).
        self.rejected: dict[bytes, Reject] = _Recent(64 * 1024)
        self._plain: dict[bytes, ReadingValues] = _Recent(64 * 1024)
        self._reading_keys: dict[bytes, bytes] = _Recent(64 * 1024)
        self._disclosed: tuple[bytes, dict[bytes, bytes]] = (b"", {})

    @property
    def chain(self) -> Chain:
        return self.replica.chain

    @property
    def pending(self) -> dict[bytes, Transaction]:
        return self.chain.mempool

    def submit(self, tx: Transaction) -> bytes:
        """Queue a transaction (context-free checks first; idempotent by wtxid: see ``Chain.submit``)."""
        return self.chain.submit(tx)

    def values_of(self, reading: Reading) -> ReadingValues:
        """Open a reading with the chain's content key (``Reject`` if it does not open)."""
        cached = self._plain.get(reading.txid)
        if cached is None:
            try:
                cached = open_reading(self.chain.chain_id, reading, self.content.key_of(reading))
            except ReadingError as e:
                raise Reject("bad-reading-content", str(e)) from None
            self._plain[reading.txid] = cached
        return cached

    def propose(self, time: int) -> Block | None:
        """The next block (None if nothing is pending); the same block again while it waits for its votes.

        Transactions that fail a rule are dropped and listed in ``rejected``.
        """
        state = self.chain.state
        if self.in_flight is not None and self.in_flight.height == state.height + 1:
            return self.in_flight
        self.in_flight = None
        time = max(time, state.tip_time)
        slot = state.slot_of(time)
        history: dict[int, list[ReadingValues]] = {}
        accepted: list[Transaction] = []
        taken: set[bytes] = set()
        mark = state.begin_block()
        try:
            for tx in proposal_order(list(self.pending.values())[: self.max_txs]):
                if tx.txid in taken:  # another copy of it is in the block already
                    self.pending.pop(tx.wtxid, None)
                    continue
                tx_mark = state.tx_mark()
                readings = readings_of(tx)
                kept = {r.member: len(history[r.member]) for r in readings if r.member in history}
                try:
                    check_replicated(tx, self.parent)
                    state.apply_tx(tx, slot)
                    alarms = [a for r in readings if (a := self._plausibility_alarm(r, history)) is not None]
                    for alarm in alarms:
                        state.ruleset.check_transaction(alarm)
                        state.apply_tx(alarm, slot)
                except Reject as e:
                    state.rollback(tx_mark)
                    for r in readings:  # the history keeps only the readings of accepted transactions
                        if r.member in kept:
                            del history[r.member][kept[r.member] :]
                        else:
                            history.pop(r.member, None)
                    self.pending.pop(tx.wtxid, None)
                    self.rejected[tx.txid] = e
                    continue
                accepted.append(tx)
                taken.add(tx.txid)
                self.rejected.pop(tx.txid, None)
                accepted.extend(alarms)
        finally:
            state.rollback(mark)
        if not accepted:
            return None
        self.in_flight = make_block(
            self.chain.chain_id, state.height + 1, state.tip_hash, time, tuple(accepted), self.key
        )
        return self.in_flight

    def _plausibility_alarm(self, tx: Reading, history: dict[int, list[ReadingValues]]) -> Alarm | None:
        """The alarm about reading ``tx`` (a READING, or a minute of a batch) if the check finds it implausible."""
        window = self.plausibility.window
        if tx.member not in history:
            history[tx.member] = [self.values_of(r) for r in self.replica.history(tx.member)[-window:]]
        values = self.values_of(tx)
        verdict = self.plausibility.check(values, history[tx.member][-window:] if window else [])
        history[tx.member].append(values)
        if verdict is None:
            return None
        return raise_alarm(
            self.chain.chain_id,
            AlarmCode.IMPLAUSIBLE_READING,
            tx.txid,
            self.chain.height + 1,
            verdict.detector,
            self.key,
        )

    def abandon(self, drop: Iterable[bytes] = ()) -> None:
        """Give up the block in flight (nobody honest voted for it) and drop the transactions ``drop``."""
        self.in_flight = None
        self.chain.forget(set(drop))

    def adopt(self, block: Block) -> None:
        """Take over a block another coordinator left in flight (hand-over: :mod:`.failover`)."""
        self.in_flight = block

    def committee(self, block: Block) -> Committee:
        return committee_for(self.chain.state, block.header)

    def disclose(self, block: Block, member: bytes) -> Disclosure:
        """The per-reading keys committee member ``member`` needs to check ``block``'s readings."""
        if member not in self.committee(block):
            raise Reject("bad-poef-not-member", "disclosures go to the block's committee members only")
        if self._disclosed[0] != block.hash:
            keys = {}
            for reading, before in _history_of(self.replica, block, self.plausibility.window):
                for r in (*before, reading):
                    key = self._reading_keys.get(r.txid)
                    if key is None:
                        key = self._reading_keys[r.txid] = self.content.key_of(r)
                    keys[r.txid] = key
            self._disclosed = (block.hash, keys)
        return Disclosure(block.hash, self._disclosed[1])

    def commit(self, block: Block, votes: Iterable[Vote]) -> Committed:
        """Certify ``block`` with a quorum of valid committee votes and append it (``bad-qc-insufficient`` if not)."""
        committed = self.certify(block, votes)
        self.replica.commit(committed.block)
        self.in_flight = None
        return committed

    def certify(self, block: Block, votes: Iterable[Vote]) -> Committed:
        """``block`` with its quorum certificate, not yet appended (``bad-qc-insufficient`` without a quorum).

        For an ordering service that makes the certified block final first (the node's etcd round,
        :mod:`gridledger.node.poef_net`); every node, this one included, then appends it.
        """
        committee = self.committee(block)
        valid, refused = [], {}
        for vote in votes:
            try:
                check_vote(committee, block.header, vote)
            except Reject as e:
                refused[vote.pubkey] = e
                continue
            valid.append(vote)
        if len({v.pubkey for v in valid}) < committee.required:
            raise Reject(
                "bad-qc-insufficient",
                f"{len(valid)} valid votes; block {block.height}'s committee of {len(committee.keys)} "
                f"needs {committee.required}",
                height=block.height,
            )
        return Committed(dataclasses.replace(block, certificate=certify(committee, valid)), refused)


# ------------------------------------------------------------------ validator
class Validator:
    """The validating role of one committee member (a meter on a NAN, a concentrator on a FAN/WAN, …).

    Parameters
    ----------
    key : the member's key pair (the one the DSO authorized).
    replica : the node's copy of the chain; several validators hosted by one process may share one replica,
        but each re-runs every check of every block it votes on.
    plausibility : the analytics check, the same as the coordinator's.
    parent : the node's view of its coordinator's tier (None at the head-end).
    children : the node's replicas of child chains, by chain id (a concentrator on its FAN/WAN holds its NAN):
        anchors of those chains must match them (:func:`.anchoring.check_anchor_replicated`).
    """

    def __init__(
        self,
        key: KeyPair,
        replica: Replica,
        plausibility: Plausibility | None = None,
        parent: ParentView | None = None,
        children: Mapping[bytes, Replica] | None = None,
    ) -> None:
        self.key = key
        self.replica = replica
        self.plausibility = plausibility or RobustWindowCheck()
        self.parent = parent
        self.children: dict[bytes, Replica] = dict(children or {})
        self._votes: dict[int, tuple[Block, Vote]] = {}
        #: Readings this validator has opened (txid → values): a reading is immutable, so the history a later block
        #: needs is not opened again.
        self._plain: dict[bytes, ReadingValues] = _Recent(16 * 1024)

    def validate(self, block: Block, disclosure: Disclosure | None = None, now: int | None = None) -> Vote | Reject:
        """A vote for ``block``, or the ``Reject`` that says why not; ``now`` is the member's clock (Unix s: no vote
        for a block dated too far ahead of it, ``bad-blk-time-future``)."""
        try:
            return self._validate(block, disclosure, now)
        except Reject as e:
            return e

    def last_vote(self, height: int) -> tuple[Block, Vote] | None:
        """The block this validator voted for at ``height``, with its vote."""
        return self._votes.get(height)

    def _validate(self, block: Block, disclosure: Disclosure | None, now: int | None) -> Vote:
        h = block.header
        prior = self._votes.get(h.height)
        if prior is not None:
            if prior[0].hash != block.hash:
                raise Reject(
                    "bad-poef-equivocation",
                    f"already voted for block {prior[0].hash.hex()[:16]}… at height {h.height}",
                    height=h.height,
                )
            return prior[1]
        state = self.replica.state
        if h.height != state.height + 1 or h.prev_hash != state.tip_hash:
            raise Reject("bad-blk-prev", f"block {h.height} does not extend this node's tip {state.height}")
        if self.key.public not in committee_for(state, h):
            raise Reject("bad-poef-not-member", f"not on the committee of block {h.height}", height=h.height)
        state.apply_block(block, proposal=True, now=now)
        for i, tx in enumerate(block.transactions):
            try:  # located at the transaction: the coordinator drops it and proposes without it
                check_replicated(tx, self.parent)
                check_anchor_replicated(tx, self.children)
            except Reject as e:
                raise e.at(tx_index=i, height=h.height) from None
        try:
            self._check_readings(block, disclosure)
        except Reject as e:
            raise e.at(height=h.height) from None
        vote = Vote(self.key.public, self.key.sign(h.signing_message()))
        self._votes[h.height] = (block, vote)
        for old in [k for k in self._votes if k < h.height - _VOTE_MEMORY]:
            del self._votes[old]
        return vote

    def _check_readings(self, block: Block, disclosure: Disclosure | None) -> None:
        pairs = _history_of(self.replica, block, self.plausibility.window)
        if not pairs:
            return
        if disclosure is None or disclosure.block_hash != block.hash:
            raise Reject("bad-poef-disclosure-missing", "no disclosure of this block's readings")
        proposers = self.replica.state.genesis.proposers
        alarmed = {
            tx.subject
            for tx in block.transactions
            if isinstance(tx, Alarm) and tx.code == AlarmCode.IMPLAUSIBLE_READING and tx.raiser in proposers
        }
        index = {r.txid: i for i, tx in enumerate(block.transactions) for r in readings_of(tx)}
        chain_id = self.replica.state.chain_id
        opened = self._plain

        def values(r: Reading) -> ReadingValues:
            if r.txid not in opened:
                key = disclosure.keys.get(r.txid)
                if key is None:
                    raise Reject("bad-poef-disclosure-missing", f"no key disclosed for reading {r.txid.hex()[:16]}…")
                try:
                    opened[r.txid] = open_reading(chain_id, r, key)
                except ReadingError as e:
                    raise Reject("bad-poef-disclosure", str(e)) from None
            return opened[r.txid]

        for reading, before in pairs:
            verdict = self.plausibility.check(values(reading), [values(r) for r in before])
            if verdict is not None and reading.txid not in alarmed:
                raise Reject(
                    "bad-poef-alarm-missing",
                    f"implausible reading has no alarm: {verdict.reason}",
                    tx_index=index[reading.txid],
                )


# ------------------------------------------------------------------ when to cut a block
@dataclass
class Cadence:
    """When a coordinator cuts its next block: once the previous round is over, as soon as something is pending, but
    not within ``min_interval_s`` seconds of the previous cut unless a full block (``max_txs``) is waiting.

    A fixed block interval makes every transaction wait for the next cut (half an interval on average, a whole one
    at worst) although a round takes a fraction of it; cutting on demand leaves only the round and the lower bound,
    which keeps blocks from shrinking to a transaction or two under a steady stream (each block costs a round of
    the committee's votes and a certificate on every replica).
    """

    min_interval_s: float
    max_txs: int = 10_000
    last_cut: float = float("-inf")

    def due(self, now: float, pending: int) -> bool:
        """Whether to cut at ``now`` (s) with ``pending`` transactions queued (asked when no round is running)."""
        return pending >= self.max_txs or (pending > 0 and now - self.last_cut >= self.min_interval_s)

    def next_at(self) -> float:
        """The earliest time (s) a block of less than ``max_txs`` may be cut."""
        return self.last_cut + self.min_interval_s

    def cut(self, now: float) -> None:
        """A block was cut at ``now`` (s)."""
        self.last_cut = now


# ------------------------------------------------------------------ one round, in process
@dataclass
class Round:
    """What one in-process PoEf round did."""

    block: Block | None
    votes: dict[bytes, Vote | Reject] = field(default_factory=dict)
    committed: Block | None = None
    failure: Reject | None = None
    #: Unix time (s) at which the coordinator committed the block (before the other replicas append it).
    committed_at: float | None = None


def run_round(
    coordinator: Coordinator,
    validators: Mapping[bytes, Validator],
    time: int,
    replicas: Iterable[Replica] = (),
) -> Round:
    """Propose, collect the committee's votes, commit, and append to ``replicas`` (the other nodes' copies).

    Committee members missing from ``validators`` are offline. If the block fails to commit because members found
    a transaction invalid, the coordinator drops it and abandons the block; otherwise (members offline or behind)
    the same block is proposed again next round.
    """
    block = coordinator.propose(time)
    if block is None:
        return Round(None)
    result = Round(block)
    for _, pubkey in coordinator.committee(block).members:
        validator = validators.get(pubkey)
        if validator is not None and pubkey not in result.votes:
            result.votes[pubkey] = validator.validate(block, coordinator.disclose(block, pubkey))
    try:
        committed = coordinator.commit(block, [v for v in result.votes.values() if isinstance(v, Vote)])
    except Reject as e:
        result.failure = e
        bad = {
            block.transactions[r.tx_index].txid
            for r in result.votes.values()
            if isinstance(r, Reject) and r.tx_index is not None and r.tx_index < len(block.transactions)
        }
        if bad:
            coordinator.abandon(bad)
        return result
    result.committed, result.committed_at = committed.block, wall_clock()
    for replica in replicas:
        if replica is not coordinator.replica:
            replica.commit(committed.block)
    return result
