"""The multi-tier ledger run in one process: HAN, NAN, FAN/WAN and head-end chain instances, anchored upwards.

One chain per tier instance (Olivares-Rojas et al. 2023, §3.1, Fig. 2): a HAN chain per home (coordinator: the smart
meter; members: its appliances), a NAN chain per neighbourhood (coordinator: the data concentrator, with a backup;
members: its meters), a FAN/WAN chain over concentrators (members: the concentrators of its NANs), and one head-end
chain at the utility (members: the FAN/WAN coordinators). A device is the coordinator of one tier and a member of
the tier above with the same key: the meter coordinates its HAN and validates on its NAN.

Each tier stores only summaries of the tier below: a meter reports on the NAN the total of its home (its own
reading), a concentrator reports on the FAN/WAN the total of its NAN per summary period, and anchors
(:mod:`.anchor`) link every block to the tier above. The DSO enrols each chain's members with a chain-local policy
and publishes prices on the head-end; each coordinator relays the DSO's copy for its chain once the price is
committed on its parent (:mod:`gridledger.consensus.policy_sync`).

:class:`Hierarchy` builds all of it with deterministic keys (``KeyPair.from_secret``: for simulations and tests,
never for deployments) and drives it minute by minute with :meth:`Hierarchy.step`. The networked node runs the
same objects on separate processes.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from gridledger.chain import Chain
from gridledger.consensus.failover import take_over
from gridledger.consensus.plausibility import Plausibility, RobustWindowCheck
from gridledger.consensus.poef import Coordinator, Replica, Round, Validator, run_round
from gridledger.consensus.policy_sync import StateView, replicate
from gridledger.ledger.block import ZERO_HASH, Block, make_block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.anchor import Anchor, make_anchor, next_height_key
from gridledger.ledger.kinds.dso_policy import DsoPolicy, MeterLimits
from gridledger.ledger.kinds.genesis import Genesis
from gridledger.ledger.kinds.reading import ContentKeys, ReadingValues, summarize
from gridledger.ledger.kinds.reading_batch import BatchingDevice
from gridledger.ledger.ruleset import Tier, tier_ruleset
from gridledger.ledger.units import DEFAULT_SLOT_SECONDS
from gridledger.petra.dso import DSO
from gridledger.store.base import Store, StoreError
from gridledger.store.sqlite import SqliteStore

START_TIME = 1_767_225_600  # 2026-01-01T00:00:00Z
#: Suffix of a backup coordinator's ID (``DC-0-0.backup``).
BACKUP = ".backup"
#: DSO limits of every NAN meter (MAXEPA, MAXECA in W; FA credit in minor units), so PETra runs on the NAN.
METER_LIMITS = (5_000, 5_000, 100_000)
#: SQLite page size of new chain stores (bytes). Blocks of the lower tiers are small and frequent (1–4 KB, every
#: second or so): with SQLite's default 4 KiB pages each block row takes a whole page; with 512 B pages a block
#: costs ~180 B more than its size (benchmarks/reading_bytes.py: 124 B per NAN reading, 164 B with 4 KiB pages; in
#: batches of 15 minutes 49 B and 53.5 B).
PAGE_SIZE = 512


@dataclass
class Member:
    """A member of one chain: its ID, key, index, reading device and validator."""

    ident: str
    key: KeyPair
    index: int
    device: BatchingDevice
    validator: Validator


@dataclass
class TierChain:
    """One tier instance: its coordinators (primary first), its members and their shared replica."""

    name: str
    tier: Tier
    genesis: Genesis
    coordinators: list[Coordinator]
    members: dict[str, Member]
    replica: Replica
    parent: TierChain | None = None
    children: list[TierChain] = field(default_factory=list)
    active: int = 0
    down: set[int] = field(default_factory=set)

    @property
    def chain_id(self) -> bytes:
        return self.genesis.chain_id

    @property
    def coordinator(self) -> Coordinator:
        """The coordinator in charge."""
        return self.coordinators[self.active]

    @cached_property
    def validators(self) -> dict[bytes, Validator]:
        """The members' validators by public key."""
        return {m.key.public: m.validator for m in self.members.values()}

    def replicas(self) -> list[Replica]:
        """Every copy of this chain in the process (live coordinators' and the members')."""
        return [c.replica for i, c in enumerate(self.coordinators) if i not in self.down] + [self.replica]

    def anchored(self) -> int:
        """How many of this chain's blocks the parent chain has anchored (0 at the head-end)."""
        return 0 if self.parent is None else self.parent.replica.state.nonces.get(next_height_key(self.chain_id), 0)

    def block_hashes(self, start: int) -> list[bytes]:
        return [b.hash for b in self.coordinator.chain.blocks(start)]

    def round(self, time: int) -> Round:
        """One PoEf round led by the coordinator in charge."""
        return run_round(self.coordinator, self.validators, time, self.replicas())

    def enrol(self, dso: DSO, time: int, limits: tuple[int, int, int] | None = None) -> Block:
        """Block 1: the DSO authorizes the members (with PETra limits if given); the committee is empty until then."""
        authorize = {m.ident: m.key.public for m in self.members.values()}
        lims = None if limits is None else [MeterLimits(m, *limits) for m in authorize]
        slot = self.coordinator.chain.state.slot_of(time)
        txid = self.coordinator.submit(dso.policy(slot, authorize=authorize, limits=lims))
        result = self.round(time)
        if result.committed is None:
            why = result.failure or self.coordinator.rejected.get(txid)
            raise RuntimeError(f"enrolment of {self.name} did not commit: {why}")
        return result.committed

    def fail_over(self) -> Block | None:
        """The coordinator in charge stops (e.g. under DoS); the next live one catches up from the members'
        replica and takes over (:func:`~gridledger.consensus.failover.take_over`); the clients resubmit what was
        still pending (simulated here with the stopped coordinator's queue). Returns the adopted block, if any."""
        stopped = self.coordinators[self.active]
        self.down.add(self.active)
        self.active = next(i for i in range(len(self.coordinators)) if i not in self.down)
        new = self.coordinator
        new.replica.catch_up(self.replica.chain.blocks(new.replica.height + 1))
        adopted = take_over(new, self.validators.values(), previous=stopped.key.public)
        for tx in stopped.pending.values():
            new.submit(tx)
        return adopted

    def relay_prices(self, price_copies: list[tuple[tuple[int, tuple[int, int]], dict[bytes, DsoPolicy]]]) -> None:
        """Submit this chain's copy of each price signal once the parent has committed it (head-end: at once)."""
        for signal, copies in price_copies:
            mine = copies.get(self.chain_id)
            if mine is None:  # a signal for other chains (e.g. one feeder's reprice)
                continue
            if mine.txid in {p.txid for p in self.coordinator.chain.state.policy.policies}:
                continue
            if self.coordinator.parent is None or signal in self.coordinator.parent.price_signals():
                self.coordinator.submit(mine)

    def anchor_up(self) -> None:
        """Anchor this chain's unanchored blocks into its parent (one anchor in flight per child)."""
        parent = self.parent
        if parent is None:
            return
        in_flight = parent.coordinator.in_flight
        pending = [*parent.coordinator.pending.values(), *(in_flight.transactions if in_flight else ())]
        if any(isinstance(tx, Anchor) and tx.child == self.chain_id for tx in pending):
            return
        first = parent.coordinator.chain.state.nonces.get(next_height_key(self.chain_id), 0)
        if first > self.coordinator.chain.height:
            return
        # the coordinator in charge signs, if the DSO enrolled it on the parent (a HAN's meter is; its backup not)
        members = parent.validators
        signer = next(c.key for c in (self.coordinator, *self.coordinators) if c.key.public in members)
        genesis = self.genesis if first == 0 else None
        parent.coordinator.submit(
            make_anchor(parent.chain_id, self.chain_id, first, self.block_hashes(first), signer, genesis)
        )

    def close(self) -> None:
        for replica in {id(r): r for r in [*(c.replica for c in self.coordinators), self.replica]}.values():
            replica.chain.store.close()


def chain_name(tier: Tier, instance: str) -> str:
    """The genesis name of a tier instance, e.g. ``chain_name(Tier.NAN, "DC-01") == "nan:DC-01"`` (a name only:
    the chain's tier is its genesis's rule set)."""
    return f"{tier.value}:{instance}"


def store_name(name: str) -> str:
    """The file name of a node's store (``nan:DC-0-0.coordinator`` → ``nan_DC-0-0.coordinator.sqlite``)."""
    return f"{name.replace(':', '_')}.sqlite"


def sqlite_store(path: Path | None, page_size: int = PAGE_SIZE, durable: bool = True) -> SqliteStore:
    """A chain store at ``path`` (None: in memory); a new file gets ``page_size``-byte pages (``durable``: see
    :class:`~gridledger.store.sqlite.SqliteStore`)."""
    if path is None:
        return SqliteStore(":memory:")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path)
        try:
            db.execute(f"PRAGMA page_size = {int(page_size)}")
            db.execute("PRAGMA journal_mode = WAL")
        finally:
            db.close()
    return SqliteStore(path, durable=durable)


def replica_chain(path: Path | None, genesis_block: Block, durable: bool = True) -> Chain:
    """A node's own copy of a chain, started from the genesis block (as a node joining the chain does)."""
    return start_chain(sqlite_store(path, durable=durable), genesis_block)


def start_chain(store: Store, genesis_block: Block, *, reopen: bool = False) -> Chain:
    """A copy of a chain in ``store``: started from ``genesis_block`` in an empty store, or (``reopen``) the chain
    the store already holds, which must start with that very genesis block."""
    if not reopen or store.tip_height() is None:
        return Chain.from_genesis_block(store, genesis_block)
    chain = Chain.open(store)
    if chain.genesis_block.hash != genesis_block.hash:
        raise StoreError(f"the store holds another chain than {chain.genesis.name!r} expects")
    return chain


def open_location(directory: Path, where: str) -> Store:
    """A chain copy a run manifest names: ``where`` is a SQLite file in ``directory`` or a ``postgresql://`` URL."""
    from gridledger.store import open_store

    return open_store(where) if "://" in where else SqliteStore(directory / where)


def build_chain(
    tier: Tier,
    instance: str,
    member_keys: dict[str, KeyPair],
    coordinator_keys: list[KeyPair],
    *,
    dso: KeyPair,
    content: ContentKeys,
    directory: Path | None = None,
    plausibility: Plausibility | None = None,
    parent: TierChain | None = None,
    start_time: int = START_TIME,
    members_directory: Path | None = None,
    slot_seconds: int = DEFAULT_SLOT_SECONDS,
    durable: bool = True,
    stores: Callable[[str], Store] | None = None,
    reopen: bool = False,
    batch_minutes: int = 1,
) -> TierChain:
    """One tier instance: genesis naming ``coordinator_keys`` (primary first), each coordinator's own store and
    a store shared by the members' validators, in ``directory`` (None: in memory; the members' store goes to
    ``members_directory``, in memory by default; ``durable``: see :func:`sqlite_store`).

    ``stores`` (node name such as ``nan:DC-0.coordinator`` → its store) replaces the SQLite files; with ``reopen``
    stores that already hold the chain are reopened (e.g. to resume a run) instead of refused. ``batch_minutes``: how
    many consecutive minutes each member's device puts in one READING_BATCH when it ``report``s (1: a READING a
    minute)."""
    plausibility = plausibility or RobustWindowCheck()
    name = chain_name(tier, instance)
    proposers = tuple(k.public for k in coordinator_keys)
    genesis = Genesis(name, slot_seconds, start_time, dso.public, proposers, ruleset=tier_ruleset(tier).name)
    keys = content.chain(genesis.chain_id)
    view = None if parent is None else StateView(lambda: parent.replica.state)

    def store(node: str, where: Path | None) -> Store:
        if stores is not None:
            return stores(f"{name}.{node}")
        return sqlite_store(None if where is None else where / store_name(f"{name}.{node}"), durable=durable)

    genesis_block = make_block(genesis.chain_id, 0, ZERO_HASH, start_time, (genesis,), coordinator_keys[0])
    coordinators = []
    for i, key in enumerate(coordinator_keys):
        chain = start_chain(store("coordinator" if i == 0 else f"backup{i}", directory), genesis_block, reopen=reopen)
        coordinators.append(Coordinator(Replica(chain, plausibility.window), key, keys, plausibility, view))
    replica = Replica(
        start_chain(store("members", members_directory), genesis_block, reopen=reopen), plausibility.window
    )
    members = {}
    for index, (ident, key) in enumerate(member_keys.items()):
        device = BatchingDevice(genesis.chain_id, index, key, keys.member_key(index), batch_minutes=batch_minutes)
        members[ident] = Member(ident, key, index, device, Validator(key, replica, plausibility, view))
    node = TierChain(name, tier, genesis, coordinators, members, replica, parent)
    if parent is not None:
        parent.children.append(node)
    return node


def build_neighbourhood(
    meters: int,
    *,
    instance: str = "DC-0",
    backup: bool = False,
    directory: Path | None = None,
    start_time: int = START_TIME,
    plausibility: Plausibility | None = None,
    time: int | None = None,
    batch_minutes: int = 1,
) -> TierChain:
    """A stand-alone NAN chain: one concentrator (and a backup), ``meters`` enrolled smart meters (IDs
    ``MI-00000``, …), deterministic keys; the enrolment block is committed at ``time`` (default: the start).
    ``batch_minutes``: the meters' ``device.report`` sends one READING_BATCH per that many minutes."""
    dso = KeyPair.from_secret("dso")
    coordinators = [KeyPair.from_secret(instance)] + ([KeyPair.from_secret(f"{instance}{BACKUP}")] if backup else [])
    member_keys = {f"MI-{i:05d}": KeyPair.from_secret(f"{instance}/MI-{i:05d}") for i in range(meters)}
    node = build_chain(
        Tier.NAN,
        instance,
        member_keys,
        coordinators,
        dso=dso,
        content=ContentKeys(KeyPair.from_secret("root").seed),
        directory=directory,
        plausibility=plausibility,
        start_time=start_time,
        batch_minutes=batch_minutes,
    )
    node.enrol(DSO(dso, node.chain_id), start_time if time is None else time, METER_LIMITS)
    return node


def simulated_minute(rng: random.Random, base_wh: int) -> int:
    """A simulated device's energy in one minute: a steady base with ±20 % uniform noise (Wh)."""
    return max(0, base_wh + rng.randint(-base_wh // 5, base_wh // 5))


class Hierarchy:
    """A whole multi-tier ledger in one process.

    Parameters
    ----------
    fans : FAN/WAN chains under the head-end.
    nans : NAN chains under each FAN/WAN chain.
    homes : homes (HAN chains, one smart meter each) in each NAN.
    appliances : appliances (HAN members) in each home.
    directory : where each node's SQLite store is written (None: in memory).
    summary_minutes : how often a concentrator and a FAN/WAN coordinator report their tier's total upwards.
    anchor_minutes : how often each chain anchors its new blocks into its parent.
    seed : seed of the simulated consumption (keys are fixed by the chain names).
    plausibility : the analytics check every coordinator and validator runs.
    batch_minutes : each smart meter sends its NAN readings in batches of this many minutes (one READING_BATCH,
        one signature; 1: a READING a minute); a meter's reading then reaches the NAN up to that many minutes late.
    """

    def __init__(
        self,
        fans: int = 1,
        nans: int = 1,
        homes: int = 2,
        appliances: int = 2,
        *,
        directory: Path | None = None,
        summary_minutes: int = 15,
        anchor_minutes: int = 15,
        seed: int = 1,
        plausibility: Plausibility | None = None,
        batch_minutes: int = 1,
    ) -> None:
        self.directory = directory
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
        self.summary_minutes = summary_minutes
        self.anchor_minutes = anchor_minutes
        self.batch_minutes = batch_minutes
        self.plausibility = plausibility or RobustWindowCheck()
        self.rng = random.Random(seed)
        self.dso_key = KeyPair.from_secret("dso")
        self.content = ContentKeys(KeyPair.from_secret("dso-content-root").seed)
        self.dsos: dict[bytes, DSO] = {}
        self.time = START_TIME
        self.chains: dict[str, TierChain] = {}
        self.price_copies: list[tuple[tuple[int, tuple[int, int]], dict[bytes, DsoPolicy]]] = []
        self._base: dict[str, int] = {}
        self._totals: dict[str, list[ReadingValues]] = {}
        fan_ids = [f"FAN-{f}" for f in range(fans)]
        self.head = self._chain(Tier.HEAD, "utility", None, _with_backups(fan_ids))
        for f, fan_id in enumerate(fan_ids):
            nan_ids = [f"DC-{f}-{n}" for n in range(nans)]
            fan = self._chain(Tier.FAN, fan_id, self.head, _with_backups(nan_ids))
            for n, nan_id in enumerate(nan_ids):
                meter_ids = [f"MI-{f}-{n}-{h}" for h in range(homes)]
                nan = self._chain(Tier.NAN, nan_id, fan, meter_ids)
                for meter_id in meter_ids:
                    self._chain(Tier.HAN, meter_id, nan, [f"SA-{a}" for a in range(appliances)])
        for node in self.chains.values():
            node.enrol(self.dsos[node.chain_id], self.time, METER_LIMITS if node.tier == Tier.NAN else None)

    def _chain(self, tier: Tier, instance: str, parent: TierChain | None, member_ids: list[str]) -> TierChain:
        """A tier instance. Above the HAN a member is the coordinator of a child chain, with that device's key;
        a HAN's appliances have their own keys. HAN chains have one coordinator (the meter), the others a backup."""
        coordinators = [KeyPair.from_secret(instance)]
        if tier != Tier.HAN:
            coordinators.append(KeyPair.from_secret(f"{instance}{BACKUP}"))
        member_keys = {
            ident: KeyPair.from_secret(f"{instance}/{ident}" if tier == Tier.HAN else ident) for ident in member_ids
        }
        node = build_chain(
            tier,
            instance,
            member_keys,
            coordinators,
            dso=self.dso_key,
            content=self.content,
            directory=self.directory,
            plausibility=self.plausibility,
            parent=parent,
            members_directory=self.directory,
            batch_minutes=self.batch_minutes if tier == Tier.NAN else 1,
        )
        self.chains[node.name] = node
        self.dsos[node.chain_id] = DSO(self.dso_key, node.chain_id)
        if parent is not None:  # each coordinator is a member above, and there checks anchors against its replica
            for i, c in enumerate(node.coordinators):
                above = parent.members.get(instance + (BACKUP if i else ""))
                if above is not None:
                    above.validator.children[node.chain_id] = c.replica
        return node

    # ------------------------------------------------------------------ driving
    def top_down(self) -> Iterator[TierChain]:
        order = [Tier.HEAD, Tier.FAN, Tier.NAN, Tier.HAN]
        return iter(sorted(self.chains.values(), key=lambda c: order.index(c.tier)))

    def bottom_up(self) -> Iterator[TierChain]:
        return reversed(list(self.top_down()))

    def publish_prices(self, prices: tuple[int, int], slot: int) -> None:
        """The DSO publishes prices in force from ``slot``: signed copies for every chain, head-end first."""
        self.price_copies.append(((slot, prices), replicate(prices, slot, self.dsos.values())))

    def _readings(self, minute: int) -> None:
        """Every device reports the minute that just ended; summaries go up every ``summary_minutes``."""
        for node in self.chains.values():
            if node.tier != Tier.HAN:
                continue
            values = [self._appliance_values(node, m) for m in node.members.values()]
            for member, v in zip(node.members.values(), values, strict=True):
                node.coordinator.submit(member.device.reading(minute, v))
            meter = node.parent.members[node.name.partition(":")[2]]
            total = summarize(values)
            for tx in meter.device.report(minute, total):
                node.parent.coordinator.submit(tx)
            self._totals.setdefault(node.parent.name, []).append(total)
        if (minute + 1) % self.summary_minutes:
            return
        for node in list(self.bottom_up()):
            if node.tier in (Tier.NAN, Tier.FAN) and self._totals.get(node.name):
                me = node.parent.members[node.name.partition(":")[2]]
                total = summarize(self._totals.pop(node.name))
                node.parent.coordinator.submit(me.device.reading(minute, total))
                if node.parent.tier == Tier.FAN:
                    self._totals.setdefault(node.parent.name, []).append(total)

    def _appliance_values(self, node: TierChain, member: Member) -> ReadingValues:
        """A simulated appliance's minute: a steady base with ±20 % noise (Wh per minute)."""
        key = f"{node.name}/{member.ident}"
        base = self._base.setdefault(key, self.rng.randint(2, 25))
        return ReadingValues(simulated_minute(self.rng, base), 0, voltage_dv=2300 + self.rng.randint(-50, 50))

    def step(self, readings: bool = True, anchor: bool | None = None) -> dict[str, Round]:
        """One minute: devices report the minute that ended, prices are relayed, every chain runs a round
        (HAN first), and (every ``anchor_minutes``, or if ``anchor``) each chain anchors its new blocks upwards."""
        self.time += 60
        minute = (self.time - START_TIME) // 60 - 1
        if readings:
            self._readings(minute)
        if anchor is None:
            anchor = (minute + 1) % self.anchor_minutes == 0
        results = {}
        for node in self.bottom_up():
            node.relay_prices(self.price_copies)
            if node.active in node.down:
                continue
            results[node.name] = node.round(self.time)
            if anchor:
                node.anchor_up()
        return results

    def run(self, minutes: int, progress: Callable[[int], None] | None = None) -> None:
        for i in range(minutes):
            self.step()
            if progress is not None:
                progress(i + 1)

    def settle(self, max_steps: int = 12) -> None:
        """Sends the minutes the meters still hold, then steps without new readings until every chain's blocks are
        anchored all the way to the head-end."""
        for node in self.chains.values():
            for member in node.members.values():
                for tx in member.device.flush():
                    node.coordinator.submit(tx)
        for _ in range(max_steps):
            self.step(readings=False, anchor=True)
            if all(
                node.parent is None or node.anchored() > node.coordinator.chain.height for node in self.chains.values()
            ):
                return

    def manifest(self) -> dict:
        """What ``gridledger tiers`` needs to reopen the chains: name, tier, id, parent and store of each."""
        return {
            "chains": [
                {
                    "name": node.name,
                    "tier": node.tier.value,
                    "chain_id": node.chain_id.hex(),
                    "parent": None if node.parent is None else node.parent.name,
                    "store": store_name(f"{node.name}.coordinator"),
                }
                for node in self.top_down()
            ]
        }

    def close(self) -> None:
        for node in self.chains.values():
            node.close()


def _with_backups(ids: list[str]) -> list[str]:
    """Member IDs of the coordinators of child chains: each primary and its backup."""
    return [i for ident in ids for i in (ident, f"{ident}{BACKUP}")]
