"""``gridledger attack``: list and run the automated attack scenarios of the digital-twin framework and the ledger."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gridledger.cli.common import console, err, fail

if TYPE_CHECKING:
    from gridledger.twin.scenarios import Summary

app = typer.Typer(
    help="Inject the DT platform's and the ledger's attacks into a small community and measure their detection.",
    no_args_is_help=True,
)


@app.command("list")
def list_scenarios() -> None:
    """List the registered scenarios: the threat each injects and the detector that should catch it."""
    from gridledger.twin.scenarios import scenarios

    table = Table(title="attack scenarios")
    table.add_column("name", style="bold")
    table.add_column("threat")
    table.add_column("detector")
    table.add_column("runs on")
    for name, scenario in sorted(scenarios().items()):
        where = "ledger network (etcd)" if scenario.needs_etcd else "twin lab (MQTT)"
        table.add_row(name, scenario.threat, scenario.detector, where)
    console.print(table)


@app.command("run")
def run(
    name: str = typer.Argument(..., help="Scenario name (see `gridledger attack list`)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the first run; run i uses seed + i."),
    runs: int = typer.Option(1, "--runs", min=1, max=100, help="Number of seeded runs (K)."),
    households: int = typer.Option(
        3, "--households", min=2, max=20, help="Households in the community (one meter, or meter node, each)."
    ),
    community: Path | None = typer.Option(
        None,
        "--community",
        exists=True,
        dir_okay=False,
        help="Community TOML file whose first homes the twin lab's meters measure (default: examples/community.toml).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Run scenario NAME K times; print what was injected, detection, false alarms and data lost.

    The ledger scenarios start one local network (etcd and a process per node, a few seconds) and reuse it for
    the K runs.
    """
    import httpx

    from gridledger.node.etcd import EtcdUnavailable, etcd_binary
    from gridledger.twin.mqtt import BrokerUnavailable, MqttError, mosquitto_binary
    from gridledger.twin.scenarios import RunContext, RunResult, get, session, summarize
    from gridledger.twin.scenarios.harness import LabError

    try:
        scenario = get(name)
    except KeyError as exc:
        raise fail(str(exc.args[0])) from None
    if scenario.needs_broker and mosquitto_binary() is None:
        raise fail("mosquitto is not installed (run ./dev services, or apt-get install mosquitto)")
    if scenario.needs_etcd:
        try:
            etcd_binary()
        except EtcdUnavailable as exc:
            raise fail(str(exc)) from None
    results: list[RunResult] = []
    try:
        with (
            tempfile.TemporaryDirectory(prefix="gridledger-attack-") as tmp,
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err,
                disable=as_json,
                transient=True,
            ) as progress,
        ):
            task = progress.add_task(f"{name}: starting", total=runs)
            with session(scenario, Path(tmp), households) as shared:
                progress.update(task, description=name)
                for i in range(runs):
                    workdir = Path(tmp) / f"run-{i}"
                    results.append(scenario.run(RunContext(seed + i, households, workdir, shared, community)))
                    progress.advance(task)
    except (BrokerUnavailable, MqttError, LabError, TimeoutError, httpx.HTTPError) as exc:
        raise fail(f"scenario {name} could not run: {exc}") from None
    summary = summarize(name, results)
    if as_json:
        typer.echo(json.dumps(summary.to_json()))
    else:
        _print(summary, seed)


def _print(summary: Summary, seed: int) -> None:
    from gridledger.twin.scenarios import get

    table = Table(title=f"{summary.scenario}: {summary.runs} run(s)")
    for column in ("seed", "injected", "detected", "time to detect (s)", "false alarms", "data lost"):
        table.add_column(column)
    for i, r in enumerate(summary.results):
        ttd = f"{r.time_to_detect_s:.3f}" if r.time_to_detect_s is not None else "-"
        detected = "yes" if r.detected else "[red]no[/red]"
        table.add_row(
            str(seed + i),
            r.injected,
            detected if r.attempts == 1 else f"{detected} ({r.caught}/{r.attempts})",
            ttd,
            f"{r.false_alarms}/{r.honest_observations}",
            str(r.data_lost),
        )
    console.print(table)
    mttd = summary.mean_time_to_detect_s
    console.print(
        f"detection rate {summary.detection_rate:.0%}, false-alarm rate {summary.false_alarm_rate:.4f} "
        f"(alarms per honest observation), mean time to detect "
        f"{'-' if mttd is None else f'{mttd:.3f} s'} (wall clock), data lost {summary.data_lost} "
        f"({'transactions' if get(summary.scenario).needs_etcd else 'readings'})"
    )
