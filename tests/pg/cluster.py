"""A throwaway PostgreSQL server for the tests and the benchmarks.

:class:`Cluster` runs ``initdb`` and ``pg_ctl`` from the server binaries on
this machine (``/usr/lib/postgresql/<version>/bin``, or ``$PG_BINDIR``) in a
temporary directory, on a free loopback port, with password (SCRAM)
authentication so a wrong password fails as it would in production. PostgreSQL
refuses to run as root, so when the tests run as root the server runs as
``nobody``.

``FORWARDER_TEST_POSTGRES_DSN`` points the tests at an existing server instead
(its user needs ``CREATEDB``); then nothing is started, and :meth:`stop` and
:meth:`start` are not available for outage tests.

Missing binaries are an error that says how to install them, never a skip:
the PostgreSQL backend is tested on every machine that runs the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

T = TypeVar("T")

ENV_DSN: Final = "FORWARDER_TEST_POSTGRES_DSN"
INSTALL_HINT: Final = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin "
    "or $PG_BINDIR: install them (Debian/Ubuntu: apt-get install postgresql) or set "
    f"{ENV_DSN}=postgresql://user:password@host:port/db to use an existing server"
)
UNPRIVILEGED_USER: Final = "nobody"


def run_sync(fn: Callable[[], Awaitable[T]]) -> T:
    """Run an asyncpg coroutine to completion from synchronous code, even inside a running loop.

    On a thread of its own, with its own event loop, so a sync helper (a
    fixture, a row count in an async test) never blocks or nests the caller's loop.
    """

    async def main() -> T:
        return await fn()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, main()).result()


class ClusterError(RuntimeError):
    """The throwaway server could not be found or started."""


def find_bindir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``, newest version first."""
    env = os.environ.get("PG_BINDIR")
    candidates = [Path(env)] if env else []
    candidates += sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: _version_key(p.parent.name),
        reverse=True,
    )
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    raise ClusterError(INSTALL_HINT)


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(p) for p in name.split(".") if p.isdigit())


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Settings:
    """Server settings that matter for what is measured.

    ``fsync`` off makes the tests fast (a crash of the throwaway server is
    not under test); the benchmarks keep it on and ``synchronous_commit`` on,
    as a production server runs.
    """

    fsync: bool = False
    synchronous_commit: bool = True
    max_connections: int = 200


class Cluster:
    """One throwaway server: :meth:`start`, :meth:`dsn` per database, :meth:`stop`."""

    def __init__(self, settings: Settings = Settings(), *, use_env: bool = True) -> None:
        self.settings = settings
        self.password = secrets.token_hex(12)
        self.user = "forwarder_test"
        self.port = 0
        self._bindir: Path | None = None
        self._dir: Path | None = None
        # use_env=False: always a server of our own (outage tests stop and start it).
        self._external: str | None = (os.environ.get(ENV_DSN) or None) if use_env else None
        self._run_as: str | None = UNPRIVILEGED_USER if os.geteuid() == 0 else None

    @property
    def external(self) -> bool:
        """Whether this is a server the tests did not start (``FORWARDER_TEST_POSTGRES_DSN``)."""
        return self._external is not None

    @property
    def data_dir(self) -> Path:
        assert self._dir is not None, "cluster not created"
        return self._dir / "data"

    # ----------------------------------------------------------------- lifecycle

    def create(self) -> None:
        """``initdb`` a new cluster and start it (nothing to do for an external server)."""
        if self.external:
            return
        self._bindir = find_bindir()
        self._dir = Path(tempfile.mkdtemp(prefix="forwarder-pg-"))
        self._dir.chmod(0o755)
        pwfile = self._dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._run_as is not None:
            entry = pwd.getpwnam(self._run_as)
            os.chown(self._dir, entry.pw_uid, entry.pw_gid)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        self._pg(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            self.user,
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        pwfile.unlink()
        self.port = free_port()
        s = self.settings
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# forwarder test cluster\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self._dir}'\n"
                f"max_connections = {s.max_connections}\n"
                f"fsync = {'on' if s.fsync else 'off'}\n"
                f"synchronous_commit = {'on' if s.synchronous_commit else 'off'}\n"
                f"full_page_writes = {'on' if s.fsync else 'off'}\n"
                "shared_buffers = 64MB\n"
                "log_min_messages = warning\n"
            )
        self.start()

    def start(self) -> None:
        """Start (or restart after :meth:`stop`) the server and wait until it accepts."""
        self._own("start")
        self._pg(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.data_dir.parent / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate`` is a crash: no checkpoint, connections cut)."""
        self._own("stop")
        self._pg("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        """Stop the server if it runs and delete its directory."""
        if self._dir is None:
            return
        with contextlib.suppress(ClusterError):
            self.stop("immediate")
        shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None

    def _own(self, what: str) -> None:
        if self.external:
            raise ClusterError(f"cannot {what} the external server given by {ENV_DSN}")

    def _pg(self, program: str, *args: str) -> None:
        assert self._bindir is not None
        cmd: Sequence[str] = [str(self._bindir / program), *args]
        if self._run_as is not None:
            entry = pwd.getpwnam(self._run_as)
            cmd = [
                "setpriv",
                f"--reuid={entry.pw_uid}",
                f"--regid={entry.pw_gid}",
                "--clear-groups",
                *cmd,
            ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, cwd=self._dir, check=False, timeout=120
        )
        if proc.returncode != 0:
            log = self._dir / "server.log" if self._dir else None
            tail = log.read_text()[-2000:] if log is not None and log.exists() else ""
            raise ClusterError(
                f"{program} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}\n{tail}"
            )

    # ----------------------------------------------------------------- addresses

    def dsn(self, database: str = "postgres", *, password: str | None = None) -> str:
        """The DSN of ``database`` on this server (``password`` overrides the real one)."""
        if self._external is not None:
            parts = urlsplit(self._external)
            netloc = parts.netloc
            if password is not None and "@" in netloc:
                creds, host = netloc.rsplit("@", 1)
                netloc = f"{creds.split(':', 1)[0]}:{quote(password, safe='')}@{host}"
            return urlunsplit((parts.scheme, netloc, "/" + database, parts.query, ""))
        pw = quote(self.password if password is None else password, safe="")
        return f"postgresql://{self.user}:{pw}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database ``name`` and return its DSN."""
        admin = self.dsn(self.admin_database)

        async def create() -> None:
            conn = await asyncpg.connect(admin)
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        run_sync(create)
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, ending its sessions."""
        admin = self.dsn(self.admin_database)

        async def drop() -> None:
            conn = await asyncpg.connect(admin)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()

        run_sync(drop)

    @property
    def admin_database(self) -> str:
        """The database to connect to for ``CREATE DATABASE``."""
        if self._external is not None:
            return urlsplit(self._external).path.lstrip("/") or "postgres"
        return "postgres"
