"""One node as a service: its chain, its orderer and sequencer, who may talk to it, and its HTTP API (FastAPI).

API (every request signed by a registered node, see ``auth``; rate-limited per node):

* ``GET  /v1/status`` — node id, role, height, tip hash, leader, and the node's health: ``sequencer_alive``,
  ``last_applied_height``, ``entries_rejected`` (ordering-log entries it refused), ``last_rejected``,
  ``sequencer_errors`` and ``registry`` (nodes registered; registry reloads ``applied``, ``refused``, and why the last
  was refused: ``run``); on a FAN/WAN node that replicates child chains, ``children`` (each child's height and the
  certified blocks it refused: a colluding committee majority) and ``alarms_raised`` (TAMPERING alarms it queued);
  on the leading coordinator of a PoEf chain, ``waiting_for_quorum``: null, or the height it has not committed within
  its round time-out, for how long, the votes it has and needs, the refusals, and the committee members that sent no
  verdict (``silent``, by node id).
* ``GET  /v1/health`` (unsigned) — ``200`` if every worker thread runs, else ``503``.
* ``GET  /v1/metrics`` (unsigned) — the same figures in the Prometheus text format.
* ``POST /v1/transactions`` — a raw canonical transaction (``application/octet-stream``); context-free checks, then
  queued at the orderer (idempotent by txid). ``400`` with ``{code, message}`` for an invalid transaction.
* ``GET  /v1/transactions/{txid}`` — ``pending``, ``committed`` (with height), ``rejected`` (with the reject) or
  ``unknown`` (never queued here nor in the shared queue; or refused by another coordinator).
* ``GET  /v1/blocks?start=H&limit=N`` — raw blocks (hex), for peers to catch up (they re-validate them).
* ``GET  /v1/blocks/{height}`` — one block as JSON.
* ``GET  /v1/stream?start=H`` — server-sent events, one ``block`` event per committed block; at most
  ``MAX_STREAMS_PER_CALLER`` open per calling node and ``MAX_STREAMS`` in all (``429`` beyond).
* ``GET  /v1/readings/{txid}`` — a committed reading's values, only to the meter itself, its coordinators and the
  DSO (``403`` to anyone else; ``404`` if this node holds no key that opens it): see ``restricted``.
* ``GET  /v1/readings?meter=ID&limit=N`` — the meter's latest readings with their values and totals, likewise.
* ``GET  /v1/policy`` — the DSO policy timeline: the chain's clock, every committed policy, what is in force now.
* ``POST /v1/bills`` — a meter's bill of one ended slot (JSON ``{slot, energy_ws, amount, eca_audit_ok}``: W·s,
  minor units), signed as the meter; kept durably, one per meter and slot (an identical repeat is accepted, another
  bill for the slot is ``409``). Refusals are ``{code, message}`` and counted: see ``bills``.
* ``GET  /v1/bills?last=N`` — the bills' aggregate: per slot (the latest ``N``) the meters that reported, the
  energy settled and the amount billed in all; the totals over every slot; the refused reports by code.
* ``GET  /v1/dashboard`` (unsigned) — aggregate live figures for the dashboard page at ``/dashboard`` (no CDN).
* ``/docs`` (Swagger UI), ``/redoc`` and ``/openapi.json`` — served from local assets (``fastapi-offline``).

Errors: ``{code, message}`` for a refused transaction or bill; ``{detail}`` for every other refusal (``401`` bad
signature, ``403`` not entitled, ``404``, ``413`` body too large, ``429`` rate or stream limit, ``503`` node unhealthy).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import threading
import time
import weakref
from collections import Counter
from typing import Literal

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel

from gridledger.chain import Chain
from gridledger.jsonview import block_json
from gridledger.ledger import crypto
from gridledger.ledger.block import Block
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds import decode_transaction
from gridledger.ledger.kinds.alarm import Alarm, AlarmCode
from gridledger.ledger.kinds.reading import Reading
from gridledger.ledger.kinds.reading_batch import readings_of
from gridledger.ledger.members import roster
from gridledger.node.auth import AuthError, NodeRegistry, RateLimiter
from gridledger.node.bills import BillBook, BillError, BillReport, parse_report
from gridledger.node.dashboard import ASSETS, RECENT_SLOTS, Activity, PeerChains, dashboard_view, plotly_js
from gridledger.node.ordering import Orderer
from gridledger.node.restricted import (
    Forbidden,
    NotHeld,
    ReadingKeys,
    entitlement,
    meter_id,
    meter_keys,
    reading_json,
)
from gridledger.node.sequencer import Sequencer
from gridledger.node.views import policy_view

#: Largest request body (bytes): a transaction. Longer bodies are refused (413) before they are read.
MAX_BODY_BYTES = 256 * 1024
#: Open ``/v1/stream`` connections allowed per calling node and in all; events sent per chunk; keep-alive period (s).
MAX_STREAMS_PER_CALLER, MAX_STREAMS, STREAM_BATCH, STREAM_KEEPALIVE_S = 16, 1024, 256, 15.0
#: Queued transactions a status request looks through at most.
QUEUE_SCAN = 100_000
#: Default requests per second (and burst) from one peer address, counted before authentication.
PEER_RATE, PEER_BURST = 1000.0, 2000.0

log = logging.getLogger("gridledger.node")
#: The request headers that sign a call (see ``auth``), as OpenAPI security schemes.
SIGNING_HEADERS = {
    "X-Node-Id": "the calling node's registered id",
    "X-Timestamp": "Unix time of the request (s), within 30 s of the server's clock",
    "X-Nonce": "16 random bytes, 32 hex characters; a signature is never accepted twice",
    "X-Signature": "Ed25519 signature (hex) by the node's registered key over "
    "METHOD \\n PATH?QUERY \\n TIMESTAMP \\n NONCE \\n SHA-256(body)",
}
#: Files of the dashboard page, by the name it is served under.
DASHBOARD_FILES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css", "plotly.min.js": "text/javascript"}


class Detail(BaseModel):
    """Why a request was refused."""

    detail: str


class Refusal(BaseModel):
    """A refused transaction or bill: its code (``bad-policy-stale``, ``node-unhealthy``, ``bill-conflict`` …) and
    the message."""

    code: str
    message: str


class TxStatus(BaseModel):
    """Where a transaction is: ``pending``, ``committed`` (``height``), ``rejected`` (``code``, ``message``) or
    ``unknown``."""

    status: Literal["pending", "committed", "rejected", "unknown"]
    height: int | None = None
    code: str | None = None
    message: str | None = None


def _errors(*codes: int, tx: bool = False, coded: dict[int, str] | None = None) -> dict:
    """OpenAPI ``responses`` for refusals; every route may also answer 413 and 429 (the peer gate). ``coded``:
    statuses answered with ``{code, message}`` (:class:`Refusal`), and what they mean."""
    why = {
        400: "malformed request or invalid transaction",
        401: "not signed by a registered node, stale, replayed or badly signed",
        403: "the caller is not entitled to this data",
        404: "no such object on this chain",
        413: "request body over 256 KiB",
        429: "rate limit (per address or per node) or stream limit reached",
        503: "the node is unhealthy (sequencer stopped or store corrupted)",
    }
    out = {c: {"model": Detail, "description": why[c]} for c in (*codes, 413, 429)}
    if tx:
        coded = {400: "invalid transaction (context-free checks)", 503: "the node's sequencer is not running"}
    out.update({c: {"model": Refusal, "description": text} for c, text in (coded or {}).items()})
    return out


SIGNED = _errors(401)


class PeerGate:
    """ASGI middleware in front of every route: a token bucket per peer address and the body-size cap, applied
    before a request is authenticated or its body read (floods of bad signatures or huge bodies cost little)."""

    def __init__(self, app, limiter: RateLimiter, max_body: int) -> None:
        self.app, self.limiter, self.max_body = app, limiter, max_body

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            peer = (scope.get("client") or ("unknown",))[0]
            length = dict(scope["headers"]).get(b"content-length", b"0")
            refusal = None
            if not self.limiter.allow(peer):
                refusal = JSONResponse({"detail": f"rate limit for address {peer}"}, 429)
            elif not length.isdigit() or int(length) > self.max_body:
                refusal = JSONResponse({"detail": f"request body over {self.max_body} bytes"}, 413)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


class NodeService:
    """A node: chain + orderer + sequencer thread + HTTP API."""

    def __init__(
        self,
        node_id: str,
        role: str,
        chain: Chain,
        orderer: Orderer,
        sequencer: Sequencer,
        registry: NodeRegistry,
        limiter: RateLimiter,
        reading_keys: ReadingKeys | None = None,
        peer_limiter: RateLimiter | None = None,
        dashboard_peers: list[str] | None = None,
        peer_verify: ssl.SSLContext | bool = True,
        bills: BillBook | None = None,
    ) -> None:
        self.node_id, self.role = node_id, role
        self.chain, self.orderer, self.sequencer = chain, orderer, sequencer
        self.registry, self.limiter = registry, limiter
        self.reading_keys = reading_keys or ReadingKeys()
        self.tamper_report: str | None = None
        #: The first height whose stored bytes were found changed while the node ran (None: none found).
        self.store_tampered: int | None = None
        self.committed: dict[bytes, int] = {}
        #: Committed readings' txids by member index, oldest first; subjects of implausible-reading alarms.
        self.readings: dict[int, list[bytes]] = {}
        self.alarmed: set[bytes] = set()
        #: SHA-256 of every block's bytes as this node validated them, 32 bytes per height: what it serves must match.
        self._digests = bytearray()
        #: Per height: the block hash and its number of transactions (4 bytes), what ``/v1/stream`` sends.
        self._summaries = bytearray()
        #: Open streams per calling node, in all, and how they learn of new blocks (set in the event loop).
        self._streams: dict[str, int] = {}
        self._streams_total = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tip_changed = asyncio.Event()
        self.activity = Activity()
        #: Transactions this node's API refused (400), by reject code.
        self.refused: Counter[str] = Counter()
        #: The bills meters reported here (kept beside the store by ``run``), and the reports refused, by code.
        self.bills = bills or BillBook()
        self.bills_refused: Counter[str] = Counter()
        #: Reloads of the registry from the configuration file (SIGHUP, see ``run``): applied, refused, and why the
        #: last one was refused.
        self.reloads: dict = {"applied": 0, "refused": 0, "last_refused": None}
        self.peer_chains = PeerChains(dashboard_peers or [], peer_verify)  # verify: what https peers must show
        for height, raw in chain.store.iter_blocks(0):
            self._index(Block.decode(raw) if height else chain.genesis_block, raw)
        previous = sequencer.on_block
        sequencer.on_block = lambda b: (
            self._index(b, b.encode()),
            self.activity.committed(b),
            previous and previous(b),
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.peer_limiter = peer_limiter or RateLimiter(PEER_RATE, PEER_BURST)
        self.app = self._build_app()

    def _index(self, block: Block, raw: bytes) -> None:
        self._digests += crypto.sha256(raw)
        self._summaries += block.hash + len(block.transactions).to_bytes(4, "big")
        self.activity.indexed(block)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._notify)
        for tx in block.transactions:
            self.committed[tx.txid] = block.height
            for r in readings_of(tx):  # a READING, or each minute of a READING_BATCH under the minute's own id
                self.committed[r.txid] = block.height
                self.readings.setdefault(r.member, []).append(r.txid)
            if isinstance(tx, Alarm) and tx.code == AlarmCode.IMPLAUSIBLE_READING:
                self.alarmed.add(tx.subject)

    def _block_bytes(self, height: int) -> bytes:
        """Block ``height`` as this node validated it (hold the sequencer lock). A stored copy that differs (the store
        was changed under the running node) is never served: the node reports the tampering, turns unhealthy (a
        restart rebuilds the store) and serves the orderer's copy if that one matches, else answers 503."""
        raw = self.chain.store.block_bytes(height)
        digest = bytes(self._digests[32 * height : 32 * height + 32])
        if crypto.sha256(raw) == digest:
            return raw
        if self.store_tampered is None:
            self.store_tampered = height
            self.tamper_report = f"block {height} in the store changed while the node ran; restart to rebuild the store"
            log.error("%s: %s", self.node_id, self.tamper_report)
        copy = [r for _, r in self.orderer.blocks(height, 1)] if height else [self.chain.genesis_block.encode()]
        if copy and crypto.sha256(copy[0]) == digest:
            return copy[0]
        raise HTTPException(503, detail=f"block {height} of this node's store is corrupted: ask another node")

    def _notify(self) -> None:
        """Wake every open stream (in the event loop): a block was appended."""
        woken, self._tip_changed = self._tip_changed, asyncio.Event()
        woken.set()

    async def _events(self, h: int):
        """Server-sent ``block`` events from height ``h`` on, formatted from the in-memory index (no store read, no
        decoding in the event loop); a comment line every ``STREAM_KEEPALIVE_S`` finds clients that are gone."""
        if self._loop is not asyncio.get_running_loop():  # the server's loop (a test client may start another)
            self._loop, self._tip_changed = asyncio.get_running_loop(), asyncio.Event()
        while True:
            changed = self._tip_changed
            top = min(len(self._summaries) // 36 - 1, h + STREAM_BATCH - 1)
            if h <= top:
                yield "".join(self._event(k) for k in range(h, top + 1))
                h = top + 1
                continue
            try:
                await asyncio.wait_for(changed.wait(), STREAM_KEEPALIVE_S)
            except TimeoutError:
                yield ": keepalive\n\n"

    def _stream_slot(self, caller: str, events) -> None:
        """Count an open stream of ``caller`` until its event generator is gone (ended, cancelled or never run)."""
        self._streams[caller] = self._streams.get(caller, 0) + 1
        self._streams_total += 1
        weakref.finalize(events, self._stream_closed, caller)

    def _stream_closed(self, caller: str) -> None:
        self._streams_total -= 1
        self._streams[caller] -= 1
        if not self._streams[caller]:
            del self._streams[caller]

    def _event(self, height: int) -> str:
        row = self._summaries[36 * height : 36 * height + 36]
        data = {"height": height, "hash": row[:32].hex(), "txs": int.from_bytes(row[32:], "big")}
        return f"event: block\ndata: {json.dumps(data)}\n\n"

    @property
    def sequencer_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def health(self) -> dict:
        """What ``/v1/status``, ``/v1/health`` and ``/v1/metrics`` report about the node's own work."""
        seq = self.sequencer
        return {
            "sequencer_alive": self.sequencer_alive,
            "last_applied_height": self.chain.height,
            "entries_rejected": seq.entries_rejected,
            "last_rejected": None if seq.last_rejected is None else str(seq.last_rejected),
            "sequencer_errors": seq.errors,
            "store_tampered": self.store_tampered,
            "requests_refused": {"peer_rate": self.peer_limiter.refused, "node_rate": self.limiter.refused},
            "registry": {"nodes": len(self.registry.nodes), **self.reloads},
            "streams_open": self._streams_total,
            "waiting_for_quorum": self._waiting(),
            **self._children(),
        }

    def _waiting(self) -> dict | None:
        """The leader's height without a quorum beyond the round time-out (``node.poef_net.Waiting``), or None."""
        seq = self.sequencer
        waiting = getattr(seq, "waiting", None)
        if waiting is None or not seq.leading:
            return None
        names = {key: node_id for node_id, (_, key) in self.registry.nodes.items()}
        return waiting.to_json(seq.monotonic(), names)

    def _children(self) -> dict:
        """The child chains the node replicates (``node.poef_net``): height and refused certified blocks."""
        children = getattr(self.sequencer, "children", [])
        if not children:
            return {}
        return {
            "children": [
                {
                    "chain_id": c.chain.chain_id.hex(),
                    "height": c.chain.height,
                    "refused": [
                        {"height": h, "hash": block_hash.hex(), "reject": str(e)}
                        for h, (block_hash, e) in sorted(c.replica.refused.items())
                    ],
                }
                for c in children
            ],
            "alarms_raised": self.sequencer.alarms_raised,
        }

    def start(self) -> None:
        self._thread = threading.Thread(target=self.sequencer.run, args=(self._stop,), name=f"sequencer-{self.node_id}")
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(10)
        self.peer_chains.close()
        self.bills.close()

    def reload_registry(self, entries: list[tuple[str, str, bytes]], source: str) -> None:
        """Make ``entries`` (id, role, public key, read from ``source``) the registry, at once: a node left out is
        refused from its next request on. Refused (``ValueError``, nothing changed) if it drops or changes this node's
        own entry."""
        old, new = self.registry.nodes, {node_id: (role, key) for node_id, role, key in entries}
        if self.node_id in old and new.get(self.node_id) != old[self.node_id]:
            raise ValueError(f"{source}: a reload may not remove or change this node's own entry ({self.node_id})")
        self.registry.replace(entries)
        self.reloads["applied"] += 1
        added = sorted(new.keys() - old.keys())
        removed = sorted(old.keys() - new.keys())
        changed = sorted(k for k in new.keys() & old.keys() if new[k] != old[k])
        log.info(
            "%s: reloaded the registry from %s (only [[registry]] is reloaded): %d nodes; added %s, removed %s, "
            "changed %s",
            *(self.node_id, source, len(new)),
            *(", ".join(ids) or "none" for ids in (added, removed, changed)),
        )

    def reload_refused(self, why: str) -> None:
        """Count and log a refused reload: the registry in force stays."""
        self.reloads["refused"] += 1
        self.reloads["last_refused"] = why
        log.error(
            "%s: registry reload refused, the %d registered nodes stay as they were: %s",
            *(self.node_id, len(self.registry.nodes), why),
        )

    async def _authorize(self, request: Request) -> tuple[str, str, bytes]:
        body = bytearray()
        async for chunk in request.stream():  # a body without Content-Length is capped as it arrives
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise HTTPException(413, detail=f"request body over {MAX_BODY_BYTES} bytes")
        body = bytes(body)
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        try:
            node_id, role, request.state.caller_key = self.registry.authenticate(
                request.headers, request.method, path, body
            )
        except AuthError as e:
            raise HTTPException(401, detail=str(e)) from None
        if not self.limiter.allow(node_id):
            raise HTTPException(429, detail=f"rate limit for node {node_id}")
        return node_id, role, body

    def _tx_status(self, txid: bytes) -> dict | None:
        """``committed`` or ``rejected`` as this node knows it, else None."""
        if txid in self.committed:
            return {"status": "committed", "height": self.committed[txid]}
        if (e := self.sequencer.rejected.get(txid)) is not None:
            return {"status": "rejected", "code": e.code, "message": e.message}
        return None

    def _in_flight(self, txid: bytes) -> bool:
        """True if ``txid`` waits in the orderer's queue, or a block this node has not applied yet may hold it (a
        transaction leaves the queue only after the block holding it is published)."""
        if any(t == txid for t, _ in self.orderer.pending(QUEUE_SCAN)):
            return True
        return bool(self.orderer.blocks(self.chain.height + 1, 1))

    def _rows(self, txids: list[bytes]) -> list[tuple[int, Reading]]:
        """(height, reading) of committed readings, in the order of ``txids`` (hold the sequencer lock)."""
        blocks: dict[int, dict[bytes, object]] = {}
        rows = []
        for txid in txids:
            height = self.committed[txid]
            if height not in blocks:
                block = Block.decode(self._block_bytes(height))
                blocks[height] = {t.txid: t for tx in block.transactions for t in (tx, *readings_of(tx))}
            rows.append((height, blocks[height][txid]))
        return rows

    def _entitlement(self, caller: str, caller_key: bytes, meter: str) -> str:
        """Why ``caller`` (its request signed with ``caller_key``) may read ``meter``'s readings; HTTP 403 if it may
        not (hold the sequencer lock).

        Judged before looking the meter up, so that an unknown meter is refused exactly like a meter the caller may
        not read: the answers do not tell which meters exist."""
        state = self.chain.state
        try:
            return entitlement(state.genesis, caller, caller_key, meter, meter_keys(state, meter))
        except Forbidden as e:
            raise HTTPException(403, detail=str(e)) from None

    def _open(self, rows: list[tuple[int, Reading]]) -> list[dict]:
        """The clear views of readings the caller is entitled to; HTTP 404 if this node cannot open them."""
        state = self.chain.state
        try:
            opened = [(h, r, self.reading_keys.open(state, r)) for h, r in rows]
        except NotHeld as e:
            raise HTTPException(404, detail=str(e)) from None
        return [reading_json(state, r, h, values, r.txid in self.alarmed) for h, r, values in opened]

    def _build_app(self) -> FastAPI:
        app = FastAPIOffline(title=f"gridledger node {self.node_id}", version="1", description=__doc__)
        app.add_middleware(PeerGate, limiter=self.peer_limiter, max_body=MAX_BODY_BYTES)
        self._dashboard_routes(app)

        @app.get("/v1/status", responses=SIGNED)
        async def status(request: Request) -> dict:
            await self._authorize(request)
            st = self.chain.state
            return {
                "node_id": self.node_id,
                "role": self.role,
                "chain_id": self.chain.chain_id.hex(),
                "height": st.height,
                "tip": st.tip_hash.hex(),
                "leading": self.sequencer.leading and self.sequencer_alive,
                "consensus": self.chain.state.ruleset.consensus.value,
                "tamper_report": self.tamper_report,
                **self.health(),
            }

        @app.get(
            "/v1/health", responses={**_errors(), 503: {"description": "a worker thread is down or the store changed"}}
        )
        async def health():
            alive, store_ok = self.sequencer_alive, self.store_tampered is None
            body = {"healthy": alive and store_ok, "workers": {"sequencer": alive}, "store_verified": store_ok}
            return JSONResponse(body, 200 if alive and store_ok else 503)

        @app.get("/v1/metrics", responses=_errors(), response_class=PlainTextResponse)
        async def metrics():
            h = self.health()
            rows = [  # (name, type, help, value)
                ("sequencer_alive", "gauge", "1 while the sequencer thread runs", int(h["sequencer_alive"])),
                ("last_applied_height", "gauge", "height of the last block applied", h["last_applied_height"]),
                ("entries_rejected_total", "counter", "ordering-log entries refused", h["entries_rejected"]),
                ("sequencer_errors_total", "counter", "unexpected sequencer failures", h["sequencer_errors"]),
                ("store_tampered", "gauge", "1 once a stored block changed", int(h["store_tampered"] is not None)),
                ("peer_throttled_total", "counter", "requests refused per address", h["requests_refused"]["peer_rate"]),
                ("node_throttled_total", "counter", "requests refused per node", h["requests_refused"]["node_rate"]),
                ("streams_open", "gauge", "open /v1/stream connections", h["streams_open"]),
                (
                    "quorum_wait_seconds",
                    "gauge",
                    "seconds since the first round of a height still without quorum past the round time-out (else 0)",
                    (h["waiting_for_quorum"] or {}).get("for_s", 0),
                ),
                ("registry_nodes", "gauge", "nodes registered to call this one", h["registry"]["nodes"]),
                ("registry_reloads_total", "counter", "registry reloads applied", h["registry"]["applied"]),
                ("registry_reloads_refused_total", "counter", "registry reloads refused", h["registry"]["refused"]),
            ]
            text = "".join(
                f"# HELP gridledger_{n} {d}\n# TYPE gridledger_{n} {t}\ngridledger_{n} {v}\n" for n, t, d, v in rows
            )
            return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

        @app.post(
            "/v1/transactions",
            status_code=202,
            responses=_errors(401, tx=True),
            openapi_extra={
                "requestBody": {
                    "required": True,
                    "description": "one transaction in its canonical binary encoding (at most 256 KiB)",
                    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                }
            },
        )
        async def submit(request: Request):
            _, _, body = await self._authorize(request)
            if not self.sequencer_alive:
                return JSONResponse({"code": "node-unhealthy", "message": "this node's sequencer is not running"}, 503)
            try:
                tx = decode_transaction(body)
                self.chain.state.ruleset.check_transaction(tx)
            except Reject as e:
                self.refused[e.code] += 1
                log.info("%s: refused a transaction: %s", self.node_id, e)
                return JSONResponse({"code": e.code, "message": e.message}, 400)
            self.activity.submitted(tx.txid)
            await asyncio.to_thread(self.orderer.submit, tx.txid, tx.encode())
            return {"txid": tx.txid.hex()}

        @app.get(
            "/v1/transactions/{txid}",
            responses=_errors(400, 401),
            response_model=TxStatus,
            response_model_exclude_none=True,
        )
        async def tx_status(txid: str, request: Request) -> dict:
            """``pending`` (queued, or in a block this node has not applied yet), ``committed`` with the height,
            ``rejected`` with the reject code and message (as this node judged it), or ``unknown`` (never queued, or
            refused by another coordinator: ask the leading one)."""
            await self._authorize(request)
            try:
                key = bytes.fromhex(txid)
            except ValueError:
                raise HTTPException(400, detail="txid must be hex") from None
            if (known := self._tx_status(key)) is not None:
                return known
            if self.activity.queued(key) or await asyncio.to_thread(self._in_flight, key):
                return {"status": "pending"}
            return self._tx_status(key) or {"status": "unknown"}

        @app.get("/v1/blocks", responses=_errors(401, 503))
        async def blocks(request: Request, start: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=1000)):
            await self._authorize(request)
            with self.sequencer.lock:
                top = min(self.chain.height, start + limit - 1)
                rows = [{"height": h, "raw": self._block_bytes(h).hex()} for h in range(start, top + 1)]
            return {"blocks": rows}

        @app.get("/v1/blocks/{height}", responses=_errors(401, 404, 503))
        async def block(height: int, request: Request):
            await self._authorize(request)
            if not 0 <= height <= self.chain.height:
                raise HTTPException(404, detail=f"no block at height {height}")
            with self.sequencer.lock:
                raw = self._block_bytes(height)
            return block_json(Block.decode(raw))

        @app.get("/v1/readings/{txid}", responses=_errors(400, 401, 403, 404))
        async def reading(txid: str, request: Request):
            caller, _, _ = await self._authorize(request)
            try:
                key = bytes.fromhex(txid)
            except ValueError:
                raise HTTPException(400, detail="txid must be hex") from None
            with self.sequencer.lock:
                rows = self._rows([key]) if key in self.committed else []
                if not rows or not isinstance(rows[0][1], Reading):
                    rows = []
                try:  # the same 403 for a reading that does not exist as for one of a meter the caller may not read
                    subject = meter_id(self.chain.state, rows[0][1].member) if rows else ""
                    basis = self._entitlement(caller, request.state.caller_key, subject)
                except HTTPException:
                    raise HTTPException(
                        403,
                        detail=f"node {caller} may not read reading {txid}: only the meter that made it, "
                        "the chain's coordinators and the DSO may",
                    ) from None
                if not rows:
                    raise HTTPException(404, detail=f"no committed reading {txid} on this chain")
                return {"served_as": basis, **self._open(rows)[0]}

        @app.get("/v1/readings", responses=_errors(401, 403, 404))
        async def readings(request: Request, meter: str = Query(...), limit: int = Query(100, ge=1, le=1000)):
            caller, _, _ = await self._authorize(request)

            def serve() -> dict:
                with self.sequencer.lock:
                    basis = self._entitlement(caller, request.state.caller_key, meter)
                    member = roster(self.chain.state).index.get(meter)
                    if member is None:
                        raise HTTPException(404, detail=f"no meter {meter!r} is enrolled on this chain")
                    views = self._open(self._rows(self.readings.get(member, [])[-limit:]))
                return {
                    "meter": meter,
                    "member": member,
                    "served_as": basis,
                    "count": len(views),
                    "consumption_wh": sum(v["consumption_wh"] for v in views),
                    "production_wh": sum(v["production_wh"] for v in views),
                    "readings": views,
                }

            return await asyncio.to_thread(serve)

        @app.get(
            "/v1/stream",
            response_class=StreamingResponse,
            responses={**SIGNED, 200: {"description": "server-sent events", "content": {"text/event-stream": {}}}},
        )
        async def stream(request: Request, start: int = Query(1, ge=0)):
            caller, _, _ = await self._authorize(request)
            if self._streams_total >= MAX_STREAMS or self._streams.get(caller, 0) >= MAX_STREAMS_PER_CALLER:
                raise HTTPException(
                    429, detail=f"stream limit: {MAX_STREAMS_PER_CALLER} per node, {MAX_STREAMS} in all"
                )
            events = self._events(start)
            self._stream_slot(caller, events)
            return StreamingResponse(events, media_type="text/event-stream")

        @app.get("/v1/policy", responses=SIGNED)
        async def policy(request: Request) -> dict:
            await self._authorize(request)
            with self.sequencer.lock:
                return policy_view(self.chain.state, int(time.time()), self.committed)

        self._bill_routes(app)
        app.openapi = lambda: self._openapi(app)
        return app

    def _bill_routes(self, app: FastAPI) -> None:
        """``POST /v1/bills`` (a meter's report of one slot) and ``GET /v1/bills`` (their aggregate)."""

        @app.post(
            "/v1/bills",
            responses=_errors(
                401,
                coded={
                    400: "malformed report (bill-malformed), a number out of range (bill-out-of-range) or a slot that "
                    "has not ended (bill-future-slot)",
                    403: "the caller is not a registered meter (bill-not-a-meter)",
                    409: "the meter already reported another bill for this slot (bill-conflict)",
                    503: "the node's bills database failed (bill-store-unavailable); send the bill again later",
                },
            ),
            openapi_extra={
                "requestBody": {
                    "required": True,
                    "description": "one slot's bill as the DSO may see it (JSON, no other field)",
                    "content": {"application/json": {"schema": BillReport.model_json_schema()}},
                }
            },
        )
        async def report_bill(request: Request) -> dict:
            """Keep the calling meter's bill of one ended slot; ``new`` is false for a repeat of the same bill."""
            try:
                meter, role, body = await self._authorize(request)
            except HTTPException as e:
                self.bills_refused[f"http-{e.status_code}"] += 1  # not signed by a registered node, or throttled
                raise
            try:
                if role != "meter":
                    raise BillError(
                        "bill-not-a-meter", f"node {meter} is registered as {role!r}: only meters report bills", 403
                    )
                g = self.chain.state.genesis
                report = parse_report(body, int(time.time() - g.start_time) // g.slot_seconds)
                new = await asyncio.to_thread(self.bills.add, meter, report)
            except BillError as e:
                self.bills_refused[e.code] += 1
                log.info("%s: refused a bill from %s: %s", self.node_id, meter, e.message)
                return JSONResponse({"code": e.code, "message": e.message}, e.status)
            return {"meter": meter, "slot": report.slot, "new": new}

        @app.get("/v1/bills", responses=SIGNED)
        async def bills(request: Request, last: int = Query(100, ge=0, le=100_000)) -> dict:
            """The bills' aggregate: per slot (the latest ``last``, oldest first) ``meters`` reporting, ``energy_ws``
            settled (W·s) and ``amount`` billed (minor units) in all, ``audit_failed`` reports; ``total`` over every
            slot; ``refused``: the reports refused here, by code."""
            await self._authorize(request)
            return self._bills_view(last)

    def _bills_view(self, last: int) -> dict:
        return {**self.bills.view(last), "refused": dict(self.bills_refused)}

    def _dashboard_routes(self, app: FastAPI) -> None:
        """``/dashboard``, its assets, and the unsigned aggregate figures it polls (``/v1/dashboard``)."""

        @app.get("/dashboard", include_in_schema=False)
        async def dashboard_page():
            return FileResponse(ASSETS / "index.html", media_type="text/html")

        @app.get("/dashboard/assets/{name}", include_in_schema=False)
        async def dashboard_asset(name: str):
            if name not in DASHBOARD_FILES:
                raise HTTPException(404, detail=f"no dashboard asset {name!r}")
            path = plotly_js() if name == "plotly.min.js" else ASSETS / name
            return FileResponse(path, media_type=DASHBOARD_FILES[name], headers={"Cache-Control": "max-age=3600"})

        @app.get("/v1/dashboard", responses=_errors(404))
        async def dashboard_data(
            chain: str | None = Query(None, description="chain name or id (hex)"),
            peers: bool = Query(True, description="add the chains of the node's dashboard peers"),
        ) -> dict:
            """Aggregate live figures (unsigned: no reading values, no keys): see ``gridledger.node.dashboard``."""
            state = self.chain.state
            if chain is not None and chain not in (state.genesis.chain, state.chain_id.hex()):
                raise HTTPException(
                    404, detail=f"no chain {chain!r} on node {self.node_id} (it holds {state.genesis.chain})"
                )
            others = await asyncio.to_thread(self.peer_chains.chains) if peers else []
            with self.sequencer.lock:
                refusals = {
                    "api": dict(self.refused),
                    "chain": dict(Counter(e.code for e in list(self.sequencer.rejected.values()))),
                }
                health = {**self.health(), "transactions_refused": refusals}
                view = dashboard_view(self.node_id, self.role, state, self.activity, health, others)
            return {**view, "bills": self._bills_view(RECENT_SLOTS)}

    @staticmethod
    def _openapi(app: FastAPI) -> dict:
        """FastAPI's schema with the signing headers as security schemes, required by every signed route."""
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = {
                name: {"type": "apiKey", "in": "header", "name": name, "description": text}
                for name, text in SIGNING_HEADERS.items()
            }
            for operations in schema["paths"].values():
                for op in operations.values():
                    if "401" in op.get("responses", {}):
                        op["security"] = [{name: [] for name in SIGNING_HEADERS}]
            app.openapi_schema = schema
        return app.openapi_schema
