"""``gridledger tiers simulate`` and ``gridledger prove``; ``gridledger verify`` of a run folder is :func:`verify_run`.

A run folder holds ``tiers.json``, the manifest naming each chain, its tier, its parent and its store(s): SQLite
files in the folder, or ``postgresql://`` URLs (``gridledger simulate --store``; a password comes from
``PGPASSWORD`` or ``~/.pgpass``, never from the manifest).
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gridledger.cli.common import console, fail, invalid
from gridledger.ledger.errors import Reject

if TYPE_CHECKING:
    from gridledger.chain import Chain

MANIFEST = "tiers.json"
RUN = f"A run folder made by `gridledger tiers simulate` (with {MANIFEST})."

app = typer.Typer(no_args_is_help=True)


@app.callback()
def tiers() -> None:
    """Multi-tier chains (HAN, NAN, FAN/WAN, head-end) under Proof-of-Efficiency consensus.

    Check a run with `gridledger verify DIR`; prove a reading with `gridledger prove DIR`.
    """


@app.command()
def simulate(
    out: Path = typer.Option(
        ..., "--out", help=f"New folder for the chains' SQLite stores and {MANIFEST}.", show_default=False
    ),
    fans: int = typer.Option(1, "--fans", min=1, max=16, help="FAN/WAN chains under the head-end chain."),
    nans: int = typer.Option(
        2, "--nans", min=1, max=64, help="NAN chains (neighbourhoods, one concentrator each) per FAN/WAN chain."
    ),
    homes: int = typer.Option(3, "--homes", min=1, max=500, help="Homes (HAN chains, one smart meter each) per NAN."),
    appliances: int = typer.Option(
        2, "--appliances", min=1, max=16, help="Appliances reporting readings on each HAN chain."
    ),
    minutes: int = typer.Option(
        30, "--minutes", min=1, max=24 * 60, help="Simulated minutes (every device reports once a minute)."
    ),
    summary_minutes: int = typer.Option(
        15, "--summary-minutes", min=1, max=24 * 60, help="Minutes between the summaries a tier reports upwards."
    ),
    anchor_minutes: int = typer.Option(
        5, "--anchor-minutes", min=1, max=24 * 60, help="Minutes between the anchors each chain makes in its parent."
    ),
    price: tuple[int, int] = typer.Option(
        (120, 80),
        "--price",
        help="DSO prices published at the head-end: consumption and production, minor units per kWh.",
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the simulated consumption (same seed, same chains)."),
) -> None:
    """Run every tier in one process under PoEf (real keys, signatures and votes), anchored up to the head-end."""
    from gridledger.ledger.kinds.alarm import Alarm
    from gridledger.ledger.kinds.reading_batch import readings_of
    from gridledger.tiers.hierarchy import Hierarchy

    if min(price) < 0:
        raise typer.BadParameter("prices are non-negative minor units per kWh", param_hint="--price")
    if (out / MANIFEST).exists():
        raise fail(f"{out} already holds a simulation; choose another --out")
    h = Hierarchy(
        fans,
        nans,
        homes,
        appliances,
        directory=out,
        summary_minutes=summary_minutes,
        anchor_minutes=anchor_minutes,
        seed=seed,
    )
    try:
        h.publish_prices(tuple(price), 1)
        columns = (TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("minutes", total=minutes)
            h.run(minutes, progress=lambda done: bar.update(task, completed=done))
        h.settle()
        manifest = h.manifest()
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        table = Table(title=f"{len(h.chains)} chains after {minutes} minutes", title_justify="left")
        for col in ("chain", "blocks", "readings", "alarms", "anchored in parent"):
            table.add_column(col, justify="left" if col == "chain" else "right")
        for node in h.chains.values():
            txs = [tx for b in node.coordinator.chain.blocks(1) for tx in b.transactions]
            anchored = "—" if node.parent is None else str(node.anchored())
            table.add_row(
                node.name,
                str(node.coordinator.chain.height + 1),
                str(sum(len(readings_of(t)) for t in txs)),
                str(sum(isinstance(t, Alarm) for t in txs)),
                anchored,
            )
        console.print(table)
        console.print(
            f"stores and {MANIFEST} in {out}; next: [bold]gridledger verify {out}[/], [bold]gridledger prove {out}[/]"
        )
    finally:
        h.close()


def _open(path: Path, stack: ExitStack) -> tuple[list[dict], dict[str, Chain]]:
    """The manifest's entries and every chain of the run folder ``path``, opened (closed with ``stack``)."""
    from gridledger.chain import Chain
    from gridledger.store import StoreError

    manifest_file = path / MANIFEST
    if not manifest_file.is_file():
        raise fail(f"no {MANIFEST} in {path} (make one with: gridledger tiers simulate --out {path})")
    try:
        entries = json.loads(manifest_file.read_text())["chains"]
        chains = {}
        for e in entries:
            store = _open_copy(path, _stores(e)[0], stack)
            chains[e["name"]] = Chain.open(store)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise fail(f"{manifest_file} is not a valid manifest: {e}") from None
    except (StoreError, Reject) as e:
        raise fail(f"cannot open a chain of {path}: {e}") from None
    return entries, chains


def _pick_reading(chains: dict[str, Chain], chain: str | None, member: int | None, minute: int | None) -> bytes:
    from gridledger.ledger.kinds.reading_batch import readings_of

    names = [chain] if chain else [n for n in chains if n.startswith("han:")]
    if chain and chain not in chains:
        raise fail(f"no chain {chain!r}; chains: {', '.join(chains)}")
    for name in names:
        for block in chains[name].blocks(1):
            for tx in block.transactions:
                for r in readings_of(tx):  # a minute of a batch is proven by its batch
                    if (member is None or r.member == member) and (minute is None or r.minute == minute):
                        return tx.txid
    raise fail("no reading matches --chain/--member/--minute")


def prove(
    path: Path = typer.Argument(..., help=RUN, show_default=False),
    txid: str = typer.Option(None, "--txid", help="Transaction id (hex) of the reading to prove."),
    chain: str = typer.Option(None, "--chain", help="HAN chain to take the reading from (e.g. han:MI-0-0-0)."),
    member: int = typer.Option(None, "--member", min=0, help="Member index (appliance) of the reading."),
    minute: int = typer.Option(None, "--minute", min=0, help="Minute (since the chain's start) of the reading."),
    out: Path = typer.Option(None, "--out", help="Also write the proof to this JSON file.", dir_okay=False),
    check: Path = typer.Option(
        None, "--check", help="Check this proof (a JSON file from --out) instead of building one.", dir_okay=False
    ),
) -> None:
    """Print and check the Merkle proof that a HAN reading is covered by the head-end chain (exit 1 if invalid).

    Without --txid, proves the first reading matching --chain, --member and --minute.
    """
    from gridledger.ledger.kinds import decode_transaction
    from gridledger.tiers.prove import CoverageProof, Index, ProofError, check_proof, head_hash
    from gridledger.tiers.prove import prove as build_proof

    with ExitStack() as stack:
        entries, chains = _open(path, stack)
        head_name = next((e["name"] for e in entries if e["tier"] == "head"), None)
        if head_name is None:
            raise fail(f"{path} holds no head-end chain")
        head = chains[head_name]
        if check is not None:
            try:
                proof = CoverageProof.from_json(json.loads(check.read_text()))
            except (OSError, ValueError, KeyError, TypeError, Reject) as e:
                raise fail(f"{check} is not a proof: {e}") from None
        else:
            index = Index(chains.values())
            if txid is not None:
                try:
                    wanted = bytes.fromhex(txid)
                except ValueError:
                    raise typer.BadParameter("must be hexadecimal", param_hint="--txid") from None
            else:
                wanted = _pick_reading(chains, chain, member, minute)
            try:
                proof = build_proof(index, wanted)
            except ProofError as e:
                raise fail(str(e)) from None
            if out is not None:
                out.write_text(json.dumps(proof.to_json(), indent=2) + "\n")
        try:
            reading = decode_transaction(proof.reading).txid.hex()
        except Reject as e:
            raise fail(f"the proof's reading does not decode: {e}") from None
        table = Table(title=f"Proof for reading {reading}", title_justify="left")
        for col in ("chain", "height", "block hash", "Merkle path", "anchored in"):
            table.add_column(col)
        for link, up in zip(proof.links, [*proof.links[1:], None], strict=True):
            above = "—" if up is None else f"{up.chain} block {up.header.height}"
            table.add_row(
                link.chain,
                str(link.header.height),
                link.header.hash.hex()[:16] + "…",
                f"{len(link.tx_path)} + {len(link.anchor_path or [])} hashes",
                above,
            )
        console.print(table)
        try:
            lines = check_proof(proof, head.chain_id, head_hash(head, proof.head.height))
        except Reject as e:
            raise invalid(str(e)) from None
        for line in lines:
            console.print(f"  {line}")
        console.print("[green]valid[/]: the reading is covered by the head-end chain")


def _stores(entry: dict) -> list[str]:
    """A manifest entry's stores: the coordinator's first, then any replica's (``gridledger simulate``)."""
    return entry["stores"] if "stores" in entry else [entry["store"]]


def _open_copy(path: Path, where: str, stack: ExitStack):
    """A chain copy the manifest in ``path`` names (a SQLite file there, or a ``postgresql://`` URL), closed with
    ``stack``."""
    from gridledger.tiers.hierarchy import open_location

    store = open_location(path, where)
    stack.callback(store.close)
    return store


def verify_run(path: Path) -> None:
    """``gridledger verify`` of a run folder: every chain (rules, quorum certificates), anchor and replicated price."""
    from gridledger.chain import verify_store
    from gridledger.ledger.block import Block
    from gridledger.store import StoreError
    from gridledger.store.postgres import redact
    from gridledger.tiers.audit import check_anchors, check_prices

    with ExitStack() as stack:
        entries, chains = _open(path, stack)
        table = Table(title=f"{len(chains)} chains", title_justify="left")
        for col in ("chain", "blocks", "certificates", "prices as parent"):
            table.add_column(col)
        try:
            for e in entries:
                chain = chains[e["name"]]
                state = verify_store(chain.store)
                behind = 0
                for replica in _stores(e)[1:]:  # every other copy verifies too, and holds the same chain
                    store = _open_copy(path, replica, stack)
                    copy = verify_store(store)
                    # copies of a killed run may differ by the blocks committed but not yet relayed to all of them
                    common = min(copy.height, state.height)
                    if (
                        Block.decode(store.block_bytes(common)).hash
                        != Block.decode(chain.store.block_bytes(common)).hash
                    ):
                        raise Reject(
                            "bad-chain-state", f"{redact(replica)} holds another chain than {redact(_stores(e)[0])}"
                        )
                    behind = max(behind, abs(state.height - copy.height))
                parent = e.get("parent")
                prices = "—" if parent is None else str(check_prices(chain, chains[parent]))
                table.add_row(e["name"], str(state.height + 1), f"ok ({behind} behind)" if behind else "ok", prices)
            covered = check_anchors(chains.values())
        except Reject as e:
            console.print(table)
            raise invalid(str(e)) from None
        except StoreError as e:
            raise fail(str(e)) from None
        console.print(table)
        console.print(f"[green]valid[/]: every chain, certificate and anchor ({sum(covered.values())} anchored blocks)")
