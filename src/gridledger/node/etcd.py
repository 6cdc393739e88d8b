"""Local etcd clusters on loopback (Debian package ``etcd-server``), for tests, benchmarks and ``cluster up``.

Members use short Raft timings (heartbeat 50 ms, election 300 ms) so that a lost leader is replaced quickly; leases
can then be as short as about 0.5 s.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import etcd3gw

from gridledger.node.netutil import free_port, wait_port

HEARTBEAT_MS = 50
ELECTION_MS = 300


class EtcdUnavailable(RuntimeError):
    """The etcd binary is not installed (``apt-get install etcd-server``)."""


def etcd_binary() -> str:
    path = shutil.which("etcd") or ("/usr/bin/etcd" if os.path.exists("/usr/bin/etcd") else None)
    if path is None:
        raise EtcdUnavailable("etcd is not installed: apt-get install etcd-server (./dev services does it)")
    return path


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"


@dataclass
class EtcdCluster:
    """``size`` etcd members on 127.0.0.1 in ``base_dir`` (a temporary folder by default)."""

    size: int = 3
    base_dir: Path | None = None
    members: list[EtcdMember] = field(default_factory=list)
    _tmp: tempfile.TemporaryDirectory | None = None

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        binary = etcd_binary()
        if self.base_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="gridledger-etcd-")
            self.base_dir = Path(self._tmp.name)
        self.members = [
            EtcdMember(f"etcd{i}", free_port(), free_port(), self.base_dir / f"etcd{i}") for i in range(self.size)
        ]
        initial = ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in self.members)
        for m in self.members:
            m.data_dir.mkdir(parents=True, exist_ok=True)
            log = open(m.data_dir.with_suffix(".log"), "ab")  # noqa: SIM115 - owned by the process
            m.process = subprocess.Popen(
                [
                    binary,
                    f"--name={m.name}",
                    f"--data-dir={m.data_dir}",
                    f"--listen-client-urls={m.url}",
                    f"--advertise-client-urls={m.url}",
                    f"--listen-peer-urls=http://127.0.0.1:{m.peer_port}",
                    f"--initial-advertise-peer-urls=http://127.0.0.1:{m.peer_port}",
                    f"--initial-cluster={initial}",
                    "--initial-cluster-state=new",
                    f"--initial-cluster-token=gridledger-{os.getpid()}-{id(self)}",
                    f"--heartbeat-interval={HEARTBEAT_MS}",
                    f"--election-timeout={ELECTION_MS}",
                    "--log-level=error",
                ],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        for m in self.members:
            wait_port(m.client_port, timeout)
        self._wait_healthy(timeout)
        return self

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                client = self.client()
                client.put("/gridledger/health", "ok")
                return
            except Exception as e:  # noqa: BLE001 - any failure means "not ready yet"
                last = e
                time.sleep(0.1)
        raise TimeoutError(f"etcd cluster not healthy after {timeout:.0f} s: {last}")

    @property
    def endpoints(self) -> list[str]:
        return [m.url for m in self.members]

    def client(self, index: int = 0, timeout: float = 5.0) -> etcd3gw.Etcd3Client:
        return etcd3gw.client(host="127.0.0.1", port=self.members[index].client_port, timeout=timeout)

    def stop(self) -> None:
        for m in self.members:
            if m.process and m.process.poll() is None:
                os.killpg(m.process.pid, signal.SIGTERM)
        for m in self.members:
            if m.process:
                try:
                    m.process.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(m.process.pid, signal.SIGKILL)
                    m.process.wait()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
