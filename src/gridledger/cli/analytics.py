"""``gridledger theft``, ``forecast``, ``pq`` and ``efficiency``: the analytics on readings files and runs.

Input is a CSV or Parquet file in the long format ``meter_id, timestamp, consumption_wh[, production_wh,
voltage_v, current_a, power_factor, label]`` at one regular resolution from 1 minute to 1 day (see
:mod:`gridledger.analytics.data`), or a ``gridledger simulate`` output folder (its committed readings,
:mod:`gridledger.analytics.sources.simulate`). Theft models are stored as JSON (parameters and trees, no pickle:
loading runs no code). Tables are printed at their natural width, even when piped: names are never cut.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.segment import Segments
from rich.table import Table

from gridledger.cli.common import console, err, fail

if TYPE_CHECKING:
    from gridledger.analytics.data import DayCube
    from gridledger.analytics.theft import TheftModel
    from gridledger.report import Provenance

theft_app = typer.Typer(
    help="Energy-theft detection at the concentrator (Jokar attacks, gradient boosting, RL).",
    no_args_is_help=True,
)
forecast_app = typer.Typer(
    help="Consumption and production forecasting at the meter and the concentrator.", no_args_is_help=True
)
pq_app = typer.Typer(
    help="Power-quality prediction at the meter: voltage sags and swells, poor power factor.", no_args_is_help=True
)
METRICS = ("accuracy", "precision", "recall", "f1", "auc")

DATA = typer.Option(
    ...,
    "--data",
    help="Readings file (.csv or .parquet: meter_id, timestamp, consumption_wh[, ...]) or a "
    "`gridledger simulate` output folder.",
)
MAX_GAP = typer.Option(
    0.1,
    "--max-gap",
    min=0.0,
    max=1.0,
    help="Fill meter-days with at most this share of steps missing; drop the others.",
)
SEED = typer.Option(0, "--seed", min=0, help="Seed of every random draw (same seed, same result).")
THEFT_RATE = typer.Option(
    0.5,
    "--theft-rate",
    min=0.0,
    max=1.0,
    help="Share of honest meter-days given a synthetic attack (evaluation when the file has no labels; "
    "training: the first draw's share, the other draws' go down to 10 %).",
)
TEST_FRACTION = typer.Option(
    1 / 3,
    "--test-fraction",
    min=0.05,
    max=0.9,
    show_default="1/3",
    help="Share of the last days used as the test period.",
)
JSON = typer.Option(False, "--json", help="Print one JSON object instead of tables.")
REPORT = typer.Option(
    None,
    "--report",
    dir_okay=False,
    help="Also write an HTML report with plots to this .html file (self-contained: opens offline).",
)


@contextmanager
def _friendly() -> Iterator[None]:
    """Turn errors into one line on stderr and exit code 2 (never a traceback)."""
    from gridledger.analytics.data import DataError
    from gridledger.analytics.prediction_store import StoreError
    from gridledger.analytics.trees import ModelFormatError

    try:
        yield
    except (DataError, ModelFormatError, StoreError, ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as exc:  # an unexpected failure still ends with one line, naming its type
        raise fail(f"unexpected {type(exc).__name__}: {exc}") from None


def _plain(value: object) -> object:
    """JSON-safe copy: NaN and infinities become null, NumPy scalars plain numbers."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _provenance(ctx: typer.Context, seed: int) -> Provenance:
    from gridledger.report import Provenance, invocation

    return Provenance(invocation(ctx), seed)


def _report_written(path: Path | None) -> None:
    if path is not None:
        console.print(f"report: {path}")


def _echo_json(value: object) -> None:
    typer.echo(json.dumps(_plain(value)))


@contextmanager
def _progress(enabled: bool = True) -> Iterator[Callable[[str], None]]:
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not enabled,
    ) as bar:
        task = bar.add_task("reading", total=None)
        yield lambda msg: bar.update(task, description=msg)


def _show(table: Table) -> None:
    """Print a table at its natural width even when that is wider than the terminal or a pipe's 80 columns
    (the terminal folds the long lines; no cell is ever cut)."""
    width = max(console.width, console.measure(table, options=console.options.update_width(100_000)).maximum)
    console.print(Segments(console.render(table, console.options.update_width(width))), crop=False)


def _cube(data: Path, columns: tuple[str, ...], max_gap: float, say: Callable[[str], None]) -> DayCube:
    from gridledger.analytics.data import to_cube
    from gridledger.analytics.sources.simulate import load_input

    say(f"reading {data.name}")
    readings = load_input(data)
    present = tuple(c for c in columns if c in readings.frame.columns)
    say("validating and reshaping")
    return to_cube(readings, present, max_gap)


def _repairs(cube: DayCube, quiet: bool) -> None:
    if not quiet:
        for line in cube.repairs:
            err.print(f"[yellow]repaired:[/yellow] {line}", highlight=False)


def _load_model(path: Path) -> TheftModel:
    from gridledger.analytics.theft import TheftModel
    from gridledger.analytics.trees import ModelFormatError

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"{path}: not JSON ({exc})") from None
    except OSError as exc:
        raise ModelFormatError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        return TheftModel.from_dict(data)
    except ModelFormatError as exc:
        raise ModelFormatError(f"{path}: {exc}") from None


@theft_app.command("train")
def theft_train(
    data: Path = DATA,
    model: Path = typer.Option(..., "--model", help="Where to write the model (JSON).", dir_okay=False),
    theft_rate: float = THEFT_RATE,
    draws: int = typer.Option(
        5, "--draws", min=1, max=20, help="Independent attack draws over the training data."
    ),
    seed: int = SEED,
    max_gap: float = MAX_GAP,
) -> None:
    """Train a detector on a file of (mostly honest) readings; labelled tampered days are kept as thefts."""
    from gridledger.analytics.data import describe_step
    from gridledger.analytics.theft import TheftSettings, train

    with _friendly(), _progress() as say:
        cube = _cube(data, ("consumption_wh", "label"), max_gap, say)
        trained = train(cube, TheftSettings(theft_rate=theft_rate, draws=draws, seed=seed), say)
        model.write_text(json.dumps(trained.to_dict()), encoding="utf-8")
    _repairs(cube, False)
    info = trained.info
    console.print(
        f"trained on {info['meters']} meters x {info['days']} days at {describe_step(trained.step_s)}: "
        f"{info['examples']} meter-day examples ({info['positives']} tampered) -> {model}"
    )


def _detector(path: Path | None) -> tuple[TheftModel, str]:
    """The model at ``path``, or the shipped default model; and how to name it."""
    if path is not None:
        return _load_model(path), str(path)
    from gridledger.analytics.default_model import FILE, load_default_model

    return load_default_model(), f"shipped model {FILE}"


MODEL = typer.Option(
    None,
    "--model",
    dir_okay=False,
    help="A model written by `theft train`. Default: the shipped model (trained across four independent "
    "sources of household load at 15 minutes; serves data at 15 minutes or finer).",
)


@theft_app.command("score")
def theft_score(
    data: Path = DATA,
    model: Path | None = MODEL,
    out: Path = typer.Option(
        ..., "--out", help="Scores file to write (.csv or .parquet), one row per meter-day.", dir_okay=False
    ),
    max_gap: float = MAX_GAP,
) -> None:
    """Score every complete meter-day: theft probability and the meter agents' decision (a production_wh column,
    the export register, is read where there is one: a PV home's slots with export are not its base load)."""
    import numpy as np
    import pandas as pd

    from gridledger.analytics.data import write_table
    from gridledger.analytics.theft import detect

    with _friendly(), _progress() as say:
        detector, name = _detector(model)
        cube = detector.conform(_cube(data, ("consumption_wh", "production_wh"), max_gap, say))
        say("scoring")
        found = detect(detector, cube.meters, cube.values["consumption_wh"], export=cube.values.get("production_wh"))
        ok = np.isfinite(found.logits)
        m_idx, d_idx = np.nonzero(ok)
        scores = pd.DataFrame(
            {
                "meter_id": [cube.meters[i] for i in m_idx],
                "date": [cube.days[j].date().isoformat() for j in d_idx],
                "theft_probability": found.probability[ok],
                "detector_flag": found.detector_decisions[ok].astype(int),
                "agent_score": found.agent_scores[ok],
                "flag": found.agent_decisions[ok].astype(int),
            }
        )
        write_table(scores, out)
    _repairs(cube, False)
    console.print(
        f"scored {len(scores)} meter-days of {len(cube.meters)} meters with the {name}: "
        f"{int(scores['flag'].sum())} flagged -> {out}"
    )


def _table(title: str, rows: dict[str, dict]) -> Table:
    table = Table(title=title)
    table.add_column("", no_wrap=True)
    for m in METRICS:
        table.add_column(m, justify="right")
    for name, r in rows.items():
        table.add_row(name, *(f"{r[m]:.4f}" for m in METRICS))
    return table


def _confusion(title: str, r: dict) -> Table:
    (tp, fn), (fp, tn) = r["confusion"]
    table = Table(title=title)
    table.add_column("observation \\ prediction", no_wrap=True)
    table.add_column("positives", justify="right")
    table.add_column("negatives", justify="right")
    table.add_row("positives (tampered)", str(tp), str(fn))
    table.add_row("negatives (honest)", str(fp), str(tn))
    return table


PER_METER = (
    ("days", "meter-days"),
    ("tampered", "tampered"),
    ("flagged", "flagged"),
    ("false_alarms", "false alarms"),
    ("missed", "missed"),
)


def _per_meter(per_meter: dict[str, dict]) -> Table:
    table = Table(
        title="per meter, detector + RL (Table 5 form)",
        caption="flagged, false alarms and missed thefts with RL; accuracy without and with RL",
    )
    table.add_column("meter", no_wrap=True)
    for _, label in PER_METER:
        table.add_column(label, justify="right")
    table.add_column("accuracy", justify="right")
    table.add_column("+ RL", justify="right")
    for meter, r in per_meter.items():
        table.add_row(meter, *(str(r[k]) for k, _ in PER_METER), f"{r['without_rl']:.4f}", f"{r['with_rl']:.4f}")
    return table


@theft_app.command("evaluate")
def theft_evaluate(
    ctx: typer.Context,
    data: Path = DATA,
    model: Path | None = MODEL,
    holdout: bool = typer.Option(
        False,
        "--holdout",
        help="Instead of a model, train on a meter-wise split of the file and report on the held-out meters only.",
    ),
    test_fraction: float = typer.Option(
        0.3, "--test-fraction", min=0.05, max=0.9, help="Share of meters held out (with --holdout)."
    ),
    theft_rate: float = THEFT_RATE,
    seed: int = SEED,
    max_gap: float = MAX_GAP,
    as_json: bool = JSON,
    report_path: Path | None = REPORT,
) -> None:
    """Accuracy, precision, recall, F1, AUC, the confusion matrix (Table 6) and per-meter results (Table 5),
    without and with the meters' RL.

    Uses the file's labels when it has a label column; otherwise injects synthetic attacks (and says so).
    Warns when fewer meter-days are evaluated than the documented minimum.
    """
    import warnings

    from gridledger.analytics.theft import (
        SmallSampleWarning,
        TheftSettings,
        detect,
        labelled_scenario,
        report,
        split_meters,
        train,
    )
    from gridledger.analytics.trees import ModelFormatError
    from gridledger.report import check_report_path, write_report
    from gridledger.report.theft_report import injected_attacks, theft_report

    settings = TheftSettings(theft_rate=theft_rate, seed=seed)
    with _friendly(), _progress(not as_json) as say:
        if holdout and model is not None:
            raise ValueError("--holdout trains its own detector: give either --model or --holdout, not both")
        if report_path is not None:
            check_report_path(report_path)
        if holdout:
            cube = _cube(data, ("consumption_wh", "production_wh", "label"), max_gap, say)
            train_idx, test_idx = split_meters(len(cube.meters), test_fraction, seed)
            detector = train(cube.select(train_idx), settings, say)
            evaluated, name = cube.select(test_idx), "a detector trained on the other meters"
        else:
            detector, name = _detector(model)
            try:
                evaluated = cube = detector.conform(
                    _cube(data, ("consumption_wh", "production_wh", "label"), max_gap, say)
                )
            except ModelFormatError as exc:
                raise ModelFormatError(f"{exc}; use --holdout to train on this file instead") from None
        reported, labels, injected = labelled_scenario(evaluated, settings, seed + 1)
        say("scoring")
        detection = detect(detector, evaluated.meters, reported, labels, evaluated.values.get("production_wh"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SmallSampleWarning)
            result = report(detection, labels)
        result.update(injected=injected, test_meters=evaluated.meters)
        source = "synthetic attacks (Jokar h1-h6) injected" if injected else "labels from the file"
        scope = "held-out meters" if holdout else "meters"
        headline = f"{len(evaluated.meters)} {scope}, {result['with_rl']['n']} meter-days; {source}; {name}"
        if report_path is not None:
            say("writing the report")
            kinds = (
                injected_attacks(evaluated.values["consumption_wh"], settings, seed + 1, reported, labels)
                if injected
                else None
            )
            notes = (f"{data.name}: {headline}",)
            made = theft_report(detection, labels, result, _provenance(ctx, seed), kinds, notes)
            write_report(made, report_path)
    if result["warning"]:
        err.print(f"[yellow]warning:[/yellow] {result['warning']}", highlight=False)
    with_rl = result["with_rl"]
    if as_json:
        summary = {k: with_rl[k] for k in (*METRICS, "confusion", "n")}
        summary.update(
            without_rl={k: result["without_rl"][k] for k in (*METRICS, "confusion", "n")},
            per_meter=result["per_meter"],
            model=name,
            injected=result["injected"],
            test_meters=result["test_meters"],
            warning=result["warning"],
            repairs=list(cube.repairs),
        )
        _echo_json(summary)
        return
    _repairs(cube, False)
    console.print(headline)
    _show(_table("theft detection", {"detector": result["without_rl"], "detector + RL": with_rl}))
    for key, label in (("without_rl", "detector"), ("with_rl", "detector + RL")):
        _show(_confusion(f"confusion matrix, {label} (Table 6 form)", result[key]))
    _show(_per_meter(result["per_meter"]))
    _report_written(report_path)


@forecast_app.command("evaluate")
def forecast_evaluate(
    ctx: typer.Context,
    data: Path = DATA,
    column: str = typer.Option("both", "--column", help="consumption_wh, production_wh or both."),
    horizon: str = typer.Option("both", "--horizon", help="next-slot, day-ahead or both."),
    slot_seconds: int = typer.Option(
        900, "--slot-seconds", min=60, max=86_400, help="Slot length in seconds: the next-slot horizon."
    ),
    test_fraction: float = TEST_FRACTION,
    store: Path | None = typer.Option(
        None,
        "--store",
        file_okay=False,
        help="Directory for the meters' and the concentrator's prediction stores "
        "(SQLite, Tables 3 and 4); must not hold stores already.",
    ),
    seed: int = SEED,
    max_gap: float = MAX_GAP,
    as_json: bool = JSON,
    report_path: Path | None = REPORT,
) -> None:
    """MAE, NRMSE and MAPE of the baselines and the edge and fog forecasts, per meter and neighbourhood."""
    from gridledger.analytics.data import DataError, describe_step
    from gridledger.analytics.edge_fog import record_forecasts
    from gridledger.analytics.forecast import DAY_AHEAD, HORIZONS, NEXT_SLOT, ForecastSettings, evaluate_forecasts
    from gridledger.analytics.prediction_store import StoreError
    from gridledger.report import check_report_path, write_report
    from gridledger.report.forecast_report import forecast_report

    columns = ("consumption_wh", "production_wh") if column == "both" else (column,)
    horizons = HORIZONS if horizon == "both" else (horizon,)
    with _friendly():
        if any(c not in ("consumption_wh", "production_wh") for c in columns):
            raise ValueError(f"--column must be consumption_wh, production_wh or both, not {column!r}")
        if any(h not in HORIZONS for h in horizons):
            raise ValueError(f"--horizon must be {NEXT_SLOT}, {DAY_AHEAD} or both, not {horizon!r}")
        if store is not None and store.is_dir() and any(store.glob("*.sqlite")):
            raise StoreError(f"{store} already holds prediction stores; choose an empty or new directory")
        if report_path is not None:
            check_report_path(report_path)
        settings = ForecastSettings(slot_seconds=slot_seconds, test_fraction=test_fraction, seed=seed)
        with _progress(not as_json) as say:
            cube = _cube(data, columns, max_gap, say)
            columns = tuple(c for c in columns if c in cube.values)
            if not columns:
                raise DataError(f"the file has no {column} column")
            evaluations = []
            for c in columns:
                for h in horizons:
                    say(f"forecasting {c} {h}")
                    evaluations.append(evaluate_forecasts(cube, c, h, settings))
            if store is not None:
                say("writing prediction stores")
                record_forecasts(store, cube.meters, cube.days, evaluations)
            if report_path is not None:
                say("writing the report")
                shape = f"{data.name}: {len(cube.meters)} meters x {len(cube.days)} days"
                notes = (f"{shape} at {describe_step(cube.step_s)}",)
                made = forecast_report(cube.days, cube.meters, evaluations, _provenance(ctx, seed), notes)
                write_report(made, report_path)
    if as_json:
        _echo_json(
            {
                f"{ev.column}/{ev.horizon}": {
                    "step_s": ev.step_s,
                    "test_days": len(cube.days) - ev.split_day,
                    "meter_median": ev.meter_errors,
                    "neighbourhood": ev.neighbourhood_errors,
                    "nrmse_gain_vs_seasonal_naive": ev.gain(),
                }
                for ev in evaluations
            }
        )
        return
    _repairs(cube, False)
    for ev in evaluations:
        table = Table(
            title=f"{ev.column} {ev.horizon} ({describe_step(ev.step_s)} steps, "
            f"{len(cube.days) - ev.split_day} test days)",
            caption="m. = median over meters, nb = neighbourhood total; MAE in Wh per step",
        )
        table.add_column("method", no_wrap=True)
        for level in ("m.", "nb"):
            for metric in ("MAE", "NRMSE", "MAPE%"):
                table.add_column(f"{level} {metric}", justify="right")
        for name in ev.forecasts:
            cells = [
                f"{e['mae']:.2f}" if k == "mae" else f"{e[k]:.3f}" if k == "nrmse" else f"{e[k]:.1f}"
                for e in (ev.meter_errors[name], ev.neighbourhood_errors[name])
                for k in ("mae", "nrmse", "mape")
            ]
            table.add_row(name, *cells)
        _show(table)
        gain = ev.gain()
        console.print(
            f"fog NRMSE {abs(gain):.1%} {'below' if gain >= 0 else 'above'} seasonal-naive "
            "at the neighbourhood level"
        )
    if store is not None:
        console.print(f"prediction stores written to {store}")
    _report_written(report_path)


@pq_app.command("evaluate")
def pq_evaluate(
    data: Path = DATA,
    test_fraction: float = TEST_FRACTION,
    per_day: float = typer.Option(
        1.0, "--per-day", min=0.1, max=50.0, help="Disturbances of each kind injected per meter-day (on average)."
    ),
    seed: int = SEED,
    max_gap: float = MAX_GAP,
    as_json: bool = JSON,
) -> None:
    """Power-quality prediction: each meter's model (power factor against load, voltage against hour and load)
    is fitted on its first days; labelled disturbances (sags, swells, power-factor faults, and distractors that
    stay inside the limits) are injected into its test days; the flags are scored per event (precision, recall).

    Needs voltage_v and power_factor (production_wh is taken as 0 when absent).
    """
    from gridledger.analytics.data import DataError
    from gridledger.analytics.power_quality import evaluate_power_quality

    with _friendly(), _progress(not as_json) as say:
        cube = _cube(data, ("consumption_wh", "production_wh", "voltage_v", "power_factor"), max_gap, say)
        missing = [c for c in ("voltage_v", "power_factor") if c not in cube.values]
        if missing:
            raise DataError(f"{data}: no {' or '.join(missing)} column; power-quality prediction needs both")
        say("fitting and flagging")
        result = evaluate_power_quality(cube, seed=seed, test_fraction=test_fraction, per_day=per_day)
    if as_json:
        _echo_json({**result, "repairs": list(cube.repairs)})
        return
    _repairs(cube, False)
    console.print(
        f"{result['meters']} meters: each meter's model fitted on its first {len(cube.days) - result['test_days']} "
        f"days, disturbances injected into its last {result['test_days']}"
    )
    table = Table(title="power-quality events (event-level)", caption="precision: flagged runs that overlap a "
                  "true event; recall: true events with a flag")
    for name in ("event", "true events", "flagged", "precision", "recall"):
        table.add_column(name, justify="left" if name == "event" else "right", no_wrap=name == "event")
    for kind, r in result["events"].items():
        table.add_row(kind, str(r["events"]), str(r["flagged"]), _fmt(r["precision"]), _fmt(r["recall"]))
    _show(table)
    mae = result["mae"]
    table = Table(title="prediction error on the clean test readings (MAE)")
    for name in ("quantity", "meter's model", "meter's mean"):
        table.add_column(name, justify="left" if name == "quantity" else "right", no_wrap=name == "quantity")
    table.add_row("voltage (V)", f"{mae['voltage_model']:.3f}", f"{mae['voltage_naive']:.3f}")
    table.add_row("power factor", f"{mae['pf_model']:.4f}", f"{mae['pf_naive']:.4f}")
    _show(table)


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def efficiency(
    data: Path = DATA,
    rate: int = typer.Option(
        1, "--rate", min=0, help="Reward rate: minor units per score point above the threshold (the run's default)."
    ),
    out: Path | None = typer.Option(
        None, "--out", dir_okay=False, help="Also write every meter-period's scorecard (.csv or .parquet)."
    ),
    max_gap: float = MAX_GAP,
    as_json: bool = JSON,
) -> None:
    """PoEf efficiency scores (forecast adherence, power quality, peak reduction; per mille) of every meter for
    every day after the first, and the reward each would earn under the published rule
    (rate x max(0, score - threshold) per day), exactly as the DSO of a run computes them.
    """
    from gridledger.analytics.data import write_table
    from gridledger.analytics.scorecards import cube_rewards
    from gridledger.ledger.kinds.reward import THRESHOLD

    parts = ("forecast_adherence", "power_quality", "peak_reduction", "score")
    with _friendly(), _progress(not as_json) as say:
        cube = _cube(data, ("consumption_wh", "production_wh", "voltage_v", "current_a", "power_factor"),
                     max_gap, say)
        say("scoring")
        cards = cube_rewards(cube, rate)
        if out is not None:
            write_table(cards, out)
    grouped = cards.groupby("meter_id", sort=True)
    meters = grouped[list(parts)].mean().join(grouped["amount"].sum()).join(grouped.size().rename("periods"))
    if as_json:
        _echo_json({
            "rate": rate,
            "threshold": THRESHOLD,
            "meters": {m: {"periods": int(r["periods"]), **{k: float(r[k]) for k in parts},
                           "reward": int(r["amount"])} for m, r in meters.iterrows()},
            "periods": cards.to_dict(orient="records"),
            "repairs": list(cube.repairs),
        })
        return
    _repairs(cube, False)
    table = Table(
        title=f"PoEf efficiency and rewards, {len(cards)} meter-days scored",
        caption=f"per mille, mean over the scored days; reward: {rate} per point above {THRESHOLD}, summed",
    )
    table.add_column("meter", no_wrap=True)
    for name in ("days", "score", "forecast adherence", "power quality", "peak reduction", "reward"):
        table.add_column(name, justify="right")
    for meter, r in meters.iterrows():
        table.add_row(meter, str(int(r["periods"])), *(f"{r[k]:.0f}" for k in (parts[3], *parts[:3])),
                      str(int(r["amount"])))
    _show(table)
    if out is not None:
        console.print(f"scorecards: {out}")
