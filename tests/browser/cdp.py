"""Headless Chromium driven live over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON messages
ended by a NUL byte, commands on the child's fd 3, answers and events on its fd 4), for pages that change while
they are open (the dashboard). Every other network path is closed as in ``chromium.py`` (loopback still reaches
the node under test); the page's requests and its errors are recorded from the protocol's events.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import subprocess
import time
from pathlib import Path

from .chromium import CHROMIUM, FLAGS

LIVE_FLAGS = tuple(f for f in FLAGS if not f.startswith(("--virtual-time-budget", "--window-size")))


class Page:
    """One tab of a headless Chromium, opened on ``url``; ``close`` ends the browser."""

    def __init__(self, url: str, workdir: Path, size: tuple[int, int] = (1280, 1100)) -> None:
        r3, w3 = os.pipe()  # commands: we write w3, Chromium reads its fd 3
        r4, w4 = os.pipe()  # answers: Chromium writes its fd 4, we read r4

        def fds() -> None:
            os.dup2(r3, 3)
            os.dup2(w4, 4)

        self.proc = subprocess.Popen(
            [
                str(CHROMIUM),
                *LIVE_FLAGS,
                f"--window-size={size[0]},{size[1]}",
                "--remote-debugging-pipe",
                f"--user-data-dir={workdir / 'profile'}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3, 4),
            preexec_fn=fds,  # noqa: PLW1509 - single-threaded here, before exec
        )
        os.close(r3)
        os.close(w4)
        self._out, self._in, self._buf, self._id = w3, r4, b"", 0
        self.requests: list[str] = []
        self.errors: list[str] = []
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Network"):
            self.send(f"{domain}.enable", session=self.session)
        self.send("Page.navigate", session=self.session, url=url)

    def send(self, method: str, session: str | None = None, timeout: float = 30.0, **params) -> dict:
        """One command; its result (events that arrive meanwhile are recorded)."""
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._out, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline - time.monotonic())
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self._event(reply)

    def _read(self, timeout: float) -> dict:
        while b"\0" not in self._buf:
            ready, _, _ = select.select([self._in], [], [], max(0.0, timeout))
            if not ready:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def _event(self, msg: dict) -> None:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Runtime.exceptionThrown":
            self.errors.append(params["exceptionDetails"].get("text", "exception"))
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(" ".join(str(a.get("value", "")) for a in params.get("args", [])))

    def reload(self) -> None:
        """Load the page again from the server (cache bypassed), as a first visit would; returns once the new
        document has replaced the old one."""
        self.eval("window.beforeReload = true")
        self.send("Page.reload", session=self.session, ignoreCache=True)
        self.wait("document.readyState !== 'loading' && window.beforeReload === undefined", what="the reloaded page")

    def eval(self, expression: str):
        """The value of a JavaScript expression in the page."""
        result = self.send("Runtime.evaluate", session=self.session, expression=expression, returnByValue=True)
        return result["result"].get("value")

    def wait(self, expression: str, timeout: float = 30.0, what: str = ""):
        """Poll an expression until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while not (value := self.eval(expression)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:g} s waiting for {what or expression}")
            time.sleep(0.1)
        return value

    def screenshot(self) -> bytes:
        return base64.b64decode(self.send("Page.captureScreenshot", session=self.session, format="png")["data"])

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close", timeout=5)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._out)
        os.close(self._in)
