"""CoinShuffle: honest mixes, the blame phase against each deviation, wire formats, the board service."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox

from gridledger.ledger import crypto
from gridledger.ledger.assets import ECA, EPA, FA, Output, outpoint
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds.transfer import Transfer
from gridledger.petra.coinshuffle import (
    B_JOINED,
    P_MESSAGE,
    SPLIT_OPENS,
    Board,
    Envelope,
    MixBoard,
    MixError,
    Participant,
    Phase,
    Reveal,
    Run,
    _EarliestFirst,
    _open_all,
    _shuffled,
    find_offender,
    join_message,
    mix_coin,
)
from gridledger.petra.onion import OnionNode

from .conftest import build_grid, onion_network, participants, run, run_local

UNIT = EPA(500, 1, 2)


def new_board(grid, coins, **kw) -> Board:
    members = [(op, key.public) for key, op in coins]
    unspent = kw.pop("unspent", lambda op: grid.chain.state.output(op) is not None)
    return Board(secrets.token_bytes(16), UNIT, grid.chain_id, members, unspent=unspent, **kw)


def mix(grid, n: int):
    """Mix ``n`` fresh coins honestly; return (board, participants, errors)."""
    coins = grid.coins(UNIT, n)
    parts = participants(grid, coins)
    board = new_board(grid, coins)
    errors = run_local(board, parts)
    return board, parts, errors


# ----------------------------------------------------------------------------------------------- honest
@pytest.mark.parametrize("n", [2, 3, 6])
def test_honest_mix_commits_one_joint_transfer_with_every_fresh_address(grid, n):
    board, parts, errors = mix(grid, n)
    assert not errors and board.runs == 1 and not board.excluded
    tx = board.result
    assert sorted(tx.inputs) == sorted(p.coin for p in parts)
    assert [o.owner for o in tx.outputs] == sorted(p.address for p in parts)
    assert all(o.asset == UNIT for o in tx.outputs)
    grid.commit(tx)  # the chain checks every participant's signature and conservation
    for p in parts:
        assert p.outcome is not None and grid.chain.state.output(p.outcome.coin) == Output(UNIT, p.address)
        assert grid.chain.state.output(p.coin) is None


def test_each_participant_signs_only_its_own_input(grid):
    board, parts, _ = mix(grid, 4)
    tx = board.result
    msg = tx.sighash(grid.chain_id)
    for op, wit in zip(tx.inputs, tx.witnesses, strict=True):
        owner = next(p for p in parts if p.coin == op)
        assert wit.pubkey == owner.key.public and crypto.verify(wit.pubkey, msg, wit.signature)


def test_a_long_peel_on_two_threads_keeps_the_order_and_fails_on_any_bad_entry():
    key = PrivateKey.generate()
    plain = [secrets.token_bytes(20) for _ in range(2 * SPLIT_OPENS + 1)]
    sealed = [SealedBox(key.public_key).encrypt(p) for p in plain]
    assert _open_all(SealedBox(key), sealed) == plain
    for bad in (0, len(sealed) - 1):  # in the half this thread opens, and in the other thread's half
        with pytest.raises(CryptoError):
            _open_all(SealedBox(key), [*sealed[:bad], secrets.token_bytes(68), *sealed[bad + 1 :]])


def test_precompute_runs_the_earliest_position_first_and_hands_back_results_and_errors():
    """Queued while the thread is busy: lowest rank first, ties in arrival order; a cancelled job never runs."""
    worker = _EarliestFirst("test")
    release, ran = threading.Event(), []
    busy = worker.submit(0, release.wait)
    queued = [(5, "a"), (1, "b"), (3, "c"), (1, "d"), (4, "e")]
    jobs = {job: worker.submit(job[0], lambda job=job: ran.append(job) or job) for job in queued}
    assert jobs[(4, "e")].cancel()
    failing = worker.submit(2, lambda: 1 // 0)
    release.set()
    assert busy.result(5) is True
    expected = [(1, "b"), (1, "d"), (3, "c"), (5, "a")]
    assert [jobs[job].result(5) for job in expected] == expected
    with pytest.raises(ZeroDivisionError):
        failing.result(5)
    assert ran == expected


def test_shuffle_is_a_uniform_permutation():
    items = [b"a", b"b", b"c"]
    counts = Counter(tuple(_shuffled(items)) for _ in range(12_000))
    assert len(counts) == 6 and all(sorted(p) == items for p in counts)
    assert all(abs(c - 2_000) < 300 for c in counts.values())  # 7 standard deviations


def test_honest_mix_long_enough_to_split_the_peel():
    grid = build_grid(SPLIT_OPENS + 2)
    board, parts, errors = mix(grid, SPLIT_OPENS + 2)
    assert not errors and board.runs == 1
    assert [o.owner for o in board.result.outputs] == sorted(p.address for p in parts)
    grid.commit(board.result)


@pytest.mark.parametrize("split", [True, False])
def test_a_bad_entry_in_a_long_list_is_blamed_alike_with_the_two_thread_peel_or_without(monkeypatch, split):
    """An undecryptable entry reaching a participant who opens its list on two threads (or, with the split turned
    off, on one) is blamed on the participant who introduced it, with the same reason, and the rerun completes."""
    import gridledger.petra.coinshuffle as coinshuffle

    if not split:
        monkeypatch.setattr(coinshuffle, "SPLIT_OPENS", 10**9)
    n = SPLIT_OPENS + 3
    opened: list[int] = []
    original = coinshuffle._open_all

    def counted(unseal, entries):
        opened.append(len(entries))
        return original(unseal, entries)

    monkeypatch.setattr(coinshuffle, "_open_all", counted)
    grid = build_grid(n)
    coins = grid.coins(UNIT, n)
    order = sorted(participants(grid, coins), key=lambda p: p.key.public)
    position = SPLIT_OPENS + 1  # its garbage reaches the last participant among SPLIT_OPENS + 2 entries
    order[position].__class__ = Garbage
    board = new_board(grid, coins)
    run_local(board, order)
    assert [(ex.pubkey, ex.reason) for ex in board.excluded] == [
        (order[position].key.public, f"introduced an entry that participant {n - 1} cannot decrypt")
    ]
    assert all(p.verdicts[-1] == (position, board.excluded[0].reason) for p in order if p is not order[position])
    assert board.result is not None and len(board.result.inputs) == n - 1
    assert max(opened) >= SPLIT_OPENS  # the long lists went through the (possibly) split peel
    grid.commit(board.result)


def test_no_address_travels_in_clear_before_the_final_list(grid):
    """What the board relays during shuffling holds no output address (every entry is still sealed)."""
    coins = grid.coins(UNIT, 5)
    parts = participants(grid, coins)
    board = new_board(grid, coins)
    seen: list[bytes] = []
    original = board.receive

    def spy(member, data):
        env = Envelope.decode(data[1:])
        if env.phase == Phase.SHUFFLE:
            seen.append(env.body)
        return original(member, data)

    board.receive = spy
    run_local(board, parts)
    assert len(seen) == 4
    for body in seen:
        assert not any(p.address in body for p in parts)


def test_outputs_are_sorted_so_their_order_reveals_nothing(grid):
    coins = grid.coins(UNIT, 3)
    run_ = Run(b"s" * 16, 0, UNIT, tuple(op for _, op in coins), tuple(k.public for k, _ in coins))
    addrs = [bytes([9]) * 20, bytes([1]) * 20, bytes([5]) * 20]
    assert [o.owner for o in run_.transfer(addrs).outputs] == sorted(addrs)
    assert run_.transfer(addrs).txid == run_.transfer(reversed(addrs)).txid


# --------------------------------------------------------------------------------------------- deviants
class Dropper(Participant):
    """Drops one entry it received."""

    def _outgoing(self, peeled, own):
        return super()._outgoing(peeled[1:], own)


class Duplicator(Participant):
    """Passes a copy of a received entry instead of its own."""

    def _outgoing(self, peeled, own):
        return super()._outgoing(peeled, peeled[0] if peeled else own) + ([] if peeled else [own])


class Replacer(Participant):
    """Replaces a received entry by a second entry of its own (keeps the count right)."""

    def _outgoing(self, peeled, own):
        if self.index == self.run.size - 1:
            extra = KeyPair.generate().address
        else:
            from gridledger.petra.coinshuffle import _layered

            extra = _layered(KeyPair.generate().address, self.eks[self.index + 1 :])
        return super()._outgoing([*peeled[1:], extra], own)


class Garbage(Participant):
    """Sends random bytes as its own entry (undecryptable; not an address for the last participant)."""

    def _outgoing(self, peeled, own):
        return super()._outgoing(peeled, secrets.token_bytes(len(own) + 7))


class Refuser(Participant):
    """Never signs the joint transfer."""

    def receive(self, msg):
        out = super().receive(msg)
        return [m for m in out if Envelope.decode(m[1:]).phase != Phase.SIGN]


class BadSigner(Participant):
    """Signs something else."""

    def sign_transfer(self):
        return self.key.sign(b"not the transfer")


class FalseAccuser(Participant):
    """Claims its address is missing from a correct final list."""

    def on_final(self, env):
        good = super().on_final(env)
        return self._send(Phase.VERIFY, b"\x00" + good.body[1:])


class Liar(Participant):
    """Reveals a decryption key that is not the one it announced."""

    def on_blame(self):
        good = Reveal.decode(super().on_blame().body)
        return self._send(Phase.REVEAL, Reveal(secrets.token_bytes(32), good.shuffle, good.final).encode())


@pytest.mark.parametrize(
    ("kind", "position", "reason"),
    [
        (Dropper, 2, "sent 2 entries instead of 3"),
        (Dropper, 4, "sent 4 entries instead of 5"),
        (Duplicator, 2, "duplicated an entry"),
        (Duplicator, 0, "sent 2 entries instead of 1"),
        (Duplicator, 4, "duplicated an entry"),
        (Replacer, 2, "dropped or replaced an entry it received"),
        (Replacer, 4, "dropped or replaced an entry it received"),
        (Garbage, 1, "introduced an entry that participant 2 cannot decrypt"),
        (Garbage, 4, "added something that is not an address to the final list"),
        (FalseAccuser, 3, "complained although every message of the run is consistent"),
        (Refuser, 1, "did not answer in time (SIGN phase)"),
        (BadSigner, 3, "signed the joint transfer invalidly"),
    ],
)
def test_blame_excludes_exactly_the_offender_and_the_rerun_succeeds(grid, kind, position, reason):
    coins = grid.coins(UNIT, 5)
    order = sorted(participants(grid, coins), key=lambda p: p.key.public)  # the order they run in
    offender = order[position]
    offender.__class__ = kind
    board = new_board(grid, coins)
    errors = run_local(board, order)
    assert [ex.pubkey for ex in board.excluded] == [offender.key.public]
    assert board.excluded[0].reason == reason
    assert set(errors) == {offender.key.public} and errors[offender.key.public].code == "mix-aborted"
    assert board.runs == 2 and board.result is not None
    honest = [p for p in order if p is not offender]
    assert sorted(board.result.inputs) == sorted(p.coin for p in honest)
    assert {o.owner for o in board.result.outputs} == {p.address for p in honest}
    grid.commit(board.result)
    if kind not in (Refuser, BadSigner):  # keys were revealed: every honest participant used a fresh address
        assert all(p.outcome.runs == 2 for p in honest)
        assert all(p.verdicts and p.verdicts[-1][0] == position for p in honest)


def test_lying_reveal_is_blamed_before_the_deviation_that_caused_the_blame(grid):
    coins = grid.coins(UNIT, 4)
    order = sorted(participants(grid, coins), key=lambda p: p.key.public)
    order[1].__class__, order[3].__class__ = Garbage, Liar
    board = new_board(grid, coins)
    run_local(board, order)
    assert board.excluded[0].pubkey == order[3].key.public
    assert board.excluded[0].reason == "revealed a decryption key that does not match its announced key"
    # the garbage sender is caught in the next run
    assert board.excluded[1].pubkey == order[1].key.public and board.result is not None


def test_spent_input_during_the_mix_excludes_its_owner(grid):
    coins = grid.coins(UNIT, 4)
    gone = coins[2][1]
    board = new_board(grid, coins, unspent=lambda op: op != gone)
    run_local(board, participants(grid, coins))
    assert [ex.reason for ex in board.excluded] == ["its input was spent elsewhere during the mix"]
    assert gone not in board.result.inputs and len(board.result.inputs) == 3


def test_too_few_left_aborts_the_mix(grid):
    coins = grid.coins(UNIT, 2)
    parts = participants(grid, coins, [Refuser])
    board = new_board(grid, coins)
    errors = run_local(board, parts)
    assert board.failure and board.result is None
    assert {e.code for e in errors.values()} == {"mix-aborted"}


def test_malformed_or_unsigned_message_excludes_its_sender(grid):
    coins = grid.coins(UNIT, 3)
    parts = participants(grid, coins)
    board = new_board(grid, coins)
    board.begin()
    assert board.receive(0, bytes([P_MESSAGE]) + b"junk")
    assert "malformed" in board.excluded[0].reason
    env = board.run.envelope(Phase.ANNOUNCE, 0, bytes(32)).signed(KeyPair.generate())
    board.receive(board.active[0], bytes([P_MESSAGE]) + env.encode())
    assert board.excluded[1].reason == "sent a message not signed by its input key"
    assert parts  # the remaining single member cannot mix
    assert board.failure


def test_out_of_turn_message_excludes_its_sender(grid):
    coins = grid.coins(UNIT, 3)
    parts = sorted(participants(grid, coins), key=lambda p: p.key.public)
    board = new_board(grid, coins)
    starts = board.begin()
    p = parts[2]
    p.receive(starts[2][1])
    early = p._send(Phase.SHUFFLE, b"")
    board.receive(2, bytes([P_MESSAGE]) + early.encode())
    assert board.excluded[0].reason.startswith("sent a SHUFFLE message out of turn")


def test_blame_before_the_keys_are_out_is_out_of_turn(grid):
    coins = grid.coins(UNIT, 3)
    parts = sorted(participants(grid, coins), key=lambda p: p.key.public)
    board = new_board(grid, coins)
    starts = board.begin()
    parts[1].receive(starts[1][1])
    board.receive(1, bytes([P_MESSAGE]) + parts[1]._blame("nothing yet").encode())
    assert board.excluded[0].reason.startswith("sent a BLAME message out of turn (ANNOUNCE phase)")


def test_participant_refuses_a_board_that_swaps_an_announced_key(grid):
    coins = grid.coins(UNIT, 3)
    parts = sorted(participants(grid, coins), key=lambda p: p.key.public)
    r = Run(b"x" * 16, 0, UNIT, tuple(p.coin for p in parts), tuple(p.key.public for p in parts))
    anns = [p.start(r) for p in parts]
    forged = Envelope(r.session, 0, Phase.ANNOUNCE, 2, bytes(32), anns[2].signature)
    out = parts[0].on_announcements([anns[0], anns[1], forged])
    assert out[0].phase == Phase.BLAME and b"not signed" in out[0].body


def test_participant_rejects_a_result_it_did_not_sign(grid):
    board, parts, _ = mix(grid, 3)
    other = Transfer(board.result.inputs, board.result.outputs[:2] + (Output(UNIT, bytes(20)),))
    p = parts[0]
    p.outcome = None
    with pytest.raises(MixError) as e:
        p.receive(bytes([13]) + other.encode())
    assert e.value.code == "mix-bad-result"


def test_participant_rejects_malformed_board_messages(grid):
    coins = grid.coins(UNIT, 2)
    p = participants(grid, coins)[0]
    with pytest.raises(MixError) as e:
        p.receive(bytes([11]) + b"\x01\x02")
    assert e.value.code == "mix-bad-message"


def test_find_offender_without_complaint_finds_nobody(grid):
    coins = grid.coins(UNIT, 3)
    parts = sorted(participants(grid, coins), key=lambda p: p.key.public)
    r = Run(b"y" * 16, 0, UNIT, tuple(p.coin for p in parts), tuple(p.key.public for p in parts))
    anns = [p.start(r) for p in parts]
    outs = [p.on_announcements(anns) for p in parts]
    second = parts[1].on_shuffle(outs[0][0])
    final = parts[2].on_shuffle(second)
    for p in parts:
        p.on_final(final)
    reveals = {i: p.on_blame() for i, p in enumerate(parts)}
    assert find_offender(r, anns, reveals, []) is None
    assert find_offender(r, anns, reveals, [2])[0] == 2


# ------------------------------------------------------------------------------------------ properties
DEVIANTS = [Dropper, Duplicator, Replacer, Garbage, Refuser, BadSigner, FalseAccuser]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(3, 6), data=st.data())
def test_any_single_deviant_is_excluded_and_the_honest_rest_mixes(n, data):
    kind = data.draw(st.sampled_from(DEVIANTS), label="deviation")
    lowest = 1 if kind in (Dropper, Replacer) else 0  # the first participant has nothing to drop or replace
    position = data.draw(st.integers(lowest, n - 1), label="position")
    grid = build_grid(n)
    coins = grid.coins(UNIT, n)
    parts = sorted(participants(grid, coins), key=lambda p: p.key.public)
    parts[position].__class__ = kind
    board = new_board(grid, coins)
    run_local(board, parts)
    assert [ex.pubkey for ex in board.excluded] == [parts[position].key.public]
    assert board.result is not None and len(board.result.inputs) == n - 1
    grid.commit(board.result)


@given(
    session=st.binary(min_size=16, max_size=16),
    run_no=st.integers(0, 2**32 - 1),
    phase=st.sampled_from(list(Phase)),
    sender=st.integers(0, 2**16 - 1),
    body=st.binary(max_size=300),
)
def test_envelope_round_trip_and_signature(session, run_no, phase, sender, body):
    key = KeyPair.from_secret("env")
    env = Envelope(session, run_no, phase, sender, body).signed(key)
    assert Envelope.decode(env.encode()) == env and env.verify(key.public)
    assert not Envelope(session, run_no, phase, sender, body + b"x", env.signature).verify(key.public)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00" * 10,
        bytes(16) + b"\x00\x00\x00\x00\x09\x00\x00\x00\x00\x00\x00" + bytes(64),
        bytes(16) + b"\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x05" + bytes(64),
    ],
)
def test_malformed_envelopes_are_rejected(raw):
    with pytest.raises(Reject):
        Envelope.decode(raw)


# ------------------------------------------------------------------------------------ over onion circuits
def test_mix_over_onion_circuits_and_board_rejections():
    async def scenario():
        grid = build_grid(6)
        onion = await onion_network(5)
        node = await OnionNode(onion.network.endpoint("mixboard")).start()
        submitted = []
        board = MixBoard(node, grid.chain_id, grid.chain.state.output, submitted.append, timeout=2.0)
        coins = grid.coins(UNIT, 4)
        board.expect(UNIT, 4)
        parts = participants(grid, coins)
        clients = [
            await OnionNode(onion.network.endpoint(f"c{i}"), directory=onion.directory).start()
            for i in range(6)
        ]

        async def refused(key, op, denomination, sign_with=None, board_name="mixboard"):
            circuit = await clients[5].open_circuit("mixboard")
            msg = join_message(denomination, op, key, board_name)
            if sign_with is not None:
                msg = msg[:-64] + sign_with.sign(b"x")
            reply = await circuit.request(msg, 5)
            p = Participant(key, op, grid.chain_id, KeyPair.generate)
            with pytest.raises(MixError) as e:
                p.receive(reply)
            return e.value.code

        outcomes = await asyncio.gather(
            *(mix_coin(clients[i], "mixboard", p, UNIT, 20) for i, p in enumerate(parts))
        )
        grid.commit(*submitted)
        assert len(submitted) == 1 and all(grid.chain.state.output(o.coin) for o in outcomes)
        # the board only ever saw exit relays, never a participant's node
        spent_key, spent_op = coins[0]
        fresh = grid.coins(ECA(500, 1, 2), 1)[0]
        assert await refused(spent_key, spent_op, UNIT) == "mix-coin-unspendable"
        assert await refused(KeyPair.generate(), outpoint(bytes(32), 0), UNIT) == "mix-coin-unspendable"
        assert await refused(KeyPair.generate(), fresh[1], ECA(500, 1, 2)) == "mix-not-owner"
        assert await refused(fresh[0], fresh[1], UNIT) == "mix-wrong-denomination"
        assert (
            await refused(fresh[0], fresh[1], ECA(500, 1, 2), sign_with=KeyPair.generate())
            == "mix-bad-signature"
        )
        assert await refused(fresh[0], fresh[1], ECA(500, 1, 2)) == "mix-no-pool"
        board.expect(ECA(500, 1, 2), 2)
        circuit = await clients[4].open_circuit("mixboard")
        await circuit.send(join_message(ECA(500, 1, 2), fresh[1], fresh[0], "mixboard"))
        assert await circuit.recv(5) == bytes([B_JOINED])  # the board acknowledges a coin in its pool
        assert await refused(fresh[0], fresh[1], ECA(500, 1, 2)) == "mix-duplicate"
        assert await refused(fresh[0], fresh[1], ECA(500, 1, 2), board_name="other") == "mix-bad-signature"
        started = await board.close_pool(ECA(500, 1, 2))
        assert started is not None and started.failure  # one coin cannot mix alone
        for n in [node, *clients, *onion.relays]:
            await n.close()

    run(scenario())


def test_equal_denominations_only():
    """A board pools by denomination: FA coins of another amount are a different mix."""
    grid = build_grid(3)
    coins = grid.coins(FA(100), 2)
    board = Board(b"q" * 16, FA(100), grid.chain_id, [(op, k.public) for k, op in coins])
    run_local(board, participants(grid, coins))
    assert all(o.asset == FA(100) for o in board.result.outputs)
    grid.commit(board.result)


# ----------------------------------------------------------------------------------- between processes
def test_mix_between_processes_over_loopback_tcp():
    import multiprocessing as mp

    from gridledger.petra.onion import RelayDescriptor, RelayDirectory

    from .children import new_address, share_book, spawn, tcp_nodes

    grid = build_grid(6)
    coins = grid.coins(UNIT, 6)
    relay_keys = {m: PrivateKey.generate() for m in ("MI1", "MI2", "MI3")}
    descs = [RelayDescriptor.create(m, f"relay-{m}", relay_keys[m], grid.meters[m].key) for m in relay_keys]
    directory = RelayDirectory(descs, grid.chain.state.policy, 0)
    spec = {
        "policy": grid.chain.state.policy.policies[0].encode(),
        "relays": [(d.meter, d.node, d.relay_key, d.signature) for d in descs],
        "chain_id": grid.chain_id,
        "participants": [(f"p{i}", key.seed, op) for i, (key, op) in enumerate(coins[:3])],
    }
    ctx = mp.get_context("spawn")
    ports, peers, results = ctx.Queue(), ctx.Queue(), ctx.Queue()
    child = spawn("mixers", spec, ports, peers, results)

    async def scenario():
        book: dict = {}
        local = [(f"p{i}", None, directory) for i in range(3, 6)]
        nodes = await tcp_nodes(
            [*((f"relay-{m}", k, None) for m, k in relay_keys.items()), ("mixboard", None, None), *local],
            book,
        )
        await share_book(book, ports, peers)
        submitted = []
        board = MixBoard(nodes[3], grid.chain_id, grid.chain.state.output, submitted.append, timeout=20)
        board.expect(UNIT, 6)
        jobs = [
            mix_coin(node, "mixboard", Participant(key, op, grid.chain_id, new_address), UNIT, 60)
            for node, (key, op) in zip(nodes[4:], coins[3:], strict=True)
        ]
        outcomes = await asyncio.gather(*jobs)
        remote = await asyncio.get_running_loop().run_in_executor(None, results.get, True, 60)
        for n in nodes:
            await n.close()
        return submitted, outcomes, remote

    submitted, outcomes, remote = run(scenario())
    child.join(20)
    assert child.exitcode == 0
    assert len(submitted) == 1 and len(submitted[0].inputs) == 6
    assert {o.transfer.txid for o in outcomes} == set(remote) == {submitted[0].txid}
    grid.commit(submitted[0])


@settings(max_examples=200, deadline=None)
@given(msgs=st.lists(st.tuples(st.integers(0, 2), st.binary(max_size=200)), max_size=8))
def test_garbage_never_crashes_the_board_or_a_participant(msgs):
    grid = build_grid(3)
    coins = grid.coins(UNIT, 3)
    parts = participants(grid, coins)
    board = new_board(grid, coins)
    board.begin()
    for member, data in msgs:
        board.receive(member, bytes([P_MESSAGE]) + data)  # at worst the sender is excluded
        with contextlib.suppress(MixError):  # a participant only ever raises MixError
            parts[member].receive(data or b"\x00")


def test_an_early_participant_waits_start_timeout_for_a_late_one():
    """The session starts when the pool is full: ``start_timeout`` covers that wait, ``timeout`` each step after."""

    async def scenario():
        grid = build_grid(4)
        onion = await onion_network(4)
        node = await OnionNode(onion.network.endpoint("mixboard")).start()
        submitted = []
        board = MixBoard(node, grid.chain_id, grid.chain.state.output, submitted.append, timeout=2.0)
        parts = participants(grid, grid.coins(UNIT, 4))
        clients = [
            await OnionNode(onion.network.endpoint(f"c{i}"), directory=onion.directory).start() for i in range(4)
        ]

        async def late(i: int):
            await asyncio.sleep(1.0)
            return await mix_coin(clients[i], "mixboard", parts[i], UNIT, 0.5)

        board.expect(UNIT, 2)
        early = mix_coin(clients[0], "mixboard", parts[0], UNIT, 0.5, start_timeout=10)
        outcomes = await asyncio.gather(early, late(1))
        assert len(submitted) == 1 and {o.address for o in outcomes} <= {out.owner for out in submitted[0].outputs}
        board.expect(UNIT, 2)
        impatient = mix_coin(clients[2], "mixboard", parts[2], UNIT, 0.5)  # no start_timeout: gives up at 0.5 s
        first, _ = await asyncio.gather(impatient, late(3), return_exceptions=True)
        assert isinstance(first, MixError) and first.code == "mix-timeout"
        for n in [node, *clients, *onion.relays]:
            await n.close()

    run(scenario())
