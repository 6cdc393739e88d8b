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
* ``api`` — every route of a node's API but ``/v1/stream`` (ASGI calls straight into the node's app, requests signed
  by a registered meter — path and query — so they pass authentication): mutated paths, query strings and
  transaction bodies; no answer may be 5xx.

The mutation engine flips bits, sets interesting bytes, inserts, deletes, duplicates and splices chunks of the
seeds, of the committed corpus (``fuzz/corpus/<target>/``) and of every input that met an outcome (success, or the
documented error with its reject code) no earlier input met; those inputs are added to the corpus. The RNG seed is
printed (``FUZZ_SEED`` replays a run). Targets are shared out over ``WORKERS`` processes (both cores). With
``atheris`` installed (``pip install atheris==3.0.0``), each decoder target also runs coverage-guided for
``ATHERIS_SECONDS`` in its own process.

**Budget over the suite's life.** Every run appends its counts per target and engine to ``fuzz/ledger.tsv``
(committed, with the date and the commit fuzzed), so the cumulative total per target is real. A target still short
of ``GOAL`` (1,000,000) inputs over the ledger after its ``SECONDS_PER_TARGET`` gets the time it needs at the rate
it just ran, at most ``TOPUP_MAX_SECONDS``: the first run on a new ledger takes about 25 minutes and brings most
targets to the goal; later runs take about 6.

Run: ``.venv/bin/python benchmarks/fuzz.py``. Prints per target the inputs, inputs/s, crashes and
the ledger's total, then ``fuzz_inputs`` (this run), ``fuzz_crashes`` and ``fuzz_min_target_inputs_all_runs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import multiprocessing
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

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
#: Most extra seconds of mutation fuzzing for a target still short of ``GOAL`` inputs over the ledger's runs.
TOPUP_MAX_SECONDS = 360.0
#: Inputs per target the issue asks for over the suite's life.
GOAL = 1_000_000
#: Worker processes (targets are shared out; each builds its own chains and node).
WORKERS = max(1, min(2, os.cpu_count() or 1))
FUZZ_DIR = Path(__file__).resolve().parents[1] / "fuzz"
#: Every run of ``main`` appends its counts here (committed): the cumulative total per target is real.
LEDGER = FUZZ_DIR / "ledger.tsv"
#: Inputs kept per target (seeded into every run): those that met a new outcome.
CORPUS = FUZZ_DIR / "corpus"
MAX_NEW_PER_RUN, MAX_CORPUS_BYTES = 64, 4096
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
    seconds: float = 0.0
    #: Inputs that met an outcome (documented error and its code, or success) no earlier input met: kept in the
    #: corpus (a cheap stand-in for coverage where atheris does not run).
    new: list[bytes] = field(default_factory=list)


def _outcome(e: BaseException | None) -> str:
    return "ok" if e is None else f"{type(e).__name__}:{getattr(e, 'code', '')}"


def fuzz(
    target: Target,
    *,
    seconds: float | None = None,
    inputs: int | None = None,
    seed: int = 1,
    corpus: list[bytes] = (),
) -> Result:
    """Feed ``target`` its seeds and ``corpus``, then mutations of them (and of every input that met a new outcome),
    for ``seconds`` or ``inputs`` (whichever comes first)."""
    rng, res = random.Random(seed), Result(target.name)
    start = time.monotonic()
    end = None if seconds is None else start + seconds
    first = [*target.seeds, *corpus]
    pool, seen = list(first), set()
    k = 0
    while (inputs is None or k < inputs) and (end is None or k % 64 or time.monotonic() < end):
        data = first[k] if k < len(first) else mutate(rng, rng.choice(pool), pool)
        k += 1
        try:
            target.run(data)
            outcome = _outcome(None)
        except target.allowed as e:
            outcome = _outcome(e)
        except Exception:  # noqa: BLE001 - anything else is exactly what a fuzzer looks for
            res.crashes.append((data, traceback.format_exc()))
            continue
        if outcome not in seen:
            seen.add(outcome)
            if k > len(first) and len(res.new) < MAX_NEW_PER_RUN:
                res.new.append(data)
                pool.append(data)
    res.inputs, res.seconds = k, time.monotonic() - start
    return res


# ------------------------------------------------------------------------------------------------ corpus, ledger
def load_corpus(name: str, folder: Path | None = None) -> list[bytes]:
    """The committed corpus of target ``name`` (``fuzz/corpus/<name>/``), in a stable order."""
    d = (folder or CORPUS) / name
    return [p.read_bytes() for p in sorted(d.iterdir())] if d.is_dir() else []


def save_corpus(name: str, inputs: list[bytes], folder: Path | None = None) -> int:
    """Add ``inputs`` (at most ``MAX_CORPUS_BYTES`` each) to the target's corpus, named by content; how many new."""
    d = (folder or CORPUS) / name
    n = 0
    for data in inputs:
        if len(data) <= MAX_CORPUS_BYTES:
            p = d / hashlib.sha256(data).hexdigest()[:16]
            if not p.exists():
                d.mkdir(parents=True, exist_ok=True)
                p.write_bytes(data)
                n += 1
    return n


LEDGER_COLUMNS = ("date", "commit", "target", "engine", "inputs", "crashes", "seconds")


def append_ledger(rows: list[tuple[str, str, int, int, float]], path: Path | None = None) -> None:
    """Record one run: (target, engine, inputs, crashes, seconds) per row, dated and with the commit fuzzed."""
    path = path or LEDGER
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    here = Path(__file__).parent
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=here)
    stamp, rev = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), commit.stdout.strip() or "unknown"
    with path.open("a") as f:
        if new:
            f.write("\t".join(LEDGER_COLUMNS) + "\n")
        for target, engine, n, crashes, secs in rows:
            f.write(f"{stamp}\t{rev}\t{target}\t{engine}\t{n}\t{crashes}\t{secs:.1f}\n")


def ledger_totals(path: Path | None = None) -> dict[str, tuple[int, int]]:
    """(inputs, crashes) of each target over every run the ledger records."""
    path = path or LEDGER
    out: dict[str, tuple[int, int]] = {}
    if not path.exists():
        return out
    lines = path.read_text().splitlines()
    for line in lines[1:]:
        row = dict(zip(LEDGER_COLUMNS, line.split("\t"), strict=True))
        n, c = out.get(row["target"], (0, 0))
        out[row["target"]] = (n + int(row["inputs"]), c + int(row["crashes"]))
    return out


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
    """A PETra chain (policy, meter issue, transfer) and a small multi-tier ledger (readings, batches, anchors)."""
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
    # the NAN's meters send batches of 5 minutes (READING_BATCH seeds); the other tiers send READINGs
    h = Hierarchy(fans=1, nans=1, homes=2, appliances=1, anchor_minutes=5, summary_minutes=5, batch_minutes=5)
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
        async def settled() -> object:
            out = await coro
            await asyncio.sleep(0)  # let the cells it sent on be handled
            return out

        out = self.loop.run_until_complete(settled())
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
async def _asgi(app, method: str, target: str, headers: dict[str, str], body: bytes) -> int:
    """One HTTP request straight to an ASGI ``app`` (no client, no socket, no thread): its status code. The app's
    own error handler turns an exception into a 500 and raises it again: both count as a crash."""
    path, _, query = target.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(path),
        "raw_path": path.encode("latin-1"),
        "query_string": query.encode("latin-1"),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        + [(b"host", b"fuzz"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50_000),
        "server": ("fuzz", 80),
    }
    inbox = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0

    async def receive() -> dict:
        return inbox.pop() if inbox else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def api_target(w: Worlds, folder: Path) -> Target:
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
    loop = _Loop()
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
        verb = "POST" if method == b"POST" else "GET"
        route, q, query = path.partition("?")
        headers = sign_headers(meter, "MI1", verb, unquote(route) + q + query, body)  # what the node verifies
        status = loop.run(_asgi(svc.app, verb, path, headers, body))
        if status >= 500:
            raise AssertionError(f"{path}: HTTP {status}")
        drained = orderer.pending(10_000)
        if drained:
            orderer.drop([t for t, _ in drained])

    def close() -> None:
        svc.stop()
        loop.loop.close()

    return Target("api", seeds, run, (), coverage_guided=False, close=close)


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
    """(inputs, crashes) of each target fuzzed coverage-guided in a child process (``WORKERS`` at a time); empty
    without atheris."""
    try:
        import atheris  # noqa: F401
    except ImportError:
        return {}

    def one(name: str) -> tuple[int, int]:
        code = _ATHERIS_CHILD.format(folder=str(Path(__file__).parent), name=name, seconds=seconds)
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=seconds + 300)
        runs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", p.stderr)
        if p.returncode != 0:
            print(f"  atheris {name}: exit {p.returncode}\n{p.stderr[-2000:]}")
        return int(runs[-1]) if runs else 0, int(p.returncode != 0)

    with ThreadPoolExecutor(WORKERS) as pool:
        return dict(zip(names, pool.map(one, names), strict=True))


def _worker(jobs: list[tuple[str, float, int]]) -> list[Result]:
    """Run ``(target, seconds, seed)`` jobs in this process, over chains and a node of its own."""
    logging_off()
    with tempfile.TemporaryDirectory() as tmp:
        targets = {t.name: t for t in all_targets(Path(tmp))}
        try:
            return [fuzz(targets[n], seconds=secs, seed=seed, corpus=load_corpus(n)) for n, secs, seed in jobs]
        finally:
            for t in targets.values():
                t.close()


def share(jobs: list[tuple[str, float]], seed: int) -> list[list[tuple[str, float, int]]]:
    """``(target, seconds)`` jobs shared out over ``WORKERS`` (longest first, each to the least loaded), seeded."""
    shares: list[list[tuple[str, float, int]]] = [[] for _ in range(WORKERS)]
    load = [0.0] * WORKERS
    for k, (name, secs) in enumerate(sorted(jobs, key=lambda j: -j[1])):
        w = load.index(min(load))
        shares[w].append((name, secs, seed + k))
        load[w] += secs
    return [s for s in shares if s]


def topups(results: list[Result], totals: dict[str, tuple[int, int]]) -> list[tuple[str, float]]:
    """Seconds more for each target short of ``GOAL`` over the ledger and this run, at the rate it just ran
    (at most ``TOPUP_MAX_SECONDS``)."""
    out = []
    for r in results:
        short = GOAL - totals.get(r.name, (0, 0))[0] - r.inputs
        if short > 0 and r.inputs:
            out.append((r.name, min(TOPUP_MAX_SECONDS, 1.05 * short * r.seconds / r.inputs)))
    return out


def _phase(jobs: list[tuple[str, float]], seed: int) -> list[Result]:
    # spawned, not forked: this process already runs node threads and event loops (the target catalogue)
    with ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = [r for rs in pool.map(_worker, share(jobs, seed)) for r in rs]
    for r in results:
        for data, tb in r.crashes[:3]:
            print(f"  {r.name} crash, input {data[:64].hex()}…\n{tb}")
        save_corpus(r.name, r.new)
    return results


def main() -> None:
    logging_off()
    catalogue = _target_names()
    before = ledger_totals()
    seed = int(os.environ.get("FUZZ_SEED", time.time()))
    print(f"mutation fuzzing on {WORKERS} processes, seed {seed}: {SECONDS_PER_TARGET:.0f} s per target")
    results = _phase([(n, SECONDS_PER_TARGET) for n, _ in catalogue], seed)
    more = topups(results, before)
    if more:
        print(f"{len(more)} targets short of {GOAL:,} inputs over the ledger: {sum(s for _, s in more):.0f} s more")
        results += _phase(more, seed + 10_000)
    rows = [(r.name, "mutation", r.inputs, len(r.crashes), r.seconds) for r in results]
    guided = atheris_run([n for n, g in catalogue if g], ATHERIS_SECONDS)
    rows += [(n, "atheris", i, c, float(ATHERIS_SECONDS)) for n, (i, c) in guided.items()]
    if not guided:
        print("coverage-guided: atheris is not installed (pip install atheris==3.0.0)")
    append_ledger(rows)
    after = ledger_totals()
    print(f"{'target':<16} {'inputs':>10} {'inputs/s':>9} {'crashes':>7} {'atheris':>9}  {'all runs (ledger)':>17}")
    for name in sorted({r[0] for r in rows}):
        mine = [r for r in rows if r[0] == name]
        mut = [r for r in mine if r[1] == "mutation"]
        n_mut, s_mut = sum(r[2] for r in mut), sum(r[4] for r in mut)
        rate = n_mut / s_mut if s_mut else 0.0
        print(
            f"{name:<16} {sum(r[2] for r in mine):>10,} {rate:>9,.0f} {sum(r[3] for r in mine):>7}"
            f" {sum(r[2] for r in mine if r[1] == 'atheris'):>9,}  {after[name][0]:>17,}"
        )
    low = min(after, key=lambda n: after[n][0])
    print(f"fewest inputs over all runs: {low} {after[low][0]:,} (goal {GOAL:,} per target)")
    print(f"fuzz_inputs = {sum(r[2] for r in rows)} inputs")
    print(f"fuzz_crashes = {sum(r[3] for r in rows)} crashes")
    print(f"fuzz_min_target_inputs_all_runs = {after[low][0]} inputs")


def _target_names() -> list[tuple[str, bool]]:
    """(name, coverage-guided) of every target (built once in a scratch folder)."""
    with tempfile.TemporaryDirectory() as tmp:
        targets = all_targets(Path(tmp))
        for t in targets:
            t.close()
        return [(t.name, t.coverage_guided) for t in targets]


def logging_off() -> None:
    import logging

    logging.disable(logging.CRITICAL)


if __name__ == "__main__":
    main()
