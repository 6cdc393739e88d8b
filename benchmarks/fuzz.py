"""Fuzzing of every decoder and of the node API: mutated valid inputs, counted, and every crash reported.

Targets (each with its documented error type; a *crash* is any other exception, or an HTTP 5xx):

* ``tx-<kind>`` for every transaction kind — ``decode_transaction``, the rule set's context-free checks, then the
  contextual rules applied to the tip of a PETra chain and of a NAN, FAN and head-end chain (rolled back): ``Reject``.
* ``block`` — ``Block.decode`` then ``apply_block`` against the parent of the seed block; the decoded transactions
  are also re-signed into a valid header and validated as a proposal (every transaction rule runs): ``Reject``.
* ``qc`` — a NAN block and its quorum certificate: ``Block.decode`` then ``check_block_certificate``: ``Reject``.
* ``mqtt-envelope`` — a device's MQTT envelope (``twin.envelope.parse``, verify, decrypt) whose payload is a SmartPi
  measurement (``twin.smartpi.parse_measurement``): ``EnvelopeRejected``, ``SmartPiFormatError``.
* ``mqtt-smartpi`` — SmartPi's measurement JSON alone: ``ValueError`` (JSON) and ``SmartPiFormatError``.
* ``mqtt-announce``, ``mqtt-access`` — ``twin.messages.Announce.parse`` / ``AccessRequest.parse``: ``MessageError``.
* ``onion-cell`` — cells to a relay (``petra.onion.OnionNode``, on an in-process network): nothing may escape.
* ``bidstore`` — requests to the bid store's onion service (``BidStoreService.handle``): nothing may escape.
* ``api`` — every route of a node's API but ``/v1/stream`` (FastAPI's test client, requests signed by a registered
  meter, so they pass authentication): mutated paths, query strings and transaction bodies; no answer may be 5xx.

The mutation engine flips bits, sets interesting bytes, inserts, deletes, duplicates and splices chunks of the
seeds (seeded RNG: a run is reproducible). With ``atheris`` installed (``pip install atheris==3.0.0``), each decoder
target also runs coverage-guided for ``ATHERIS_SECONDS`` in its own process.

Run: ``.venv/bin/python benchmarks/fuzz.py`` (``SECONDS_PER_TARGET`` each). Prints per-target counts, then
``fuzz_inputs = N`` (all targets) and ``fuzz_crashes = N``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from gridledger.chain import Chain
from gridledger.ledger.assets import EPA, FA, Output, outpoint
from gridledger.ledger.block import Block, make_block
from gridledger.ledger.committee import check_block_certificate
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds import decode_transaction
from gridledger.ledger.kinds.alarm import AlarmCode, raise_alarm
from gridledger.ledger.kinds.dso_policy import MeterLimits
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.ledger.kinds.meter_issue import MeterIssue
from gridledger.ledger.kinds.reward import make_reward
from gridledger.ledger.kinds.transfer import Transfer
from gridledger.ledger.state import LedgerState
from gridledger.ledger.transactions import TxKind
from gridledger.petra.dso import DSO
from gridledger.store.sqlite import SqliteStore

SECONDS_PER_TARGET = 20.0
ATHERIS_SECONDS = 20
START = 1_767_225_600
INTERESTING = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0xFE, 0x20, 0x30)


# ------------------------------------------------------------------------------------------------ mutation
def mutate(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    """One to four random edits of ``data`` (bit flip, interesting byte, insert, delete, duplicate, splice)."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        n = len(b)
        if op == 0 and n:
            b[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            b[rng.randrange(n)] = rng.choice(INTERESTING)
        elif op == 2:
            i = rng.randint(0, n)
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 3 and n:
            i = rng.randrange(n)
            del b[i : i + rng.randint(1, 16)]
        elif op == 4 and n:
            i = rng.randrange(n)
            chunk = b[i : i + rng.randint(1, 32)]
            j = rng.randint(0, n)
            b[j:j] = chunk
        elif op == 5:
            other = rng.choice(seeds)
            if other:
                i, j = rng.randrange(len(other)), rng.randint(0, n)
                b[j:] = other[i:]
        elif op == 6 and n:
            del b[rng.randint(0, n - 1) :]  # truncate
    return bytes(b)


@dataclass
class Target:
    """One fuzzed entry point: ``run(data)`` may raise only ``allowed``."""

    name: str
    seeds: list[bytes]
    run: Callable[[bytes], None]
    allowed: tuple[type[BaseException], ...]
    coverage_guided: bool = True  # worth running under atheris (a pure decoder, no event loop or HTTP)
    close: Callable[[], None] = lambda: None


@dataclass
class Result:
    name: str
    inputs: int = 0
    crashes: list[tuple[bytes, str]] = field(default_factory=list)


def fuzz(target: Target, *, seconds: float | None = None, inputs: int | None = None, seed: int = 1) -> Result:
    """Feed ``target`` its seeds, then mutations of them, for ``seconds`` or ``inputs`` (whichever comes first)."""
    rng, res = random.Random(seed), Result(target.name)
    end = None if seconds is None else time.monotonic() + seconds
    corpus = list(target.seeds)
    k = 0
    while (inputs is None or k < inputs) and (end is None or k % 64 or time.monotonic() < end):
        data = corpus[k] if k < len(target.seeds) else mutate(rng, rng.choice(corpus), corpus)
        k += 1
        try:
            target.run(data)
        except target.allowed:
            pass
        except Exception:  # noqa: BLE001 - anything else is exactly what a fuzzer looks for
            res.crashes.append((data, traceback.format_exc()))
    res.inputs = k
    return res


# ------------------------------------------------------------------------------------------------ worlds
@dataclass
class Worlds:
    """Valid chains to take seeds from and to apply mutated inputs to."""

    petra: Chain
    tiers: dict[str, Chain]
    dso_key: KeyPair
    coordinator: KeyPair
    #: Each chain's coordinator key, by chain id.
    signers: dict[bytes, KeyPair]

    def states(self) -> list[LedgerState]:
        return [self.petra.state, *(self.tiers[n].state for n in ("nan", "fan", "head"))]

    def txs(self) -> list:
        return [tx for c in (self.petra, *self.tiers.values()) for b in c.blocks() for tx in b.transactions]


def _commit(chain: Chain, key: KeyPair, time_s: int, *txs) -> None:
    for tx in txs:
        chain.submit(tx)
    res = chain.propose(key, time_s)
    assert res.block is not None and not res.rejected, [str(e) for e in res.rejected.values()]


def build_worlds(folder: Path) -> Worlds:
    """A PETra chain (policy, meter issue, transfer) and a small multi-tier ledger (readings, anchors)."""
    from gridledger.tiers.hierarchy import Hierarchy

    dso_key, coordinator = KeyPair.from_secret("fuzz-dso"), KeyPair.from_secret("fuzz-coordinator")
    genesis = Genesis("fuzz-petra", 900, START, dso_key.public, (coordinator.public,))
    petra = Chain.create(SqliteStore(folder / "petra.sqlite", durable=False), genesis, coordinator, START)
    dso, meter, owner = DSO(dso_key, petra.chain_id), KeyPair.from_secret("fuzz-meter"), KeyPair.generate()
    lim = [MeterLimits("MI1", 5_000, 5_000, 100_000)]
    _commit(petra, coordinator, START + 1, dso.policy(0, prices=(120, 80), authorize={"MI1": meter.public}, limits=lim))
    issue = MeterIssue("MI1", 1, (Output(EPA(1_000, 1, 3), owner.address), Output(FA(500), owner.address)))
    issue = issue.signed(petra.chain_id, meter)
    _commit(petra, coordinator, START + 2, issue)
    op = outpoint(issue.txid, 1)
    spend = Transfer((op,), (Output(FA(500), KeyPair.generate().address),)).signed(petra.chain_id, {op: owner})
    _commit(petra, coordinator, START + 3, spend)
    h = Hierarchy(fans=1, nans=1, homes=2, appliances=1, anchor_minutes=5, summary_minutes=5)
    h.run(11)
    tiers = {name.split(":")[0]: node.coordinator.chain for name, node in h.chains.items()}
    signers = {node.chain_id: node.coordinator.key for node in h.chains.values()}
    return Worlds(petra, tiers, h.dso_key, coordinator, {petra.chain_id: coordinator, **signers})


def _parent_state(chain: Chain) -> LedgerState:
    """The state before the chain's last block."""
    state = LedgerState(chain.genesis_block)
    for b in list(chain.blocks(1))[:-1]:
        state.apply_block(b)
    return state


# ------------------------------------------------------------------------------------------------ ledger targets
def _apply_everywhere(states: list[LedgerState], tx) -> None:
    for state in states:
        with contextlib.suppress(Reject):
            state.ruleset.check_transaction(tx)
            mark = state.begin_block()
            try:
                state.apply_tx(tx, state.slot_of(state.tip_time))
            finally:
                state.rollback(mark)


def tx_targets(w: Worlds) -> list[Target]:
    states = w.states()
    nan = w.tiers["nan"].state
    seeds: dict[TxKind, list[bytes]] = {k: [] for k in TxKind}
    for tx in w.txs():
        seeds[tx.KIND].append(tx.raw)
    alarm = raise_alarm(nan.chain_id, AlarmCode.TAMPERING, bytes(32), nan.height + 1, "twin", w.dso_key)
    seeds[TxKind.ALARM].append(alarm.raw)
    member = next(iter(w.tiers["nan"].state.policy.policies[0].authorize))[0]
    seeds[TxKind.REWARD].append(make_reward(nan, 0, 10, {_member_index(nan, member): (900, 800, 700)}, w.dso_key).raw)

    def run(data: bytes) -> None:
        tx = decode_transaction(data)
        _apply_everywhere(states, tx)

    return [Target(f"tx-{k.name.lower()}", s[:16], run, (Reject,)) for k, s in seeds.items()]


def _member_index(state: LedgerState, meter: str) -> int:
    from gridledger.ledger.members import member_of_key

    _, key = state.policy.status(meter, state.slot_of(state.tip_time))
    return member_of_key(state, key, state.slot_of(state.tip_time))


def block_targets(w: Worlds) -> list[Target]:
    cases = [(c, _parent_state(c)) for c in (w.petra, w.tiers["nan"], w.tiers["fan"])]
    seeds = [list(c.blocks(c.height))[0].encode() for c, _ in cases]
    parents = {c.chain_id: p for c, p in cases}
    signers = w.signers

    def run_block(data: bytes) -> None:
        block = Block.decode(data)
        parent = parents.get(block.header.chain_id)
        if parent is None:
            return
        try:
            parent.apply_block(block)
        except Reject:
            pass
        else:  # a mutation that is still a valid block (not expected): start again from the parent
            parents[block.header.chain_id] = _parent_state(next(c for c, _ in cases if c.chain_id == parent.chain_id))
        # the same transactions in a validly signed block: every transaction rule runs, not just the header's
        h = block.header
        again = make_block(h.chain_id, h.height, h.prev_hash, h.time, block.transactions, signers[h.chain_id])
        parent.apply_block(again, proposal=True)

    nan = w.tiers["nan"]
    nan_parent = parents[nan.chain_id]

    def run_qc(data: bytes) -> None:
        block = Block.decode(data)
        if block.header.chain_id == nan.chain_id and block.header.height == nan_parent.height + 1:
            check_block_certificate(nan_parent, block)

    return [
        Target("block", seeds, run_block, (Reject,)),
        Target("qc", [list(nan.blocks(nan.height))[0].encode()], run_qc, (Reject,)),
    ]


# ------------------------------------------------------------------------------------------------ twin targets
def twin_targets() -> list[Target]:
    from nacl.signing import SigningKey

    from gridledger.twin import envelope, smartpi
    from gridledger.twin.messages import AccessRequest, Announce, MessageError

    device, aes = SigningKey(bytes(range(32))), bytes(range(16))
    phases = [smartpi.PhaseReading(p, 1.5, 230.0, 340.0, 0.98, 50.0) for p in (1, 2, 3)]
    payload = smartpi.measurement("SP-0001", "smartpi", phases, datetime(2026, 1, 1), neutral_current=0.2)
    sealed = envelope.seal(device, aes, "SP-0001", 7, "report", payload)

    def run_envelope(data: bytes) -> None:
        env = envelope.parse(data)
        env.verify(device.verify_key.encode())
        smartpi.parse_measurement(env.decrypt(aes))

    def run_smartpi(data: bytes) -> None:
        smartpi.parse_measurement(json.loads(data))

    twin = {"ID": 1, "Name": "smartpi", "On": True}
    announce = Announce.make(device, "SP-0001", twin)
    access = AccessRequest.make(device, "dso", "read", "SP-0001")
    return [
        Target("mqtt-envelope", [sealed], run_envelope, (envelope.EnvelopeRejected, smartpi.SmartPiFormatError)),
        Target("mqtt-smartpi", [json.dumps(payload).encode()], run_smartpi, (ValueError,)),
        Target("mqtt-announce", [announce], Announce.parse, (MessageError,)),
        Target("mqtt-access", [access], AccessRequest.parse, (MessageError,)),
    ]


# ------------------------------------------------------------------------------------------------ PETra targets
class _Loop:
    """One event loop for a whole target; exceptions of tasks the input spawned count as crashes too."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.errors: list[BaseException] = []
        self.loop.set_exception_handler(lambda _, ctx: self.errors.append(ctx.get("exception") or RuntimeError(ctx)))

    def run(self, coro) -> object:
        out = self.loop.run_until_complete(coro)
        self.loop.run_until_complete(asyncio.sleep(0))  # let the cells it sent on be handled
        if self.errors:
            raise self.errors.pop()
        return out


def petra_targets(w: Worlds) -> list[Target]:
    from nacl.public import PrivateKey

    from gridledger.ledger.kinds.dso_policy import DsoPolicy
    from gridledger.ledger.policy import PolicyTimeline
    from gridledger.market.orders import Side
    from gridledger.petra.bidstore import AnonOrder, BidStore, BidStoreService
    from gridledger.petra.onion import (
        InProcessNetwork,
        OnionNode,
        RelayDescriptor,
        RelayDirectory,
        RelayRegistry,
        Stream,
    )

    loop = _Loop()
    network, policy, registry = InProcessNetwork(), PolicyTimeline(), RelayRegistry()
    meters = {f"MI{i}": KeyPair.from_secret(f"fuzz-onion-{i}") for i in range(3)}
    relay_keys = {m: PrivateKey.generate() for m in meters}
    for m, k in meters.items():
        registry.publish(RelayDescriptor.create(m, f"relay-{m}", relay_keys[m], k))
    policy.add(DsoPolicy(1, 0, authorize=tuple((m, k.public) for m, k in meters.items())))
    directory = RelayDirectory.from_registry(registry, policy, 0)
    relays = [OnionNode(network.endpoint(f"relay-{m}"), relay_keys[m], directory) for m in meters]
    seen: list[tuple[str, bytes]] = []
    first = relays[0]
    inner = first._on_message

    async def tap(sender: str, data: bytes) -> None:
        seen.append((sender, data))
        await inner(sender, data)

    first._on_message = tap
    store = BidStore(w.petra)
    service = BidStoreService(store, lambda: 0)
    svc = OnionNode(network.endpoint("bidstore"))
    svc.serve(service.handle)

    async def setup():
        for r in (*relays, svc):
            await r.start()
        client = await OnionNode(network.endpoint("client"), directory=directory).start()
        circuit = await client.open_circuit("bidstore", path=list(directory.relays.values())[:3])
        await circuit.request(b'{"op": "challenge"}', timeout=5)
        return circuit

    client = loop.run(setup())

    def close() -> None:
        async def stop() -> None:
            for n in (*relays, svc, client.node):
                await n.close()

        loop.run(stop())
        loop.loop.close()

    first._on_message = inner
    cells = [d for s, d in seen if s == "client"]

    def run_cell(data: bytes) -> None:
        loop.run(first._on_message("client", data))

    order = AnonOrder(Side.OFFER, "F1", 10, 12, 100, 50, 11, bytes(20), (bytes(34),))
    requests = [
        {"op": "challenge"},
        {"op": "list"},
        {"op": "list", "side": "bid"},
        {"op": "post", "order": order.to_json(), "challenge": "00" * 32, "proofs": [["00" * 32, "00" * 64]]},
        {"op": "cancel", "order_id": order.order_id, "challenge": "00" * 32, "proofs": []},
    ]
    stream = Stream(svc, first.name, bytes(16))

    def run_request(data: bytes) -> None:
        loop.run(service.handle(stream, data))
        if len(service.senders) > 1024:
            del service.senders[:]

    return [
        Target("onion-cell", cells, run_cell, (), coverage_guided=False),
        Target(
            "bidstore", [json.dumps(r).encode() for r in requests], run_request, (), coverage_guided=False, close=close
        ),
    ]


# ------------------------------------------------------------------------------------------------ API target
def api_target(w: Worlds, folder: Path) -> Target:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from gridledger.node.auth import NodeRegistry, RateLimiter, sign_headers
    from gridledger.node.ordering import InProcessOrderer
    from gridledger.node.sequencer import Sequencer
    from gridledger.node.service import NodeService

    chain = Chain.create(SqliteStore(folder / "api.sqlite", durable=False), w.petra.genesis, w.coordinator, START)
    for b in w.petra.blocks(1):
        chain.append(b)
    orderer, registry, meter = InProcessOrderer(), NodeRegistry(), KeyPair.from_secret("fuzz-api-meter")
    registry.register("MI1", "meter", meter.public)
    unlimited = RateLimiter(1e9, 1e9)
    svc = NodeService(
        "DC1",
        "concentrator",
        chain,
        orderer,
        Sequencer(chain, orderer, "DC1", w.coordinator),
        registry,
        unlimited,
        peer_limiter=unlimited,
    )
    svc.start()  # its sequencer thread runs: the node is healthy and commits what the fuzzer submits validly
    http = TestClient(svc.app, raise_server_exceptions=False)
    txid = next(iter(chain.blocks(1))).transactions[0].txid.hex()
    paths = [
        "/v1/status",
        "/v1/health",
        "/v1/metrics",
        "/v1/blocks?start=0&limit=3",
        "/v1/blocks/1",
        "/v1/blocks/999",
        f"/v1/transactions/{txid}",
        "/v1/readings?meter=MI1",
        f"/v1/readings/{txid}",
    ]
    seeds = [b"GET " + p.encode() for p in paths] + [b"POST /v1/transactions " + tx.raw for tx in w.txs()[:8]]

    def run(data: bytes) -> None:
        method, _, rest = data.partition(b" ")
        if method == b"POST":
            path, body = "/v1/transactions", rest.partition(b" ")[2]
        else:
            path, body = rest.decode("latin-1"), b""
        if not path.startswith("/") or re.search(r"[\x00-\x20\x7f-\xff#]", path):
            return  # not a request line an HTTP client can send
        route = path.split("?")[0]
        headers = sign_headers(meter, "MI1", "POST" if method == b"POST" else "GET", route, body)
        r = http.post(path, content=body, headers=headers) if method == b"POST" else http.get(path, headers=headers)
        if r.status_code >= 500:
            raise AssertionError(f"{path}: HTTP {r.status_code} {r.text[:200]}")
        drained = orderer.pending(10_000)
        if drained:
            orderer.drop([t for t, _ in drained])

    return Target("api", seeds, run, (), coverage_guided=False, close=svc.stop)


# ------------------------------------------------------------------------------------------------ running
def all_targets(folder: Path, *, decoders_only: bool = False) -> list[Target]:
    """Every target; with ``decoders_only`` the pure decoders (no event loop, no node threads)."""
    w = build_worlds(folder)
    decoders = [*tx_targets(w), *block_targets(w), *twin_targets()]
    return decoders if decoders_only else [*decoders, *petra_targets(w), api_target(w, folder)]


#: A child process: gridledger's modules are imported under atheris's instrumentation (its own code only: the
#: coverage that guides mutations is gridledger's), then one target runs coverage-guided.
_ATHERIS_CHILD = """
import sys
import atheris
with atheris.instrument_imports(include=["gridledger"]):
    sys.path.insert(0, {folder!r})
    import fuzz
fuzz._atheris_child({name!r}, {seconds})
"""


def _atheris_child(name: str, seconds: int) -> None:
    """Run one target under atheris in this process (coverage-guided; exits when done or on a crash)."""
    import atheris

    logging_off()
    with tempfile.TemporaryDirectory() as tmp:
        target = next(t for t in all_targets(Path(tmp), decoders_only=True) if t.name == name)

        def one(data: bytes) -> None:
            with contextlib.suppress(target.allowed):
                target.run(data)

        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        for i, s in enumerate(target.seeds):
            (corpus / f"seed{i}").write_bytes(s)
        flags = [f"-max_total_time={seconds}", f"-artifact_prefix={tmp}/", "-print_final_stats=1"]
        atheris.Setup([sys.argv[0], *flags, str(corpus)], one)
        atheris.Fuzz()


def atheris_run(names: list[str], seconds: int) -> dict[str, tuple[int, int]]:
    """(inputs, crashes) of each target fuzzed coverage-guided in a child process; empty without atheris."""
    try:
        import atheris  # noqa: F401
    except ImportError:
        return {}
    out = {}
    for name in names:
        code = _ATHERIS_CHILD.format(folder=str(Path(__file__).parent), name=name, seconds=seconds)
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=seconds + 300)
        runs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", p.stderr)
        crashed = p.returncode != 0
        if crashed:
            print(f"  atheris {name}: exit {p.returncode}\n{p.stderr[-2000:]}")
        out[name] = (int(runs[-1]) if runs else 0, int(crashed))
    return out


def main() -> None:
    logging_off()
    with tempfile.TemporaryDirectory() as tmp:
        targets = all_targets(Path(tmp))
        total, crashes = 0, 0
        print(f"mutation fuzzing, {SECONDS_PER_TARGET:.0f} s per target")
        for t in targets:
            r = fuzz(t, seconds=SECONDS_PER_TARGET)
            total += r.inputs
            crashes += len(r.crashes)
            print(f"  {t.name:<16} inputs {r.inputs:>9,}  crashes {len(r.crashes)}")
            for data, tb in r.crashes[:3]:
                print(f"    input {data[:64].hex()}…\n{tb}")
            t.close()
        guided = atheris_run([t.name for t in targets if t.coverage_guided], ATHERIS_SECONDS)
        if guided:
            print(f"coverage-guided (atheris), {ATHERIS_SECONDS} s per decoder target")
            for name, (n, c) in guided.items():
                print(f"  {name:<16} inputs {n:>9,}  crashes {c}")
                total += n
                crashes += c
        else:
            print("coverage-guided: atheris is not installed (pip install atheris==3.0.0)")
    print(f"fuzz_inputs = {total}")
    print(f"fuzz_crashes = {crashes}")


def logging_off() -> None:
    import logging

    logging.disable(logging.CRITICAL)


if __name__ == "__main__":
    main()
