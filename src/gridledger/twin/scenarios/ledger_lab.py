"""A local ledger network for the ledger-level scenarios: ``LedgerLab`` and the ``LedgerScenario`` base.

The lab is one network of real processes (:class:`gridledger.node.testnet.Testnet`): a 3-member etcd cluster
ordering one NAN chain, its primary and backup concentrator (the coordinators ``DC1`` and ``DC1-backup``) and one
meter node per household (``MI1`` ...), each with its own SQLite store and signed, rate-limited API. It takes a
few seconds to start, so one lab serves every run of one ``gridledger attack run`` (the scenario's session), and
each run leaves it whole: every node running and at the same tip.

On start the DSO (the operator key of the network) enrols every meter: one DSO policy authorizes each meter's key
with an FA credit and sets the prices. An honest meter's transaction is then a ``MeterIssue`` of 1 FA (minor
unit) to its prosumer's wallet, signed by the meter (PETra's smart-meter transaction): each meter's issues carry
increasing nonces, so a meter submits them one after the other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from gridledger.ledger.assets import FA
from gridledger.ledger.kinds.dso_policy import DsoPolicy, MeterLimits
from gridledger.ledger.kinds.meter_issue import MeterIssue
from gridledger.ledger.transactions import Transaction
from gridledger.node.testnet import OPERATOR, Testnet
from gridledger.petra.dso import DSO
from gridledger.petra.meter import SmartMeter
from gridledger.petra.wallet import Wallet
from gridledger.twin.scenarios.base import RunContext, RunResult
from gridledger.twin.scenarios.harness import LabError

# Requests per second each node allows each calling node, and the burst: low enough that a flood from this same
# (busy, 2-core) machine exceeds it, high enough for every honest party of the scenarios, the lab's own polling
# (at most ~10 requests/s to one node) included.
RATE_LIMIT = (20.0, 40.0)
POLL_S = 0.1  # between the lab's polls of a node
IDLE_S = 0.5  # no new block for this long: ask the leader about the transactions still pending
PRICES = (120, 80)  # (priceConsumption, priceProduction), minor units per kWh
FA_CREDIT = 10**12  # minor units: honest meters never run out
COMMIT_TIMEOUT_S = 60.0


class LedgerLab:
    """One network; ``with LedgerLab(folder, households) as lab`` starts it, enrols the meters, and stops it."""

    def __init__(self, folder: Path, households: int, rate_limit: tuple[float, float] = RATE_LIMIT) -> None:
        if households < 2:
            raise ValueError("the ledger lab needs at least 2 households (meters)")
        self.folder = Path(folder)
        self.households = households
        self.rate_limit = rate_limit
        self.net: Testnet | None = None
        self.issuers: dict[str, SmartMeter] = {}
        self.wallets: dict[str, Wallet] = {}
        self.tampered: set[str] = set()  # nodes whose last start found a tampered store
        self._committed: dict[bytes, int] = {}  # txid -> height, from the blocks read so far
        self._scanned = 0
        self._dso: DSO | None = None
        self._locks: dict[str, threading.Lock] = {}

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> LedgerLab:
        try:
            self.net = Testnet.start(self.folder, meters=self.households, concentrators=1, rate_limit=self.rate_limit)
        except (OSError, RuntimeError, TimeoutError) as e:
            raise LabError(f"the ledger network did not start: {e}") from None
        try:
            self._enrol()
        except BaseException:
            self.net.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.net is not None:
            self.net.stop()

    @property
    def network(self) -> Testnet:
        if self.net is None:
            raise LabError("the ledger lab is not started")
        return self.net

    @property
    def meters(self) -> list[str]:
        return self.network.ids("meter")

    @property
    def coordinators(self) -> list[str]:
        return self.network.ids("concentrator")

    @property
    def nodes(self) -> list[str]:
        return self.network.ids()

    def _enrol(self) -> None:
        net = self.network
        self._dso = DSO(net.operator, net.chain_id)
        limits = []
        for meter in self.meters:
            key = net.node_key(meter)
            lim = MeterLimits(meter, 0, 0, FA_CREDIT)
            self.issuers[meter] = SmartMeter(meter, key, net.chain_id, net.genesis.slot_seconds, lim)
            self.wallets[meter] = Wallet()
            self._locks[meter] = threading.Lock()
            limits.append(lim)
        authorize = {m: s.key.public for m, s in self.issuers.items()}
        status = self.commit_policy(
            lambda slot: self.dso.policy(slot, prices=PRICES, authorize=authorize, limits=limits)
        )
        if status["status"] != "committed":
            raise LabError(f"the DSO could not enrol the meters: {status}")

    # ------------------------------------------------------------------ transactions
    @property
    def dso(self) -> DSO:
        if self._dso is None:
            raise LabError("the ledger lab is not started")
        return self._dso

    def commit_policy(self, make: Callable[[int], DsoPolicy], via: str | None = None) -> dict:
        """Submit the DSO policy ``make(slot)`` (effective from the current slot) to ``via`` and wait until it is
        final. A policy that reaches a block in the next slot is stale; it is made again once for the new slot."""
        for _ in range(2):
            tx = make(self.network.slot())
            status = self.wait_final([self.submit(tx, via or self.coordinators[0])])[tx.txid]
            if status.get("code") != "bad-policy-stale":
                break
        return status

    def issue(self, meter: str) -> MeterIssue:
        """The meter's next honest transaction: 1 FA to its prosumer's wallet."""
        with self._locks[meter]:
            return self.issuers[meter].issue([(FA(1), self.wallets[meter].new_address())], self.network.slot())

    def submit(self, tx: Transaction, via: str, as_id: str = OPERATOR) -> bytes:
        """Submit ``tx`` to node ``via`` as ``as_id``; returns the txid (``LabError`` unless accepted)."""
        r = self.network.client(via, as_id).submit(tx)
        if r.status_code != 202:
            raise LabError(f"{via} refused a transaction from {as_id}: {r.status_code} {r.text}")
        return tx.txid

    def submit_issues(self, meter: str, via: str, count: int, gap_s: float = 0.0) -> list[bytes]:
        """``count`` honest issues of ``meter``, submitted as the meter one after the other to ``via``."""
        txids = []
        for _ in range(count):
            txids.append(self.submit(self.issue(meter), via, meter))
            if gap_s:
                time.sleep(gap_s)
        return txids

    def wait_final(self, txids: list[bytes], timeout: float = COMMIT_TIMEOUT_S) -> dict[bytes, dict]:
        """Wait until no transaction of ``txids`` is pending; returns each one's status.

        A status is ``committed`` (with its height: found in the blocks of the leading coordinator, read as they
        come), ``rejected`` (with the reject code: only the coordinator that proposed knows it, asked once the
        chain is idle) or, if ``timeout`` ran out, ``pending``.
        """
        net = self.network
        final: dict[bytes, dict] = {}
        pending = list(txids)
        deadline = time.monotonic() + timeout
        leader: str | None = None
        idle_since = time.monotonic()
        while pending and time.monotonic() < deadline:
            try:
                leader = leader or net.leader(timeout=max(0.1, deadline - time.monotonic()))
                if self._scan(leader):
                    idle_since = time.monotonic()
                for txid in pending:
                    if txid in self._committed:
                        final[txid] = {"status": "committed", "height": self._committed[txid]}
                if time.monotonic() - idle_since > IDLE_S:
                    client = net.client(leader)
                    for txid in pending:
                        if txid not in final and (status := client.tx_status(txid))["status"] != "pending":
                            final[txid] = status
                    idle_since = time.monotonic()
            except (httpx.HTTPError, TimeoutError):
                leader = None  # it may have stepped down or died: ask again
            pending = [t for t in pending if t not in final]
            if pending:
                time.sleep(POLL_S)
        return {t: final.get(t, {"status": "pending"}) for t in txids}

    def _scan(self, node: str) -> int:
        """Index the transactions of the node's blocks not read yet; returns how many blocks were new."""
        new = 0
        for block in self.network.blocks(node, self._scanned + 1):
            for tx in block.transactions:
                self._committed[tx.txid] = block.height
            self._scanned, new = block.height, new + 1
        return new

    def wait_idle(self, timeout: float = COMMIT_TIMEOUT_S) -> int:
        """Wait until every node runs and all agree on one tip; returns its height."""
        net = self.network
        height = max(h for h, _ in net.tips([self.meters[0]]).values())
        net.wait_agree(self.nodes, height, timeout)
        return net.tips([self.meters[0]])[self.meters[0]][0]

    def heal(self) -> None:
        """Restart any node that is down (a run that failed half-way) and wait for the network to agree."""
        for node in self.nodes:
            if not self.network.alive(node):
                self.network.restart(node)
        self.wait_idle()


class LedgerScenario:
    """A scenario on the ledger lab: ``attack(lab, ctx)`` does one run; the lab is the session's, or a fresh one."""

    needs_broker, needs_etcd = False, True

    def session(self, workdir: Path, households: int) -> LedgerLab:
        return LedgerLab(workdir / "network", households)

    def run(self, ctx: RunContext) -> RunResult:
        if isinstance(ctx.shared, LedgerLab):
            ctx.shared.heal()
            return self.attack(ctx.shared, ctx)
        with self.session(ctx.workdir, ctx.households) as lab:
            return self.attack(lab, ctx)

    def attack(self, lab: LedgerLab, ctx: RunContext) -> RunResult:
        raise NotImplementedError
