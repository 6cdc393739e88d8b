"""``gridledger profiles``: household load, PV output, community readings and the community file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gridledger.cli.common import console, err, fail

if TYPE_CHECKING:
    import pandas as pd

    from gridledger.profiles.community import Community

app = typer.Typer(
    help="Household load (BDEW via demandlib), PV output (pvlib) and smart-meter readings of a community.",
    no_args_is_help=True,
)

FORMATS = (".parquet", ".csv")


def _check_out(out: Path | None) -> None:
    if out is not None and out.suffix not in FORMATS:
        raise typer.BadParameter(f"must end in {' or '.join(FORMATS)}, got {out.name!r}", param_hint="--out")


def _write(frame: pd.DataFrame, out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".parquet":
            frame.to_parquet(out, index=False)
        else:
            frame.to_csv(out, index=False)
    except OSError as exc:
        raise fail(f"cannot write {out}: {exc}") from None
    console.print(f"wrote {len(frame):,} rows to [bold]{out}[/bold]")


def _index(start: str, days: int, freq: str) -> pd.DatetimeIndex:
    from gridledger.profiles.meter_readings import day_index
    from gridledger.profiles.pv import MORELIA

    try:
        return day_index(start, days, freq, MORELIA)
    except ValueError as exc:
        raise fail(str(exc)) from None


def _summary(title: str, rows: list[tuple[str, str]]) -> None:
    table = Table(title=title, show_header=False)
    table.add_column("figure", style="bold")
    table.add_column("value", justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _series_summary(series: pd.Series, step_h: float) -> list[tuple[str, str]]:
    return [
        ("steps", f"{len(series):,}"),
        ("energy", f"{series.sum() * step_h / 1000:,.2f} kWh"),
        ("mean power", f"{series.mean():,.0f} W"),
        ("largest step", f"{series.max():,.0f} W"),
    ]


START = typer.Option("2024-01-01", "--start", help="First day (local time of Morelia, America/Mexico_City).")
DAYS = typer.Option(7, "--days", min=1, max=3660, help="Number of days.")
FREQ = typer.Option("1min", "--freq", help="Step: whole minutes dividing a day (1min, 5min, 15min, 1h).")
SEED = typer.Option(0, "--seed", min=0, help="Seed of the random draws (same seed, same output).")
OUT = typer.Option(None, "--out", help="Write the result to this .parquet or .csv file.")
VARIABILITY = typer.Option(0.3, "--variability", min=0.0, max=1.0, help="Mean daily cloud cover, 0 (clear) to 1.")


@app.command("list")
def list_profiles() -> None:
    """List the BDEW load profiles the installed demandlib ships."""
    from gridledger.profiles.load import PROFILES

    console.print(", ".join(PROFILES))


@app.command("load")
def load(
    annual_kwh: float = typer.Option(1800.0, "--annual-kwh", min=0.0, help="Yearly consumption, kWh."),
    profile: str = typer.Option("H0", "--profile", help="BDEW profile (see `gridledger profiles list`)."),
    start: str = START,
    days: int = DAYS,
    freq: str = FREQ,
    seed: int = SEED,
    out: Path | None = OUT,
) -> None:
    """One household's load, W: a BDEW profile scaled to --annual-kwh and made individual by --seed."""
    from gridledger.profiles.load import household_load

    _check_out(out)
    index = _index(start, days, freq)
    try:
        series = household_load(index, annual_kwh, profile, seed)
    except ValueError as exc:
        raise fail(str(exc)) from None
    _summary(f"household load ({profile.upper()}, {annual_kwh:g} kWh/a)", _series_summary(series, _hours(index)))
    if out is not None:
        _write(series.rename_axis("timestamp").reset_index(), out)


@app.command("pv")
def pv(
    peak_kw: float = typer.Option(3.0, "--peak-kw", min=0.0, help="DC nameplate, kWp."),
    start: str = START,
    days: int = DAYS,
    freq: str = FREQ,
    seed: int = SEED,
    variability: float = VARIABILITY,
    out: Path | None = OUT,
) -> None:
    """A rooftop PV system's AC output at Morelia, W (pvlib clear sky, seeded clouds, PVWatts)."""
    from gridledger.profiles.pv import pv_power

    _check_out(out)
    index = _index(start, days, freq)
    try:
        series = pv_power(index, peak_kw, seed=seed, variability=variability)
    except ValueError as exc:
        raise fail(str(exc)) from None
    rows = _series_summary(series, _hours(index))
    if peak_kw > 0:
        rows.append(("yield", f"{series.sum() * _hours(index) / peak_kw / 1000 / days:,.2f} kWh/kWp per day"))
    _summary(f"PV output ({peak_kw:g} kWp, variability {variability:g})", rows)
    if out is not None:
        _write(series.rename_axis("timestamp").reset_index(), out)


def _hours(index: pd.DatetimeIndex) -> float:
    """The step of ``index`` in hours."""
    import pandas as pd

    return (index[1] - index[0]) / pd.Timedelta(hours=1) if len(index) > 1 else 1.0


def _readings_summary(frame: pd.DataFrame) -> None:
    per_meter = frame.groupby("meter_id")[["consumption_wh", "production_wh"]].sum() / 1000
    _summary(
        "meter readings",
        [
            ("rows", f"{len(frame):,}"),
            ("meters", f"{frame['meter_id'].nunique()}"),
            ("consumption (all meters)", f"{per_meter['consumption_wh'].sum():,.1f} kWh"),
            ("production (all meters)", f"{per_meter['production_wh'].sum():,.1f} kWh"),
            ("voltage range", f"{frame['voltage_v'].min():.1f} - {frame['voltage_v'].max():.1f} V"),
            ("largest current", f"{frame['current_a'].max():.1f} A"),
        ],
    )


def _progress_bar(total: int) -> tuple[Progress, Callable[[], None]]:
    bar = Progress(TextColumn("building meters"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err)
    task = bar.add_task("meters", total=total)
    return bar, lambda: bar.advance(task)


@app.command("readings")
def readings(
    meters: int = typer.Option(50, "--meters", min=1, max=100_000, help="Number of meters (homes)."),
    days: int = typer.Option(30, "--days", min=1, max=3660, help="Number of days."),
    freq: str = FREQ,
    start: str = START,
    seed: int = SEED,
    pv_share: float = typer.Option(0.5, "--pv-share", min=0.0, max=1.0, help="Share of homes with PV."),
    variability: float = VARIABILITY,
    out: Path | None = OUT,
) -> None:
    """Synthetic smart-meter readings of a community: one row per meter per step (Morelia, 127 V)."""
    from gridledger.profiles.meter_readings import community_readings

    _check_out(out)
    bar, advance = _progress_bar(meters)
    try:
        with bar:
            frame = community_readings(
                meters, days, freq, start, seed, pv_share, variability=variability, progress=advance
            )
    except ValueError as exc:
        raise fail(str(exc)) from None
    _readings_summary(frame)
    if out is not None:
        _write(frame, out)


def _community_table(community: Community) -> Table:
    table = Table(title=f"{community.name}: {community.days} days from {community.start:%Y-%m-%d}")
    for column in ("home", "feeder", "kWh/a", "profile", "PV kWp", "battery Wh", "appliances"):
        table.add_column(column, justify="left" if column in ("home", "feeder", "profile", "appliances") else "right")
    for home in community.homes:
        table.add_row(
            home.id,
            home.feeder,
            f"{home.annual_kwh:g}",
            home.profile,
            f"{home.pv_kw:g}",
            f"{home.battery_wh}",
            ", ".join(home.appliances) or "-",
        )
    return table


@app.command("community")
def community(
    path: Path = typer.Argument(..., help="Community TOML file (see examples/community.toml)."),
    freq: str = typer.Option("1min", "--freq", help="Step of the readings written with --out."),
    out: Path | None = typer.Option(None, "--out", help="Write the homes' meter readings to this .parquet/.csv."),
) -> None:
    """Validate a community file and show its homes; with --out, write their meter readings."""
    from gridledger.profiles.community import CommunityError, load_community

    _check_out(out)
    try:
        parsed = load_community(path)
    except CommunityError as exc:
        raise fail(str(exc)) from None
    console.print(_community_table(parsed))
    for feeder in parsed.feeders:
        console.print(
            f"feeder [bold]{feeder.id}[/bold]: {len(parsed.homes_on(feeder.id))} homes, "
            f"internal {feeder.internal_capacity_w:,} W, external {feeder.external_capacity_w:,} W"
        )
    if out is None:
        return
    bar, advance = _progress_bar(len(parsed.homes))
    try:
        with bar:
            frame = parsed.readings(freq, progress=advance)
    except ValueError as exc:
        raise fail(str(exc)) from None
    _readings_summary(frame)
    _write(frame, out)
