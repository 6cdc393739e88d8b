"""Fake price (ledger level; the paper's fake-price scenario, Fig. 13): forged or altered DSO prices must never be
accepted, on the network's API, in blocks from peers, or anywhere down the tiers.

Each run publishes one genuine price (the honest observations) and makes seven attempts, each with its expected
reject code:

============================================  ==================================  =============================
attempt                                       where it is caught                  code
============================================  ==================================  =============================
price policy signed by a non-DSO key          node API -> commit (ledger rule)    ``bad-policy-signature``
DSO policy with its price altered in transit  node API -> commit (ledger rule)    ``bad-policy-signature``
block from a peer, price altered              ``Chain.append`` (Merkle root)      ``bad-blk-merkle``
same, Merkle root redone, block re-signed     ``Chain.append`` (proposer sig.)    ``bad-blk-signature``
DSO-signed price at the NAN only (stolen key) NAN coordinator vs the tier above   ``bad-policy-fake-price``
same, proposed by a compromised coordinator   the NAN validators' votes           ``bad-policy-fake-price``
price message to a meter differing from its   the meter vs its coordinator's      ``bad-policy-fake-price``
coordinator's                                 chain (``check_price_signal``)
============================================  ==================================  =============================

The first four run on the lab's network of node processes (the ledger rules every node applies). The last three
drive the multi-tier ledger's policy replication (``gridledger.consensus.policy_sync``) on an in-process
``Hierarchy`` (head-end, FAN/WAN, NAN, HAN chains with PoEf rounds): the DSO's price is replicated down every
tier, and each node compares what it sees with its coordinator's tier.

An attempt is detected if it is rejected; its time to detect is from the injection to the rejection (wall clock).
False alarm = the genuine price rejected on the network, its block refused by a fresh replica, or a message with
the genuine price refused by the meter; data lost = genuine price policies not committed (on the network, and on
each chain of the hierarchy).
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gridledger.chain import Chain
from gridledger.ledger.block import Block
from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds.dso_policy import DsoPolicy
from gridledger.ledger.merkle import leaf_hash, merkle_root
from gridledger.store.sqlite import SqliteStore
from gridledger.twin.scenarios.base import RunContext, RunResult, register
from gridledger.twin.scenarios.ledger_lab import LedgerLab, LedgerScenario

if TYPE_CHECKING:
    from gridledger.tiers.hierarchy import Hierarchy, TierChain

TIER_SLOT = 1  # the slot the tiers' prices take effect (the hierarchy's clock starts in slot 0)
RELAY_STEPS = 5  # hierarchy minutes for a price to reach every tier (one tier per step)


@dataclass(frozen=True)
class Attempt:
    """One injection: what it was, the code that rejected it (None: accepted), seconds to the rejection."""

    what: str
    code: str | None
    seconds: float | None


def prices_for(rng: random.Random) -> tuple[tuple[int, int], tuple[int, int]]:
    """A genuine (consumption, production) price pair in minor units per kWh, and a fake one that differs."""
    genuine = (rng.randint(100, 200), rng.randint(50, 99))
    return genuine, (genuine[0] // 2, genuine[1] * 2)


# ------------------------------------------------------------------ the network (real node processes)
def api_attempts(
    lab: LedgerLab, via: str, genuine: DsoPolicy, fake: tuple[int, int], rng: random.Random
) -> list[Attempt]:
    """Submit a forged and an altered policy through ``via``'s API; their fate at commit."""
    net = lab.network
    forged = DsoPolicy(genuine.nonce + 1 + rng.randrange(1000), genuine.effective_slot, fake).signed(
        net.chain_id, KeyPair.generate()
    )
    altered = dataclasses.replace(lab.dso.policy(genuine.effective_slot, prices=genuine.prices), prices=fake)
    attempts = []
    for what, tx in (("policy signed by a non-DSO key", forged), ("DSO policy altered in transit", altered)):
        started = time.time()
        status = lab.wait_final([lab.submit(tx, via)])[tx.txid]
        seconds = time.time() - started
        attempts.append(Attempt(what, status.get("code"), seconds if status["status"] == "rejected" else None))
    return attempts


def with_price(block: Block, fake: tuple[int, int]) -> tuple:
    """The block's transactions with every price policy's prices replaced by ``fake``."""
    return tuple(
        dataclasses.replace(tx, prices=fake) if isinstance(tx, DsoPolicy) and tx.prices else tx
        for tx in block.transactions
    )


def block_attempts(lab: LedgerLab, height: int, fake: tuple[int, int]) -> tuple[list[Attempt], bool]:
    """A peer serves block ``height`` (which holds the genuine price) with the price altered, to a fresh replica.

    Returns the attempts and whether the replica then took the genuine block.
    """
    genesis, *earlier, real = lab.network.blocks(lab.meters[0], 0, height)
    replica = Chain.from_genesis_block(SqliteStore(":memory:"), genesis)
    try:
        for block in earlier:
            replica.append(block)
        txs = with_price(real, fake)
        in_transit = Block(real.header, real.signature, txs, real.certificate)
        forger = KeyPair.generate()
        root = merkle_root([leaf_hash(tx.encode()) for tx in txs])
        header = dataclasses.replace(real.header, merkle_root=root)  # the coordinator's key stays the proposer
        resealed = Block(header, forger.sign(header.signing_message()), txs, real.certificate)
        attempts = [
            _append(replica, in_transit, "block from a peer with the price altered"),
            _append(replica, resealed, "block with the price altered, Merkle root redone and re-signed"),
        ]
        return attempts, _append(replica, real, "the genuine block").code is None
    finally:
        replica.store.close()


def _append(replica: Chain, block: Block, what: str) -> Attempt:
    started = time.time()
    try:
        replica.append(block)
    except Reject as e:
        return Attempt(what, e.code, time.time() - started)
    return Attempt(what, None, None)


# ------------------------------------------------------------------ the tiers (policy replication, in process)
@dataclass(frozen=True)
class TierOutcome:
    """The tiers' part of a run: the attempts, how many chains hold the genuine price (of how many), and whether
    a price message with the genuine price passed the meter's comparison."""

    attempts: list[Attempt]
    holding: int
    chains: int
    honest_message_passed: bool


def tier_attempts(seed: int, genuine: tuple[int, int], fake: tuple[int, int]) -> TierOutcome:
    """Replicate a genuine price down a small hierarchy (head-end, FAN/WAN, NAN, two HANs) and inject fake ones
    at the NAN."""
    # imported here: the hierarchy pulls in the whole PoEf protocol, which every process importing the attack
    # registry (the whole CLI) need not load
    from gridledger.consensus.policy_sync import StateView, check_price_signal
    from gridledger.ledger.ruleset import Tier
    from gridledger.tiers.hierarchy import Hierarchy

    hierarchy = Hierarchy(fans=1, nans=1, homes=2, appliances=1, seed=seed)
    try:
        hierarchy.publish_prices(genuine, TIER_SLOT)
        for _ in range(RELAY_STEPS):
            hierarchy.step(readings=False)
        chains = list(hierarchy.chains.values())
        holding = sum(c.coordinator.chain.state.policy.prices(TIER_SLOT) == genuine for c in chains)
        nan = next(c for c in chains if c.tier == Tier.NAN)
        view = StateView(lambda: nan.replica.state)  # a meter's view of its coordinator's chain
        honest_message = _check(lambda: check_price_signal(genuine, TIER_SLOT, view), "honest price message")
        attempts = [
            _one_tier_only(hierarchy, nan, fake),
            _compromised_coordinator(hierarchy, nan, fake),
            _check(lambda: check_price_signal(fake, TIER_SLOT, view), "price message differing from the NAN's"),
        ]
        return TierOutcome(attempts, holding, len(chains), honest_message.code is None)
    finally:
        hierarchy.close()


def _one_tier_only(hierarchy: Hierarchy, nan: TierChain, fake: tuple[int, int]) -> Attempt:
    """A DSO-signed price for the NAN chain only (a stolen DSO key): the NAN coordinator compares with its parent."""
    tx = hierarchy.dsos[nan.chain_id].policy(TIER_SLOT, prices=fake)
    started = time.time()
    nan.coordinator.submit(tx)
    hierarchy.step(readings=False)
    reject = nan.coordinator.rejected.get(tx.txid)
    if reject is None:
        return Attempt("DSO-signed price injected at the NAN only", None, None)
    return Attempt("DSO-signed price injected at the NAN only", reject.code, time.time() - started)


def _compromised_coordinator(hierarchy: Hierarchy, nan: TierChain, fake: tuple[int, int]) -> Attempt:
    """The NAN coordinator skips the comparison and proposes a fake price: its validators must vote no."""
    what = "fake price proposed by a compromised NAN coordinator"
    tx = hierarchy.dsos[nan.chain_id].policy(TIER_SLOT, prices=fake)
    coordinator = nan.coordinator
    parent, coordinator.parent = coordinator.parent, None
    started = time.time()
    try:
        coordinator.submit(tx)
        result = nan.round(hierarchy.time)
    finally:
        coordinator.parent = parent
        coordinator.abandon([tx.txid])  # it is not proposed again
    refusals = [v for v in result.votes.values() if isinstance(v, Reject)]
    if result.committed is not None or not refusals:
        return Attempt(what, None, None)
    return Attempt(what, refusals[0].code, time.time() - started)


def _check(check: Callable[[], None], what: str) -> Attempt:
    started = time.time()
    try:
        check()
    except Reject as e:
        return Attempt(what, e.code, time.time() - started)
    return Attempt(what, None, None)


# ------------------------------------------------------------------ the scenario
class FakePrice(LedgerScenario):
    name = "fake-price"
    threat = "fake price: forged or altered DSO price signals"
    detector = "DSO signature at commit, signed Merkle-rooted blocks, comparison with the coordinator's tier"

    def attack(self, lab: LedgerLab, ctx: RunContext) -> RunResult:
        rng = random.Random(ctx.seed)
        genuine_prices, fake = prices_for(rng)
        via = rng.choice(lab.nodes)
        genuine: list[DsoPolicy] = []

        def make(slot: int) -> DsoPolicy:
            genuine.append(lab.dso.policy(slot, prices=genuine_prices))
            return genuine[-1]

        status = lab.commit_policy(make, via)
        committed = status["status"] == "committed"
        attempts = api_attempts(lab, via, genuine[-1], fake, rng)
        block_tries, replica_took_genuine = block_attempts(lab, status["height"], fake) if committed else ([], True)
        tiers = tier_attempts(ctx.seed, genuine_prices, fake)
        attempts += block_tries + tiers.attempts
        caught = [a for a in attempts if a.code is not None]
        refusals = [status["status"] == "rejected", not replica_took_genuine, not tiers.honest_message_passed]
        return RunResult(
            injected=f"{len(attempts)} fake prices {fake} against the genuine {genuine_prices} (minor units/kWh)",
            detected=len(caught) == len(attempts),
            time_to_detect_s=sum(a.seconds or 0.0 for a in caught) / len(caught) if caught else None,
            false_alarms=sum(refusals),
            honest_observations=2 + committed,
            data_lost=(not committed) + tiers.chains - tiers.holding,
            details={
                "via": via,
                "genuine": status,
                "attempts": [{"what": a.what, "code": a.code, "seconds": a.seconds} for a in attempts],
                "tiers_holding_genuine": f"{tiers.holding}/{tiers.chains}",
            },
            attempts=len(attempts),
            attempts_detected=len(caught),
        )


register(FakePrice())
