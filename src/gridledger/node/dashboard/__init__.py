"""The live dashboard a node serves at ``/dashboard``: what it shows (``dashboard_view``, served unsigned as
``/v1/dashboard``) and the node's live activity it is computed from (``Activity``).

Only aggregate, public chain facts leave the node this way (no reading values, no keys): heights and tips, the
transactions per kind, the DSO's prices in force, the market per slot as the chain holds it (extractions, mixes, trades
and the energy they delivered, deposits: ``market.py``), readings committed per second, submit-to-commit latency
percentiles, alarms on the chain, the node's own refusals (transactions refused by its API or rejected by the
chain, by code; ordering-log entries; throttled requests), the PoEf committees of the latest blocks (proposer,
certificate signers, and whether the proposer took over from the previous block's: a fail-over), and the bills the
meters reported to this node, as the DSO may see them: per slot only the meters reporting and the sums
(``gridledger.node.bills``; the service adds them as ``bills``). The page
(``index.html``, ``dashboard.js``, ``dashboard.css`` beside this file, and plotly.js from the installed plotly
package) loads nothing from another host and polls ``/v1/dashboard`` every ``POLL_MS``.

A node configured with ``dashboard_peers`` (other nodes' API URLs, e.g. one per other chain: ``cluster up`` gives
each node the primary concentrator of every other NAN) adds their chains to its own (``PeerChains``), so one page
shows the tip and height of every chain; a peer that does not answer is listed as unreachable.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections import Counter, OrderedDict, deque
from pathlib import Path

import httpx

from gridledger.ledger.block import Block
from gridledger.ledger.kinds.alarm import Alarm, AlarmCode
from gridledger.ledger.kinds.reading_batch import readings_of
from gridledger.ledger.state import LedgerState
from gridledger.node.dashboard.market import MarketRounds

ASSETS = Path(__file__).parent
#: How often the page asks for new figures (ms); the window of the readings rate (s); latencies and blocks kept.
POLL_MS, RATE_WINDOW_S, LATENCIES_KEPT, RECENT_BLOCKS = 1000, 60.0, 2000, 20
#: Slots of the bills' aggregate and of the market the page shows (the latest; the totals cover every slot).
RECENT_SLOTS = 20
#: How long a peer node may take to answer (s); how long a submitted transaction is waited for (s).
PEER_TIMEOUT_S, SUBMIT_TTL_S = 1.0, 600.0


def plotly_js() -> Path:
    """plotly.min.js as the installed plotly package ships it (served at ``/dashboard/assets/plotly.min.js``)."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


class Activity:
    """What a running node saw happen (thread-safe): when each transaction it queued was submitted, and for each
    block it committed since it started, the wall-clock time and its readings; latencies in seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._submitted: OrderedDict[bytes, float] = OrderedDict()
        self._latencies: deque[float] = deque(maxlen=LATENCIES_KEPT)
        self._readings: deque[tuple[float, int]] = deque()
        self.blocks: deque[Block] = deque(maxlen=RECENT_BLOCKS)
        self.kinds: Counter[str] = Counter()
        self.alarms: deque[tuple[int, Alarm]] = deque(maxlen=RECENT_BLOCKS)
        self.market = MarketRounds(RECENT_SLOTS)

    def submitted(self, txid: bytes, now: float | None = None) -> None:
        """A transaction queued here; one still uncommitted after ``SUBMIT_TTL_S`` (rejected) is forgotten."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._submitted.setdefault(txid, now)
            while self._submitted and next(iter(self._submitted.values())) < now - SUBMIT_TTL_S:
                self._submitted.popitem(last=False)

    def queued(self, txid: bytes) -> bool:
        """True if ``txid`` was queued here (within ``SUBMIT_TTL_S``) and has not committed since."""
        with self._lock:
            return txid in self._submitted

    def indexed(self, block: Block) -> None:
        """A block of the chain (the genesis and the stored ones at start, then each committed): counts, alarms,
        recent blocks, the market per slot."""
        with self._lock:
            self.blocks.append(block)
            self.market.add(block)
            for tx in block.transactions:
                self.kinds[type(tx).__name__] += 1
                if isinstance(tx, Alarm):
                    self.alarms.append((block.height, tx))

    def committed(self, block: Block, now: float | None = None) -> None:
        """A block committed while the node runs: its readings' rate and its submitted transactions' latency."""
        now = time.monotonic() if now is None else now
        with self._lock:
            n = sum(len(readings_of(tx)) for tx in block.transactions)
            if n:
                self._readings.append((now, n))
            for tx in block.transactions:
                t0 = self._submitted.pop(tx.txid, None)
                if t0 is not None:
                    self._latencies.append(now - t0)

    def readings_per_s(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._readings and self._readings[0][0] < now - RATE_WINDOW_S:
                self._readings.popleft()
            return sum(n for _, n in self._readings) / RATE_WINDOW_S

    def latency(self) -> dict:
        """Submit-to-commit latency percentiles (s) of the last ``LATENCIES_KEPT`` transactions queued here."""
        with self._lock:
            values = sorted(self._latencies)
        if not values:
            return {"count": 0, "p50": None, "p90": None, "p99": None}
        pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731 - nearest rank
        return {"count": len(values), "p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99)}


class PeerChains:
    """Other nodes' chains as their ``/v1/dashboard?peers=false`` reports them, fetched at most once per ``POLL_MS``
    however many pages poll (the URLs come from the node's configuration, never from a request)."""

    def __init__(self, urls: list[str], verify: ssl.SSLContext | bool = True) -> None:
        self.urls = [u.rstrip("/") for u in urls]
        self._lock = threading.Lock()
        self._fetched, self._rows = float("-inf"), []
        self._http = httpx.Client(timeout=PEER_TIMEOUT_S, verify=verify) if urls else None

    def chains(self) -> list[dict]:
        with self._lock:
            if time.monotonic() - self._fetched >= POLL_MS / 1000:
                self._rows = [row for url in self.urls for row in self._fetch(url)]
                self._fetched = time.monotonic()
            return self._rows

    def _fetch(self, url: str) -> list[dict]:
        try:
            r = self._http.get(url + "/v1/dashboard", params={"peers": "false"})
            r.raise_for_status()
            body = r.json()
            return [{**c, "node": body["node"]["id"], "url": url} for c in body["chains"]]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
            return [{"url": url, "error": f"unreachable ({type(e).__name__})"}]

    def close(self) -> None:
        if self._http is not None:
            self._http.close()


def _names(state: LedgerState) -> dict[bytes, str]:
    """Public key → name: the chain's coordinators (by their place in the genesis) and every authorized meter."""
    names = {k: f"coordinator {i + 1}" for i, k in enumerate(state.genesis.proposers)}
    for p in state.policy.policies:
        names.update({k: m for m, k in p.authorize})
    return names


def _prices(state: LedgerState) -> list[int] | None:
    """The DSO's prices in force now (consumption, production; minor units per kWh), or None before any."""
    g = state.genesis
    prices = state.policy.prices(max(0, (int(time.time()) - g.start_time) // g.slot_seconds))
    return list(prices) if prices else None


def _committees(blocks: list[Block], names: dict[bytes, str]) -> list[dict]:
    """The latest blocks, newest first: proposer, certificate signers, and whether the proposer took over from the
    previous (non-genesis) block's proposer: a coordinator fail-over."""
    rows = []
    for i, b in enumerate(blocks):
        prev = blocks[i - 1] if i else None
        rows.append(
            {
                "height": b.height,
                "time": b.header.time,
                "txs": len(b.transactions),
                "proposer": names.get(b.header.proposer, b.header.proposer.hex()[:16]),
                "failover": bool(prev and prev.height) and b.header.proposer != prev.header.proposer,
                "signers": [names.get(v.pubkey, v.pubkey.hex()[:16]) for v in b.certificate],
            }
        )
    return rows[::-1]


def dashboard_view(
    node_id: str, role: str, state: LedgerState, activity: Activity, health: dict, peers: list[dict] = ()
) -> dict:
    """Everything the page shows, as JSON (hold the sequencer lock while calling); ``peers``: other nodes' chains
    (``PeerChains.chains``), listed after this node's own."""
    names = _names(state)
    with activity._lock:
        blocks, alarms, kinds = list(activity.blocks), list(activity.alarms), dict(activity.kinds)
        market = activity.market.view()
    return {
        "node": {"id": node_id, "role": role, **health},
        "chains": [
            {
                "name": state.genesis.chain,
                "chain_id": state.chain_id.hex(),
                "height": state.height,
                "tip": state.tip_hash.hex(),
                "tip_time": state.tip_time,
                "consensus": state.ruleset.consensus.value,
                "transactions": kinds,
                "prices": _prices(state),
                "node": node_id,
                "url": "",
            },
            *peers,
        ],
        "readings_per_s": activity.readings_per_s(),
        "latency_s": activity.latency(),
        "alarms": [
            {
                "height": h,
                "code": AlarmCode(a.code).name.lower() if a.code in AlarmCode._value2member_map_ else str(a.code),
                "subject": a.subject.hex()[:16],
                "raiser": names.get(a.raiser, a.raiser.hex()[:16]),
            }
            for h, a in reversed(alarms)
        ],
        "committees": _committees(blocks, names),
        "market": market,
        "poll_ms": POLL_MS,
    }
