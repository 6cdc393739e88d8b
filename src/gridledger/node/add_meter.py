"""A meter added to a planned deployment (``gridledger cluster add-meter``): its key, node, certificates and meter
daemon folder written into the plan, its key registered in the plan's configurations of its NAN's nodes and its etcd
user queued for ``cluster bootstrap``. It is not authorized here: the DSO authorizes it on the chain with the DSO
console (``gridledger dso authorize``), whose command ``add_meter`` returns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from gridledger.ledger.crypto import KeyPair
from gridledger.ledger.kinds.reading import ContentKeys
from gridledger.node.deploy import (
    API_PORT,
    MANIFEST,
    PKI_DIR,
    SECRETS,
    ChainPlan,
    Deployment,
    DeploymentError,
    Host,
    Placement,
    Planner,
    registry_entry,
    write_readme,
)
from gridledger.node.pki import LocalCA, write_private


@dataclass(frozen=True)
class AddedMeter:
    """What ``add_meter`` did and what the operator does next."""

    meter: str
    member: int  # its member index once the DSO authorizes it (enrolment order)
    pubkey: bytes
    written: list[Path]  # its node's configuration and its meter daemon's folder (if the deployment has a broker)
    registered: list[Path]  # the plan's configurations of its NAN's nodes that now register it
    authorize: list[str]  # the DSO console's commands: authorize it, set its limits
    dso: Path  # the plan's DSO folder (its deployment.json and bootstrap.json now name the meter)


def open_plan(plan: Path) -> tuple[Planner, dict]:
    """The planner and manifest of the plan ``write_plan`` wrote into ``plan`` (per-host folders, or flat)."""
    found = [p for p in (plan / MANIFEST, *sorted(plan.glob(f"*/{MANIFEST}"))) if p.is_file()]
    if len(found) != 1:
        raise DeploymentError(f"{plan}: not a plan folder (no <dso host>/{MANIFEST}; see `gridledger cluster plan`)")
    manifest = json.loads(found[0].read_text())
    if "deployment" not in manifest:
        raise DeploymentError(f"{found[0]}: written by an older gridledger without the deployment; plan again")
    dep = Deployment.from_json(manifest["deployment"])
    dso = found[0].parent
    operator = KeyPair(bytes.fromhex((dso / "keys" / "operator.seed").read_text()))
    ca = LocalCA.load(dso / PKI_DIR) if dep.tls else None
    content = ContentKeys(bytes.fromhex((dso / "keys" / "content.root").read_text())) if dep.poef else None
    return Planner(dep, plan, manifest["deployment"]["flat"], operator, ca, content), manifest


def add_meter(
    plan_dir: Path,
    meter: str,
    nan: str,
    host: str,
    port: int = API_PORT,
    daemon: str | None = None,
    address: str | None = None,
    batch_minutes: int = 1,
) -> AddedMeter:
    """Add meter ``meter`` to NAN ``nan`` of the plan in ``plan_dir``: its node on ``host`` (a new host if
    ``address`` is given) at ``port``, its meter daemon on host ``daemon`` (None: in the plan's ``meters/``) sending
    ``batch_minutes`` minutes per transaction."""
    plan, manifest = open_plan(plan_dir)
    dep = plan.dep
    if nan not in dep.nans():
        raise DeploymentError(f"--nan {nan!r}: no such NAN in the plan (it has {', '.join(dep.nans())})")
    content = plan.content
    if content is None:
        raise DeploymentError("adding a meter needs a PoEf deployment (its meters are enrolled members)")
    hosts = dict(dep.hosts)
    if address is not None:
        if host in hosts:
            raise DeploymentError(f"--address: host {host!r} is in the plan already (at {hosts[host].address})")
        hosts[host] = Host(host, address)
    node = Placement(meter, "meter", nan, host, port, "", daemon, batch_minutes)
    plan.dep = dep = replace(dep, hosts=hosts, nodes=[*dep.nodes, node]).check()
    plan.folder(host).mkdir(parents=True, exist_ok=True)
    nodes = [n for n in manifest["nodes"] if n["chain"] == nan]
    member = max((n["member"] for n in nodes if "member" in n), default=-1) + 1
    chain = manifest["chains"][nan]
    chain_id = bytes.fromhex(chain["chain_id"])
    secret = content.chain(chain_id).member_key(member)
    key = KeyPair.generate()
    keys = {n["id"]: bytes.fromhex(n["pubkey"]) for n in nodes} | {meter: key.public}
    chain_plan = ChainPlan(nan, chain["genesis"], chain_id, chain["start"], {meter: member}, {meter: secret})
    entry, user = plan.write_node(node, key, chain_plan, plan.registry(nan, keys))
    registered = []
    for other in (n for n in dep.nans()[nan] if n.id != meter):
        path = plan.folder(other.host) / f"{other.id}.toml"
        write_private(path, path.read_text() + registry_entry(meter, "meter", key.public))
        registered.append(path)
    manifest["nodes"].append(entry | {"added": True})  # bootstrap's enrolment leaves it to the DSO console
    manifest["deployment"] = dep.to_json() | {"flat": plan.flat}
    (plan.dso / MANIFEST).write_text(json.dumps(manifest, indent=2))
    if user is not None:
        secrets = json.loads((plan.dso / SECRETS).read_text())
        write_private(plan.dso / SECRETS, json.dumps({"users": [*secrets["users"], user]}, indent=2))
    for h in {host, daemon or host}:
        write_readme(dep, h, plan.folder(h), plan.root(h))
    written = [plan.folder(host) / f"{meter}.toml"] + ([plan.out / entry["daemon"]] if "daemon" in entry else [])
    commands = _dso_commands(plan, nan, meter, key.public, member)
    return AddedMeter(meter, member, key.public, written, registered, commands, plan.dso)


def _dso_commands(plan: Planner, nan: str, meter: str, pubkey: bytes, member: int) -> list[str]:
    """The DSO console's commands (run on the DSO's host) that authorize the meter (refused unless it becomes member
    ``member``: its keys were made for that index) and set its limits."""
    dep, root = plan.dep, plan.root(plan.dep.dso)
    primary = dep.nans()[nan][0]
    where = f"--node {dep.url(primary)} --key {root}/keys/operator.seed"
    where += f" --ca {root}/{PKI_DIR}/ca.crt" if plan.ca is not None else ""
    epa, eca, credit = dep.limits
    return [
        f"gridledger dso authorize --meter {meter} --pubkey {pubkey.hex()} --member {member} {where}",
        f"gridledger dso limits --meter {meter} --max-epa {epa} --max-eca {eca} --credit {credit} {where}",
    ]
