"""CoinShuffle: mixing equal assets to fresh one-time addresses (Ruffing, Moreno-Sanchez, Kate 2014).

PETra mixes the assets a meter issued, so that no one — not the other mixers, not the bid store, not the
DSO — can link a prosumer's meter to the one-time address it later trades from (Laszka et al. 2017,
"anonymous transactions"). Every mix moves ``n`` coins of one **denomination** (the same asset kind, power
and interval, or FA amount) from the participants' input addresses to ``n`` fresh addresses, in one joint
``Transfer`` that every participant signs for its own input only; the chain checks all signatures.

One run, participants ordered by input public key, ``P_0 … P_{n-1}`` (every message signed with the
participant's input key, i.e. the key that owns its coin):

1. *announcement*: each ``P_i`` announces a fresh X25519 encryption key ``ek_i``;
2. *shuffling*: ``P_i`` seals its fresh output address in layers for ``P_{n-1}, …, P_{i+1}`` (libsodium
   sealed boxes; the innermost for ``P_{n-1}``); ``P_0`` sends its onion; each ``P_i`` peels one layer off
   every entry it received, adds its own onion, shuffles, and passes the list on; ``P_{n-1}`` peels the last
   layer, adds its plain address, shuffles, and broadcasts the final list of addresses;
3. *verification*: everyone checks its address is in the final list and broadcasts the list's hash;
4. *transaction*: everyone builds the same joint transfer (its coin's outpoint among the inputs, the final
   addresses, sorted, as outputs) and signs its own input.

**Blame.** On any deviation (a missing, duplicated, replaced or undecryptable entry, a false complaint, a
wrong hash) every participant reveals its decryption key and the signed message it received; everyone then
replays the shuffle (:func:`find_offender`), tracing each entry back to the participant who introduced it,
and names the first participant who broke the protocol. The offender is excluded and the others run again
with fresh keys and fresh addresses (the revealed keys link the old ones). A participant who does not
answer in time, sends a malformed or unsigned message, or does not sign the joint transfer validly, is
excluded too. Messages go through a bulletin board (:class:`Board`, as in the paper's implementation) that
relays them and keeps time; it can delay or stop a mix, but it cannot forge a message or link addresses.

**Why every layer is a sealed box.** A libsodium sealed box draws a fresh X25519 key pair for each box, puts its
public half in clear at the head of the box, and encrypts with XSalsa20-Poly1305 under the X25519 shared key (nonce
from BLAKE2b of both public keys). Precomputing a shared key (``nacl.public.Box``) pays only when one key pair
encrypts many messages, and no key pair does here without breaking the shuffle: one ephemeral key for all layers of
an entry (each with its own nonce) would leave the same public key at the head of the entry after every peel, so
the board and every participant, who see consecutive lists, would follow the entry across each honest shuffler;
one ephemeral key shared by the senders of the layers for one recipient would let each sender open the others'
layers; the sender's announced key would name the sender (the recipient must know which key to use). So a mix
costs ``n (n - 1) / 2`` seals, as many opens and as many announcement checks (``P_i`` checks the keys of the
``n - 1 - i`` later participants, because a board that swapped one could peel that layer), whatever the code
around them; libsodium has no batch Ed25519 verification. ``benchmarks/mix_time.py`` prints that floor.

**Where it runs.** A process may play many participants (a simulation, the benchmark): :func:`mix_coin` does the
announcement checks and the onion on one worker thread per process, lowest position in the shuffle first
(:class:`_EarliestFirst`), and a participant opens a list of ``SPLIT_OPENS`` entries or more on two threads
(libsodium releases the GIL). Neither changes a message or a check.

The protocol logic (:class:`Participant`, :class:`Board`, :func:`find_offender`) is deterministic apart from
fresh keys and shuffles, and free of I/O. :class:`MixBoard` and :func:`mix_coin` run it over onion circuits
(:mod:`gridledger.petra.onion`), in one process or between processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import queue
import secrets
import struct
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import IntEnum

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from gridledger.ledger import crypto
from gridledger.ledger.assets import OUTPOINT_BYTES, Asset, AssetKind, Output, outpoint
from gridledger.ledger.crypto import ADDRESS_BYTES, PUBKEY_BYTES, SIGNATURE_BYTES, KeyPair
from gridledger.ledger.encoding import Reader, Writer
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds import decode_transaction
from gridledger.ledger.kinds.transfer import Transfer, Witness
from gridledger.petra.onion import Circuit, OnionError, OnionNode, Stream, TransportError

_TAG = b"gridledger/coinshuffle/v1"
SESSION_BYTES = 16
KEY_BYTES = 32
#: A participant opens the entries it receives on two threads from this many entries on (libsodium releases
#: the GIL, so a peel of ``i`` entries takes about ``i / 2`` opens of wall time on 2 cores).
SPLIT_OPENS = 16
_threads: dict[str, ThreadPoolExecutor] = {}


def _thread(name: str) -> ThreadPoolExecutor:
    """The process's single worker thread ``name`` (created on first use; work queued on it runs in order)."""
    pool = _threads.get(name)
    if pool is None:
        pool = _threads[name] = ThreadPoolExecutor(1, thread_name_prefix=f"coinshuffle-{name}")
    return pool


class _EarliestFirst:
    """One daemon worker thread that runs the queued job of the lowest rank first (ties in arrival order).

    A process that plays several participants queues their precomputations here ranked by their position in the
    shuffle: ``P_i`` needs its onion when the shuffle reaches it, so the earliest deadline goes first (taken in
    arrival order, one mix of 100 had the shuffle wait at ``P_10`` until 1.0 s, queued behind later participants).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._pid = 0  # the process whose worker thread is running (a forked child starts its own)

    def submit(self, rank: int, job: Callable[[], object]) -> Future:
        """Queue ``job`` at ``rank``; its result (or exception) arrives in the returned future."""
        future: Future = Future()
        self._jobs.put((rank, next(self._order), future, job))
        with self._lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._work, name=f"coinshuffle-{self.name}", daemon=True).start()
        return future

    def _work(self) -> None:
        while True:
            _, _, future, job = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue  # its waiter gave up (e.g. a cancelled mix)
            try:
                future.set_result(job())
            except BaseException as e:  # handed to the waiter, as a ThreadPoolExecutor does
                future.set_exception(e)


_precompute = _EarliestFirst("precompute")


def _shuffled(items: Sequence[bytes]) -> list[bytes]:
    """``items`` in a uniformly random order, sorted by random 128-bit keys drawn in one OS read.

    ``SystemRandom.shuffle`` reads the OS's random source once per item (27 against 135 µs for 100 items).
    """
    noise = secrets.token_bytes(16 * len(items))
    return [items[k] for k in sorted(range(len(items)), key=lambda k: noise[16 * k : 16 * k + 16])]


def _open_all(unseal: SealedBox, entries: Sequence[bytes]) -> list[bytes]:
    """Every entry opened, in order; the second half on the ``peel`` thread (raises ``CryptoError``)."""
    if len(entries) < SPLIT_OPENS:
        return [unseal.decrypt(c) for c in entries]
    half = len(entries) // 2
    rest = _thread("peel").submit(lambda: [unseal.decrypt(c) for c in entries[half:]])
    try:
        first = [unseal.decrypt(c) for c in entries[:half]]
    finally:
        opened = rest.result()
    return first + opened


class MixError(Exception):
    """A mix failed for this participant (``code`` is short and stable, e.g. ``mix-aborted``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Phase(IntEnum):
    """Message kinds of one run."""

    ANNOUNCE = 1
    SHUFFLE = 2
    FINAL = 3
    VERIFY = 4
    SIGN = 5
    BLAME = 6
    REVEAL = 7


_PHASE_OF = {int(p): p for p in Phase}
_ENVELOPE = struct.Struct(f">{SESSION_BYTES}sIBHI")


# ----------------------------------------------------------------------------------------------- wire format
def write_asset(w: Writer, a: Asset) -> Writer:
    return (
        w.u8(a.kind, "asset kind")
        .u64(a.amount, "asset amount")
        .u32(a.start, "asset start")
        .u32(a.end, "asset end")
    )


def read_asset(r: Reader) -> Asset:
    kind = r.u8("asset kind")
    if kind not in {int(k) for k in AssetKind}:
        raise Reject("bad-asset-kind", f"unknown asset kind {kind}")
    return Asset(AssetKind(kind), r.u64("asset amount"), r.u32("asset start"), r.u32("asset end"))


def _write_list(w: Writer, items: Sequence[bytes], what: str) -> Writer:
    w.count(len(items), what)
    for item in items:
        w.blob(item, what)
    return w


def _read_list(r: Reader, what: str) -> list[bytes]:
    return [r.blob(what) for _ in range(r.count(what))]


@dataclass(frozen=True)
class Envelope:
    """One signed protocol message of participant ``sender`` (its index in run ``run`` of ``session``)."""

    session: bytes
    run: int
    phase: Phase
    sender: int
    body: bytes
    signature: bytes = bytes(SIGNATURE_BYTES)

    def key(self) -> tuple[bytes, int, Phase, int]:
        """(session, run, phase, sender): where the message belongs."""
        return self.session, self.run, self.phase, self.sender

    def _header(self) -> bytes:
        try:
            return _ENVELOPE.pack(self.session, self.run, self.phase, self.sender, len(self.body))
        except struct.error as e:
            raise Reject("bad-encoding-overflow", f"envelope field out of range: {e}") from None

    def signing_message(self) -> bytes:
        return crypto.sha256(_TAG + self._header() + self.body)

    def signed(self, key: KeyPair) -> Envelope:
        return Envelope(
            self.session, self.run, self.phase, self.sender, self.body, key.sign(self.signing_message())
        )

    def verify(self, pubkey: bytes) -> bool:
        return crypto.verify(pubkey, self.signing_message(), self.signature)

    def encode(self) -> bytes:
        """``session 16 | run u32 | phase u8 | sender u16 | u32 n | body n | signature 64``."""
        return self._header() + self.body + self.signature

    @classmethod
    def decode(cls, raw: bytes) -> Envelope:
        if len(raw) < _ENVELOPE.size + SIGNATURE_BYTES:
            raise Reject("bad-encoding-truncated", f"envelope of {len(raw)} bytes is too short")
        session, run, phase, sender, n = _ENVELOPE.unpack_from(raw)
        if len(raw) != _ENVELOPE.size + n + SIGNATURE_BYTES:
            raise Reject("bad-encoding-size", f"envelope of {len(raw)} bytes does not hold a {n}-byte body")
        if phase not in _PHASE_OF:
            raise Reject("bad-mix-phase", f"unknown message phase {phase}")
        body = raw[_ENVELOPE.size : _ENVELOPE.size + n]
        return cls(session, run, _PHASE_OF[phase], sender, body, raw[_ENVELOPE.size + n :])


@dataclass(frozen=True)
class Reveal:
    """Body of a REVEAL: the decryption key and the messages its sender received in the run."""

    key: bytes
    shuffle: Envelope | None
    final: Envelope | None

    def encode(self) -> bytes:
        w = Writer().fixed(self.key, KEY_BYTES, "decryption key")
        for env in (self.shuffle, self.final):
            w.u8(int(env is not None))
            if env is not None:
                w.blob(env.encode(), "received message")
        return w.bytes()

    @classmethod
    def decode(cls, raw: bytes) -> Reveal:
        r = Reader(raw)
        key = r.take(KEY_BYTES, "decryption key")
        envs = [Envelope.decode(r.blob("received message")) if r.u8("flag") else None for _ in range(2)]
        r.end("reveal")
        return cls(key, envs[0], envs[1])


@dataclass(frozen=True)
class Run:
    """One run of a mix: the session, the run number, the denomination and the participants in order."""

    session: bytes
    number: int
    denomination: Asset
    inputs: tuple[bytes, ...]
    pubkeys: tuple[bytes, ...]

    @property
    def size(self) -> int:
        return len(self.inputs)

    def transfer(self, addresses: Iterable[bytes]) -> Transfer:
        """The unsigned joint transfer: the inputs to the addresses (sorted, so order says nothing)."""
        return Transfer(self.inputs, tuple(Output(self.denomination, a) for a in sorted(addresses)))

    def envelope(self, phase: Phase, sender: int, body: bytes) -> Envelope:
        return Envelope(self.session, self.number, phase, sender, body)

    def check(self, env: Envelope, phase: Phase, sender: int | None = None) -> str | None:
        """Why ``env`` is not a valid ``phase`` message of this run (from ``sender``), or None."""
        if env.session != self.session or env.run != self.number:
            return "message of another session or run"
        if env.phase != phase:
            return f"expected a {phase.name} message, got {env.phase.name}"
        if not 0 <= env.sender < self.size or (sender is not None and env.sender != sender):
            return f"message claims to come from participant {env.sender}"
        if not env.verify(self.pubkeys[env.sender]):
            return f"message of participant {env.sender} is not signed by its input key"
        return None

    def encode(self) -> bytes:
        w = Writer().fixed(self.session, SESSION_BYTES, "session").u32(self.number, "run")
        write_asset(w, self.denomination).count(self.size, "participants")
        for op, pk in zip(self.inputs, self.pubkeys, strict=True):
            w.fixed(op, OUTPOINT_BYTES, "input").fixed(pk, PUBKEY_BYTES, "input key")
        return w.bytes()

    @classmethod
    def read(cls, r: Reader) -> Run:
        session, number, denomination = r.take(SESSION_BYTES, "session"), r.u32("run"), read_asset(r)
        pairs = r.take_many(r.count("participants"), OUTPOINT_BYTES + PUBKEY_BYTES, "input and input key")
        inputs = tuple(p[:OUTPOINT_BYTES] for p in pairs)
        return cls(session, number, denomination, inputs, tuple(p[OUTPOINT_BYTES:] for p in pairs))


def final_hash(addresses: Sequence[bytes]) -> bytes:
    return crypto.sha256(_TAG + b"final" + b"".join(sorted(addresses)))


def _layered(address: bytes, keys: Sequence[bytes]) -> bytes:
    """``address`` sealed for ``keys[-1]`` first and ``keys[0]`` last (``keys[0]`` peels the outer layer)."""
    data = address
    for ek in reversed(keys):
        data = SealedBox(PublicKey(ek)).encrypt(data)
    return data


# ------------------------------------------------------------------------------------------------ blame
def find_offender(
    run: Run, announcements: Sequence[Envelope], reveals: Mapping[int, Envelope], complainants: Iterable[int]
) -> tuple[int, str] | None:
    """Replay a run from the revealed keys and messages; name the first participant who deviated.

    Every entry of every shuffle list is traced to the participant who introduced it: an entry that the next
    participant cannot decrypt, or that does not end as an address, is its originator's fault; a participant
    who drops, duplicates or replaces entries, or sends the wrong number, is at fault for its own list. If
    every message is consistent, the (lowest-indexed) complainant accused falsely.

    Parameters
    ----------
    run : the run being replayed.
    announcements : the ANNOUNCE envelopes of the run, by sender index (already checked).
    reveals : index → REVEAL envelope of every participant (a non-revealer is excluded before blame).
    complainants : indexes of the participants who complained.

    Returns
    -------
    (offender index, reason), or None if there was no complaint and nothing is wrong.
    """
    n = run.size
    keys: dict[int, PrivateKey] = {}
    shuffle: dict[int, list[bytes]] = {}
    final: list[bytes] | None = None
    final_env: Envelope | None = None
    for i in sorted(reveals):
        why = run.check(reveals[i], Phase.REVEAL, i)
        if why is not None:
            return i, f"invalid reveal ({why})"
        try:
            rv = Reveal.decode(reveals[i].body)
        except Reject as e:
            return i, f"malformed reveal ({e.message})"
        if bytes(PrivateKey(rv.key).public_key) != announcements[i].body:
            return i, "revealed a decryption key that does not match its announced key"
        keys[i] = PrivateKey(rv.key)
        if rv.shuffle is not None:
            if i == 0 or run.check(rv.shuffle, Phase.SHUFFLE, i - 1) is not None:
                return i, "revealed a shuffle message its predecessor did not sign"
            try:
                shuffle[i - 1] = _read_list(Reader(rv.shuffle.body), "ciphertext")
            except Reject:
                return i - 1, "signed a malformed shuffle message"
        if rv.final is not None:
            if run.check(rv.final, Phase.FINAL, n - 1) is not None:
                return i, "revealed a final list the last participant did not sign"
            if final_env is not None and rv.final != final_env:
                return n - 1, "signed two different final lists"
            final_env = rv.final
    if final_env is not None:
        try:
            final = _read_list(Reader(final_env.body), "address")
        except Reject:
            return n - 1, "signed a malformed final list"
    for k in range(n - 1):
        later = (k + 1) in shuffle or (k + 1 == n - 1 and final is not None)
        if k not in shuffle and later:
            return k + 1, "withheld the shuffle message it received"

    entries: list[tuple[bytes, int]] = []
    for i in range(n):
        decrypted = []
        for c, origin in entries:
            try:
                decrypted.append((SealedBox(keys[i]).decrypt(c), origin))
            except CryptoError:
                return origin, f"introduced an entry that participant {i} cannot decrypt"
        if i == n - 1:
            for p, origin in decrypted:
                if len(p) != ADDRESS_BYTES:
                    return origin, "introduced an entry that does not decrypt to an address"
        out = shuffle.get(i) if i < n - 1 else final
        if out is None:
            break
        expected = i + 1 if i < n - 1 else n
        if len(out) != expected:
            return i, f"sent {len(out)} entries instead of {expected}"
        have = Counter(p for p, _ in decrypted)
        sent = Counter(out)
        if any(sent[p] < c for p, c in have.items()):
            return i, "dropped or replaced an entry it received"
        (extra,) = (sent - have).elements()
        if extra in have:
            return i, "duplicated an entry"
        if i == n - 1 and len(extra) != ADDRESS_BYTES:
            return i, "added something that is not an address to the final list"
        origin_of = {p: o for p, o in decrypted} | {extra: i}
        entries = [(c, origin_of[c]) for c in out]
    accusers = sorted(set(complainants))
    if accusers:
        return accusers[0], "complained although every message of the run is consistent"
    return None


@dataclass
class MixOutcome:
    """A participant's result: the committed-to-be joint transfer, its fresh coin, and the runs it took."""

    transfer: Transfer
    coin: bytes
    address: bytes
    runs: int
    verdicts: list[tuple[int, str]]


# ------------------------------------------------------------------------------------------- participant
class Participant:
    """One mixer: owns one coin (``coin`` outpoint, unlocked by ``key``) of the mix's denomination.

    ``new_address`` gives a fresh one-time address of the participant (called once per run). Methods take
    what the board relays and return what to send; nothing here does I/O.
    """

    def __init__(self, key: KeyPair, coin: bytes, chain_id: bytes, new_address: Callable[[], bytes]) -> None:
        self.key = key
        self.coin = coin
        self.chain_id = chain_id
        self.new_address = new_address
        self.run: Run | None = None
        self.index = -1
        self.address = b""
        self.verdicts: list[tuple[int, str]] = []
        self.outcome: MixOutcome | None = None
        self._members: set[bytes] | None = None
        self._announcements: list[Envelope] = []
        self._complainants: set[int] = set()
        self._verdict: tuple[int, str] | None = None

    def start(self, run: Run) -> Envelope:
        """Begin ``run``: a fresh encryption key and a fresh output address; announce the key."""
        if self.coin not in run.inputs or run.pubkeys[run.inputs.index(self.coin)] != self.key.public:
            raise MixError("mix-not-member", "the board started a run without this participant's coin")
        self.run = run
        self.index = run.inputs.index(self.coin)
        self.decryption_key = PrivateKey.generate()
        self.address = self.new_address()
        self.eks: list[bytes] = []
        self.onion = b""
        self.received_shuffle: Envelope | None = None
        self.received_final: Envelope | None = None
        self.final: list[bytes] = []
        self.unsigned: Transfer | None = None  # the joint transfer, once this participant signed it
        return self._send(Phase.ANNOUNCE, bytes(self.decryption_key.public_key))

    def _send(self, phase: Phase, body: bytes) -> Envelope:
        return self.run.envelope(phase, self.index, body).signed(self.key)

    def _blame(self, reason: str) -> Envelope:
        return self._send(Phase.BLAME, reason.encode())

    def on_announcements(self, envs: Sequence[Envelope]) -> list[Envelope]:
        """Record everyone's key; ``P_0`` starts the shuffle.

        The keys of the later participants, to which this participant's onion is sealed, are authenticated
        (a board that swapped one could peel that layer); the others are only checked for form.
        """
        run = self.run
        if len(envs) != run.size:
            return [self._blame(f"{len(envs)} announcements for {run.size} participants")]
        for j, env in enumerate(envs):
            if j > self.index:
                why = run.check(env, Phase.ANNOUNCE, j)
            elif (env.session, env.run, env.phase, env.sender) != run.envelope(Phase.ANNOUNCE, j, b"").key():
                why = f"announcement {j} is not participant {j}'s of this run"
            else:
                why = None
            if why is None and len(env.body) != KEY_BYTES:
                why = "announced key has the wrong size"
            if why is not None:
                return [self._blame(why)]
        self.eks = [env.body for env in envs]
        self.onion = _layered(self.address, self.eks[self.index + 1 :])
        return [self._shuffle_out([])] if self.index == 0 else []

    def _outgoing(self, peeled: list[bytes], own: bytes) -> list[bytes]:
        """The list to pass on: what was peeled plus one's own entry, shuffled."""
        return _shuffled([*peeled, own])

    def _shuffle_out(self, peeled: list[bytes]) -> Envelope:
        if self.index == self.run.size - 1:
            final = self._outgoing(peeled, self.address)
            return self._send(Phase.FINAL, _write_list(Writer(), final, "address").bytes())
        entries = self._outgoing(peeled, self.onion)
        return self._send(Phase.SHUFFLE, _write_list(Writer(), entries, "ciphertext").bytes())

    def on_shuffle(self, env: Envelope) -> Envelope:
        """Peel the predecessor's list, add one's own entry, pass it on (the last broadcasts addresses)."""
        run = self.run
        why = run.check(env, Phase.SHUFFLE, self.index - 1)
        if why is not None:
            return self._blame(why)
        self.received_shuffle = env
        try:
            entries = _read_list(Reader(env.body), "ciphertext")
        except Reject as e:
            return self._blame(f"malformed shuffle message: {e.message}")
        if len(entries) != self.index or len(set(entries)) != len(entries):
            return self._blame(
                f"received {len(entries)} entries ({len(set(entries))} distinct), expected {self.index}"
            )
        try:
            peeled = _open_all(SealedBox(self.decryption_key), entries)
        except CryptoError:
            return self._blame("an entry cannot be decrypted")
        if self.index == run.size - 1 and (
            any(len(p) != ADDRESS_BYTES for p in peeled)
            or len(set(peeled)) != len(peeled)
            or self.address in peeled
        ):
            return self._blame("the peeled entries are not distinct addresses")
        return self._shuffle_out(peeled)

    def on_final(self, env: Envelope) -> Envelope:
        """Check one's address is in the final list; broadcast whether it is, and the list's hash."""
        run = self.run
        why = run.check(env, Phase.FINAL, run.size - 1)
        if why is not None:
            return self._blame(why)
        self.received_final = env
        try:
            self.final = _read_list(Reader(env.body), "address")
        except Reject:
            self.final = []
        ok = (
            len(self.final) == run.size
            and len(set(self.final)) == run.size
            and all(len(a) == ADDRESS_BYTES for a in self.final)
            and self.address in self.final
        )
        body = Writer().u8(int(ok)).fixed(final_hash(self.final), 32, "hash").bytes()
        return self._send(Phase.VERIFY, body)

    def on_verifies(self, envs: Sequence[Envelope]) -> Envelope:
        """If everyone confirmed the same complete list, sign own input of the joint transfer, else complain.

        The board has authenticated each confirmation; a forged one could only make this participant sign a
        transfer that cannot complete (every input must sign the same list, which holds every address).
        """
        good = b"\x01" + final_hash(self.final)
        if len(envs) != self.run.size or any(env.body != good for env in envs):
            return self._blame("not every participant confirmed the same final list")
        return self._send(Phase.SIGN, self.sign_transfer())

    def sign_transfer(self) -> bytes:
        """This participant's signature of the joint transfer (its own input only)."""
        self.unsigned = self.run.transfer(self.final)
        return self.key.sign(self.unsigned.sighash(self.chain_id))

    def on_blame(self) -> Envelope:
        """Reveal the run's decryption key and the messages received, so everyone can replay the run."""
        return self._send(
            Phase.REVEAL,
            Reveal(bytes(self.decryption_key), self.received_shuffle, self.received_final).encode(),
        )

    def on_reveals(
        self, announcements: Sequence[Envelope], reveals: Mapping[int, Envelope], complainants: Iterable[int]
    ) -> tuple[int, str] | None:
        """Replay the run and remember whom it blames (the board must exclude that participant)."""
        verdict = find_offender(self.run, announcements, reveals, complainants)
        if verdict is not None:
            self.verdicts.append(verdict)
        return verdict

    def new_coin(self, tx: Transfer) -> bytes:
        """The outpoint of this participant's fresh coin in the committed joint transfer."""
        return outpoint(tx.txid, tx.outputs.index(Output(self.run.denomination, self.address)))

    def receive(self, msg: bytes) -> list[bytes]:
        """Handle one message of the board; return the messages to send back.

        Sets :attr:`outcome` when the joint transfer is complete. Raises :class:`MixError` if the board
        refuses the coin, aborts or excludes this participant, sends something malformed, adds members to a
        rerun, or excludes someone other than whom this participant's own replay blamed.
        """
        try:
            return [bytes([P_MESSAGE]) + env.encode() for env in self._dispatch(msg)]
        except (Reject, IndexError, ValueError, UnicodeDecodeError) as e:
            raise MixError("mix-bad-message", f"malformed message from the board: {e}") from None

    def _dispatch(self, msg: bytes) -> list[Envelope]:
        kind, r = msg[0], Reader(msg[1:])
        if kind == B_ERROR:
            raise MixError(r.name("code"), r.blob("message").decode())
        if kind == B_JOINED:
            return []
        if kind == B_ABORT:
            raise MixError("mix-aborted", msg[1:].decode())
        if kind == B_DONE:
            tx = decode_transaction(msg[1:])
            signed = self.unsigned if self.run is not None else None
            if not isinstance(tx, Transfer) or signed is None or tx.txid != signed.txid:
                raise MixError("mix-bad-result", "the board's joint transfer is not the one signed")
            self.outcome = MixOutcome(tx, self.new_coin(tx), self.address, self.run.number + 1, self.verdicts)
            return []
        if kind == B_START:
            run = Run.read(r)
            excluded = {r.take(PUBKEY_BYTES, "key"): r.blob("reason").decode() for _ in range(r.count())}
            r.end("start")
            if self._members is not None and not set(run.pubkeys) <= self._members:
                raise MixError("mix-bad-run", "the board added participants to a rerun")
            if self._verdict is not None and self.run.pubkeys[self._verdict[0]] not in excluded:
                raise MixError("mix-bad-blame", "the board did not exclude the participant the replay blamed")
            self._members, self._verdict = set(run.pubkeys), None
            return [self.start(run)]
        if kind != B_RELAY or self.run is None:
            return []
        phase = Phase(r.u8("phase"))
        envs = [Envelope.decode(b) for b in _read_list(r, "env")]
        if phase == Phase.ANNOUNCE:
            self._announcements = envs
            return self.on_announcements(envs)
        if phase == Phase.SHUFFLE:
            return [self.on_shuffle(envs[0])]
        if phase == Phase.FINAL:
            return [self.on_final(envs[0])]
        if phase == Phase.VERIFY:
            return [self.on_verifies(envs)]
        if phase == Phase.BLAME:
            self._complainants = {e.sender for e in envs if self.run.check(e, e.phase, e.sender) is None}
            return [self.on_blame()]
        self._verdict = self.on_reveals(self._announcements, {e.sender: e for e in envs}, self._complainants)
        return []


# --------------------------------------------------------------------------------------------- board
#: Board → participant message kinds (``B_JOINED``: the coin is in the pool, the session starts when it fills).
B_ERROR, B_START, B_RELAY, B_DONE, B_ABORT, B_JOINED = 10, 11, 12, 13, 14, 15
#: Participant → board message kinds.
P_JOIN, P_MESSAGE = 1, 2
#: A standby mix board's refusal of a join (its bid store is not the market's active one; cf. ``bid-not-active``).
MIX_NOT_ACTIVE = "mix-not-active"
_ANNOUNCEMENTS = bytes([B_RELAY, Phase.ANNOUNCE])


@dataclass
class Exclusion:
    pubkey: bytes
    reason: str


@dataclass
class Board:
    """The bulletin board of one mix session: relays messages, keeps time, excludes, reruns, assembles.

    Members are identified by their position in ``members`` ((outpoint, input public key) pairs, sorted by
    public key). :meth:`begin`, :meth:`receive` and :meth:`timeout` return ``(member, message)`` pairs to
    send. When a run completes, ``result`` holds the fully signed joint transfer; ``failure`` says why the
    mix gave up (fewer than ``min_participants`` left).
    """

    session: bytes
    denomination: Asset
    chain_id: bytes
    members: list[tuple[bytes, bytes]]
    min_participants: int = 2
    unspent: Callable[[bytes], bool] = field(default=lambda op: True)
    active: list[int] = field(init=False)
    excluded: list[Exclusion] = field(default_factory=list)
    result: Transfer | None = None
    failure: str | None = None
    progress: int = 0
    runs: int = 0

    def __post_init__(self) -> None:
        self.members = sorted(self.members, key=lambda m: m[1])
        self.active = list(range(len(self.members)))
        self.run: Run | None = None

    @property
    def done(self) -> bool:
        return self.result is not None or self.failure is not None

    # ---------------------------------------------------------------- helpers
    def _broadcast(self, kind: int, body: bytes) -> list[tuple[int, bytes]]:
        return [(m, bytes([kind]) + body) for m in self.active]

    def _relay(self, phase: Phase, envs: Sequence[Envelope], to: Iterable[int] | None = None) -> list:
        body = bytes([B_RELAY]) + _write_list(Writer().u8(phase), [e.encode() for e in envs], "env").bytes()
        return [(m, body) for m in (self.active if to is None else to)]

    def _start(self) -> list[tuple[int, bytes]]:
        if len(self.active) < self.min_participants:
            self.failure = (
                f"only {len(self.active)} participants left; at least {self.min_participants} needed"
            )
            return self._broadcast(B_ABORT, self.failure.encode())
        self.runs += 1
        ops, pks = zip(*(self.members[m] for m in self.active), strict=True)
        self.run = Run(self.session, self.runs - 1, self.denomination, ops, pks)
        self.phase = Phase.ANNOUNCE
        self.waiting = set(range(self.run.size))
        self.collected: dict[int, Envelope] = {}
        self.announcements: list[Envelope] = []
        self.verifies: list[Envelope] = []
        self.complainants: set[int] = set()
        self.final: list[bytes] = []
        self.unsigned: Transfer | None = None
        w = Writer().raw(self.run.encode()).count(len(self.excluded), "excluded")
        for ex in self.excluded:
            w.fixed(ex.pubkey, PUBKEY_BYTES, "excluded key").blob(ex.reason.encode(), "reason")
        return self._broadcast(B_START, w.bytes())

    def _exclude(self, indexes: Iterable[int], reason: str) -> list[tuple[int, bytes]]:
        members = [self.active[i] for i in sorted(set(indexes))]
        for m in members:
            self.excluded.append(Exclusion(self.members[m][1], reason))
        self.active = [m for m in self.active if m not in members]
        told = [(m, bytes([B_ABORT]) + f"excluded from the mix: {reason}".encode()) for m in members]
        return told + self._start()

    def begin(self) -> list[tuple[int, bytes]]:
        return [] if self.run is not None else self._start()

    # ---------------------------------------------------------------- events
    def timeout(self) -> list[tuple[int, bytes]]:
        """The current phase's deadline passed: exclude everyone the board is still waiting for."""
        if self.done or not self.waiting:
            return []
        return self._exclude(self.waiting, f"did not answer in time ({self.phase.name} phase)")

    def receive(self, member: int, data: bytes) -> list[tuple[int, bytes]]:
        """Handle one message from ``member``; returns what to send."""
        if self.done or self.run is None or member not in self.active or data[:1] != bytes([P_MESSAGE]):
            return []
        index = self.active.index(member)
        try:
            env = Envelope.decode(data[1:])
        except Reject as e:
            return self._exclude([index], f"sent a malformed message ({e.message})")
        if env.session != self.session or env.run != self.run.number:
            return []  # late message of an earlier run: harmless
        if env.sender != index or not env.verify(self.run.pubkeys[index]):
            return self._exclude([index], "sent a message not signed by its input key")
        if env.phase == Phase.BLAME and self.phase == Phase.REVEAL:
            return []  # blame is already under way
        if env.phase == Phase.BLAME and self.phase != Phase.ANNOUNCE:  # before the keys, nothing to blame
            self.progress += 1
            self.complainants.add(index)
            self.collected = {index: env}
            return self._enter_blame()
        expected = {Phase.SHUFFLE: Phase.FINAL if index == self.run.size - 1 else Phase.SHUFFLE}.get(
            self.phase, self.phase
        )
        if env.phase != expected or index not in self.waiting:
            return self._exclude(
                [index], f"sent a {env.phase.name} message out of turn ({self.phase.name} phase)"
            )
        self.progress += 1
        self.waiting.discard(index)
        self.collected[index] = env
        return self._advance(index, env)

    def _advance(self, index: int, env: Envelope) -> list[tuple[int, bytes]]:
        run = self.run
        if self.phase == Phase.ANNOUNCE:
            if self.waiting:
                return []
            self.announcements = [self.collected[i] for i in range(run.size)]
            self.phase, self.waiting = Phase.SHUFFLE, {0}
            return self._relay(Phase.ANNOUNCE, self.announcements)
        if self.phase == Phase.SHUFFLE and env.phase == Phase.SHUFFLE:
            self.waiting = {index + 1}
            return self._relay(Phase.SHUFFLE, [env], [self.active[index + 1]])
        if self.phase == Phase.SHUFFLE:  # the final list
            try:
                self.final = _read_list(Reader(env.body), "address")
            except Reject:
                self.final = []
            self.phase, self.waiting, self.collected = Phase.VERIFY, set(range(run.size)), {}
            return self._relay(Phase.FINAL, [env])
        if self.phase == Phase.VERIFY:
            if self.waiting:
                return []
            self.verifies = [self.collected[i] for i in range(run.size)]
            good = b"\x01" + final_hash(self.final)
            self.complainants = {i for i, e in enumerate(self.verifies) if e.body != good}
            if self.complainants:
                self.collected = {i: self.verifies[i] for i in self.complainants}
                return self._enter_blame()
            self.phase, self.waiting, self.collected = Phase.SIGN, set(range(run.size)), {}
            return self._relay(Phase.VERIFY, self.verifies)
        if self.phase == Phase.SIGN:
            return self._on_signature(index, env)
        # REVEAL
        if self.waiting:
            return []
        reveals = dict(self.collected)
        out = self._relay(Phase.REVEAL, [reveals[i] for i in range(run.size)])
        verdict = find_offender(run, self.announcements, reveals, self.complainants)
        offender, reason = verdict if verdict is not None else (min(self.complainants), "blame without cause")
        return out + self._exclude([offender], reason)

    def _enter_blame(self) -> list[tuple[int, bytes]]:
        complaints = [self.collected[i] for i in sorted(self.collected)]
        self.phase, self.waiting, self.collected = Phase.REVEAL, set(range(self.run.size)), {}
        return self._relay(Phase.BLAME, complaints)

    def _on_signature(self, index: int, env: Envelope) -> list[tuple[int, bytes]]:
        run = self.run
        if self.unsigned is None:  # built once per run: a 100-input transfer takes about 1 ms to encode and hash
            self.unsigned = run.transfer(self.final)
            self.sign_message = self.unsigned.sighash(self.chain_id)
        if len(env.body) != SIGNATURE_BYTES or not crypto.verify(run.pubkeys[index], self.sign_message, env.body):
            return self._exclude([index], "signed the joint transfer invalidly")
        if self.waiting:
            return []
        spent = [i for i, op in enumerate(run.inputs) if not self.unspent(op)]
        if spent:
            return self._exclude(spent, "its input was spent elsewhere during the mix")
        witnesses = tuple(Witness(run.pubkeys[i], self.collected[i].body) for i in range(run.size))
        self.result = Transfer(self.unsigned.inputs, self.unsigned.outputs, witnesses)
        return self._broadcast(B_DONE, self.result.encode())


# --------------------------------------------------------------------------------------- network runners
def join_message(denomination: Asset, coin: bytes, key: KeyPair, board: str) -> bytes:
    """A JOIN request: the coin, its owner key, and a signature proving control of the coin."""
    return (
        Writer()
        .u8(P_JOIN)
        .raw(_join_body(denomination, coin, key.public, board))
        .fixed(key.sign(_join_signed(denomination, coin, key.public, board)), SIGNATURE_BYTES, "signature")
        .bytes()
    )


def _join_body(denomination: Asset, coin: bytes, pubkey: bytes, board: str) -> bytes:
    return (
        write_asset(Writer(), denomination)
        .fixed(coin, OUTPOINT_BYTES, "coin")
        .fixed(pubkey, 32, "key")
        .bytes()
    )


def _join_signed(denomination: Asset, coin: bytes, pubkey: bytes, board: str) -> bytes:
    return crypto.sha256(_TAG + b"join" + board.encode() + _join_body(denomination, coin, pubkey, board))


async def mix_coin(
    node: OnionNode,
    board: str,
    participant: Participant,
    denomination: Asset,
    timeout: float = 30.0,
    circuit: Circuit | None = None,
    start_timeout: float | None = None,
) -> MixOutcome:
    """Join the mix of ``denomination`` on ``board`` through an onion circuit and run CoinShuffle to the end.

    ``timeout``: seconds to wait for each message of the board; ``start_timeout``: for the session to start (it
    starts only when the pool is full or closed), if longer. The announcements (the participant's precomputation)
    are handled on the process's ``precompute`` thread, one participant after another, lowest position in the
    shuffle first (:class:`_EarliestFirst`), so that the event loop keeps relaying other participants' shuffle
    steps meanwhile (libsodium releases the GIL).

    Raises :class:`MixError` if the board refuses the coin, the mix is aborted, the board excludes this
    participant, or the board excludes someone other than whom this participant's own replay blamed.
    """
    own_circuit = circuit is None
    if circuit is None:
        circuit = await node.open_circuit(board)
    try:
        await circuit.send(join_message(denomination, participant.coin, participant.key, board))
        wait = max(timeout, start_timeout or 0)  # the first answer comes when the board starts the session
        while participant.outcome is None:
            try:
                msg = await circuit.recv(wait)
                if msg[:1] != bytes([B_JOINED]):  # the join's acknowledgement comes before the session starts
                    wait = timeout
            except OnionError as e:
                raise MixError("mix-timeout", str(e)) from None
            if msg[:2] == _ANNOUNCEMENTS:  # check n - 1 - i keys, seal as many layers: off the event loop
                job = _precompute.submit(participant.index, lambda m=msg: participant.receive(m))
                outs = await asyncio.wrap_future(job)
            else:
                outs = participant.receive(msg)
            for out in outs:
                await circuit.send(out)
        return participant.outcome
    finally:
        if own_circuit:
            await circuit.close()


@dataclass
class _Pool:
    target: int
    joined: dict[bytes, tuple[bytes, Stream]] = field(default_factory=dict)


class MixBoard:
    """A bulletin board service on an onion node: pools coins by denomination and runs sessions.

    Parameters
    ----------
    node : the board's onion node (it must :meth:`~OnionNode.start`; this serves on it).
    chain_id : the chain the joint transfers are for.
    utxo : reads an unspent output by outpoint (e.g. ``chain.state.output``), to check joining coins.
    submit : called with each completed, fully signed joint transfer (e.g. ``chain.submit``).
    timeout : seconds a phase may stall before the board excludes who it waits for.
    min_participants : smallest mix the board runs.
    active : whether the board takes new joins now (a standby board refuses them with ``mix-not-active``; sessions
        already running go on).
    refused : counts every refusal by its code (default: a new counter; a bid store passes its own).
    """

    def __init__(
        self,
        node: OnionNode,
        chain_id: bytes,
        utxo: Callable[[bytes], Output | None],
        submit: Callable[[Transfer], object | Awaitable[object]],
        timeout: float = 5.0,
        min_participants: int = 2,
        active: Callable[[], bool] = lambda: True,
        refused: Counter[str] | None = None,
    ) -> None:
        self.node = node
        self.active = active
        self.refused: Counter[str] = Counter() if refused is None else refused
        self.chain_id = chain_id
        self.utxo = utxo
        self.submit = submit
        self.timeout = timeout
        self.min_participants = min_participants
        self.pools: dict[Asset, _Pool] = {}
        self.sessions: list[Board] = []
        self._routes: dict[tuple[str, bytes], tuple[Board, int, list[Stream]]] = {}
        self._submitted: set[int] = set()
        self.finished: asyncio.Queue[Board] = asyncio.Queue()
        self._tasks: set[asyncio.Task] = set()
        node.serve(self._on_stream)

    def expect(self, denomination: Asset, count: int) -> None:
        """Start a session as soon as ``count`` coins of ``denomination`` have joined."""
        self.pools.setdefault(denomination, _Pool(count)).target = count

    async def close_pool(self, denomination: Asset) -> Board | None:
        """Start a session now with the coins that joined so far (None if none did)."""
        pool = self.pools.pop(denomination, None)
        if pool is None or not pool.joined:
            return None
        return await self._launch(denomination, pool)

    async def _error(self, stream: Stream, code: str, message: str) -> None:
        self.refused[code] += 1
        await stream.reply(Writer().u8(B_ERROR).name(code).blob(message.encode()).bytes())

    async def _on_stream(self, stream: Stream, data: bytes) -> None:
        route = self._routes.get((stream.exit_relay, stream.stream_id))
        if route is not None:
            board, member, streams = route
            await self._send(board, streams, board.receive(member, data))
            return
        if data[:1] != bytes([P_JOIN]):
            return await self._error(stream, "mix-not-joined", "send JOIN first")
        if not self.active():
            return await self._error(stream, MIX_NOT_ACTIVE, "this mix board is on standby: join the other store's")
        try:
            r = Reader(data[1:])
            denomination, coin, pubkey = read_asset(r), r.take(OUTPOINT_BYTES, "coin"), r.take(32, "key")
            signature = r.take(SIGNATURE_BYTES, "signature")
            r.end("join")
        except Reject as e:
            return await self._error(stream, "mix-bad-join", e.message)
        out = self.utxo(coin)
        pool = self.pools.get(denomination)
        if out is None:
            return await self._error(stream, "mix-coin-unspendable", "the coin is unknown or already spent")
        if out.owner != crypto.address_of(pubkey):
            return await self._error(stream, "mix-not-owner", "the key does not own the coin")
        if out.asset != denomination:
            return await self._error(stream, "mix-wrong-denomination", f"the coin is {out.asset.describe()}")
        if not crypto.verify(pubkey, _join_signed(denomination, coin, pubkey, self.node.name), signature):
            return await self._error(
                stream, "mix-bad-signature", "the join is not signed by the coin's owner"
            )
        if pool is None:
            return await self._error(stream, "mix-no-pool", f"no mix open for {denomination.describe()}")
        if coin in pool.joined or any(pk == pubkey for pk, _ in pool.joined.values()):
            return await self._error(stream, "mix-duplicate", "the coin or key already joined this mix")
        pool.joined[coin] = (pubkey, stream)
        full = len(pool.joined) >= pool.target
        if full:
            del self.pools[denomination]
        # the acknowledgement also opens the board's connection to the exit relay while the pool fills
        with contextlib.suppress(TransportError):
            await stream.reply(bytes([B_JOINED]))
        if full:
            await self._launch(denomination, pool)
        return None

    async def _launch(self, denomination: Asset, pool: _Pool) -> Board:
        members = [(coin, pk) for coin, (pk, _) in pool.joined.items()]
        board = Board(
            secrets.token_bytes(SESSION_BYTES),
            denomination,
            self.chain_id,
            members,
            self.min_participants,
            lambda op: self.utxo(op) is not None,
        )
        streams = [pool.joined[coin][1] for coin, _ in board.members]
        for member, stream in enumerate(streams):
            self._routes[(stream.exit_relay, stream.stream_id)] = (board, member, streams)
        self.sessions.append(board)
        task = asyncio.create_task(self._watch(board, streams))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await self._send(board, streams, board.begin())
        return board

    async def _send(self, board: Board, streams: list[Stream], outs: list[tuple[int, bytes]]) -> None:
        if board.result is not None and id(board) not in self._submitted:
            self._submitted.add(id(board))
            res = self.submit(board.result)
            if asyncio.iscoroutine(res):
                await res
        for member, data in outs:
            with contextlib.suppress(TransportError):  # a broken circuit: that participant times out
                await streams[member].reply(data)
        if board.done:
            self.finished.put_nowait(board)
            for s in streams:
                self._routes.pop((s.exit_relay, s.stream_id), None)

    async def _watch(self, board: Board, streams: list[Stream]) -> None:
        while not board.done:
            seen = board.progress, board.runs
            await asyncio.sleep(self.timeout)
            if not board.done and (board.progress, board.runs) == seen:
                await self._send(board, streams, board.timeout())
