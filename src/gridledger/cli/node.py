"""``gridledger node`` and ``gridledger cluster up|down|reload|status|reading|readings|plan|bootstrap|add-meter``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from gridledger.cli.common import console, err, fail
from gridledger.node.config import ROLES, ConfigError, NodeConfig

cluster_app = typer.Typer(
    help="A local multi-process network on loopback: start, stop, status; submit and read meter readings. A real "
    "deployment across machines: plan, bootstrap (docs/deploy.md).",
    no_args_is_help=True,
)
DIR = "The cluster's folder (from `gridledger cluster up --dir`)."


def node(
    role: str = typer.Option(..., "--role", help=f"The node's role: {', '.join(ROLES)}."),
    config: Path = typer.Option(..., "--config", help="The node's TOML configuration (see docs/network.md)."),
) -> None:
    """Run one node: verify its store, follow (or lead) its chain through the orderer, serve the HTTP API."""
    from gridledger.node.run import run_node

    try:
        cfg = NodeConfig.load(config)
    except ConfigError as e:
        raise fail(str(e)) from None
    if cfg.role != role:
        raise fail(f"--role {role} but {config} says role = {cfg.role!r}")
    try:
        run_node(cfg)
    except ConfigError as e:
        raise fail(str(e)) from None


@cluster_app.command("up")
def cluster_up(
    meters: int = typer.Option(4, "--meters", min=1, max=200, help="Number of smart-meter nodes."),
    concentrators: int = typer.Option(
        1, "--concentrators", min=1, max=20, help="Number of NANs (one concentrator each)."
    ),
    folder: Path = typer.Option(Path("cluster"), "--dir", help="Folder for configs, stores, logs and cluster.json."),
    poef: bool = typer.Option(
        True,
        "--poef/--coordinator-only",
        help="PoEf NAN chains (tagged genesis, meters enrolled as the committee that votes on every block), or "
        "untagged chains whose coordinator alone commits.",
    ),
    postgres: bool = typer.Option(
        False, "--postgres", help="Store every node's chain in its own database of a throwaway PostgreSQL server."
    ),
    insecure: bool = typer.Option(
        False,
        "--insecure",
        help="Plain HTTP for etcd and the node APIs, no CA, no client certificates (anyone on the network can write "
        "to etcd). Default: TLS everywhere with a local CA in DIR/pki.",
    ),
    community: Path | None = typer.Option(
        None,
        "--community",
        help="A community file (as for `gridledger simulate`): run its homes' meters and their PETra market live "
        "(relays, bid store, prosumers; one round per slot). --meters and --concentrators are then ignored.",
    ),
    slot_seconds: int = typer.Option(
        30, "--slot-seconds", min=5, max=3600, help="With --community: the market slot (s), compressed time."
    ),
) -> None:
    """Start a 3-member etcd cluster and one process per node; print where each API is."""
    from gridledger.node.cluster import up
    from gridledger.store.pgserver import PgServerError

    if insecure:
        err.print(
            "[bold red]WARNING: --insecure: etcd and the node APIs use plain HTTP without authentication; anyone who "
            "reaches these ports can read the traffic and write junk to etcd that stops every node. Use it only on a "
            "trusted test machine.[/]"
        )
    if community is not None:
        return _up_community(folder, community, slot_seconds, insecure)
    try:
        with console.status(f"starting etcd and {meters + 2 * concentrators} nodes …"):
            state = up(folder, meters, concentrators, poef=poef, postgres=postgres, insecure=insecure)
    except (FileExistsError, TimeoutError, RuntimeError, PgServerError, ValueError) as e:
        raise fail(str(e)) from None  # ValueError: deploy.DeploymentError (e.g. a PoEf NAN without meters)
    table = Table(title=f"gridledger cluster in {folder} ({state['consensus']})")
    for col in ("node", "role", "chain", "API", "pid"):
        table.add_column(col)
    for n in state["nodes"]:
        table.add_row(n["id"], n["role"], n["chain"], n["url"], str(n["pid"]))
    console.print(table)
    console.print(f"etcd: {', '.join(m['url'] for m in state['etcd'])}")
    if state["ca"]:
        console.print(f"TLS: clients verify the nodes against {state['ca']} (e.g. `--ca {state['ca']}`)")
    console.print(f"stop it with: [bold]gridledger cluster down --dir {folder}[/]")


def _up_community(folder: Path, community: Path, slot_seconds: int, insecure: bool) -> None:
    from gridledger.node.market import MarketPlanError
    from gridledger.node.market_up import up_community

    try:
        with console.status(f"starting the network and market of {community} …"):
            state = up_community(folder, community, slot_seconds, insecure=insecure)
    except (ValueError, FileExistsError, TimeoutError, RuntimeError, MarketPlanError) as e:
        raise fail(str(e)) from None
    homes = sum(m["role"] == "prosumer" for m in state["market"])
    console.print(
        f"community of {homes} homes in {folder}: etcd, {len(state['nodes'])} nodes, {homes} relays, "
        f"{homes} prosumers and the bid store; one market round every {slot_seconds} s"
    )
    if state["ca"]:
        console.print(f"TLS: every node API (the market's processes too) is verified against {state['ca']}")
    console.print(
        f"watch it with: [bold]gridledger cluster status --dir {folder}[/]; "
        f"stop it with: [bold]gridledger cluster down --dir {folder}[/]"
    )


@cluster_app.command("plan")
def cluster_plan(
    deployment: Path = typer.Argument(..., help="The deployment file (TOML; see docs/deploy.md)."),
    out: Path = typer.Option(..., "--out", help="Folder for the plan: one subfolder per host (must not exist)."),
) -> None:
    """Make a real deployment's per-host folders: configs, keys, certificates of one new CA, etcd, systemd units."""
    from gridledger.node.deploy import Deployment, DeploymentError, write_plan

    try:
        dep = Deployment.load(deployment)
    except DeploymentError as e:
        raise fail(str(e)) from None
    if out.exists():
        raise fail(f"{out} exists; a plan makes new keys and a new CA, so give a new folder")
    manifest = write_plan(dep, out)
    table = Table(title=f"deployment {dep.name} in {out}")
    for col in ("host", "address", "runs"):
        table.add_column(col)
    for h in dep.hosts.values():
        runs = [m.name for m in dep.etcd if m.host == h.name] + [n.id for n in dep.nodes if n.host == h.name]
        runs += [f"meter daemon {n.id}" for n in dep.nodes if n.daemon == h.name]
        runs += ["mosquitto"] * (dep.mqtt == h.name) + ["DSO keys, CA"] * (dep.dso == h.name)
        table.add_row(h.name, h.address, ", ".join(runs))
    console.print(table)
    console.print(f"{len(manifest['nodes'])} nodes; copy {out}/<host>/ to each host and run its install.sh")
    console.print(f"then, on {dep.dso}: [bold]gridledger cluster bootstrap --dir <its folder>[/]")


@cluster_app.command("bootstrap")
def cluster_bootstrap(
    folder: Path = typer.Option(..., "--dir", help="The DSO host's plan folder (holds deployment.json)."),
    timeout: float = typer.Option(60, "--timeout", min=1, help="Seconds to wait for every etcd member."),
) -> None:
    """Once etcd runs: turn on its access control (a user per node, its chain's keys only) and enrol the meters.
    Safe to run again: it finishes what is missing and leaves what is done."""
    from gridledger.node.deploy import DeploymentError, bootstrap

    try:
        did, found = bootstrap(folder, timeout=timeout)
    except (DeploymentError, TimeoutError) as e:
        raise fail(str(e)) from None
    for line in did:
        console.print(f"done: {line}")
    for line in found:
        console.print(f"already in place: {line}")
    if not did:
        console.print("bootstrap: everything was in place already; nothing to do")


@cluster_app.command("add-meter")
def cluster_add_meter(
    plan: Path = typer.Argument(..., help="The plan's folder (from `gridledger cluster plan --out`)."),
    meter: str = typer.Argument(..., help="The new meter's id (e.g. MI9)."),
    nan: str = typer.Option(..., "--nan", help="Its NAN (the name of one of the deployment's nan tables, e.g. nan1)."),
    host: str = typer.Option(..., "--host", help="The host that runs its node (a host of the plan, or a new one)."),
    port: int = typer.Option(8443, "--port", min=1, max=65535, help="Its node's API port on that host."),
    address: str | None = typer.Option(None, "--address", help="A new host's IP address (adds --host)."),
    daemon: str | None = typer.Option(
        None, "--daemon", help="The host that runs its meter daemon (default: none; its folder in PLAN/meters/)."
    ),
    batch_minutes: int = typer.Option(
        1,
        "--batch-minutes",
        help="Minutes its daemon signs per transaction (1: a READING a minute; 2..60: READING_BATCHes, fewer bytes, "
        "each minute up to that many minutes later).",
    ),
) -> None:
    """Add a meter to a planned deployment: its keys, node, certificates and meter daemon; print the DSO's commands."""
    from gridledger.node.add_meter import add_meter
    from gridledger.node.deploy import DeploymentError

    try:
        added = add_meter(plan, meter, nan, host, port, daemon, address, batch_minutes)
    except DeploymentError as e:
        raise fail(str(e)) from None

    def say(text: str) -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)  # paths and keys on one line each

    say(f"{meter}: member {added.member} of {nan}'s chain, public key {added.pubkey.hex()}")
    say("wrote: " + ", ".join(str(p) for p in added.written))
    say(f"{meter} registered in: " + ", ".join(str(p) for p in added.registered))
    say("next:")
    say("1. copy those configurations to their hosts and `systemctl reload gridledger-<node>` each there (or")
    say("   `kill -HUP` its pid): the running node re-reads its registry, no restart needed;")
    say(f"   install {host}'s folder (its install.sh) and the meter daemon's folder")
    say(f"2. gridledger cluster bootstrap --dir {added.dso}   (makes its etcd user; run it where etcd is reachable,")
    say(f"   or copy {added.dso}/deployment.json and bootstrap.json to the DSO's installed folder and run it there)")
    say(f"3. the DSO authorizes it as member {added.member} (refused until the meters added before it are):")
    for command in added.authorize:
        say(f"   {command}")


@cluster_app.command("market-process", hidden=True)
def cluster_market_process(
    role: str = typer.Option(..., "--role", help="relay, prosumer or bidstore."),
    meter: str | None = typer.Option(None, "--meter", help="The home's meter (relay and prosumer)."),
    folder: Path = typer.Option(Path("cluster"), "--dir", help=DIR),
) -> None:
    """Run one process of a community's market (started by `cluster up --community`)."""
    from gridledger.client import load_key
    from gridledger.node.client import KeyFileError
    from gridledger.node.market import BIDSTORE_ID, MarketPlan, MarketPlanError, run_role

    try:
        plan = MarketPlan.load(folder)
        if role not in ("relay", "prosumer", "bidstore"):
            raise fail(f"--role must be relay, prosumer or bidstore, not {role!r}")
        if role != "bidstore" and meter not in plan.prosumers:
            raise fail(f"--meter {meter!r} is not a home of the market in {folder}")
        key = None
        if role == "bidstore":
            key = load_key(folder / "keys" / f"{BIDSTORE_ID}.seed")
        elif role == "prosumer":
            key = NodeConfig.load(plan.prosumers[meter].config).key
    except (MarketPlanError, KeyFileError, ConfigError) as e:
        raise fail(str(e)) from None
    run_role(folder, role, meter, key)


@cluster_app.command("down")
def cluster_down(folder: Path = typer.Option(Path("cluster"), "--dir", help=DIR)) -> None:
    """Stop every process of the cluster cleanly (nodes, then etcd)."""
    from gridledger.node.cluster import down

    try:
        n = down(folder)
    except FileNotFoundError as e:
        raise fail(str(e)) from None
    console.print(f"stopped {n} processes")


@cluster_app.command("reload")
def cluster_reload(
    folder: Path = typer.Option(Path("cluster"), "--dir", help=DIR),
    only: list[str] = typer.Option(None, "--node", help="Only this node (repeat for several); default: every node."),
) -> None:
    """Make the cluster's running nodes re-read the `registry` entries of their configuration (SIGHUP, as `systemctl
    reload` does in a deployment): after `cluster add-meter` on the cluster's folder, no restart."""
    import os
    import signal

    from gridledger.node.cluster import STATE_FILE

    try:
        nodes = json.loads((folder / STATE_FILE).read_text())["nodes"]
    except (OSError, ValueError, KeyError):
        raise fail(f"no running cluster in {folder} (no {STATE_FILE}; in a deployment: systemctl reload)") from None
    unknown = sorted(set(only or []) - {n["id"] for n in nodes})
    if unknown:
        raise fail(
            f"--node {', '.join(unknown)}: no such node in {folder} (nodes: {', '.join(n['id'] for n in nodes)})"
        )
    reloaded, down = [], []
    for n in nodes:
        if only and n["id"] not in only:
            continue
        try:  # only the node's own process: a pid reused since by another process is left alone
            command = Path(f"/proc/{n['pid']}/cmdline").read_bytes().split(b"\0")
            if n["config"].encode() not in command:
                raise ProcessLookupError
            os.kill(n["pid"], signal.SIGHUP)
            reloaded.append(n["id"])
        except (OSError, KeyError):
            down.append(n["id"])
    console.print(f"reloading: {', '.join(reloaded) or 'none'} (each logs what its reload did)")
    if down:
        err.print(f"not running: {', '.join(down)}")


@cluster_app.command("status")
def cluster_status(folder: Path = typer.Option(Path("cluster"), "--dir", help=DIR)) -> None:
    """Ask every node for its height and tip (as the operator); also in a deployment's DSO folder."""
    from gridledger.client import NodeClient
    from gridledger.ledger.crypto import KeyPair

    state = _cluster_state(folder)
    key = KeyPair(bytes.fromhex((folder / "keys" / "operator.seed").read_text()))
    table = Table()
    for col in ("node", "chain", "height", "tip", "leading"):
        table.add_column(col)
    waits = []
    for n in state["nodes"]:
        client = NodeClient(n["url"], "operator", key, timeout=2, ca=state.get("ca"))
        try:
            s = client.status()
            table.add_row(n["id"], n["chain"], str(s["height"]), s["tip"][:16], "yes" if s["leading"] else "")
            if s.get("waiting_for_quorum"):
                waits.append((n["id"], s["waiting_for_quorum"]))
        except Exception as e:  # noqa: BLE001 - a down node is reported, not fatal
            table.add_row(n["id"], n["chain"], "down", type(e).__name__, "")
        finally:
            client.close()
    console.print(table)
    for node_id, w in waits:
        console.print(quorum_wait_line(node_id, w))
    _market_status(folder)


def quorum_wait_line(node_id: str, w: dict) -> str:
    """One warning line for a leader's height without a quorum (``/v1/status``'s ``waiting_for_quorum``)."""
    silent = ", ".join(w["silent"]) or "none"
    rounds = f"{w['rounds']} round" + ("" if w["rounds"] == 1 else "s")
    return (
        f"[bold red]{node_id}: height {w['height']} has no quorum for {w['for_s']:g} s[/] ({rounds}; "
        f"{w['votes']} of {w['needed']} votes, {w['refused']} refusals; silent committee members: {silent}). It "
        "commits once enough of them answer: restart them, or see docs/network.md, Liveness."
    )


def _market_status(folder: Path) -> None:
    """The community market's rounds, as its bid store recorded them (if the cluster runs one)."""
    path = folder / "market-status.json"
    if not path.exists():
        return
    status = json.loads(path.read_text())
    table = Table(title="market rounds (bid store)")
    for col in ("slot", "cleared by", "orders", "trades", "committed", "W matched", "deposits", "committed"):
        table.add_column(col)
    for r in status["rounds"][-10:]:
        row = r["slot"], r.get("store") or "", r["orders"], len(r["trades"]), r["committed_trades"], r["matched_w"]
        table.add_row(*map(str, (*row, len(r["deposits"]), r["committed_deposits"])))
    console.print(table)
    if "active" in status:
        last = status.get("takeovers") or []
        since = f"since slot {last[-1]['slot']}; " if last else ""
        standby = [s for s in status.get("stores", []) if s != status["active"]]
        console.print(f"active bid store: {status['active']} ({since}standby: {', '.join(standby) or 'none'})")
    console.print(f"bid store requests came from: {', '.join(status['senders']) or 'nobody yet'}")
    _bills(folder)


def _bills(folder: Path) -> None:
    """What the meters reported to the DSO: per meter, the slots billed, energy settled and amount billed."""
    from gridledger.ledger.units import WS_PER_WH

    reports = [json.loads(p.read_text()) for p in sorted(folder.glob("bills-*.json"))]
    if not reports:
        return
    table = Table(title="bills (as the meters report them to the DSO)")
    for col in ("meter", "slots billed", "energy settled (Wh)", "billed (minor units)", "ECA audit"):
        table.add_column(col)
    for r in reports:
        bills = r["bills"]
        audit = "ok" if all(b["eca_audit_ok"] for b in bills) else "MISMATCH"
        energy, amount = sum(b["energy_ws"] for b in bills) / WS_PER_WH, sum(b["amount"] for b in bills)
        table.add_row(r["meter"], str(len(bills)), f"{energy:.1f}", str(amount), audit)
    console.print(table)


def _cluster_state(folder: Path) -> dict:
    """The cluster.json that `cluster up` wrote in ``folder``, or a deployment's (the DSO's plan folder)."""
    from gridledger.node.deploy import MANIFEST

    for path in (folder / "cluster.json", folder / MANIFEST):
        if path.exists():
            return json.loads(path.read_text())
    raise fail(f"no cluster in {folder} (no cluster.json or {MANIFEST})")


def _client_as(folder: Path, state: dict, via: str, as_id: str):
    """A signed client of node ``via``'s API, as node ``as_id`` (its key from its configuration) or the operator."""
    from gridledger.client import NodeClient
    from gridledger.ledger.crypto import KeyPair

    nodes = {n["id"]: n for n in state["nodes"]}
    for name in (via, as_id):
        if name not in nodes and name != "operator":
            raise fail(f"no node {name!r} in {folder} (nodes: {', '.join(nodes)})")
    if via == "operator":
        raise fail("the operator has no API; give a node to ask with --via")
    if as_id == "operator":
        key = KeyPair(bytes.fromhex((folder / "keys" / "operator.seed").read_text()))
    else:
        key = NodeConfig.load(nodes[as_id]["config"]).key
    return NodeClient(nodes[via]["url"], as_id, key, timeout=5, ca=state.get("ca"))


@cluster_app.command("reading")
def cluster_reading(
    meter: str = typer.Option(..., "--meter", help="The meter that measured (e.g. MI1); it encrypts and signs."),
    minute: int = typer.Option(
        ..., "--minute", min=0, help="Minute since the chain's start that the reading's interval ends with."
    ),
    consumption: int = typer.Option(..., "--consumption", min=0, help="Energy consumed over the interval (Wh)."),
    production: int = typer.Option(0, "--production", min=0, help="Energy produced over the interval (Wh)."),
    folder: Path = typer.Option(Path("cluster"), "--dir", help=DIR),
) -> None:
    """Submit a meter's signed, encrypted reading to a PoEf cluster through the meter's own API."""
    from gridledger.ledger.kinds.reading import ReadingError, ReadingValues
    from gridledger.node.cluster import meter_device

    state = _cluster_state(folder)
    try:
        tx = meter_device(folder, meter).reading(minute, ReadingValues(consumption, production))
    except (ValueError, ReadingError) as e:
        raise fail(str(e)) from None
    client = _client_as(folder, state, meter, meter)
    try:
        r = client.submit(tx)
    finally:
        client.close()
    if r.status_code != 202:
        raise fail(f"{meter} refused the reading ({r.status_code}): {r.text}")
    console.print(f"reading of {meter} for minute {minute} queued: txid {tx.txid.hex()}")


@cluster_app.command("readings")
def cluster_readings(
    meter: str = typer.Option(..., "--meter", help="Whose readings to read (e.g. MI1)."),
    as_id: str = typer.Option(
        "operator", "--as", help="Who asks: a node of the cluster (e.g. MI2, DC1) or 'operator' (the DSO)."
    ),
    via: str = typer.Option("DC1", "--via", help="The node whose API is asked (a coordinator opens every reading)."),
    limit: int = typer.Option(20, "--limit", min=1, max=1000, help="How many of the latest readings."),
    folder: Path = typer.Option(Path("cluster"), "--dir", help=DIR),
) -> None:
    """Read a meter's decrypted readings — served only to the meter itself, its coordinators and the DSO."""
    state = _cluster_state(folder)
    client = _client_as(folder, state, via, as_id)
    try:
        r = client.request("GET", "/v1/readings", {"meter": meter, "limit": limit})
    except Exception as e:  # noqa: BLE001 - a down node is one line, not a traceback
        raise fail(f"{via} did not answer: {e}") from None
    finally:
        client.close()
    if r.status_code != 200:
        raise fail(f"{via} refused ({r.status_code}): {r.json().get('detail', r.text)}")
    body = r.json()
    table = Table(title=f"readings of {meter} (served by {via} to {as_id} as {body['served_as']})")
    for col in ("height", "minute", "consumption Wh", "production Wh", "implausible"):
        table.add_column(col)
    for v in body["readings"]:
        flag = "ALARM" if v["implausible"] else ""
        table.add_row(str(v["height"]), str(v["minute"]), str(v["consumption_wh"]), str(v["production_wh"]), flag)
    console.print(table)
    console.print(f"total: {body['consumption_wh']} Wh consumed, {body['production_wh']} Wh produced")
