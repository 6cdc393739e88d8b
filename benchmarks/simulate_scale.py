"""Cost of the community run (``gridledger.sim.run.run_community``): wall and CPU time per home-slot, peak memory.

Runs generated communities (:func:`gridledger.sim.generate.community_data`: 15-minute slots, feeders of 50 homes,
every layer: HAN, NAN under PoEf with PETra, FAN/WAN, head-end, bills, rewards) and prints, for each size, wall and
CPU seconds, home-slots per second and the peak resident memory of the process so far. Without arguments it runs
10 homes x 1 day and 20 homes x 2 days and extrapolates the 100 homes x 7 days run from the larger (the cost is
linear in home-slots beyond the set-up); with ``--full`` it also runs 100 x 7 (``simulate_100x7_s``,
``simulate_rss_mib``) and 1,000 x 1 (``simulate_1000x1_s``). The machine may be shared: CPU time is the figure that
does not depend on other load. Run from the repository root: ``.venv/bin/python benchmarks/simulate_scale.py``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from gridledger.profiles.community import parse_community
from gridledger.sim.generate import community_data
from gridledger.sim.run import run_community

SIZES = [(10, 1), (20, 2)]  # (homes, days)
FULL = [(100, 7), (1000, 1)]


def main() -> None:
    sizes = SIZES + (FULL if "--full" in sys.argv else [])
    for homes, days in sizes:
        per_feeder = 50 if homes >= 100 else max(3, homes // 2)
        community = parse_community(community_data(homes, days, seed=0, homes_per_feeder=per_feeder))
        with tempfile.TemporaryDirectory() as tmp:
            s = run_community(community, Path(tmp) / "run")
        home_slots = homes * s["slots"]
        key = f"simulate_{homes}x{days}"
        print(f"{key}_s = {s['wall_s']:.1f} s")
        print(f"{key}_cpu_s = {s['cpu_s']:.1f} s")
        print(f"{key}_home_slots_per_s = {home_slots / s['wall_s']:.1f} home-slots/s")
        print(f"{key}_cpu_ms_per_home_slot = {1000 * s['cpu_s'] / home_slots:.2f} ms")
        if (homes, days) == (100, 7):
            print(f"simulate_rss_mib = {s['peak_rss_mib']:.0f} MiB")
        if (homes, days) == SIZES[-1]:
            print(f"simulate_100x7_cpu_s_extrapolated = {100 * 7 * 96 * s['cpu_s'] / home_slots:.0f} s")


if __name__ == "__main__":
    main()
