"""The community's multi-tier ledger: a HAN chain per home, a NAN chain per feeder, one FAN/WAN chain, the head-end.

Keys are deterministic (``KeyPair.from_secret`` of each device's name: a simulation, never a deployment). A home's
meter coordinates its HAN chain (members: the home's measuring devices: the load circuit, the PV inverter and the
battery, as the home has them) and is a member of its feeder's NAN chain with the same key; the feeder's data
concentrator coordinates the NAN chain and is a member of the FAN/WAN chain; the FAN/WAN coordinator is a member of
the head-end chain. Every chain runs PoEf (:func:`gridledger.consensus.poef.run_round`) with the tier's committee,
all stores are SQLite files in one folder, and each chain anchors its blocks into its parent. A feeder listed in
``backups`` (a coordinator-loss attack, :mod:`.attacks`) has a backup concentrator: a second NAN coordinator, also
a FAN/WAN member, that anchors the NAN's blocks while it is in charge.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gridledger.consensus.plausibility import RobustWindowCheck
from gridledger.consensus.poef import Round
from gridledger.consensus.policy_sync import replicate
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.dso_policy import DsoPolicy
from gridledger.ledger.kinds.reading import ContentKeys
from gridledger.ledger.ruleset import Tier
from gridledger.petra.dso import DSO
from gridledger.profiles.community import Community, Home
from gridledger.tiers.hierarchy import BACKUP, TierChain, build_chain, store_name

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


@dataclass
class CommunityLedger:
    """Every chain of a community, built and enrolled.

    Parameters
    ----------
    community : the community file.
    directory : folder of the SQLite stores.
    han_reading_slots : slots one HAN device reading covers (the HAN's plausibility check is scaled to it).
    meter_limits : (MAXEPA W, MAXECA W, FA credit) of every NAN meter.
    start_time : Unix time of slot 0 (the community's first local midnight).
    backups : feeders whose NAN chain has a backup concentrator (a second coordinator, ``DC-F.backup``).
    """

    community: Community
    directory: Path
    meter_limits: tuple[int, int, int]
    start_time: int
    han_reading_slots: int = 1
    dso_key: KeyPair = field(default_factory=dso_key)
    content: ContentKeys = field(default_factory=content_keys)
    chains: dict[str, TierChain] = field(default_factory=dict)
    dsos: dict[bytes, DSO] = field(default_factory=dict)
    price_copies: list[tuple[tuple[int, tuple[int, int]], dict[bytes, DsoPolicy]]] = field(default_factory=list)
    backups: frozenset[str] = frozenset()

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
            node.enrol(self.dsos[node.chain_id], self.start_time, self.meter_limits if node.tier == Tier.NAN else None)

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
            directory=self.directory,
            plausibility=self.plausibility[tier],
            parent=parent,
            start_time=self.start_time,
            members_directory=self.directory,
            slot_seconds=self.community.slot_seconds,
            durable=False,  # a simulation: the stores survive a killed run, not a crash of the machine
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
        """Each chain's name, tier, id, parent and the file names of its coordinator's and members' stores."""
        return {
            "chains": [
                {
                    "name": node.name,
                    "tier": str(node.tier),
                    "chain_id": node.chain_id.hex(),
                    "parent": None if node.parent is None else node.parent.name,
                    "stores": [
                        store_name(f"{node.name}.coordinator"),
                        *(store_name(f"{node.name}.backup{i}") for i in range(1, len(node.coordinators))),
                        store_name(f"{node.name}.members"),
                    ],
                }
                for node in reversed(list(self.bottom_up()))
            ]
        }

    def close(self) -> None:
        for node in self.chains.values():
            node.close()
