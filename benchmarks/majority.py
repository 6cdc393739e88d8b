"""The 51 % scenario across real node processes: how fast the honest network detects a colluding committee majority.

``tests/node/majority.py`` starts a PoEf NAN (3-member etcd, DC1 and DC1-backup, three meters) and a PoEf FAN above
it (its coordinator and the NAN's two concentrators as members, which replicate the NAN), one process per node. The
colluders (the keys of DC1 and of two of the three meters) certify an over-issue and publish it as the NAN's next
final block, then anchor it on the FAN. Measured from the publication: every NAN node refusing it (seen on
``/v1/status``), and a TAMPERING alarm about it committed on the FAN (what the DSO reads); the FAN's answer to the
anchor. Polling adds up to ~0.1 s. Run: ``.venv/bin/python benchmarks/majority.py`` (about a minute).
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

from gridledger.node import cluster

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "node"))
import majority  # noqa: E402 - the tests' scenario


def main() -> None:
    logging.getLogger("gridledger").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        try:
            out = majority.attack(majority.start(folder))
        finally:
            if (folder / cluster.STATE_FILE).exists():
                cluster.down(folder)
    refused = [n for n, s in out.nan_status.items() if s["height"] == s["height_before"]]
    print(f"certified over-issue at NAN height {out.bad.height}: refused by {len(refused)}/{len(out.nan_status)} nodes")
    print(f"TAMPERING alarms on the FAN: {len(out.alarms)}; the anchor: {out.anchor_status.get('code')}")
    print(f"majority_nan_refused_s = {out.nan_refused_s:.2f} s")
    print(f"majority_fan_alarm_s = {out.fan_alarm_s:.2f} s")
    print(f"majority_nodes_accepting = {len(out.nan_status) - len(refused)} nodes")


if __name__ == "__main__":
    main()
