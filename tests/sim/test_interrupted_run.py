"""A community run killed mid-way (SIGKILL) leaves every chain store it wrote valid: each verifies on its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from gridledger.chain import verify_store
from gridledger.profiles.community import community_toml, generate_community
from gridledger.store.sqlite import SqliteStore

SCRIPT = """
import sys
from gridledger.profiles.community import load_community
from gridledger.sim.run import run_community
run_community(load_community(sys.argv[1]), sys.argv[2], progress=lambda d, t: print(d, flush=True))
"""


def test_a_killed_run_leaves_stores_that_verify(tmp_path):
    out = tmp_path / "run"
    data = tmp_path / "community.toml"
    data.write_text(community_toml(generate_community(6, 2, seed=2, feeders=2)))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    command = [sys.executable, "-c", SCRIPT, str(data), str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        for line in proc.stdout:  # kill it in the middle of the first day's trading
            if int(line) >= 40:
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    stores = sorted((out / "chains").glob("*.sqlite"))
    assert len(stores) == 2 * (6 + 2 + 2)  # coordinator's and members' copy of every chain
    for path in stores:
        store = SqliteStore(path)
        try:
            assert verify_store(store).height >= 1, path.name
        finally:
            store.close()
    assert not (out / "summary.json").exists()
