"""Cost of the community run (``gridledger.sim.run.run_community``): wall and CPU time per home-slot.

Runs generated communities (:func:`gridledger.sim.generate.community_data`, 15-minute slots, every layer: HAN,
NAN under PoEf with PETra, FAN/WAN, head-end, bills, rewards) and prints wall and CPU seconds and home-slots per
second for each size, then extrapolates the 100 homes x 7 days run from the largest measured size (the engine's
cost is linear in home-slots beyond the fixed set-up). The machine may be shared: CPU time is the figure that does
not depend on other load. Run from the repository root: ``.venv/bin/python benchmarks/simulate_scale.py``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from gridledger.profiles.community import parse_community
from gridledger.sim.generate import community_data
from gridledger.sim.run import run_community

SIZES = [(10, 1), (20, 2)]  # (homes, days)
if "--full" in sys.argv:
    SIZES += [(100, 7)]


def main() -> None:
    last = None
    for homes, days in SIZES:
        community = parse_community(community_data(homes, days, seed=0, homes_per_feeder=max(3, homes // 2)))
        with tempfile.TemporaryDirectory() as tmp:
            s = run_community(community, Path(tmp) / "run")
        home_slots = homes * s["slots"]
        print(f"simulate_{homes}x{days}_s = {s['wall_s']:.1f} s")
        print(f"simulate_{homes}x{days}_cpu_s = {s['cpu_s']:.1f} s")
        print(f"simulate_{homes}x{days}_home_slots_per_s = {home_slots / s['wall_s']:.1f} home-slots/s")
        print(f"simulate_{homes}x{days}_cpu_ms_per_home_slot = {1000 * s['cpu_s'] / home_slots:.2f} ms")
        print(f"simulate_{homes}x{days}_rss_mib = {s['peak_rss_mib']:.0f} MiB")
        last = (home_slots, s)
    home_slots, s = last
    print(f"simulate_100x7_cpu_s_extrapolated = {100 * 7 * 96 * s['cpu_s'] / home_slots:.0f} s")


if __name__ == "__main__":
    main()
