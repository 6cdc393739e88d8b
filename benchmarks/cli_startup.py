"""Start-up time of the command line: ``gridledger --help`` and ``gridledger verify --help``.

Each figure is the median wall-clock time of 10 fresh processes (nothing shared between runs but the OS file
cache), printed beside the same measure of ``python -c pass`` taken in the same run, so the interpreter's own
start-up can be told apart from the CLI's imports. Run: ``.venv/bin/python benchmarks/cli_startup.py``.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 10


def gridledger() -> list[str]:
    """The installed ``gridledger`` script of this interpreter's environment (or ``python -m gridledger``)."""
    script = Path(sys.executable).parent / "gridledger"
    if script.is_file():
        return [str(script)]
    found = shutil.which("gridledger")
    return [found] if found else [sys.executable, "-m", "gridledger"]


def median_start_s(argv: list[str]) -> float:
    """Median wall-clock seconds of RUNS fresh runs of ``argv`` (each must exit 0)."""
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    python = median_start_s([sys.executable, "-c", "pass"])
    cli = gridledger()
    help_s = median_start_s([*cli, "--help"])
    verify_help_s = median_start_s([*cli, "verify", "--help"])
    print(f"median of {RUNS} fresh processes each; CLI: {' '.join(cli)}")
    print(f"  python -c pass            {python:.3f} s")
    print(f"  gridledger --help         {help_s:.3f} s")
    print(f"  gridledger verify --help  {verify_help_s:.3f} s")
    print(f"python_startup_s = {python:.3f} s")
    print(f"cli_help_s = {help_s:.3f} s")
    print(f"cli_verify_help_s = {verify_help_s:.3f} s")
    print(f"cli_startup_s = {max(help_s, verify_help_s):.3f} s")


if __name__ == "__main__":
    main()
