"""``gridledger simulate``: the main job, one community end to end on every layer (the community run)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from gridledger.cli.common import console, err, fail


def _default_out() -> Path:
    return Path(time.strftime("sim-%Y%m%d-%H%M%S"))


def simulate(
    ctx: typer.Context,
    community_file: Path | None = typer.Argument(
        None,
        metavar="[COMMUNITY.toml]",
        help="The community file (see examples/). Without it, a community is generated from --homes/--days/--seed "
        "and written into the output folder first.",
        show_default=False,
    ),
    homes: int = typer.Option(20, "--homes", min=4, help="Homes of a generated community (without a file)."),
    days: int = typer.Option(1, "--days", min=1, max=366, help="Days of a generated community (without a file)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of a generated community (without a file)."),
    out: Path | None = typer.Option(
        None, "--out", help="Output folder (new or empty). Default: a new sim-TIMESTAMP/ folder.", show_default=False
    ),
    store: str | None = typer.Option(
        None,
        "--store",
        help="Put the chain stores in PostgreSQL: postgresql://user[:password]@host[:port]/db (one schema per chain "
        "copy, named after a random run id; chains/tiers.json names them, without the password). Default: SQLite "
        "files in OUT/chains/.",
        show_default=False,
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue the interrupted run in --out (its community.toml, attacks and stores; the chains it left are "
        "kept and extended). With --store: the same database (e.g. to give the password again).",
    ),
    report: bool = typer.Option(True, "--report/--no-report", help="Write report.html into the output folder."),
    attack: list[str] = typer.Option(
        [],
        "--attack",
        metavar="KIND@TARGET[:FROM-TO]",
        help="Inject an attack into the run (repeatable): theft-h1..theft-h6, sensor or spoof on a home; fake-price, "
        "flood or coordinator-loss on a feeder; tamper on a feeder or home. FROM-TO: slot numbers, TO excluded "
        "(default: the whole run). The summary says what each cost and which check caught it (docs/twin.md).",
        show_default=False,
    ),
) -> None:
    """Run a whole community end to end: households, readings on the HAN and NAN chains under PoEf, PETra's private
    market on each feeder's NAN chain, bills and the DSO view, anchors up to the head-end, rewards.

    Writes into the output folder: summary.json, parquet tables, the chain stores (chains/, or PostgreSQL with
    --store) and report.html. Check it afterwards with `gridledger verify OUT` (every chain). An interrupted run
    (Ctrl-C, a killed process) continues with `gridledger simulate --resume --out OUT`.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from gridledger.profiles.community import CommunityError, community_toml, generate_community, load_community
    from gridledger.sim.attacks import AttackError, parse_attacks
    from gridledger.sim.network import RunStores, chain_copies
    from gridledger.sim.run import COMMUNITY_FILE, RunError, check_store, run_community
    from gridledger.store import StoreError

    if store is not None and not store.startswith(("postgresql://", "postgres://")):
        raise fail(f"--store {store}: not a postgresql:// URL (the default stores are SQLite files in OUT/chains)")
    if resume:
        if out is None:
            raise fail("--resume: name the folder of the interrupted run with --out")
        if attack:
            raise fail("--attack: a resumed run keeps the attacks it started with; give none with --resume")
        if not out.is_dir():
            raise fail(f"--out {out}: no such folder: nothing to resume")
        community_file = community_file or out / COMMUNITY_FILE
    else:
        out = out or _default_out()
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise fail(
                f"--out {out}: the folder is not empty (it may hold an earlier run): choose a new one, or "
                "continue an interrupted run with --resume"
            )
    try:
        if community_file is not None:
            community = load_community(community_file)
        else:
            community = generate_community(homes, days, seed)
        plan = parse_attacks(attack, community)  # checked before anything is written
        check_store(store, plan)
    except (CommunityError, OSError, AttackError, RunError) as e:
        raise fail(str(e)) from None
    if not resume:
        try:  # the server is reachable, before anything is written
            backups = frozenset(a.target for a in plan if a.kind == "coordinator-loss")
            RunStores.new(out / "chains", store).prepare(chain_copies(community, backups), exist=False, create=False)
        except StoreError as e:
            raise fail(str(e)) from None
        out.mkdir(parents=True, exist_ok=True)
        if community_file is None:
            text = community_toml(community, f"generated: --homes {homes} --days {days} --seed {seed}")
        else:
            text = community_file.read_text()
        (out / COMMUNITY_FILE).write_text(text)  # a resumed run reads it back
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=err, transient=True) as bar:
            task = bar.add_task("slots", total=None)
            summary = run_community(
                community,
                out,
                attacks=attack,
                store=store,
                resume=resume,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    except RunError as e:
        raise fail(str(e)) from None
    except KeyboardInterrupt:
        err.print(f"interrupted: the chains are kept; continue with: gridledger simulate --resume --out {out}")
        raise typer.Exit(130) from None
    console.print(
        f"{summary['homes']} homes x {summary['slots']} slots in {summary['wall_s']:.1f} s: "
        f"{summary['blocks']} blocks, {summary['trades']} trades ({summary['energy_traded_wh'] / 1000:.1f} kWh), "
        f"bills {summary['total_bill_minor']} vs {summary['baseline_bill_minor']} without the market, "
        f"{summary['alarms']} alarms"
    )
    for a in summary["attacks"]:
        caught = f"detected after {a['detection_delay_s']} s by {a['mechanism']}" if a["detected"] else "NOT detected"
        console.print(f"attack {a['kind']}@{a['target']}: {caught}, cost {a['victim_cost_minor']} (minor units)")
    if report:
        from gridledger.report.community_report import community_report
        from gridledger.report.provenance import Provenance, invocation

        path = community_report(out, Provenance(invocation(ctx), summary["seed"]))
        console.print(f"report: {path} (open it in a browser)")
    console.print(f"outputs in {out}/ (check them with: gridledger verify {out})")
