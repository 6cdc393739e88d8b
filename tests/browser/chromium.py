"""Headless Chromium (Debian ``chromium``) as the tests drive it: one process per page, all pages at once.

Each page is opened from a ``file://`` URL with every network path closed (a proxy on the discard port, no
background or component networking), so a page that needed the network would not render. Chromium writes the
DOM after the scripts have run (``--dump-dom``) and a screenshot of the window; its console messages (page
errors included) come on stderr with ``--enable-logging=stderr``.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
WINDOW = (1280, 2000)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--proxy-server=127.0.0.1:9",
    "--enable-logging=stderr",
    "--v=0",
    "--hide-scrollbars",
    f"--window-size={WINDOW[0]},{WINDOW[1]}",
    "--virtual-time-budget=5000",
)
CONSOLE = re.compile(r":CONSOLE[^\]]*\] (.*)")


@dataclass(frozen=True)
class Rendered:
    """A page as Chromium rendered it: the DOM after its scripts ran, its console messages, a screenshot."""

    dom: str
    console: list[str]
    screenshot: bytes


def render(pages: list[Path], workdir: Path, timeout: float = 120) -> dict[Path, Rendered]:
    """Open every page in its own headless Chromium (in parallel); DOM, console and screenshot of each."""
    runs = []
    for i, page in enumerate(pages):
        shot = workdir / f"screenshot-{i}.png"
        proc = subprocess.Popen(
            [
                str(CHROMIUM),
                *FLAGS,
                f"--user-data-dir={workdir / f'profile-{i}'}",
                f"--screenshot={shot}",
                "--dump-dom",
                page.resolve().as_uri(),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        runs.append((page, shot, proc))
    out = {}
    for page, shot, proc in runs:
        try:
            dom, log = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        assert proc.returncode == 0, f"chromium failed on {page}: {log[-2000:]}"
        out[page] = Rendered(dom, CONSOLE.findall(log), shot.read_bytes())
    return out
