"""Run one node process: open (and verify) its store, join the orderer, serve the API.

On start the node replays and re-validates its whole stored chain. If the store was tampered with (any changed
block or state row), it says so, moves the store aside, and rebuilds the chain from the genesis block by catching
up from the orderer and its peers, re-validating everything it receives (the paper's tampering scenario).

The genesis decides the consensus: an untagged chain keeps the coordinator-only rule (``Sequencer``); a
tier-tagged chain (``nan:DC1``) runs PoEf rounds over the orderer (``poef_net.PoefSequencer``): its coordinators
propose and certify, its enrolled members vote.

On SIGHUP (``systemctl reload``) a running node re-reads the ``[[registry]]`` of its configuration file and swaps it
in at once (``reload_registry``); nothing else is reloaded. A file that does not load, or that would drop the node's
own entry, is refused as a whole: the registry in force stays and the node keeps serving.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from pathlib import Path

import uvicorn

from gridledger.chain import Chain, verify_store
from gridledger.consensus.poef import Replica
from gridledger.ledger.block import Block
from gridledger.ledger.errors import Reject
from gridledger.ledger.kinds.reading import ChainKeys
from gridledger.ledger.ruleset import Consensus
from gridledger.node.auth import NodeRegistry, RateLimiter
from gridledger.node.bills import BillBook
from gridledger.node.client import NodeClient, catch_up, tls_verify
from gridledger.node.config import ConfigError, NodeConfig
from gridledger.node.ordering import EtcdOrderer, InProcessOrderer
from gridledger.node.poef_board import EtcdPoefOrderer, InProcessPoefOrderer
from gridledger.node.poef_net import PoefSequencer
from gridledger.node.restricted import ReadingKeys
from gridledger.node.sequencer import Sequencer
from gridledger.node.service import NodeService
from gridledger.store import open_store

log = logging.getLogger("gridledger.node")

#: Environment variable: seconds added to the clock this node stamps its blocks with (fault tests skew one node).
CLOCK_SKEW_ENV = "GRIDLEDGER_CLOCK_SKEW_S"
#: Seconds a stopping node waits for its open connections to close: an idle TLS keep-alive connection waits for its
#: client's close_notify, which a client that keeps it for later never sends.
GRACEFUL_SHUTDOWN_S = 3


def node_clock() -> float:
    """The node's clock (Unix s): the system clock plus ``$GRIDLEDGER_CLOCK_SKEW_S`` (default 0)."""
    skew = float(os.environ.get(CLOCK_SKEW_ENV, "0"))
    return time.time() + skew


def open_chain(cfg: NodeConfig) -> tuple[Chain, str | None]:
    """The node's chain, verified; returns (chain, tamper report or None)."""
    genesis = Block.decode(cfg.genesis)
    store = open_store(cfg.store)
    if store.tip_height() is None:
        return Chain.from_genesis_block(store, genesis), None
    try:
        if Block.decode(store.block_bytes(0)).hash != genesis.hash:
            raise Reject("bad-chain-genesis", "the stored chain has another genesis block", height=0)
        verify_store(store)
        return Chain.open(store), None
    except Reject as e:
        report = f"stored chain failed verification ({e}); rebuilding it from peers"
        store.close()
        if "://" in cfg.store:
            raise SystemExit(f"{cfg.node_id}: {report}; clear the database and restart") from None
        stamp = int(time.time())
        for suffix in ("", "-wal", "-shm"):
            p = Path(cfg.store + suffix)
            if p.exists():
                p.rename(p.with_name(p.name + f".tampered-{stamp}"))
        return Chain.from_genesis_block(open_store(cfg.store), genesis), report


def children(cfg: NodeConfig) -> list[PoefSequencer]:
    """A follower of each child chain of ``cfg`` (its store beside the node's; an in-memory replica, rebuilt from
    the orderer, when the node's store is a database URL)."""
    out = []
    for genesis in cfg.children:
        chain_id = Block.decode(genesis).header.chain_id
        store = ":memory:" if "://" in cfg.store else f"{cfg.store}.child-{chain_id.hex()[:16]}"
        chain, tamper = open_chain(dataclasses.replace(cfg, store=store, genesis=genesis))
        if tamper:
            log.error("%s: child chain %s…: %s", cfg.node_id, chain_id.hex()[:16], tamper)
        orderer = InProcessPoefOrderer() if cfg.orderer == "inprocess" else EtcdPoefOrderer(cfg.orderer, chain_id)
        out.append(PoefSequencer(Replica(chain), orderer, f"{cfg.node_id}/{chain_id.hex()[:8]}", clock=node_clock))
    return out


def bill_book(cfg: NodeConfig) -> BillBook:
    """The bills meters report to the node, in ``<store>.bills`` beside its SQLite store, or in its PostgreSQL store's
    database (table ``bills`` beside the chain's)."""
    return BillBook(cfg.store if "://" in cfg.store else f"{cfg.store}.bills")


def build_service(cfg: NodeConfig) -> NodeService:
    chain, tamper = open_chain(cfg)
    if tamper:
        log.error("%s: %s", cfg.node_id, tamper)
    ca = None if cfg.tls is None else cfg.tls.ca
    peers = [NodeClient(u, cfg.node_id, cfg.key, ca=ca) for u in cfg.peers]
    catch_up(chain, peers)
    is_coordinator = cfg.key.public in chain.genesis.proposers
    master = None if cfg.content_key is None or not is_coordinator else ChainKeys(chain.chain_id, cfg.content_key)
    own = None if cfg.content_key is None or is_coordinator else (cfg.node_id, cfg.content_key)
    inprocess = cfg.orderer == "inprocess"
    etcd = {"tls": cfg.tls, "auth": None if cfg.etcd_password is None else (cfg.node_id, cfg.etcd_password)}
    if chain.state.ruleset.consensus is Consensus.COORDINATOR:
        orderer = InProcessOrderer() if inprocess else EtcdOrderer(cfg.orderer, chain.chain_id, **etcd)
        sequencer = Sequencer(chain, orderer, cfg.node_id, cfg.key if is_coordinator else None, clock=node_clock)
    else:
        if is_coordinator and master is None:
            raise ConfigError(f"{cfg.node_id}: a coordinator of PoEf chain {chain.genesis.chain!r} needs content_key")
        orderer = InProcessPoefOrderer() if inprocess else EtcdPoefOrderer(cfg.orderer, chain.chain_id, **etcd)
        sequencer = PoefSequencer.for_node(
            chain,
            orderer,
            cfg.node_id,
            cfg.key,
            master,
            round_timeout=cfg.round_timeout,
            clock=node_clock,
            children=children(cfg),
        )
    registry = NodeRegistry()
    for node_id, role, pubkey in cfg.registry:
        registry.register(node_id, role, pubkey)
    limiter, peer_limiter = RateLimiter(cfg.rate, cfg.burst), RateLimiter(cfg.peer_rate, cfg.peer_burst)
    keys = ReadingKeys(master, own)
    service = NodeService(
        cfg.node_id,
        cfg.role,
        chain,
        orderer,
        sequencer,
        registry,
        limiter,
        keys,
        peer_limiter,
        cfg.dashboard_peers,
        tls_verify(ca),
        bill_book(cfg),
    )
    service.tamper_report = tamper
    return service


def reload_registry(service: NodeService, cfg: NodeConfig) -> bool:
    """Load ``cfg``'s file again and make its ``[[registry]]`` the running ``service``'s (``cfg``: the configuration
    the node started with). The whole file must load; keys other than the registry that changed are named in a
    warning (a restart takes them). Returns False, counted and logged, if the reload was refused."""
    try:
        new = NodeConfig.load(cfg.path)
        service.reload_registry(new.registry, str(cfg.path))
    except ValueError as e:  # ConfigError included
        service.reload_refused(str(e))
        return False
    except Exception as e:  # a value of a type the loader did not foresee: refused too, the node keeps serving
        service.reload_refused(f"{cfg.path}: {type(e).__name__}: {e}")
        return False
    if changed := cfg.restart_keys(new):
        log.warning(
            "%s: %s also changes %s: not reloaded (only [[registry]] is); restart the node to apply",
            *(cfg.node_id, cfg.path, ", ".join(changed)),
        )
    return True


def _reload_on_hangup() -> threading.Event:
    """An event set on every SIGHUP (from now on: a SIGHUP no longer stops the process)."""
    hangup = threading.Event()
    signal.signal(signal.SIGHUP, lambda *_: hangup.set())
    return hangup


def _reloader(hangup: threading.Event, service: NodeService, cfg: NodeConfig) -> None:
    """Reload the registry after each SIGHUP, one reload at a time, off the API's event loop."""
    while True:
        hangup.wait()
        hangup.clear()
        reload_registry(service, cfg)


def run_node(cfg: NodeConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    hangup = _reload_on_hangup() if cfg.path is not None else None  # before the (long) start: none is lost
    service = build_service(cfg)
    service.start()
    if hangup is not None:
        threading.Thread(target=_reloader, args=(hangup, service, cfg), name="registry-reload", daemon=True).start()
    scheme = "http" if cfg.tls is None else "https"
    log.info(
        "%s (%s) serving on %s://%s:%d, height %d",
        *(cfg.node_id, cfg.role, scheme, cfg.host, cfg.port, service.chain.height),
    )
    if cfg.tls is None:
        log.warning("%s: no [tls] in its configuration: the API is plain HTTP (insecure)", cfg.node_id)
    tls = {} if cfg.tls is None else {"ssl_certfile": str(cfg.tls.cert), "ssl_keyfile": str(cfg.tls.key)}
    try:
        uvicorn.run(
            service.app,
            host=cfg.host,
            port=cfg.port,
            log_level="warning",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            **tls,
        )
    finally:
        service.stop()
