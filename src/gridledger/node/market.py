"""The PETra market across processes: onion relays, the bid store (with the mix board) and the prosumers.

``gridledger cluster up --community FILE`` (:func:`gridledger.node.market_up.up_community`) writes the market plan
``market.json`` and starts one process per role, each on its own TCP port (``TcpTransport``):

* **relay** (one per meter, :func:`run_relay`): the meter's onion router; its X25519 relay key is in
  ``keys/relay-<meter>.key`` and its descriptor, signed by the meter's ledger key, is in the plan;
* **bidstore** (:func:`run_bidstore`, two of them: ``bidstore`` and the standby ``bidstore-standby``, the plan's
  ``stores``): the market operator's onion services, the book (``bidstore``;
  :class:`~gridledger.petra.operator.MarketOperator`: the book, the clearing of market/ at the close, signature
  collection) and the mix board (``mixboard``; :class:`~gridledger.petra.coinshuffle.MixBoard`); the standby's are
  ``bidstore-standby`` and ``mixboard-standby``. Each keeps a verified replica of the NAN chain (caught up from the
  concentrators' APIs) and submits the mixes, the trades and what the prosumers hand it (their deposits) to the
  primary concentrator, signed as its registered node id. Exactly one store is **active**, the holder of the market
  lease in etcd (:class:`StoreLease`; the standby takes it over a few seconds after the active store stops renewing
  it); the other refuses orders and joins (``bid-not-active``, ``mix-not-active``) and clears nothing;
* **prosumer** (one per meter, :func:`run_prosumer`): the home's wallet and its meter's issuing and billing side.
  It keeps its own replica of the chain from its meter node's API.

Every node API is verified against the cluster's CA when the cluster runs TLS (the plan's ``ca``). A node that stops
answering is failed over (:class:`Replica`): the bid store moves to the node that leads the chain now (the backup
concentrator ``DC1-backup`` once the primary is gone), a prosumer from its meter node to the concentrators.

Every market slot ``s`` (the chain's slot, ``slot_seconds`` from the genesis) runs one round for slot ``s + 1``,
at fixed fractions of the slot (:data:`PHASES`), by each process's clock:

1. each prosumer extracts one unit of EPA, ECA and FA (the symmetric cover trade) through a ``MeterIssue`` sent to
   its meter node's API, signed as the meter, and waits for it to commit under PoEf;
2. it mixes every coin through CoinShuffle with the other prosumers (each coin over its own onion circuit to the
   mix board; the board runs a pool as soon as every prosumer's coin joined, or at ``mix`` with those that did);
3. it posts its order (an offer: the mixed EPA; a bid: the mixed ECA and FA) over a fresh circuit to the bid
   store, proving control of the coins (it asks both stores which is active while its issue commits, and turns to
   the other store within the phase if one cannot be reached or is not active);
4. at ``close`` the bid store clears the book; at ``sign`` every party fetches, checks and signs its trades over
   the order's circuit; at ``submit`` the store submits every completely signed trade;
5. once its trades are committed (or at the end of the slot) each prosumer sends everything it holds back to fresh
   addresses of its meter; the deposits go through the order's circuit to the store, which submits them, so no
   coin is ever submitted under the meter's own network identity.
6. at the start of round ``s`` each meter bills the slots up to ``s − 2`` (their deposits are in) from the net
   energy its home measured (the plan's ``measured_wh``) by the extraction-aware rule at the prices in force, writes
   each slot's energy to settle and amount only in ``bills-<meter>.json`` (:func:`bills_path`), and reports the same
   to every concentrator of its NAN (``POST /v1/bills``, signed as the meter), so each holds the NAN's bills and
   serves their aggregate. A bill a concentrator did not acknowledge (it was down, refused the connection) is sent
   again next round (:class:`~gridledger.node.bills.BillOutbox`; the node keeps a repeat once).

A relay that stops answering is left out: every prosumer builds its directory each round from the relays that
accept a TCP connection, and retries a circuit that could not be built over another random path.

The active bid store writes ``market-status.json`` (which store is active, the take-overs, its rounds: orders,
trades, deposits and their txids; the network names its requests came from) for ``gridledger cluster status``, and
logs every request's sender. A round's book lives in the store that took its orders: if that store dies mid-round,
the round is lost (the prosumers deposit their coins back as after any round; the other store starts afresh).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from nacl.public import PrivateKey

from gridledger.chain import Chain
from gridledger.ledger.assets import ECA, EPA, FA, Asset, AssetKind, Output
from gridledger.ledger.block import Block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds import decode_transaction
from gridledger.ledger.transactions import Transaction
from gridledger.ledger.units import energy_cost
from gridledger.market.orders import Feeder, Side
from gridledger.node.bills import BillOutbox, BillReport
from gridledger.node.client import ApiError, NodeClient, NodeUnreachable, catch_up
from gridledger.node.durable import KeyJournal, write_json
from gridledger.node.ordering import EtcdOrderer
from gridledger.node.pki import TlsFiles
from gridledger.petra.bidstore import NOT_ACTIVE, AnonOrder, BidStoreClient, BidStoreError
from gridledger.petra.coinshuffle import MIX_NOT_ACTIVE, MixBoard, MixError, Participant, mix_coin
from gridledger.petra.meter import MeterError, SmartMeter
from gridledger.petra.onion import (
    Circuit,
    OnionError,
    OnionNode,
    RelayDescriptor,
    RelayDirectory,
    Stream,
    TcpTransport,
    TransportError,
)
from gridledger.petra.operator import MarketOperator
from gridledger.petra.prosumer import OrderState, Prosumer
from gridledger.petra.wallet import Wallet
from gridledger.store.sqlite import SqliteStore

PLAN_FILE = "market.json"
STATUS_FILE = "market-status.json"
BIDSTORE_ID = "bidstore"
#: The node id of the standby bid store (``cluster up --community`` starts it beside the primary ``bidstore``).
STANDBY_ID = "bidstore-standby"
#: The network name (in the plan's book) of the operator's diagnostic client: relays can answer it.
PROBE = "probe"
#: When each step of a round happens, as a fraction of the slot (s) it runs in; ``join``: the latest a prosumer still
#: starts a round (its issue must commit before the pools close at ``mix``).
PHASES = {"join": 0.2, "mix": 0.45, "close": 0.62, "sign": 0.7, "submit": 0.82}
#: Seconds a prosumer waits for the bid store's answer to one request.
CALL_TIMEOUT_S = 5.0
#: Seconds between two polls of a node's API for new blocks.
POLL_S = 0.2
#: Seconds a prosumer waits before it asks the bid stores again when none took its coin or order (a standby may be
#: taking over).
RETRY_S = 1.0
#: Seconds between two looks of a bid store at the market lease (the active store's look keeps its renewals going).
LEASE_POLL_S = 0.2
#: Seconds the lease key must stay unchanged (its holder renews it every ``LEADER_BEAT_S``) before a standby store
#: bids for it (then ``LEADER_TIMEOUT_S`` more, :class:`StoreLease`): a store starved of CPU for a moment keeps it.
TAKEOVER_S = 2.0
#: Seconds a bid store's event loop may not run (blocked on a node, hung) before its lease thread stops renewing.
LOOP_STALL_S = 10.0
#: Seconds a store goes on acting as the active one (taking orders, clearing, submitting) after it last saw that it
#: holds the lease; below ``TAKEOVER_S``, so it has stopped before a standby can take over.
LEASE_SLACK_S = 1.0
log = logging.getLogger("gridledger.market")


class MarketPlanError(ValueError):
    """The market plan (``market.json``) is missing or does not hold what a role needs (the message says)."""


@dataclass(frozen=True)
class StorePlan:
    """One bid store of the market: its node id (registered with every node; its key in ``keys/<id>.seed``) and the
    names of its two onion services, the book (``store``) and the mix board (``board``), in the plan's book."""

    id: str
    store: str
    board: str


#: The market's only store when the plan names none (a plan written before the standby existed).
PRIMARY = StorePlan(BIDSTORE_ID, "bidstore", "mixboard")


# ------------------------------------------------------------------------------------------------------ plan
@dataclass(frozen=True)
class ProsumerPlan:
    """One home: its meter (node config, API), feeder, what it trades each round (side, limit price, minor/kWh),
    and ``measured_wh``: the net energy its meter measures in chain slot ``t`` (Wh, import positive) is
    ``measured_wh[t % len(measured_wh)]``."""

    meter: str
    feeder: str
    side: str
    limit_price: int
    config: str
    api: str
    measured_wh: tuple[int, ...]

    def measured(self, slot: int) -> int:
        return self.measured_wh[slot % len(self.measured_wh)]


@dataclass(frozen=True)
class MarketPlan:
    """What every market process reads from ``market.json`` in the cluster folder.

    ``concentrators``: the NAN's concentrator APIs, primary first (the bid store's nodes; the prosumers fall back
    on them); ``ca``: the cluster's CA certificate every ``https`` node API is verified against (None: plain HTTP);
    ``book``: node name → (host, port) of every market process; ``unit_w``: power of one unit (W); ``price_cap``:
    the highest bid price (minor units/kWh; an FA unit pays a whole unit at it); ``mix_timeout``: seconds a mix
    phase may stall; ``stores``: the bid stores, the primary first; ``etcd``: the etcd endpoints their lease lives
    on (none: one store, always active).
    """

    folder: Path
    genesis: bytes
    concentrators: list[str]
    ca: Path | None
    unit_w: int
    price_cap: int
    mix_timeout: float
    book: dict[str, tuple[str, int]]
    descriptors: list[RelayDescriptor]
    feeders: dict[str, Feeder]
    prosumers: dict[str, ProsumerPlan]
    stores: tuple[StorePlan, ...] = (PRIMARY,)
    etcd: tuple[str, ...] = ()

    @classmethod
    def load(cls, folder: Path) -> MarketPlan:
        path = folder / PLAN_FILE
        try:
            data = json.loads(path.read_text())
            return cls(
                folder,
                bytes.fromhex((folder / data["genesis"]).read_text().strip()),
                [str(url) for url in data["concentrators"]],
                None if data["ca"] is None else Path(data["ca"]),
                int(data["unit_w"]),
                int(data["price_cap"]),
                float(data["mix_timeout"]),
                {name: (host, int(port)) for name, (host, port) in data["book"].items()},
                [
                    RelayDescriptor(d["meter"], d["node"], bytes.fromhex(d["relay_key"]), bytes.fromhex(d["signature"]))
                    for d in data["descriptors"]
                ],
                {f: Feeder(*caps) for f, caps in data["feeders"].items()},
                {
                    m: ProsumerPlan(m, **{**p, "measured_wh": tuple(int(w) for w in p["measured_wh"])})
                    for m, p in data["prosumers"].items()
                },
                tuple(StorePlan(**st) for st in data.get("stores", [])) or (PRIMARY,),
                tuple(str(url) for url in data.get("etcd", [])),
            )
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise MarketPlanError(f"{path}: {e}") from None

    def store(self, store_id: str) -> StorePlan:
        """The bid store ``store_id`` of the plan."""
        for st in self.stores:
            if st.id == store_id:
                return st
        known = ", ".join(st.id for st in self.stores)
        raise MarketPlanError(f"{self.folder / PLAN_FILE}: no bid store {store_id!r} (the plan has {known})")

    def store_key(self, store: StorePlan) -> KeyPair:
        """The store's ledger key (``keys/<id>.seed``)."""
        return KeyPair(read_seed(self.folder / "keys" / f"{store.id}.seed"))

    def lease(self, store: StorePlan, chain_id: bytes) -> StoreLease | None:
        """The store's view of the market lease on the plan's etcd (None if the plan has no etcd: the only store);
        over TLS with its certificate ``<id>.crt`` beside the CA, as etcd user ``store.id`` (its password in
        ``keys/<id>.etcd-password``) when that file exists."""
        if not self.etcd:
            return None
        tls = None
        if self.ca is not None:
            tls = TlsFiles(self.ca, self.ca.parent / f"{store.id}.crt", self.ca.parent / f"{store.id}.key")
        password = self.folder / "keys" / f"{store.id}.etcd-password"
        auth = (store.id, password.read_text().strip()) if password.exists() else None
        return StoreLease(list(self.etcd), chain_id, store.id, store == self.stores[0], tls, auth)

    def listen(self, name: str) -> tuple[str, int]:
        if name not in self.book:
            raise MarketPlanError(f"{self.folder / PLAN_FILE}: no address for market node {name!r}")
        return self.book[name]

    def clients(self, node_id: str, key: KeyPair, *urls: str) -> list[NodeClient]:
        """Clients of the nodes at ``urls`` (each once), signed as ``node_id``; ``https`` verified against the CA."""
        return [NodeClient(url, node_id, key, ca=self.ca) for url in dict.fromkeys(urls)]

    def replica(self, node_id: str, key: KeyPair, *urls: str) -> Replica:
        """A replica of the NAN chain from the nodes at ``urls`` (preferred first), signed as ``node_id``."""
        return Replica(self.genesis, *self.clients(node_id, key, *urls))

    def transport(self, name: str) -> TcpTransport:
        return TcpTransport(name, self.listen(name), self.book)

    def denominations(self, t: int, slot_seconds: int) -> dict[AssetKind, Asset]:
        """The units of the round for slot ``t``: EPA and ECA of ``unit_w`` over ``[t, t+1)``, and the FA that pays
        a whole unit at ``price_cap``."""
        fa = energy_cost(self.unit_w * slot_seconds, self.price_cap)
        if fa <= 0:
            raise MarketPlanError(
                f"a unit of {self.unit_w} W over a {slot_seconds} s slot is worth nothing at {self.price_cap}/kWh: "
                "use longer slots or a bigger unit"
            )
        return {
            AssetKind.EPA: EPA(self.unit_w, t, t + 1),
            AssetKind.ECA: ECA(self.unit_w, t, t + 1),
            AssetKind.FA: FA(fa),
        }


def relay_name(meter: str) -> str:
    return f"relay-{meter}"


def prosumer_name(meter: str) -> str:
    return f"prosumer-{meter}"


def bills_path(folder: Path, meter: str) -> Path:
    """What ``meter`` reports to the DSO: per slot billed, the energy to settle (W·s) and the amount (minor units);
    nothing that names a trade (``{"meter": ..., "from_slot": the first slot it bills, "bills": [{slot, energy_ws,
    amount, eca_audit_ok}, ...]}``)."""
    return folder / f"bills-{meter}.json"


def pending_bills_path(folder: Path, meter: str) -> Path:
    """The bills ``meter`` has not had acknowledged yet, per concentrator (its :class:`BillOutbox`'s file)."""
    return folder / f"unacknowledged-bills-{meter}.json"


def wallet_paths(folder: Path, meter: str) -> tuple[Path, Path]:
    """The key journals of ``meter``'s prosumer process: its wallet's one-time keys and its meter's deposit keys."""
    return folder / "keys" / f"wallet-{meter}.seeds", folder / "keys" / f"deposits-{meter}.seeds"


def relay_key_path(folder: Path, meter: str) -> Path:
    return folder / "keys" / f"{relay_name(meter)}.key"


def read_seed(path: Path) -> bytes:
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError) as e:
        raise MarketPlanError(f"cannot read the key {path}: {e}") from None


# --------------------------------------------------------------------------------------------------- replica
class Replica:
    """A verified copy of the NAN chain, caught up from the nodes' APIs (every block re-validated).

    ``clients``: the chain's nodes it may use, the preferred first. It submits to one of them; when that one stops
    answering it fails over (:meth:`fail_over`) to the node that leads the chain now, else to the first other node
    that answers (every node queues a transaction in the chain's shared ordering log, so any of them will do)."""

    def __init__(self, genesis: bytes, *clients: NodeClient) -> None:
        self.chain = Chain.from_genesis_block(SqliteStore(":memory:"), Block.decode(genesis))
        self.clients = list(clients)
        self.committed: set[bytes] = set()

    @property
    def client(self) -> NodeClient:
        """The node it submits to now."""
        return self.clients[0]

    @property
    def genesis(self):
        return self.chain.genesis

    def slot(self, now: float | None = None) -> int:
        """The chain's slot at ``now`` (Unix s; default the clock)."""
        g = self.chain.genesis
        return int(((time.time() if now is None else now) - g.start_time) // g.slot_seconds)

    def at(self, slot: int, fraction: float) -> float:
        """Unix time of ``fraction`` into ``slot``."""
        g = self.chain.genesis
        return g.start_time + (slot + fraction) * g.slot_seconds

    def sync(self) -> list[Block]:
        """Append the blocks the node has above our tip; returns them."""
        start = self.chain.height + 1
        catch_up(self.chain, self.clients)  # a node that does not answer is skipped
        blocks = list(self.chain.blocks(start))
        self.committed.update(tx.txid for b in blocks for tx in b.transactions)
        return blocks

    def output(self, op: bytes) -> Output | None:
        """The unspent output at ``op`` (catching up once if we do not have it)."""
        out = self.chain.state.output(op)
        if out is None:
            self.sync()
            out = self.chain.state.output(op)
        return out

    def send(self, tx: Transaction) -> bytes:
        """Submit ``tx``; its txid (``ApiError`` if the node refuses it). If the node does not answer, again to the
        node :meth:`fail_over` chose (the queue is idempotent by txid: a copy that did arrive is not doubled)."""
        try:
            return self.client.send(tx)
        except NodeUnreachable as e:
            if not self.fail_over():
                raise
            log.warning("%s; submitting to %s from now on", e, self.client.base_url)
            return self.client.send(tx)

    def fail_over(self) -> bool:
        """Make the leading node of the others the one submitted to (else the first other that answers); False if
        none of the others answers."""
        answering = []
        for c in self.clients[1:]:
            try:
                leading = c.status()["leading"]
            except (ApiError, NodeUnreachable):
                continue
            answering.append((not leading, len(answering), c))
        if not answering:
            return False
        chosen = min(answering)[2]
        self.clients.remove(chosen)
        self.clients.insert(0, chosen)
        return True


# ----------------------------------------------------------------------------------------------------- lease
def lease_prefix(chain_id: bytes) -> str:
    """The etcd keys of the market of chain ``chain_id`` (beside, not under, the chain's own ``/gridledger/<id>/``)."""
    return f"/gridledger/market/{chain_id.hex()}/"


class StoreLease(EtcdOrderer):
    """Which bid store is the market's active one: the leader term of the chain's ordering
    (:class:`~gridledger.node.ordering.EtcdOrderer`: a compare-and-put on the key ``leader`` under
    :func:`lease_prefix`, renewed every ``LEADER_BEAT_S`` by a thread while the store's loop keeps looking, lost
    ``LEADER_TIMEOUT_S`` after its last renewal) with a slower take-over: a standby bids for the term only once it
    has seen the key unchanged for ``TAKEOVER_S`` on its own clock, or absent if it is the ``preferred`` store (the
    primary, which so wins the first term). A standby is active ``TAKEOVER_S + LEADER_TIMEOUT_S`` to that plus two
    ``LEASE_POLL_S`` after the active store's last renewal (about 2.4–2.8 s, and etcd's latency)."""

    def __init__(
        self,
        endpoints: list[str],
        chain_id: bytes,
        store_id: str,
        preferred: bool,
        tls: TlsFiles | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(endpoints, chain_id, tls=tls, auth=auth)
        self.prefix = lease_prefix(chain_id)
        self.store_id = store_id
        self.preferred = preferred
        #: The key's revision (0: absent) and when this store first saw it (monotonic s).
        self._stale: tuple[int, float] | None = None

    def contend(self) -> bool:
        """One look (blocking: an etcd request or two); True while this store holds the lease. ``ConnectionError``
        if no etcd member answers."""
        if self._term is not None:  # held: campaigning keeps the renewal thread going
            return self.campaign(self.store_id)
        rows = self._call(lambda c: c.get(self._key("leader"), metadata=True))
        revision = int(rows[0][1]["mod_revision"]) if rows else 0
        now = time.monotonic()
        if self._stale is None or self._stale[0] != revision:
            self._stale = (revision, now)
        if (revision == 0 and self.preferred) or now - self._stale[1] >= TAKEOVER_S:
            return self.campaign(self.store_id)
        return False


class _OperatorChain:
    """The replica as the market operator sees a chain: reads the replica, submits to the node."""

    def __init__(self, replica: Replica) -> None:
        self._replica = replica

    def __getattr__(self, name: str):
        return getattr(self._replica.chain, name)

    def submit(self, tx: Transaction) -> bytes:
        return self._replica.send(tx)


async def sleep_until(t: float) -> None:
    await asyncio.sleep(max(0.0, t - time.time()))


# ------------------------------------------------------------------------------------------------------ relay
async def run_relay(plan: MarketPlan, meter: str) -> None:
    """Relay onion cells for the market until the process is stopped."""
    key = PrivateKey(read_seed(relay_key_path(plan.folder, meter)))
    node = await OnionNode(plan.transport(relay_name(meter)), key).start()
    log.info("relay %s listening on %s:%d", node.name, *plan.listen(node.name))
    try:
        await asyncio.Event().wait()
    finally:
        await node.close()


# --------------------------------------------------------------------------------------------------- bid store
class BidStoreProcess:
    """A bid store's process: the book and the mix board as onion services, the round clock, and (with a standby)
    its look at the market lease, which decides whether it is the active store."""

    def __init__(self, plan: MarketPlan, store: StorePlan, key: KeyPair) -> None:
        self.plan = plan
        self.me = store
        self.replica = plan.replica(store.id, key, *plan.concentrators)
        self.rounds: list[dict] = []
        self.senders: set[str] = set()
        self.lease = plan.lease(store, self.replica.chain.chain_id)
        self._held_at = -math.inf  # when it last saw that it holds the lease (monotonic s)
        self._beat = time.monotonic()  # when its event loop last ran (monotonic s)
        self.takeovers: list[dict] = []
        self.carried: Counter[str] = Counter()  # the refusals of the stores active before it

    def active(self) -> bool:
        """Whether this store acts as the active one: it saw itself hold the lease less than ``LEASE_SLACK_S`` ago
        (always, without a lease)."""
        return self.lease is None or time.monotonic() - self._held_at < LEASE_SLACK_S

    async def start(self) -> BidStoreProcess:
        self.replica.sync()
        store_node = await OnionNode(self.plan.transport(self.me.store)).start()
        self.operator = MarketOperator(
            store_node, _OperatorChain(self.replica), self.replica.slot, "lp", self.plan.feeders, self.active
        )
        self._forward = self.operator.service.handlers["submit"]
        self.operator.service.register("submit", self._submit, passive=True)
        store_node.serve(self._on_store_request)
        board_node = await OnionNode(self.plan.transport(self.me.board)).start()
        self.board = MixBoard(
            board_node,
            self.replica.chain.chain_id,
            self.replica.output,
            self._submit_mix,
            self.plan.mix_timeout,
            active=self.active,
            refused=self.operator.service.refused,
        )
        self.nodes = [store_node, board_node]
        return self

    def keep_lease(self, loop: asyncio.AbstractEventLoop, stop: threading.Event) -> None:
        """The lease thread: look at the lease every ``LEASE_POLL_S`` (which keeps it renewed while held) until
        ``stop``; on becoming active, have ``loop`` carry on the predecessor's status (:meth:`take_over`). A thread of
        its own, so the store's blocking calls to the nodes do not starve the lease; but a store whose event loop has
        not run for ``LOOP_STALL_S`` stops looking, and so hands over."""
        was, unreachable = False, False
        while not stop.wait(LEASE_POLL_S):
            held = False
            if time.monotonic() - self._beat < LOOP_STALL_S:
                try:
                    held = self.lease.contend()
                    unreachable = False
                except ConnectionError as e:
                    if not unreachable:
                        log.warning("bid store %s cannot reach etcd: %s", self.me.id, e)
                    unreachable = True
            if held:
                self._held_at = time.monotonic()
            now = self.active()
            if now and not was:
                loop.call_soon_threadsafe(self.take_over)
            elif was and not now:
                log.warning("bid store %s is no longer the active one (the lease is gone): standby", self.me.id)
            was = now

    async def beat(self) -> None:
        """Show the lease thread that the event loop runs."""
        while True:
            self._beat = time.monotonic()
            await asyncio.sleep(LEASE_POLL_S)

    def take_over(self) -> None:
        """Record that this store became the active one and carry on the predecessor's ``market-status.json``."""
        at = time.time()
        log.info("bid store %s is now the active one (it holds the market lease) at %.3f", self.me.id, at)
        path = self.plan.folder / STATUS_FILE
        if path.exists():
            before = json.loads(path.read_text())
            if before.get("active") != self.me.id:
                self.rounds = merge_rounds(before["rounds"], self.rounds)
                self.senders |= set(before["senders"])
                self.carried = Counter(before["refused"])
                self.takeovers = before.get("takeovers", [])
        self.takeovers.append({"store": self.me.id, "slot": self.replica.slot(at), "at": at})
        self.write_status()

    async def _on_store_request(self, stream: Stream, data: bytes) -> None:
        """Log the sender (always an exit relay), catch up with the chain, answer (and log a refusal)."""
        self.senders.add(stream.exit_relay)
        log.info("bid store request from %s (%d bytes)", stream.exit_relay, len(data))
        self.replica.sync()
        service = self.operator.service
        before = sum(service.refused.values())
        await service.handle(stream, data)
        if sum(service.refused.values()) > before:
            log.info("bid store refused a request from %s (refusals so far: %s)", stream.exit_relay, service.refused)

    def _current(self) -> dict:
        return self.rounds[-1] if self.rounds else {"deposits": [], "mixes": []}

    async def _submit(self, request: dict) -> dict:
        """A prosumer's deposit, forwarded to the node (so it is never sent under the meter's identity)."""
        try:
            answer = await self._forward(request)
        except ApiError as e:
            raise BidStoreError("bid-bad-transaction", f"{e.code}: {e.message}") from None
        except NodeUnreachable as e:
            raise BidStoreError("bid-node-unreachable", str(e)) from None
        self._current()["deposits"].append(answer["txid"])
        return answer

    def _submit_mix(self, tx: Transaction) -> None:
        try:
            txid = self.replica.send(tx)
        except (ApiError, NodeUnreachable) as e:
            log.warning("mix transfer refused by the node: %s", e)
            return
        self._current()["mixes"].append(txid.hex())

    async def run(self) -> None:
        """Run a round in every slot, from the next slot on."""
        s = self.replica.slot() + 1
        while True:
            await self.round(s)
            s = max(s + 1, self.replica.slot())

    async def round(self, s: int) -> None:
        """The round in slot ``s`` for slot ``s + 1``. Every store opens the round's mix pools (a standby that takes
        over in the mix phase takes joins at once); only the active one clears it and submits its trades, each step
        checked against the lease just before it."""
        r = self.replica
        units = self.plan.denominations(s + 1, r.genesis.slot_seconds)
        await sleep_until(r.at(s, 0.0))
        rec = new_round(s + 1)
        self.rounds.append(rec)
        for d in units.values():
            self.board.expect(d, len(self.plan.prosumers))
        await sleep_until(r.at(s, PHASES["mix"]))
        for d in units.values():  # the pools not full yet run with those who joined
            await self.board.close_pool(d)
        await sleep_until(r.at(s, PHASES["close"]))
        r.sync()
        posted = len(self.operator.store.open_orders(r.slot()))
        try:
            settlement = self.operator.close()
        except BidStoreError as e:  # not the active store: the book stays as it is
            log.info("round for slot %d: %s", s + 1, e.message)
            return
        rec.update(store=self.me.id, orders=posted)
        rec["matched_w"] = sum(m.power_w for t in settlement.trades for m in t.matches)
        await sleep_until(r.at(s, PHASES["submit"]))
        txs = []
        for tx in settlement.signed():
            try:
                self.operator.check_active("submit trades")
                txs.append(r.send(tx).hex())
            except BidStoreError as e:
                log.warning("round for slot %d: the lease was lost before its trades were all submitted: %s", s + 1, e)
                break
            except (ApiError, NodeUnreachable) as e:
                log.warning("trade refused by the node: %s", e)
        rec["trades"] = txs
        log.info("round for slot %d: %d orders, %d trades submitted (%d W)", s + 1, posted, len(txs), rec["matched_w"])
        self.write_status()

    def write_status(self) -> None:
        """``market-status.json`` (the active store's only): the active store, the take-overs, the rounds and which
        of their txids the chain committed, the senders seen, the refusals."""
        if not self.active():
            return
        self.replica.sync()
        committed = {t.hex() for t in self.replica.committed}
        status = {
            "height": self.replica.chain.height,
            "active": self.me.id,
            "stores": [st.id for st in self.plan.stores],
            "takeovers": self.takeovers,
            "rounds": [
                {
                    **rec,
                    "committed_trades": sum(t in committed for t in rec["trades"]),
                    "committed_deposits": sum(t in committed for t in rec["deposits"]),
                }
                for rec in self.rounds
            ],
            "senders": sorted(self.senders),
            "refused": dict(self.carried + self.operator.service.refused),
        }
        write_json(self.plan.folder / STATUS_FILE, status)

    async def close(self) -> None:
        if self.lease is not None:
            self.lease.resign()
            self.lease.close()
        for node in self.nodes:
            await node.close()


def new_round(slot: int) -> dict:
    """A store's record of the round for ``slot``: the store that cleared it, its orders, trades (txids), matched
    power (W), and the deposits and mixes the store submitted while it was the current round."""
    return {"slot": slot, "store": None, "orders": 0, "trades": [], "matched_w": 0, "deposits": [], "mixes": []}


def merge_rounds(*records: list[dict]) -> list[dict]:
    """Round records of several stores as one list by slot: their txids together (each once), the most orders and
    matched power (only one store clears a round), the store that cleared it."""
    by_slot: dict[int, dict] = {}
    for rec in (rec for recs in records for rec in recs):
        have = by_slot.setdefault(rec["slot"], new_round(rec["slot"]))
        for k in ("trades", "deposits", "mixes"):
            have[k] += [t for t in rec[k] if t not in have[k]]
        have["orders"], have["matched_w"] = max(have["orders"], rec["orders"]), max(have["matched_w"], rec["matched_w"])
        have["store"] = have["store"] or rec.get("store")
    return [by_slot[slot] for slot in sorted(by_slot)]


async def run_bidstore(plan: MarketPlan, store: StorePlan, key: KeyPair) -> None:
    proc = await BidStoreProcess(plan, store, key).start()
    log.info("bid store %s and its mix board serving; chain height %d", store.id, proc.replica.chain.height)
    stop, tasks = threading.Event(), []
    if proc.lease is not None:
        tasks.append(asyncio.ensure_future(proc.beat()))
        looking = threading.Thread(
            target=proc.keep_lease, args=(asyncio.get_running_loop(), stop), name="market lease", daemon=True
        )
        looking.start()
    try:
        while True:
            try:
                await proc.run()
            except (NodeUnreachable, ApiError) as e:  # the concentrator is away: wait for the next slot
                log.warning("round abandoned: %s", e)
                await asyncio.sleep(proc.replica.genesis.slot_seconds / 2)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await proc.close()


# ---------------------------------------------------------------------------------------------------- prosumer
async def live_relays(descriptors: list[RelayDescriptor], book: dict[str, tuple[str, int]]) -> list[RelayDescriptor]:
    """The relays that accept a TCP connection now (a stopped relay is left out of the next circuits)."""

    async def alive(d: RelayDescriptor) -> bool:
        if d.node not in book:
            return False
        try:
            _, w = await asyncio.wait_for(asyncio.open_connection(*book[d.node]), 1.0)
        except (OSError, TimeoutError):
            return False
        w.close()
        return True

    ok = await asyncio.gather(*(alive(d) for d in descriptors))
    return [d for d, up in zip(descriptors, ok, strict=True) if up]


async def open_circuit(node: OnionNode, service: str, attempts: int = 4, timeout: float = 3.0) -> Circuit:
    """A circuit to ``service`` over a random path; a path that cannot be built is retried over another."""
    error: Exception | None = None
    for _ in range(attempts):
        try:
            return await node.open_circuit(service, timeout=timeout)
        except (OnionError, TransportError) as e:
            error = e
    raise OnionError(f"no circuit to {service!r} after {attempts} attempts: {error}")


class ProsumerProcess:
    """One home's market process: its meter's issues, its wallet, its mixes, orders, signatures and deposits.

    ``stores``: the bid stores in the order it tries them: the one that says it is active (asked each round,
    :meth:`find_active`) or last served it first; a store that cannot be reached or refuses as not active is left
    for the next in the same phase while that phase lasts.

    A process that is killed and started again loses nothing: the keys of its one-time addresses and of its
    meter's deposit addresses are journaled before they are handed out (:func:`wallet_paths`), the bills not yet
    acknowledged are kept in a file (:func:`pending_bills_path`), and on start it scans the chain from its first
    block for its coins, its meter's issues and nonce, and what was deposited back; it bills on from the slot after
    the last one in :func:`bills_path`."""

    def __init__(self, plan: MarketPlan, meter: str, key: KeyPair) -> None:
        self.plan = plan
        self.me = plan.prosumers[meter]
        self.replica = plan.replica(meter, key, self.me.api, *plan.concentrators)
        self.key = key
        self.outbox = BillOutbox(
            plan.clients(meter, key, *plan.concentrators), pending_bills_path(plan.folder, meter)
        )
        self.reporting: asyncio.Future | None = None
        self.stores = list(plan.stores)
        self.posted_to: StorePlan | None = None  # the store that took this round's order

    async def start(self) -> ProsumerProcess:
        r = self.replica
        while (limits := r.chain.state.policy.limits(self.me.meter, r.slot())) is None or not self.priced():
            await asyncio.sleep(POLL_S)  # not enrolled yet, or no prices to bill at yet
            r.sync()
        self.journals = [KeyJournal(path) for path in wallet_paths(self.plan.folder, self.me.meter)]
        wallet, deposits = (Wallet({k.address: k for k in j.keys}, keep=j.keep) for j in self.journals)
        meter = SmartMeter(
            self.me.meter, self.key, r.chain.chain_id, r.genesis.slot_seconds, limits=limits, deposits=deposits
        )
        for block in r.chain.blocks(1):  # what it held before a restart (nothing on a first start)
            wallet.scan(block)
            meter.scan(block, r.chain.state.slot_of(block.header.time))
        node = OnionNode(self.plan.transport(prosumer_name(self.me.meter)))
        self.prosumer = Prosumer(meter, wallet, await node.start(), feeder=self.me.feeder)
        path = bills_path(self.plan.folder, self.me.meter)
        kept = json.loads(path.read_text()) if path.exists() else {"bills": []}
        self.bills: list[dict] = kept["bills"]
        #: the first slot this meter bills: the first round's (nothing was issued before it)
        self.from_slot: int = kept.get("from_slot", self.bills[0]["slot"] if self.bills else r.slot() + 1)
        self.next_bill = self.bills[-1]["slot"] + 1 if self.bills else self.from_slot
        self.write_bills()
        return self

    def write_bills(self) -> None:
        """Replace :func:`bills_path` with the bills so far."""
        data = {"meter": self.me.meter, "from_slot": self.from_slot, "bills": self.bills}
        write_json(bills_path(self.plan.folder, self.me.meter), data)

    def priced(self) -> bool:
        """Whether the DSO's prices are in force (the meter bills at them)."""
        return self.replica.chain.state.policy.prices(self.replica.slot()) is not None

    def sync(self) -> None:
        for block in self.replica.sync():
            self.prosumer.wallet.scan(block)
            self.prosumer.meter.scan(block, self.replica.chain.state.slot_of(block.header.time))

    async def until(self, done: Callable[[], bool], deadline: float) -> bool:
        """Poll the chain until ``done()`` or the deadline (Unix s)."""
        while True:
            self.sync()
            if done() or time.time() >= deadline:
                return done()
            await asyncio.sleep(POLL_S)

    async def run(self) -> None:
        """Take part in a round in every slot, from the next slot on."""
        s = self.replica.slot() + 1
        while True:
            await self.round(s)
            now = time.time()
            current = self.replica.slot(now)
            late = now > self.replica.at(current, PHASES["join"])  # the last round's trades committed late
            s = max(s + 1, current + late)

    async def round(self, s: int) -> None:
        """The round in slot ``s`` for slot ``s + 1``."""
        p, r = self.prosumer, self.replica
        units = self.plan.denominations(s + 1, r.genesis.slot_seconds)
        await sleep_until(r.at(s, 0.0))
        self.sync()
        self.bill(s - 2)
        self.report()
        relays = await live_relays(self.plan.descriptors, self.plan.book)
        p.node.directory = RelayDirectory(relays, r.chain.state.policy, s)
        try:
            issue = p.extract({d: 1 for d in units.values()}, s)
            r.send(issue)
        except (MeterError, ApiError) as e:
            log.warning("%s: no issue for slot %d: %s", p.name, s + 1, e)
            return
        asking = asyncio.ensure_future(self.find_active())  # while the issue commits
        if not await self.until(lambda: issue.txid in r.committed, r.at(s, PHASES["mix"])):
            log.warning("%s: the issue for slot %d did not commit in time", p.name, s + 1)
        await asking
        coins = [op for op, o in p.wallet.coins.items() if o.asset in units.values()]
        mixed = await self.mix(coins, r.at(s, PHASES["mix"]))
        await self.until(lambda: all(op in p.wallet.coins for op in mixed), r.at(s, PHASES["close"] - 0.1))
        await self.post(s + 1, [op for op in mixed if op in p.wallet.coins], r.at(s, PHASES["close"]))
        await sleep_until(r.at(s, PHASES["sign"]))
        trades = await self.sign()
        await self.until(lambda: trades <= r.committed, r.at(s + 1, PHASES["mix"]))
        await self.deposit()
        await p.forget()

    def bill(self, last: int) -> None:
        """The meter bills every slot up to ``last`` not billed yet (a slot's deposits are in by two slots later) at
        the prices in force, from what it measured, issued and got back (``SmartMeter.bill``, as in the
        simulator); what the DSO may see of each slot (energy to settle, amount, the ECA audit) goes to
        :func:`bills_path` and to the outbox for the concentrators (:meth:`report`)."""
        if last < self.next_bill:
            return
        policy = self.replica.chain.state.policy
        billed = []
        for t in range(self.next_bill, last + 1):
            b = self.prosumer.meter.bill(t, self.me.measured(t), policy.prices(t))
            billed.append(BillReport(slot=t, energy_ws=b.energy_ws, amount=b.amount, eca_audit_ok=b.eca_audit_ok))
        self.next_bill = last + 1
        self.outbox.add(billed)  # first: a crash after it reports them again (the node keeps one copy), not never
        self.bills += [b.model_dump() for b in billed]
        self.write_bills()
        log.info(
            "%s: billed slots up to %d (%d minor units in all)",
            self.me.meter,
            last,
            sum(b["amount"] for b in self.bills),
        )

    def report(self) -> None:
        """Send the bills the concentrators have not acknowledged, in the background (a node that does not answer
        does not delay the round); one report at a time."""
        if self.reporting is None or self.reporting.done():
            self.reporting = asyncio.ensure_future(asyncio.to_thread(self.outbox.flush))

    async def find_active(self) -> None:
        """Ask every bid store, each over a fresh circuit, whether it is the active one, until one says so (a dead
        store's silence is not awaited then); try first the one that says so, else those that answered (a standby
        may take over), then the others (keeping the order within each)."""
        if len(self.stores) < 2:
            return

        async def ask(store: StorePlan) -> tuple[StorePlan, int]:
            """The store and its rank: 0 active, 1 answered not active, 2 no answer."""
            try:
                circuit = await open_circuit(self.prosumer.node, store.store)
                try:
                    answer = await BidStoreClient(circuit, CALL_TIMEOUT_S).call("active")
                finally:
                    await circuit.close()
            except (BidStoreError, OnionError, TransportError):
                return store, 2
            return store, 0 if answer.get("active") else 1

        asking = [asyncio.ensure_future(ask(st)) for st in self.stores]
        ranks = dict.fromkeys(self.stores, 2)
        try:
            for answer in asyncio.as_completed(asking):
                store, ranks[store] = await answer
                if ranks[store] == 0:
                    break
        finally:
            for task in asking:
                task.cancel()
        self.stores.sort(key=ranks.__getitem__)  # stable: the order within a rank is kept

    def served(self, store: StorePlan, ok: bool) -> None:
        """Try ``store`` first from now on (it served), or last (it could not be reached or is not active)."""
        self.stores.remove(store)
        self.stores.insert(0 if ok else len(self.stores), store)

    async def mix(self, coins: list[bytes], pools_close: float) -> list[bytes]:
        """CoinShuffle each coin through its own circuit; returns the fresh coins (outpoints) of the mixes.

        ``pools_close``: when the boards run their pools (Unix s): the first answer is awaited until then (and a
        ``mix_timeout``); a board that is not active or not reached is left for the other store's until then."""
        p = self.prosumer

        async def one(op: bytes) -> bytes | None:
            out = p.wallet.coins[op]
            while True:
                for store in list(self.stores):
                    participant = Participant(p.wallet.keys[out.owner], op, p.meter.chain_id, p.wallet.new_address)
                    wait = pools_close - time.time() + self.plan.mix_timeout
                    try:
                        circuit = await open_circuit(p.node, store.board)
                        try:
                            outcome = await mix_coin(
                                p.node, store.board, participant, out.asset, self.plan.mix_timeout, circuit, wait
                            )
                        finally:
                            await circuit.close()
                        return outcome.coin
                    except (MixError, OnionError, TransportError) as e:
                        log.warning("%s: a coin was not mixed by %s: %s", p.name, store.board, e)
                        if isinstance(e, MixError) and e.code not in (MIX_NOT_ACTIVE, "mix-timeout"):
                            return None
                        if not isinstance(e, MixError) or e.code == MIX_NOT_ACTIVE:
                            self.served(store, False)
                    if time.time() >= pools_close:
                        return None
                await asyncio.sleep(RETRY_S)  # no board took it: a standby may be taking over

        return [c for c in await asyncio.gather(*(one(op) for op in coins)) if c is not None]

    async def post(self, t: int, mixed: list[bytes], until: float) -> None:
        """Post this round's order with mixed coins only (an unmixed coin would name the meter), to the first store
        that takes it; a store not reached or not active is left for the next while it is before ``until``
        (Unix s, the close)."""
        p, side = self.prosumer, Side(self.me.side)
        self.posted_to = None
        by_kind = {p.wallet.coins[op].asset.kind: op for op in mixed}
        kinds = (AssetKind.EPA,) if side is Side.OFFER else (AssetKind.ECA, AssetKind.FA)
        if not all(k in by_kind for k in kinds):
            log.info("%s: no mixed coins to back an order for slot %d", p.name, t)
            return
        backing = tuple(by_kind[k] for k in kinds)
        order = AnonOrder(
            side, self.me.feeder, t, t + 1, self.plan.unit_w, self.me.limit_price, t, p.wallet.new_address(), backing
        )
        keys = tuple(p.wallet.keys[p.wallet.coins[op].owner] for op in backing)
        while True:
            for store in list(self.stores):
                client = None
                try:
                    client = BidStoreClient(await open_circuit(p.node, store.store), CALL_TIMEOUT_S)
                    oid = await client.post(order, keys)
                except (BidStoreError, OnionError, TransportError) as e:
                    log.warning("%s: order not posted to %s: %s", p.name, store.store, e)
                    if client is not None:
                        await client.circuit.close()
                    if isinstance(e, BidStoreError) and e.code != NOT_ACTIVE:
                        return
                    self.served(store, False)
                    if time.time() >= until:
                        return
                    continue
                self.served(store, True)
                self.posted_to = store
                p.orders[oid] = OrderState(order, keys, {k.address for k in keys} | {order.pay_to}, client)
                log.info("%s: posted %s for slot %d to %s", p.name, side, t, store.store)
                return
            await asyncio.sleep(RETRY_S)  # no store took it: a standby may be taking over

    async def sign(self) -> set[bytes]:
        """Check and sign this round's trades; returns their txids."""
        p = self.prosumer
        try:
            await p.sign_trades(self.replica.genesis.slot_seconds)
            rows = [
                row for oid, st in p.orders.items() for row in (await st.client.call("trades", order_id=oid))["trades"]
            ]
        except (BidStoreError, OnionError, TransportError) as e:
            log.warning("%s: trades not signed: %s", p.name, e)
            return set()
        return {decode_transaction(bytes.fromhex(row["tx"])).txid for row in rows}

    async def deposit(self) -> None:
        """Everything held back to the meter, through a store: over the order's circuit, then over a fresh circuit
        to each store in turn while some are left (a relay on the circuit stopped, its store died; a store that does
        not answer goes last). Any store forwards deposits, active or not; what no store took goes with the next
        round's deposits."""
        p = self.prosumer
        pending = p.deposits()
        order = next(iter(p.orders.values()), None)
        if order is not None and not await self.submit_over(order.client, pending) and self.posted_to is not None:
            self.served(self.posted_to, False)
        for store in list(self.stores):
            if not pending:
                break
            try:
                client = BidStoreClient(await open_circuit(p.node, store.store), CALL_TIMEOUT_S)
            except (OnionError, TransportError) as e:
                log.warning("%s: no circuit to %s for the deposits: %s", p.name, store.store, e)
                continue
            try:
                if not await self.submit_over(client, pending):
                    self.served(store, False)
            finally:
                await client.circuit.close()
        log.info("%s: deposits submitted, %d left over", p.name, len(pending))

    async def submit_over(self, client: BidStoreClient, pending: list[Transaction]) -> bool:
        """Hand the store the ``pending`` deposits over ``client`` (each taken off the list once handed over, or
        refused by the node: the store logs that); False if the circuit broke."""
        try:
            while pending:
                with contextlib.suppress(BidStoreError):
                    await client.call("submit", tx=pending[0].encode().hex())
                pending.pop(0)
        except (OnionError, TransportError) as e:
            log.warning("%s: a deposit circuit broke (%s); again over a fresh one", self.prosumer.name, e)
            return False
        return True

    async def close(self) -> None:
        await self.prosumer.node.close()
        for journal in self.journals:
            journal.close()


async def run_prosumer(plan: MarketPlan, meter: str, key: KeyPair) -> None:
    proc = await ProsumerProcess(plan, meter, key).start()
    log.info("prosumer %s trading (%s at %d)", meter, proc.me.side, proc.me.limit_price)
    try:
        while True:
            try:
                await proc.run()
            except (NodeUnreachable, ApiError) as e:
                log.warning("round abandoned: %s", e)
                await asyncio.sleep(proc.replica.genesis.slot_seconds / 2)
    finally:
        await proc.close()


def run_role(folder: Path, role: str, meter: str | None, key: KeyPair | None) -> None:
    """Run one market process (``relay`` or ``prosumer`` of ``meter``, or a ``bidstore``) until it is stopped.

    For ``bidstore``, ``meter`` names the store of the plan (None: the primary, with ``key``); a store named runs
    with its own key from the plan's folder (``cluster market-process --role bidstore --meter bidstore-standby``)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    plan = MarketPlan.load(folder)
    store = plan.store(meter or BIDSTORE_ID) if role == "bidstore" else None
    jobs: dict[str, Callable[[], Awaitable[None]]] = {
        "relay": lambda: run_relay(plan, meter),
        "bidstore": lambda: run_bidstore(plan, store, key if meter is None else plan.store_key(store)),
        "prosumer": lambda: run_prosumer(plan, meter, key),
    }
    asyncio.run(jobs[role]())


def descriptor_json(d: RelayDescriptor) -> dict:
    return {"meter": d.meter, "node": d.node, "relay_key": d.relay_key.hex(), "signature": d.signature.hex()}
