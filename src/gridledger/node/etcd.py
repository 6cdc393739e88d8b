"""Local etcd clusters on loopback (Debian package ``etcd-server``), for tests, benchmarks and ``cluster up``.

Members use short Raft timings (heartbeat 50 ms, election 300 ms) so that a lost leader is replaced quickly; leases
can then be as short as about 0.5 s.

Given a CA (:class:`gridledger.node.pki.LocalCA`), the cluster is secured: every member gets a certificate
(``etcd<i>``), client and peer URLs are ``https`` and both demand a client certificate signed by the CA
(``--client-cert-auth``, ``--peer-client-cert-auth``); the cluster's own client presents ``ADMIN_CERT``. Without
one (tests and benchmarks), it is plain HTTP with no authentication. ``enable_auth``, ``grant_prefix`` and
``delete_user`` drive etcd's access control (users with passwords, a role per user over one key prefix) through the
JSON gateway; ``authenticate`` logs a client in.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import etcd3gw
import requests
from etcd3gw import exceptions as etcd_errors

from gridledger.node.netutil import free_ports, wait_port
from gridledger.node.pki import LocalCA, TlsFiles

_json_dumps, _json_loads = json.dumps, json.loads  # ``LeanClient.post`` takes a parameter named ``json``
#: The exception etcd3gw raises for an HTTP status (others: ``Etcd3Exception``), as its ``post`` does.
_ERRORS_BY_STATUS = {
    500: etcd_errors.InternalServerError,
    503: etcd_errors.ConnectionFailedError,
    408: etcd_errors.ConnectionTimeoutError,
    504: etcd_errors.ConnectionTimeoutError,
    412: etcd_errors.PreconditionFailedError,
}

HEARTBEAT_MS = 50
ELECTION_MS = 300
#: The certificate name (etcd user) of the cluster's administrative client (``cluster up``'s setup and checks).
ADMIN_CERT = "root"


class EtcdUnavailable(RuntimeError):
    """The etcd binary is not installed (``apt-get install etcd-server``)."""


def etcd_binary() -> str:
    path = shutil.which("etcd") or ("/usr/bin/etcd" if os.path.exists("/usr/bin/etcd") else None)
    if path is None:
        raise EtcdUnavailable("etcd is not installed: apt-get install etcd-server (./dev services does it)")
    return path


class LeanClient(etcd3gw.Etcd3Client):
    """An etcd3gw client whose plain-HTTP requests go over one kept-alive ``http.client`` connection per thread: a
    request costs about a fifth of the CPU it costs through ``requests`` (proxy look-ups, header parsing). The
    ``Authorization`` header of ``session`` (``authenticate``) goes with every request; same answers and exceptions as
    etcd3gw's ``post``. Over ``https`` requests go through ``session`` as before: etcd answered a certificate without
    a user differently to ``http.client`` ("permission denied", not "user name is empty"), not yet understood."""

    def __init__(self, host: str, port: int, protocol: str, **options: Any) -> None:
        super().__init__(host=host, port=port, protocol=protocol, api_path="/v3/", **options)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: set[http.client.HTTPConnection] = set()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and conn.sock is not None and _readable(conn.sock):
            self._drop(conn)  # readable while idle: the member closed it (urllib3 makes the same check)
            conn = None
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._local.conn = conn
            with self._lock:
                self._connections.add(conn)
        return conn

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        self._local.conn = None
        with self._lock:
            self._connections.discard(conn)

    def post(self, url: str, *, json: Any = None, data: str | bytes | None = None) -> Any:
        """etcd3gw's request: ``json`` (an object) or ``data`` (its text, as ``transaction`` sends) to ``url``."""
        if self.protocol == "https":  # see the class docstring
            return super().post(url, json=json, data=data)
        body = _json_dumps(json) if data is None else data
        headers = {"Content-Type": "application/json"}
        if (token := self.session.headers.get("Authorization")) is not None:
            headers["Authorization"] = token
        conn = self._connection()
        try:
            conn.request("POST", urlsplit(url).path, body, headers)
            answer = conn.getresponse()
            body = answer.read()
        except TimeoutError as e:
            self._drop(conn)
            raise etcd_errors.ConnectionTimeoutError(str(e)) from None
        except (OSError, http.client.HTTPException) as e:
            self._drop(conn)
            raise etcd_errors.ConnectionFailedError(str(e) or type(e).__name__) from None
        if answer.status != 200:
            kind = _ERRORS_BY_STATUS.get(answer.status, etcd_errors.Etcd3Exception)
            raise kind(body.decode(errors="replace"), answer.reason)
        return _json_loads(body)

    def close(self) -> None:
        """Close every thread's connection (and the session)."""
        with self._lock:
            connections, self._connections = self._connections, set()
        for conn in connections:
            conn.close()
        self.session.close()


def _readable(sock) -> bool:
    """True if ``sock`` has something to read now (poll, not select: any descriptor number)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def etcd_client(
    url: str, tls: TlsFiles | None = None, timeout: float | None = None, user: tuple[str, str] | None = None
) -> LeanClient:
    """An etcd3gw client of the member at ``url`` (``http://`` or ``https://HOST:PORT``); over https it verifies the
    member against ``tls.ca`` and presents ``tls.cert`` (``ValueError`` for https without ``tls``). ``user``: (name,
    password) of an etcd user it logs in as (see ``authenticate``)."""
    scheme, _, rest = url.partition("://")
    host, _, port = rest.rstrip("/").rpartition(":")
    if scheme not in ("http", "https") or not host or not port.isdigit():
        raise ValueError(f"etcd URL {url!r}: expected http(s)://HOST:PORT")
    if scheme == "https" and tls is None:
        raise ValueError(f"etcd URL {url!r} is https: a CA and a client certificate are needed")
    session = requests.Session()
    session.trust_env = False  # etcd is reached directly; and $REQUESTS_CA_BUNDLE would replace our CA
    if scheme == "https":
        session.verify, session.cert = str(tls.ca), (str(tls.cert), str(tls.key))
    client = LeanClient(host, int(port), scheme, timeout=timeout, session=session)
    if user is not None:
        authenticate(client, user)
    return client


def authenticate(client: etcd3gw.Etcd3Client, user: tuple[str, str]) -> None:
    """Log ``client`` in as etcd user ``user`` = (name, password): the token etcd gives goes into every request's
    ``Authorization`` header (call again when etcd says the token is invalid, e.g. after a member restarted)."""
    client.session.headers.pop("Authorization", None)
    answer = client.post(client.get_url("/auth/authenticate"), json={"name": user[0], "password": user[1]})
    client.session.headers["Authorization"] = answer["token"]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def enable_auth(client: etcd3gw.Etcd3Client, root_password: str) -> None:
    """Turn on etcd's authentication with user ``root`` (role ``root``: everything) and log ``client`` in as root; a
    root user left by an earlier, interrupted call is reused."""
    if "root" not in auth_names(client, "user"):
        client.post(client.get_url("/auth/user/add"), json={"name": "root", "password": root_password})
    client.post(client.get_url("/auth/user/grant"), json={"user": "root", "role": "root"})
    client.post(client.get_url("/auth/enable"), json={})
    authenticate(client, ("root", root_password))


def auth_names(client: etcd3gw.Etcd3Client, what: str) -> set[str]:
    """The etcd users (``what="user"``) or roles (``"role"``) that exist (``client``: root, or access control off)."""
    answer = client.post(client.get_url(f"/auth/{what}/list"), json={})
    return set(answer.get(f"{what}s", []))


def delete_user(client: etcd3gw.Etcd3Client, user: str) -> None:
    """Delete etcd user ``user`` and its role (``client`` logged in as root): its password and tokens stop working."""
    client.post(client.get_url("/auth/user/delete"), json={"name": user})
    client.post(client.get_url("/auth/role/delete"), json={"role": user})


def grant_prefix(
    client: etcd3gw.Etcd3Client, user: str, password: str, prefix: str, have: tuple[set[str], set[str]] | None = None
) -> None:
    """Make etcd user ``user`` (``password``) with its own role ``user``, which may read and write the keys under
    ``prefix`` only (it must end with ``/``); ``client`` must be logged in as root. ``have``: the users and roles
    that exist already (``auth_names``): those are not made again."""
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    perm = {"key": _b64(prefix), "range_end": _b64(end), "permType": "READWRITE"}
    users, roles = have or (set(), set())
    if user not in roles:
        client.post(client.get_url("/auth/role/add"), json={"name": user})
    client.post(client.get_url("/auth/role/grant"), json={"name": user, "perm": perm})
    if user not in users:
        client.post(client.get_url("/auth/user/add"), json={"name": user, "password": password})
    client.post(client.get_url("/auth/user/grant"), json={"user": user, "role": user})


def wait_healthy(urls: list[str], tls: TlsFiles | None, timeout: float) -> None:
    """Wait until every member at ``urls`` answers a write (before access control is on); TimeoutError if not."""
    deadline = time.monotonic() + timeout
    for url in urls:
        while True:
            try:
                etcd_client(url, tls, timeout=2).put("/gridledger/health", "ok")
                break
            except Exception as e:  # noqa: BLE001 - any failure means "not ready yet"
                if time.monotonic() > deadline:
                    raise TimeoutError(f"etcd member {url} not healthy after {timeout:.0f} s: {e}") from None
                time.sleep(0.1)


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    process: subprocess.Popen | None = None
    tls: TlsFiles | None = None

    @property
    def scheme(self) -> str:
        return "http" if self.tls is None else "https"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.client_port}"

    def tls_flags(self) -> list[str]:
        """etcd's TLS options: certificates for both URLs, and client certificates demanded on both."""
        if self.tls is None:
            return []
        files = [f"--cert-file={self.tls.cert}", f"--key-file={self.tls.key}", f"--trusted-ca-file={self.tls.ca}"]
        peer = [f"--peer-cert-file={self.tls.cert}", f"--peer-key-file={self.tls.key}"]
        peer.append(f"--peer-trusted-ca-file={self.tls.ca}")
        return [*files, "--client-cert-auth", *peer, "--peer-client-cert-auth"]


@dataclass
class EtcdCluster:
    """``size`` etcd members on 127.0.0.1 in ``base_dir`` (a temporary folder by default); TLS with ``ca``."""

    size: int = 3
    base_dir: Path | None = None
    ca: LocalCA | None = None
    members: list[EtcdMember] = field(default_factory=list)
    _tmp: tempfile.TemporaryDirectory | None = None

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        binary = etcd_binary()
        if self.base_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="gridledger-etcd-")
            self.base_dir = Path(self._tmp.name)
        ports = iter(free_ports(2 * self.size))  # distinct: two picked alike would collide
        self.members = [
            EtcdMember(f"etcd{i}", next(ports), next(ports), self.base_dir / f"etcd{i}") for i in range(self.size)
        ]
        if self.ca is not None:
            for m in self.members:
                m.tls = self.ca.issue(m.name)
            self.ca.issue(ADMIN_CERT, common=False)  # a client of the JSON gateway: no common name (pki.issue)
        initial = ",".join(f"{m.name}={m.scheme}://127.0.0.1:{m.peer_port}" for m in self.members)
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
                    f"--listen-peer-urls={m.scheme}://127.0.0.1:{m.peer_port}",
                    f"--initial-advertise-peer-urls={m.scheme}://127.0.0.1:{m.peer_port}",
                    f"--initial-cluster={initial}",
                    "--initial-cluster-state=new",
                    f"--initial-cluster-token=gridledger-{os.getpid()}-{id(self)}",
                    f"--heartbeat-interval={HEARTBEAT_MS}",
                    f"--election-timeout={ELECTION_MS}",
                    "--log-level=error",
                    *m.tls_flags(),
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
        wait_healthy([self.members[0].url], None if self.ca is None else self.ca.files(ADMIN_CERT), timeout)

    @property
    def endpoints(self) -> list[str]:
        return [m.url for m in self.members]

    def client(self, index: int = 0, timeout: float = 5.0) -> etcd3gw.Etcd3Client:
        """A client of member ``index``: over TLS with the ``ADMIN_CERT`` certificate when the cluster has a CA."""
        return etcd_client(self.members[index].url, None if self.ca is None else self.ca.files(ADMIN_CERT), timeout)

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
