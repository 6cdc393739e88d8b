"""The community run at scale: wall and CPU time, home-slots per second and peak memory (`gridledger simulate`).

Each size runs a generated community (:func:`gridledger.profiles.community.generate_community`: 15-minute slots,
feeders of up to 40 homes) in a fresh process, so its peak RSS is its own. Sizes: 10 x 1 and 20 x 2 (quick), then the
issue's 100 homes x 7 days and 1,000 homes x 1 day (about 4 + 6 minutes on 2 cores). ``--quick`` runs the small ones.
Ends with ``simulate_100x7_s``, ``simulate_1000x1_s`` and ``simulate_rss_mib`` (the 100 x 7 run's peak).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

QUICK = [(10, 1), (20, 2)]  # (homes, days)
FULL = [(100, 7), (1000, 1)]
ONE = """
import json, sys
from gridledger.profiles.community import generate_community
from gridledger.sim.run import run_community
s = run_community(generate_community(int(sys.argv[1]), int(sys.argv[2]), seed=0), sys.argv[3])
print(json.dumps(s))
"""


def run(homes: int, days: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [sys.executable, "-c", ONE, str(homes), str(days), str(Path(tmp) / "run")],
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    sizes = QUICK + ([] if "--quick" in sys.argv else FULL)
    headline = {}
    print(f"load average at start: {os.getloadavg()[0]:.2f} (2 cores, shared)")
    print(
        f"{'homes x days':>12} {'wall s':>8} {'cpu s':>8} {'home-slots/s':>13} {'cpu ms/home-slot':>17} {'RSS MiB':>8}"
    )
    for homes, days in sizes:
        s = run(homes, days)
        home_slots = homes * s["slots"]
        print(
            f"{homes:>6} x {days:<4} {s['wall_s']:>8.1f} {s['cpu_s']:>8.1f} {home_slots / s['wall_s']:>13.1f} "
            f"{1000 * s['cpu_s'] / home_slots:>17.2f} {s['peak_rss_mib']:>8.0f}"
        )
        headline[(homes, days)] = s
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    if (100, 7) in headline:
        print(f"simulate_100x7_s = {headline[(100, 7)]['wall_s']:.1f} s")
        print(f"simulate_rss_mib = {headline[(100, 7)]['peak_rss_mib']:.0f} MiB")
    if (1000, 1) in headline:
        print(f"simulate_1000x1_s = {headline[(1000, 1)]['wall_s']:.1f} s")


if __name__ == "__main__":
    main()
