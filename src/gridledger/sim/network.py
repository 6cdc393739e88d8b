"""The community's multi-tier ledger: a HAN chain per home, a NAN chain per feeder, one FAN/WAN chain, the head-end.

Keys are deterministic (``KeyPair.from_secret`` of each device's name: a simulation, never a deployment). A home's
meter coordinates its HAN chain (members: the home's measuring devices: the load circuit, the PV inverter and the
battery, as the home has them) and is a member of its feeder's NAN chain with the same key; the feeder's data
concentrator coordinates the NAN chain and is a member of the FAN/WAN chain; the FAN/WAN coordinator is a member of
the head-end chain. Every chain runs PoEf (:func:`gridledger.consensus.poef.run_round`) with the tier's committee,
and each chain anchors its blocks into its parent. A feeder listed in
``backups`` (a coordinator-loss attack, :mod:`.attacks`) has a backup concentrator: a second NAN coordinator, also
a FAN/WAN member, that anchors the NAN's blocks while it is in charge.

Every chain has a copy per coordinator and one of its members; :class:`RunStores` says where they live: SQLite
files in the run's ``chains/`` folder (the default), or one PostgreSQL schema per copy, named
``<run id>_<chain>_<hash>_<copy>`` (the run id is random, so runs sharing a database never collide). ``tiers.json``
names each copy's file or URL (never a password), so ``gridledger verify`` and ``gridledger audit`` reopen them.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from gridledger.consensus.plausibility import RobustWindowCheck
from gridledger.consensus.poef import Round
from gridledger.consensus.policy_sync import replicate
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.dso_policy import DsoPolicy
from gridledger.ledger.kinds.reading import ContentKeys
from gridledger.ledger.ruleset import Tier
from gridledger.petra.dso import DSO
from gridledger.profiles.community import Community, Home
from gridledger.store import Store, StoreError, open_store
from gridledger.tiers.hierarchy import BACKUP, TierChain, build_chain, chain_name, sqlite_store, store_name

#: The FAN/WAN chain's instance name (one per community).
FAN_ID = "FAN-0"
#: The head-end chain's instance name.
HEAD_ID = "utility"


def dso_key() -> KeyPair:
    """The simulated DSO's signing key."""
    return KeyPair.from_secret("dso")


def content_keys() -> ContentKeys:
    """The simulated DSO's root of reading content keys (an auditor holding it opens every reading)."""
    return ContentKeys(KeyPair.from_secret("dso-content-root").seed)


def concentrator_id(feeder: str) -> str:
    """The data concentrator (NAN coordinator) of ``feeder``."""
    return f"DC-{feeder}"


def coordinator_ids(tier: Tier, instance: str, backups: frozenset[str]) -> list[str]:
    """The coordinators of a chain, primary first: a NAN of a feeder in ``backups`` also has a backup."""
    backup = tier == Tier.NAN and instance.removeprefix("DC-") in backups
    return [instance, *([f"{instance}{BACKUP}"] if backup else [])]


def han_devices(home: Home) -> list[str]:
    """The measuring devices (HAN members) of ``home``: its load circuit, and its PV and battery if it has them."""
    return ["load", *(["pv"] if home.pv_kw > 0 else []), *(["battery"] if home.battery_wh > 0 else [])]


def plausibility_for(seconds: int, homes: int = 1) -> RobustWindowCheck:
    """The analytics check scaled from its calibration (one home, 1-minute readings) to readings of ``seconds``
    each that sum ``homes`` homes (a concentrator's feeder total, the FAN/WAN's community total)."""
    minutes = seconds // 60
    return RobustWindowCheck(step_wh=45 * minutes * homes, zero_floor_wh=3 * minutes * homes)


def copies(tier: Tier, instance: str, backups: frozenset[str]) -> list[str]:
    """The copies of a chain: its coordinator's, each backup coordinator's (``backup1``...) and its members'."""
    return ["coordinator", *(f"backup{i}" for i in range(1, len(coordinator_ids(tier, instance, backups)))), "members"]


def chain_copies(community: Community, backups: frozenset[str] = frozenset()) -> list[str]:
    """Every chain copy of ``community``'s run (``<chain name>.<copy>``), known before the chains are built."""
    chains = [(Tier.HEAD, HEAD_ID), (Tier.FAN, FAN_ID)]
    for f in community.feeders:
        chains.append((Tier.NAN, concentrator_id(f.id)))
        chains += [(Tier.HAN, h.id) for h in community.homes_on(f.id)]
    return [f"{chain_name(t, i)}.{copy}" for t, i in chains for copy in copies(t, i, backups)]


@dataclass(frozen=True)
class RunStores:
    """Where a run's chain copies live: SQLite files in ``directory``, or schemas of the PostgreSQL ``url``.

    url : None (SQLite) or a ``postgresql://`` URL of the database (it must not set ``options``).
    run_id : prefix of the run's schemas (PostgreSQL); :meth:`new` draws a fresh one.
    """

    directory: Path
    url: str | None = None
    run_id: str = ""

    @classmethod
    def new(cls, directory: Path, url: str | None) -> RunStores:
        return cls(directory, url, f"gl{secrets.token_hex(4)}" if url else "")

    def schema(self, node: str) -> str:
        """The PostgreSQL schema of copy ``node`` (``nan:DC-F0.members`` → ``gl1a2b3c4d_nan_dc_f0_5e6f7a_m``):
        readable, unique by a short hash of the exact name, within PostgreSQL's 63-byte identifiers."""
        chain, _, copy = node.rpartition(".")
        readable = re.sub(r"[^a-z0-9]+", "_", chain.lower())[:32]
        return f"{self.run_id}_{readable}_{hashlib.sha256(chain.encode()).hexdigest()[:6]}_{copy[0]}"

    def _url(self, node: str, *, password: bool) -> str:
        parts = urlsplit(self.url)
        query = urlencode([*parse_qsl(parts.query), ("options", f"-csearch_path={self.schema(node)}")])
        if not password and parts.password is not None:
            parts = parts._replace(netloc=f"{parts.username}@{parts.netloc.rpartition('@')[2]}")
        return urlunsplit(parts._replace(query=query))

    def location(self, node: str) -> str:
        """What ``tiers.json`` names for copy ``node``: its file name, or its URL (with the schema, no password:
        libpq takes it from ``PGPASSWORD`` or ``~/.pgpass``)."""
        return store_name(node) if self.url is None else self._url(node, password=False)

    def open(self, node: str) -> Store:
        """Copy ``node``'s store (created empty if missing)."""
        if self.url is None:
            return sqlite_store(self.directory / store_name(node), durable=False)  # survives a killed run
        return open_store(self._url(node, password=True))

    def prepare(self, nodes: list[str], *, exist: bool, create: bool = True) -> None:
        """Check the server before a run writes anything: reachable, enough connections for one per copy, and the
        schemas of ``nodes`` all new (``exist=False``: a new run) or all there (a resumed run); then (``create``)
        create the missing ones. Raises ``StoreError`` naming the problem. (SQLite: nothing to check.)"""
        if self.url is None:
            return
        import psycopg
        from psycopg import sql

        from gridledger.store.postgres import CONNECT_TIMEOUT_S, redact

        where = redact(self.url)
        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as db:
                (limit,) = db.execute("SELECT current_setting('max_connections')::int").fetchone()
                (used,) = db.execute("SELECT count(*) FROM pg_stat_activity").fetchone()
                if limit - used - 3 < len(nodes):  # one connection per copy, a few spare (superuser reserve)
                    raise StoreError(
                        f"--store {where}: the run keeps one connection per chain copy ({len(nodes)}), the server "
                        f"allows {limit} and {used} are in use: raise max_connections"
                    )
                wanted = {self.schema(n) for n in nodes}
                found = {
                    r[0]
                    for r in db.execute(
                        "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (rf"{self.run_id}\_%",)
                    )
                }
                if not exist and found & wanted:
                    raise StoreError(f"--store {where}: schemas of run {self.run_id} exist already")
                if exist and wanted - found:
                    raise StoreError(
                        f"--store {where}: {len(wanted - found)} schemas of run {self.run_id} are missing "
                        f"(e.g. {sorted(wanted - found)[0]})"
                    )
                for schema in sorted(wanted - found) if create else ():
                    db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        except psycopg.Error as e:
            raise StoreError(f"--store {where}: {' '.join(str(e).split())}") from None


@dataclass
class CommunityLedger:
    """Every chain of a community, built and enrolled.

    Parameters
    ----------
    community : the community file.
    stores : where every chain copy lives.
    han_reading_slots : slots one HAN device reading covers (the HAN's plausibility check is scaled to it).
    meter_limits : (MAXEPA W, MAXECA W, FA credit) of every NAN meter.
    start_time : Unix time of slot 0 (the community's first local midnight).
    backups : feeders whose NAN chain has a backup concentrator (a second coordinator, ``DC-F.backup``).
    reopen : reopen the chains the stores hold (a resumed run) instead of starting and enrolling them.
    """

    community: Community
    stores: RunStores
    meter_limits: tuple[int, int, int]
    start_time: int
    han_reading_slots: int = 1
    dso_key: KeyPair = field(default_factory=dso_key)
    content: ContentKeys = field(default_factory=content_keys)
    chains: dict[str, TierChain] = field(default_factory=dict)
    dsos: dict[bytes, DSO] = field(default_factory=dict)
    price_copies: list[tuple[tuple[int, tuple[int, int]], dict[bytes, DsoPolicy]]] = field(default_factory=list)
    backups: frozenset[str] = frozenset()
    reopen: bool = False

    def __post_init__(self) -> None:
        slot = self.community.slot_seconds
        largest = max(len(self.community.homes_on(f.id)) for f in self.community.feeders)
        self.plausibility = {
            Tier.HAN: plausibility_for(slot * self.han_reading_slots),
            Tier.NAN: plausibility_for(slot),
            Tier.FAN: plausibility_for(slot, largest),
            Tier.HEAD: plausibility_for(slot, len(self.community.homes)),
        }
        feeders = [f.id for f in self.community.feeders]
        self.head = self._chain(Tier.HEAD, HEAD_ID, None, [FAN_ID])
        concentrators = [c for f in feeders for c in coordinator_ids(Tier.NAN, concentrator_id(f), self.backups)]
        self.fan = self._chain(Tier.FAN, FAN_ID, self.head, concentrators)  # a backup anchors when it is in charge
        self.nans: dict[str, TierChain] = {}
        self.hans: dict[str, TierChain] = {}
        for f in feeders:
            homes = self.community.homes_on(f)
            self.nans[f] = self._chain(Tier.NAN, concentrator_id(f), self.fan, [h.id for h in homes])
            for home in homes:
                self.hans[home.id] = self._chain(Tier.HAN, home.id, self.nans[f], han_devices(home))
        for node in self.chains.values():
            if self.reopen:  # the enrolment is on the chain already; a copy catches up with its coordinator's
                for copy in [*(c.replica for c in node.coordinators[1:]), node.replica]:
                    copy.catch_up(node.coordinator.chain.blocks(copy.height + 1))
            else:
                node.enrol(
                    self.dsos[node.chain_id], self.start_time, self.meter_limits if node.tier == Tier.NAN else None
                )

    def _chain(self, tier: Tier, instance: str, parent: TierChain | None, member_ids: list[str]) -> TierChain:
        member_keys = {
            ident: KeyPair.from_secret(f"{instance}/{ident}" if tier == Tier.HAN else ident)
            for ident in sorted(member_ids)  # a member's index is its place in the DSO's (sorted) enrolment
        }
        node = build_chain(
            tier,
            instance,
            member_keys,
            [KeyPair.from_secret(i) for i in coordinator_ids(tier, instance, self.backups)],
            dso=self.dso_key,
            content=self.content,
            plausibility=self.plausibility[tier],
            parent=parent,
            start_time=self.start_time,
            slot_seconds=self.community.slot_seconds,
            stores=self.stores.open,
            reopen=self.reopen,
        )
        self.chains[node.name] = node
        self.dsos[node.chain_id] = DSO(self.dso_key, node.chain_id)
        return node

    def bottom_up(self) -> Iterator[TierChain]:
        """HAN chains first, then NAN, FAN/WAN and the head-end (so anchors go up in one pass)."""
        yield from self.hans.values()
        yield from self.nans.values()
        yield self.fan
        yield self.head

    def publish_prices(self, prices: tuple[int, int], slot: int, feeders: Iterable[str] | None = None) -> None:
        """The DSO publishes ``prices`` (minor units per kWh) in force from ``slot`` on the head-end, the FAN/WAN and
        the NAN of every feeder (or of ``feeders`` only); each coordinator relays its copy once the parent committed
        it."""
        nans = self.nans.values() if feeders is None else [self.nans[f] for f in feeders]
        chains = [self.head, self.fan, *nans]
        self.price_copies.append(((slot, prices), replicate(prices, slot, [self.dsos[c.chain_id] for c in chains])))

    def prices_pending(self, node: TierChain) -> bool:
        """Whether a price copy for ``node`` is signed but not yet on its chain (the DSO's next policy must wait)."""
        on_chain = {p.txid for p in node.coordinator.chain.state.policy.policies}
        return any(node.chain_id in c and c[node.chain_id].txid not in on_chain for _, c in self.price_copies)

    def round(self, node: TierChain, time: int) -> Round:
        """Relay pending price copies and run one PoEf round on ``node``; raise if its committee refused it."""
        if node.tier != Tier.HAN:
            node.relay_prices(self.price_copies)
        result = node.round(time)
        if result.failure is not None:
            raise RuntimeError(f"{node.name}: block {result.block.height} did not commit: {result.failure}")
        return result

    def manifest(self) -> dict:
        """Each chain's name, tier, id, parent and where its copies are (file or URL): the coordinator's first, then
        any backup's, then the members'."""
        return {
            "chains": [
                {
                    "name": node.name,
                    "tier": str(node.tier),
                    "chain_id": node.chain_id.hex(),
                    "parent": None if node.parent is None else node.parent.name,
                    "stores": [
                        self.stores.location(f"{node.name}.{copy}")
                        for copy in copies(node.tier, node.name.partition(":")[2], self.backups)
                    ],
                }
                for node in reversed(list(self.bottom_up()))
            ]
        }

    def close(self) -> None:
        for node in self.chains.values():
            node.close()
