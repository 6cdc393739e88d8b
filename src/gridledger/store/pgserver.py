"""A throwaway PostgreSQL cluster on loopback, for the tests, the benchmarks and trying gridledger on it.

It uses the server binaries of Debian's ``postgresql`` package (``/usr/lib/postgresql/<version>/bin``, the
newest version found; or ``$GRIDLEDGER_PG_BIN``; or ``pg_ctl`` on ``PATH``). The cluster lives in one folder
(``data/``, ``socket/``, ``server.log``), listens on 127.0.0.1 only, on a free port, and trusts every
loopback connection (it is a throwaway: never keep data you care about in it). PostgreSQL refuses to run as
root, so as root the folder is handed to the ``postgres`` system user and the server runs as that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

SYSTEM_USER = "postgres"
SUPERUSER = "postgres"
START_TIMEOUT_S = 60


class PgServerError(Exception):
    """The throwaway server could not be set up, started or stopped."""


def find_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or None when PostgreSQL is not installed."""
    env = os.environ.get("GRIDLEDGER_PG_BIN")
    candidates = [Path(env)] if env else []

    def version(p: str) -> tuple[int, ...]:
        v = Path(p).parent.name
        return tuple(int(x) for x in v.split(".") if x.isdigit())

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)]
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    for d in candidates:
        if (d / "initdb").is_file() and (d / "pg_ctl").is_file():
            return d
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgServer:
    """One running (or stopped) throwaway cluster in ``base``."""

    base: Path
    port: int
    bindir: Path

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log(self) -> Path:
        return self.base / "server.log"

    def url(self, dbname: str = "postgres") -> str:
        """The connection URL of database ``dbname`` (trust authentication: no password)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    # ----------------------------------------------------------------- life cycle
    @classmethod
    def start(cls, base: Path | None = None, *, port: int | None = None) -> PgServer:
        """Create a cluster in ``base`` (default: a new folder in the system temp dir) and start it.

        ``base`` must not hold a cluster yet. Raises ``PgServerError`` with the server's message on failure.
        """
        bindir = find_bindir()
        if bindir is None:
            raise PgServerError(
                "PostgreSQL server binaries not found (apt-get install postgresql, or set GRIDLEDGER_PG_BIN)"
            )
        if base is None:
            made, base = True, Path(tempfile.mkdtemp(prefix="gridledger-pg-"))
        else:
            made, base = not base.exists(), base.absolute()
            if (base / "data").exists():
                raise PgServerError(f"{base} already holds a cluster; stop it or choose another folder")
            base.mkdir(parents=True, exist_ok=True)
        server = cls(base, port or free_port(), bindir)
        try:
            server._init()
            for attempt in range(3):
                server._configure()
                try:
                    server._run("pg_ctl", "-D", str(server.data), "-l", str(server.log), "-w", "start")
                    return server
                except PgServerError:
                    if attempt == 2 or port is not None or "could not bind" not in server.log_tail():
                        raise
                    server.port = free_port()
        except BaseException:
            if made:
                shutil.rmtree(base, ignore_errors=True)
            raise

    def _init(self) -> None:
        (self.base / "socket").mkdir(exist_ok=True)
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam(SYSTEM_USER)
            except KeyError:
                raise PgServerError(
                    f"running as root needs the '{SYSTEM_USER}' system user (Debian's package creates it)"
                ) from None
            for p in (self.base, self.base / "socket"):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        args = (
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        try:
            self._run("initdb", *args)
        except PgServerError as e:
            if os.geteuid() == 0 and "Permission denied" in str(e):
                raise PgServerError(
                    f"{e} (as root the server runs as the '{SYSTEM_USER}' user, who cannot reach "
                    f"{self.base}: choose a folder under /tmp)"
                ) from None
            raise

    def _configure(self) -> None:
        # The last occurrence of a setting wins, so a retry on another port simply appends again.
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.base / 'socket'}'\n"
            )

    def stop(self, *, remove: bool = True) -> None:
        """Stop the server (fast shutdown) and, with ``remove``, delete the cluster's folder."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        if remove:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PgServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @classmethod
    def attach(cls, base: Path) -> PgServer:
        """The cluster ``start`` made in ``base`` (running or not), e.g. to stop it from another process."""
        conf = base.absolute() / "data" / "postgresql.conf"
        if not conf.is_file():
            raise PgServerError(f"no cluster in {base}")
        ports = [
            ln.split("=", 1)[1].strip() for ln in conf.read_text().splitlines() if ln.startswith("port = ")
        ]
        bindir = find_bindir()
        if not ports or bindir is None:
            raise PgServerError(f"cannot tell the port or find the binaries of the cluster in {base}")
        return cls(base.absolute(), int(ports[-1]), bindir)

    # ----------------------------------------------------------------- databases
    def create_database(self, name: str) -> str:
        """Create an empty database ``name``; return its URL."""
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, closing any connection still open to it."""
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    # ----------------------------------------------------------------- helpers
    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _run(self, tool: str, *args: str) -> None:
        as_postgres = (
            {"user": SYSTEM_USER, "group": SYSTEM_USER, "extra_groups": []} if os.geteuid() == 0 else {}
        )
        try:
            res = subprocess.run(
                [str(self.bindir / tool), *args, *(("-t", str(START_TIMEOUT_S)) if tool == "pg_ctl" else ())],
                cwd=self.base,
                capture_output=True,
                text=True,
                timeout=START_TIMEOUT_S + 30,
                **as_postgres,
            )
        except (OSError, subprocess.SubprocessError) as e:
            raise PgServerError(f"{tool} failed: {e}") from None
        if res.returncode != 0:
            detail = " ".join((res.stderr or res.stdout).split())
            log = self.log_tail(5)
            raise PgServerError(
                f"{tool} failed (exit {res.returncode}): {detail}" + (f"\n{log}" if log else "")
            )
