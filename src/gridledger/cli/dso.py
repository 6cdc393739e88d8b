"""``gridledger dso authorize|ban|prices|limits|show|bills``: the DSO's console over a node's signed API.

Each change is one signed DSO policy (``DsoPolicy``, nonce = the chain's last + 1) submitted to ``--node`` and
waited for until the chain commits or rejects it. The DSO key comes from ``--key``, a file holding the 32-byte seed
in hex that only its owner may read (mode 0600). ``--at`` says when the change takes effect: ``now`` (the default:
the current slot) or a UTC time in ISO 8601 (the first slot that starts at or after it); never in the past.

A meter's member index is its enrolment order on the chain (``ledger.members``): ``authorize --member N`` (as
``cluster add-meter`` prints it) first checks that the chain's committed policies would make the meter member ``N``
and refuses, submitting nothing, if not. The check holds until the commit: the policy's nonce is the chain's last + 1,
so a policy committed in between makes the chain reject this one as stale.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.table import Table

from gridledger.cli.common import console, fail

app = typer.Typer(
    help="The DSO console: authorize and ban meters, set prices and limits, show the policy timeline in force and "
    "the bills the meters reported.",
    no_args_is_help=True,
)

NODE = typer.Option(
    ..., "--node", envvar="GRIDLEDGER_NODE", help="The node API to talk to (e.g. http://127.0.0.1:8101)."
)
KEY = typer.Option(
    ..., "--key", envvar="GRIDLEDGER_DSO_KEY", help="The DSO key file: 64 hex characters, mode 0600 (owner only)."
)
AS_ID = typer.Option("operator", "--id", help="The id under which the DSO is registered with the node.")
CA = typer.Option(
    None, "--ca", envvar="GRIDLEDGER_CA", help="The CA certificate an https node is verified against (DIR/pki/ca.crt)."
)
AT = typer.Option(
    "now", "--at", help="When it takes effect: 'now' (the current slot) or a UTC time, e.g. 2026-12-05T08:00:00Z."
)
WAIT = typer.Option(30.0, "--wait", min=0, help="Seconds to wait for the commit (0: only queue it).")


def _utc(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def enrolled(view: dict) -> list[str]:
    """The chain's member ids by index, from its committed policies as ``/v1/policy`` lists them: the order in which
    a policy first authorized each id (``ledger.members.roster``)."""
    from gridledger.ledger.members import MAX_MEMBERS

    ids: list[str] = []
    for policy in view["policies"]:
        for a in policy["authorize"]:
            if a["meter"] not in ids and len(ids) < MAX_MEMBERS:
                ids.append(a["meter"])
    return ids


class DsoSession:
    """A signed session with one node as the DSO: reads the policy timeline, submits policies."""

    def __init__(self, node: str, key: Path, as_id: str, ca: Path | None = None) -> None:
        from gridledger.client import KeyFileError, NodeClient, load_key

        try:
            self.key = load_key(key)
        except KeyFileError as e:
            raise fail(f"--key: {e}") from None
        self.url, self.key_path = node, key
        try:
            self.client = NodeClient(node, as_id, self.key, timeout=5, ca=ca)
        except ValueError as e:
            raise fail(f"--ca: {e}") from None

    def call(self, what, *args):
        """``what(*args)`` on the client; a refusal or a silent node is one line (exit 2)."""
        from gridledger.client import ApiError, NodeUnreachable

        try:
            return what(*args)
        except NodeUnreachable as e:
            if e.tls:
                raise fail(f"--node {self.url}: {e}") from None
            raise fail(f"--node {self.url}: the node did not answer (is it running, is the URL right?)") from None
        except ApiError as e:
            raise fail(f"--node {self.url} refused: {e.code}: {e.message}") from None

    def timeline(self) -> dict:
        return self.call(self.client.policy)

    def slot(self, at: str, view: dict) -> int:
        """The slot from which a change given ``--at`` takes effect (see the module docstring)."""
        now = time.time()
        if at == "now":
            return view["current_slot"]
        try:
            when = datetime.fromisoformat(at.replace("Z", "+00:00"))
        except ValueError:
            raise fail(f"--at {at!r}: not 'now' nor an ISO 8601 time such as 2026-12-05T08:00:00Z") from None
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        t = when.timestamp()
        if t < now:
            raise fail(f"--at {at}: that time is in the past (now {_utc(int(now))}); a policy cannot act backwards")
        start, length = view["start_time"], view["slot_seconds"]
        return max(view["current_slot"], -(-(int(t) - start) // length))

    def known(self, view: dict, meters: list[str]) -> None:
        """Every meter must be known to the chain (authorized or banned by an earlier policy)."""
        known = {m["meter"] for m in view["in_force"]["meters"]}
        for m in meters:
            if m not in known:
                names = ", ".join(sorted(known)) or "none yet"
                raise fail(f"--meter {m}: no such meter on this chain (known meters: {names})")

    def expect_member(self, view: dict, meter: str, member: int) -> None:
        """``meter`` must get member index ``member`` if authorized now: it is enrolled as that member already, or
        it is new and ``member`` is the next index. Otherwise exit 2 naming the meter(s) to authorize first."""
        ids = enrolled(view)
        index = ids.index(meter) if meter in ids else None
        if index == member or (index is None and member == len(ids)):
            return
        if index is not None:
            raise fail(f"--member {member}: {meter} is member {index} of this chain already (enrolled earlier)")
        if member < len(ids):
            raise fail(
                f"--member {member}: this chain's member {member} is {ids[member]} already; {meter} would become "
                f"member {len(ids)}, not the member its keys were made for"
            )
        names = self.added(view, range(len(ids), member))
        raise fail(
            f"--member {member}: {meter} would become member {len(ids)} of this chain, not {member}: authorize "
            f"{names} first (added before it), then {meter}"
        )

    def added(self, view: dict, members: range) -> str:
        """Who ``members`` are: the meters the plan beside the DSO key (``cluster add-meter``) added as those
        members of this chain, where it says, else their indices."""
        from gridledger.node.deploy import MANIFEST

        names = {}
        try:
            manifest = json.loads((self.key_path.parent.parent / MANIFEST).read_text())
            chains = {c["chain_id"]: name for name, c in manifest["chains"].items()}
            names = {
                n["member"]: n["id"]
                for n in manifest["nodes"]
                if "member" in n and n.get("chain") == chains.get(view["chain_id"])
            }
        except (OSError, ValueError, KeyError, TypeError):
            pass  # no plan beside the key: name the members by index
        named = (f"{names[m]} (member {m})" if m in names else f"the meter added as member {m}" for m in members)
        return ", ".join(named)

    def change(
        self, at: str, wait: float, meters: list[str] | None = None, member: tuple[str, int] | None = None, **change
    ) -> None:
        """Read the timeline, check that ``meters`` are known (and that ``member``'s meter gets that index), and
        submit ``change`` effective ``at``."""
        view = self.timeline()
        self.known(view, meters or [])
        if member is not None:
            self.expect_member(view, *member)
        self.submit(view, self.slot(at, view), wait, **change)

    def submit(self, view: dict, slot: int, wait: float, **change) -> None:
        """Sign the change as the next policy, submit it and report its fate (exit 2 if refused or rejected)."""
        from gridledger.ledger.errors import Reject
        from gridledger.petra.dso import DSO

        dso = DSO(self.key, bytes.fromhex(view["chain_id"]), nonce=view["nonce"])
        try:
            tx = dso.policy(slot, **change)
        except Reject as e:  # an unencodable value (a too-long meter id, a price out of range)
            raise fail(f"{e.code}: {e.message}") from None
        txid = self.call(self.client.send, tx)
        effective = view["start_time"] + slot * view["slot_seconds"]
        what = f"policy {tx.nonce} (effective slot {slot}, from {_utc(effective)})"
        if not wait:
            console.print(f"{what} queued: txid {txid.hex()}")
            return
        try:
            st = self.call(self.client.wait, txid, wait)
        except TimeoutError:
            raise fail(
                f"{what} not committed within {wait:g} s: txid {txid.hex()} (see `gridledger dso show`)"
            ) from None
        if st["status"] == "rejected":
            raise fail(f"{what} rejected by the chain: {st['code']}: {st['message']}")
        console.print(f"{what} committed at height {st['height']}: txid {txid.hex()}")


@app.command()
def authorize(
    meter: str = typer.Option(..., "--meter", help="The meter's id (e.g. MI9)."),
    pubkey: str = typer.Option(..., "--pubkey", help="The meter's Ed25519 public key, 64 hex characters."),
    member: int | None = typer.Option(
        None,
        "--member",
        min=0,
        help="The member index it must get (as `cluster add-meter` printed it): refused, nothing submitted, if "
        "the chain would give it another (meters added before it not yet authorized).",
    ),
    node: str = NODE,
    key: Path = KEY,
    as_id: str = AS_ID,
    ca: Path | None = CA,
    at: str = AT,
    wait: float = WAIT,
) -> None:
    """Authorize a meter (new, or banned before) with its public key."""
    try:
        raw = bytes.fromhex(pubkey)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise fail(f"--pubkey {pubkey!r}: must be 64 hex characters (an Ed25519 public key)")
    expect = None if member is None else (meter, member)
    DsoSession(node, key, as_id, ca).change(at, wait, member=expect, authorize={meter: raw})


@app.command()
def ban(
    meters: list[str] = typer.Option(..., "--meter", help="A meter to ban (repeat for several)."),
    node: str = NODE,
    key: Path = KEY,
    as_id: str = AS_ID,
    ca: Path | None = CA,
    at: str = AT,
    wait: float = WAIT,
) -> None:
    """Ban meters: from the effective slot on, their readings and trades are refused."""
    DsoSession(node, key, as_id, ca).change(at, wait, meters, ban=meters)


@app.command()
def prices(
    consumption: int = typer.Option(..., "--consumption", min=0, help="Price of consumed energy (minor units/kWh)."),
    production: int = typer.Option(..., "--production", min=0, help="Price of produced energy (minor units/kWh)."),
    node: str = NODE,
    key: Path = KEY,
    as_id: str = AS_ID,
    ca: Path | None = CA,
    at: str = AT,
    wait: float = WAIT,
) -> None:
    """Set the prices (priceConsumption, priceProduction)."""
    DsoSession(node, key, as_id, ca).change(at, wait, prices=(consumption, production))


@app.command()
def limits(
    meter: str = typer.Option(..., "--meter", help="The meter (it must be known to the chain)."),
    max_epa: int = typer.Option(..., "--max-epa", min=0, help="MAXEPA: most energy it may offer (W per slot)."),
    max_eca: int = typer.Option(..., "--max-eca", min=0, help="MAXECA: most energy it may ask for (W per slot)."),
    credit: int = typer.Option(..., "--credit", min=0, help="Its FA credit (minor units, cumulative)."),
    node: str = NODE,
    key: Path = KEY,
    as_id: str = AS_ID,
    ca: Path | None = CA,
    at: str = AT,
    wait: float = WAIT,
) -> None:
    """Set a meter's PETra limits."""
    from gridledger.ledger.kinds.dso_policy import MeterLimits

    DsoSession(node, key, as_id, ca).change(at, wait, [meter], limits=[MeterLimits(meter, max_epa, max_eca, credit)])


@app.command()
def show(
    node: str = NODE,
    key: Path = KEY,
    as_id: str = AS_ID,
    ca: Path | None = CA,
    as_json: bool = typer.Option(False, "--json", help="Print the timeline as JSON (as /v1/policy serves it)."),
) -> None:
    """The policy timeline: what is in force now (prices, each meter's status and limits) and every policy."""
    dso = DsoSession(node, key, as_id, ca)
    view = dso.timeline()
    if as_json:
        print(json.dumps(view, indent=2))
        return
    force = view["in_force"]
    now = view["start_time"] + view["current_slot"] * view["slot_seconds"]
    console.print(
        f"chain {view['chain_id'][:16]}…, slot {view['current_slot']} (from {_utc(now)}), "
        f"{view['slot_seconds']} s slots"
    )
    p = force["prices"]
    console.print("prices in force: " + (f"{p[0]} consumption, {p[1]} production (minor units/kWh)" if p else "none"))
    meters = Table(title="meters in force")
    for col in ("meter", "status", "MAXEPA W", "MAXECA W", "credit"):
        meters.add_column(col)
    for m in force["meters"]:
        lim = m["limits"] or {}
        meters.add_row(
            m["meter"], m["status"], *(str(lim.get(k, "–")) for k in ("max_epa_w", "max_eca_w", "credit_fa"))
        )
    console.print(meters)
    policies = Table(title="policy timeline")
    for col in ("nonce", "effective from", "slot", "state", "height", "changes"):
        policies.add_column(col)
    for q in view["policies"]:
        changes = []
        if q["prices"]:
            changes.append(f"prices {q['prices'][0]}/{q['prices'][1]}")
        changes += [f"authorize {a['meter']}" for a in q["authorize"]]
        changes += [f"limits {lim['meter']}" for lim in q["limits"]]
        changes += [f"ban {m}" for m in q["ban"]]
        state = "in force" if q["in_force"] else "scheduled"
        policies.add_row(
            str(q["nonce"]),
            _utc(q["effective_time"]),
            str(q["effective_slot"]),
            state,
            str(q["height"]),
            ", ".join(changes),
        )
    console.print(policies)


@app.command()
def bills(
    node: str = NODE,
    key: Path = KEY,
    as_id: str = AS_ID,
    ca: Path | None = CA,
    last: int = typer.Option(20, "--last", min=0, help="How many of the latest slots to list."),
    as_json: bool = typer.Option(False, "--json", help="Print the aggregate as JSON (as /v1/bills serves it)."),
) -> None:
    """The bills the meters reported to the node, summed per slot (energy settled, amount billed) and in all."""
    from gridledger.ledger.units import WS_PER_WH

    dso = DsoSession(node, key, as_id, ca)
    view = dso.call(dso.client.bills, last)
    if as_json:
        print(json.dumps(view, indent=2))
        return
    table = Table(title=f"bills reported to {node} (summed per slot)")
    for col in ("slot", "meters", "energy settled (Wh)", "billed (minor units)", "ECA audit"):
        table.add_column(col)
    for s in view["slots"]:
        audit = f"{s['audit_failed']} failed" if s["audit_failed"] else "ok"
        table.add_row(str(s["slot"]), str(s["meters"]), f"{s['energy_ws'] / WS_PER_WH:.1f}", str(s["amount"]), audit)
    console.print(table)
    t = view["total"]
    refused = ", ".join(f"{code} {n}" for code, n in view["refused"].items()) or "none"
    console.print(
        f"in all: {t['amount']} minor units billed, {t['energy_ws'] / WS_PER_WH:.1f} Wh settled, {t['slots']} slots, "
        f"{t['reports']} reports, {t['audit_failed']} failed ECA audits; reports refused: {refused}"
    )
