"""``gridledger cluster up --community FILE``: the community's network with its PETra market running live.

:func:`up_community` starts the cluster of :func:`gridledger.node.cluster.up` for the community's homes (one PoEf
NAN chain whose slot is ``slot_seconds`` long, the homes' meters enrolled with the community's DSO limits, the bid
store and its standby registered with every node), then writes the market plan (:mod:`gridledger.node.market`)
and starts one relay and one prosumer process per home, the bid store ``bidstore`` and the standby bid store
``bidstore-standby`` (each with its own key, onion services and etcd user; the market lease in etcd decides which
one is active, :class:`~gridledger.node.market.StoreLease`). Each home trades one unit (``unit_w``) every round: a
home with PV offers it at a quarter of the way from the production to the consumption price, a home without bids
at three quarters (if all or no homes have PV, every second home sells), so the rounds clear. Each home's meter
bills every slot from the net energy the community's simulated household measures in it (:func:`measured_wh`).
With ``insecure`` False (the default) the cluster has its CA and TLS, and the market's processes verify every node
API they call against that CA.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from nacl.public import PrivateKey

from gridledger.ledger.crypto import KeyPair
from gridledger.node.client import NodeClient
from gridledger.node.cluster import STATE_FILE, NodeSpec, _enrol, up
from gridledger.node.config import NodeConfig
from gridledger.node.deploy import PKI_DIR, admin_tls
from gridledger.node.etcd import etcd_client, grant_prefix
from gridledger.node.market import (
    BIDSTORE_ID,
    PLAN_FILE,
    PRIMARY,
    PROBE,
    STANDBY_ID,
    MarketPlan,
    StorePlan,
    descriptor_json,
    lease_prefix,
    prosumer_name,
    relay_key_path,
    relay_name,
)
from gridledger.node.netutil import free_ports, wait_port
from gridledger.node.pki import LocalCA, write_private
from gridledger.petra.onion import RelayDescriptor

#: Seconds after ``up`` starts from which the meters are enrolled (the nodes must be up and commit it before).
ENROL_AFTER_S = 30
#: The market's bid stores, the primary first: each its own key, onion services (book, mix board) and etcd user.
STORES = (PRIMARY, StorePlan(STANDBY_ID, STANDBY_ID, "mixboard-standby"))


def sides(homes) -> dict[str, str]:
    """``offer`` for the homes with PV and ``bid`` for the others (every second home sells if that splits none)."""
    pv = {h.id: h.pv_kw > 0 for h in homes}
    if len(set(pv.values())) < 2:
        pv = {h.id: i % 2 == 0 for i, h in enumerate(homes)}
    return {m: "offer" if sells else "bid" for m, sells in pv.items()}


def measured_wh(community, slot_seconds: int) -> dict[str, list[int]]:
    """What each home's meter measures per chain slot, in compressed time: chain slot ``t`` plays the community's
    slot ``t % slots`` (``gridledger simulate``'s households, their net per slot as the simulator's meters count it:
    Wh imported minus Wh exported, each rounded), scaled from the community's slot length to ``slot_seconds``."""
    from gridledger.devices.household import simulate_households

    h = simulate_households(community)
    imported, exported = h.slot_energy_wh(community.slot_seconds)
    net = (np.rint(imported) - np.rint(exported)) * slot_seconds / community.slot_seconds
    return {home: np.rint(row).astype(int).tolist() for home, row in zip(h.home_ids, net, strict=True)}


def up_community(
    folder: Path,
    community_file: Path,
    slot_seconds: int,
    unit_w: int | None = None,
    timeout: float = 60.0,
    insecure: bool = False,
) -> dict:
    """Start the community's cluster and market in ``folder``; returns the cluster state (``market`` lists the
    market's processes). ``unit_w``: power of one traded unit (W), default half the smaller DSO limit.
    ``insecure``: plain HTTP to the node APIs and etcd (else every market process verifies the nodes' certificates
    against the cluster's CA)."""
    from gridledger.profiles.community import load_community

    community = load_community(community_file)
    if len(community.homes) < 4:
        raise ValueError(
            f"{community_file}: the market needs at least 4 homes (3 relays per circuit), got {len(community.homes)}"
        )
    dso = community.dso
    unit = unit_w or min(dso.max_epa_w, dso.max_eca_w) // 2
    store_keys = {st.id: KeyPair.generate() for st in STORES}
    limits = (dso.max_epa_w, dso.max_eca_w, dso.credit_fa)
    enrol_after = max(ENROL_AFTER_S, 2 * slot_seconds)
    measured = measured_wh(community, slot_seconds)
    folder.mkdir(parents=True, exist_ok=True)
    state = up(
        folder,
        len(community.homes),
        1,
        timeout,
        poef=True,
        insecure=insecure,
        slot_seconds=slot_seconds,
        meter_ids=[h.id for h in community.homes],
        limits=limits,
        extra_registry=tuple((st.id, BIDSTORE_ID, store_keys[st.id]) for st in STORES),
        enrol_after_s=enrol_after,
    )
    await_enrolment(folder, state, limits, (60 + enrol_after) // slot_seconds, timeout)
    publish_prices(folder, state, (community.prices.consumption_per_kwh, community.prices.production_per_kwh), timeout)
    nodes = {n["id"]: n for n in state["nodes"]}
    for st in STORES:
        write_private(folder / "keys" / f"{st.id}.seed", store_keys[st.id].seed.hex())
    if state["ca"] is not None:
        grant_lease(folder, state, bytes.fromhex(state["chains"]["nan1"]["chain_id"]))
    names = [s for st in STORES for s in (st.store, st.board)] + [PROBE]
    names += [n for h in community.homes for n in (relay_name(h.id), prosumer_name(h.id))]
    book = {name: ("127.0.0.1", port) for name, port in zip(names, free_ports(len(names)), strict=True)}
    descriptors = []
    for h in community.homes:
        relay_key = PrivateKey.generate()
        write_private(relay_key_path(folder, h.id), bytes(relay_key).hex())
        meter_key = NodeConfig.load(nodes[h.id]["config"]).key
        descriptors.append(RelayDescriptor.create(h.id, relay_name(h.id), relay_key, meter_key))
    cons, prod = community.prices.consumption_per_kwh, community.prices.production_per_kwh
    step = (cons - prod) // 4
    trade = sides(community.homes)
    plan = {
        "genesis": "nan1.genesis",
        "concentrators": [nodes["DC1"]["url"], nodes["DC1-backup"]["url"]],
        "ca": state["ca"],
        "unit_w": unit,
        "price_cap": cons,
        "mix_timeout": max(2.0, slot_seconds / 6),
        "book": book,
        "descriptors": [descriptor_json(d) for d in descriptors],
        "feeders": {f.id: [f.internal_capacity_w, f.external_capacity_w] for f in community.feeders},
        "stores": [{"id": st.id, "store": st.store, "board": st.board} for st in STORES],
        "etcd": [m["url"] for m in state["etcd"]],
        "prosumers": {
            h.id: {
                "feeder": h.feeder,
                "side": trade[h.id],
                "limit_price": prod + step if trade[h.id] == "offer" else cons - step,
                "config": nodes[h.id]["config"],
                "api": nodes[h.id]["url"],
                "measured_wh": measured[h.id],
            }
            for h in community.homes
        },
    }
    (folder / PLAN_FILE).write_text(json.dumps(plan, indent=1))
    MarketPlan.load(folder).denominations(0, slot_seconds)  # refuses a unit worth nothing before anything starts
    state["market"] = []
    for st in STORES:  # the standby is named to the process (--meter); the primary is the default store
        proc = _start(folder, "bidstore", None if st == PRIMARY else st.id, st.id)
        state["market"].append({"id": st.id, "role": "bidstore", "meter": None, "pid": proc.pid})
    for h in community.homes:
        for role, name in (("relay", relay_name(h.id)), ("prosumer", prosumer_name(h.id))):
            proc = _start(folder, role, h.id, name)
            state["market"].append({"id": name, "role": role, "meter": h.id, "pid": proc.pid})
    state["slot_seconds"] = slot_seconds
    (folder / STATE_FILE).write_text(json.dumps(state, indent=2))
    services = [s for st in STORES for s in (st.store, st.board)]
    for name in [m["id"] for m in state["market"] if m["role"] == "relay"] + services:
        wait_port(book[name][1], timeout)
    return state


def grant_lease(folder: Path, state: dict, chain_id: bytes) -> None:
    """On a secure cluster, give each bid store its etcd client certificate (``pki/<id>.crt``) and its etcd user
    (``keys/<id>.etcd-password``), whose role may use the market lease's keys only (:func:`lease_prefix`)."""
    ca = LocalCA.load(folder / PKI_DIR)
    root = ("root", (folder / PKI_DIR / "etcd-root.password").read_text())
    admin = etcd_client(state["etcd"][0]["url"], admin_tls(folder), timeout=5, user=root)
    try:
        for st in STORES:
            ca.issue(st.id, common=False)  # etcd's client: no common name (pki.LocalCA.issue)
            password = os.urandom(16).hex()
            grant_prefix(admin, st.id, password, lease_prefix(chain_id))
            write_private(folder / "keys" / f"{st.id}.etcd-password", password)
    finally:
        admin.session.close()


def await_enrolment(folder: Path, state: dict, limits: tuple[int, int, int], slot: int, timeout: float) -> None:
    """Wait until ``DC1`` committed the meters' enrolment (effective from ``slot``). If that slot passed before the
    nodes could commit it (a slow start), the DSO enrols them again from two slots on (the enrolment went stale)."""
    dc1 = next(n for n in state["nodes"] if n["id"] == "DC1")
    operator = KeyPair(bytes.fromhex((folder / "keys" / "operator.seed").read_text()))
    meters = [
        NodeSpec(n["id"], "meter", n["chain"], NodeConfig.load(n["config"]).key, 0)
        for n in state["nodes"]
        if n["role"] == "meter"
    ]
    deadline = time.monotonic() + timeout
    with NodeClient(dc1["url"], "operator", operator, ca=state["ca"]) as client:
        while True:
            try:
                view = client.policy()
                if view["policies"]:
                    return
                if view["current_slot"] > slot:
                    slot = view["current_slot"] + 2
                    client.send(_enrol(operator, bytes.fromhex(view["chain_id"]), meters, limits, slot))
            except httpx.HTTPError:
                pass  # not serving yet, or busy: ask again
            if time.monotonic() > deadline:
                raise TimeoutError(f"the meters' enrolment was not committed on DC1 within {timeout:.0f} s")
            time.sleep(0.5)


def publish_prices(folder: Path, state: dict, prices: tuple[int, int], timeout: float) -> None:
    """The DSO publishes the community's (consumption, production) prices (minor units/kWh) on the NAN chain, in
    force two slots on (the meters bill at the prices in force); waits until ``DC1`` committed them, and submits
    them again if the chain refused them because that slot passed first."""
    from gridledger.petra.dso import DSO

    dc1 = next(n for n in state["nodes"] if n["id"] == "DC1")
    operator = KeyPair(bytes.fromhex((folder / "keys" / "operator.seed").read_text()))
    deadline = time.monotonic() + timeout
    with NodeClient(dc1["url"], "operator", operator, ca=state["ca"]) as client:
        while time.monotonic() < deadline:
            try:
                view = client.policy()
                dso = DSO(operator, bytes.fromhex(view["chain_id"]), nonce=view["nonce"])
                txid = client.send(dso.policy(view["current_slot"] + 2, prices=prices))
                if client.wait(txid, max(1.0, deadline - time.monotonic()))["status"] == "committed":
                    return
            except (httpx.HTTPError, TimeoutError):
                pass  # busy, or not committed in time: read the timeline again
            time.sleep(0.5)
    raise TimeoutError(f"the community's prices were not committed on DC1 within {timeout:.0f} s")


def _start(folder: Path, role: str, meter: str | None, name: str) -> subprocess.Popen:
    log = open(folder / f"market-{name}.log", "ab")  # noqa: SIM115 - owned by the process
    cmd = [sys.executable, "-m", "gridledger", "cluster", "market-process", "--role", role, "--dir", str(folder)]
    return subprocess.Popen(cmd + (["--meter", meter] if meter else []), stdout=log, stderr=log, start_new_session=True)
