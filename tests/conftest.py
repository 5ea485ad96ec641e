"""Shared fixtures: real configs on disk, the real app on a loopback port, a fake BigPanda.

Every fixture builds real parts (a YAML file, a SQLite queue, aiohttp servers)
and cleans up after itself; nothing is patched.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from forwarder.config import Config, load_config, parse_config
from forwarder.obs.logs import Redactor
from forwarder.web.app import create_app
from tests.fakes.bigpanda import FakeBigPanda
from tests.fakes.clock import FakeClock

# The real PostgreSQL server fixtures (``postgres_server``, ``postgres_dsn``), for every
# test that needs the shared-queue backend.
pytest_plugins = ("tests.pg.fixtures",)

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
TOKEN = "test-token-5f0c2b9e8d"
APP_KEY = "test-appkey-a1b2c3d4e5"

# A config with no credentials: dry-run, nothing leaves the process.
BASE_CONFIG = """
server:
  listen: 127.0.0.1:0
  shutdown_timeout: 2s
queue:
  path: queue.db
  synchronous: normal
batch:
  max_alerts: 100
  linger: 10ms
retry:
  initial: 50ms
  max: 1s
targets:
  bigpanda:
    kind: log
routes:
  - name: default
    target: bigpanda
"""


def example(name: str) -> bytes:
    """The bytes of a sample payload in ``examples/``."""
    return (EXAMPLES / name).read_bytes()


def write_config(directory: Path, text: str, name: str = "forwarder.yaml") -> Path:
    """Write a dedented config file and return its path."""
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def make_config(
    directory: Path, text: str = BASE_CONFIG, env: dict[str, str] | None = None
) -> Config:
    """Parse config text as if it lived in ``directory``."""
    return parse_config(textwrap.dedent(text), base_dir=directory, env=env or {})


def target_config(url: str, **extra: Any) -> str:
    """A config sending to a fake BigPanda at ``url`` with test credentials."""
    lines = "\n".join(f"    {k}: {v}" for k, v in extra.items())
    return f"""
server:
  listen: 127.0.0.1:0
  shutdown_timeout: 2s
queue:
  path: queue.db
  synchronous: normal
batch:
  max_alerts: 100
  linger: 20ms
retry:
  initial: 50ms
  max: 500ms
targets:
  bigpanda:
    kind: alerts_v2
    url: {url}
    token: {TOKEN}
    app_key: {APP_KEY}
    rate_limit: 1000
    burst: 1000
    timeout: 2s
    connect_timeout: 1s
{lines}
routes:
  - name: default
    target: bigpanda
"""


ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


# Fake seconds per real second for the in-process app: a 1 s Retry-After or
# backoff passes in 50 ms, and no test waits for real time to go by.
CLOCK_SPEED = 20.0


@pytest.fixture
async def clock() -> AsyncIterator[FakeClock]:
    """The app's clock: starts at the real time, then runs at ``CLOCK_SPEED``."""
    fake = FakeClock(time.time())
    async with fake.running(speed=CLOCK_SPEED):
        yield fake


@pytest.fixture
async def make_client(
    tmp_path: Path, clock: FakeClock
) -> AsyncIterator[Callable[..., Awaitable[TestClient[web.Request, web.Application]]]]:
    """Build the real app from config text, on the fake clock, and serve it on a loopback port."""
    clients: list[TestClient[web.Request, web.Application]] = []

    async def factory(
        text: str = BASE_CONFIG,
        *,
        registry: CollectorRegistry | None = None,
        dry_run: bool = False,
        redactor: Redactor | None = None,
        from_file: bool = False,
    ) -> TestClient[web.Request, web.Application]:
        # ``from_file`` writes tmp_path/forwarder.yaml and loads it, so the app can reload it.
        if from_file:
            config = load_config(write_config(tmp_path, text))
        else:
            config = make_config(tmp_path, text)
        app = create_app(
            config,
            registry=registry or CollectorRegistry(),
            dry_run=dry_run,
            clock=clock,
            redactor=redactor,
        )
        client: TestClient[web.Request, web.Application] = TestClient(
            TestServer(app, host="127.0.0.1")
        )
        await client.start_server()
        clients.append(client)
        return client

    yield factory
    for c in reversed(clients):
        await c.close()


@pytest.fixture
async def client(
    make_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
) -> TestClient[web.Request, web.Application]:
    """The real app on the dry-run base config."""
    return await make_client()


@pytest.fixture
async def fake_bigpanda() -> AsyncIterator[FakeBigPanda]:
    """A fake BigPanda enforcing the API contract, on a loopback port."""
    fake = FakeBigPanda(token=TOKEN, app_keys={APP_KEY})
    await fake.start()
    yield fake
    await fake.stop()


async def forwarder_cli(config: Path, *args: str) -> tuple[int, str]:
    """Run ``forwarder ARGS --config CONFIG`` as a subprocess, without blocking the event loop.

    Returns the exit code and stdout and stderr together.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "forwarder",
        *args,
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=str(config.parent),
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    """``forwarder run`` as a real subprocess, for crash, signal and reload tests."""

    def __init__(self, config_path: Path, port: int, log_path: Path) -> None:
        self.config_path = config_path
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{port}"

    def start(
        self, *extra: str, env: dict[str, str] | None = None, log_format: str | None = "json"
    ) -> None:
        """Start the daemon; ``env`` wins over the inherited environment (a test may set
        ``NOTIFY_SOCKET``), and ``log_format=None`` leaves the choice to the daemon."""
        log = self.log_path.open("ab")
        full_env = dict(os.environ)
        full_env.pop("NOTIFY_SOCKET", None)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "forwarder",
                "run",
                "--config",
                str(self.config_path),
                *(("--log-format", log_format) if log_format else ()),
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=str(self.config_path.parent),
        )
        log.close()

    async def wait_ready(self, timeout: float = 20.0) -> None:
        """Poll ``/-/ready`` until 200, with a deadline."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(
                        f"daemon exited with {self.proc.returncode}:\n{self.log()}"
                    )
                try:
                    async with session.get(f"{self.url}/-/ready") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await _pause(0.05)
        raise AssertionError(f"daemon not ready after {timeout}s:\n{self.log()}")

    def kill(self) -> None:
        """``kill -9``."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


async def _pause(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Callable[[str], Daemon]]:
    """Write a config and return a :class:`Daemon` for it (killed at teardown)."""
    daemons: list[Daemon] = []

    def factory(config_text: str) -> Daemon:
        port = free_port()
        text = textwrap.dedent(config_text).replace("127.0.0.1:0", f"127.0.0.1:{port}")
        path = write_config(tmp_path, text)
        d = Daemon(path, port, tmp_path / "daemon.log")
        daemons.append(d)
        return d

    yield factory
    for d in daemons:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(timeout=10)


# Two targets, two routes and flap damping on: the alert-state views of the
# admin API (tests/web/test_admin.py) and of ``forwarder alerts``
# (tests/cli/test_alerts.py) read the same store.
ALERT_STATE_CONFIG = f"""
queue:
  path: queue.db
  synchronous: normal
targets:
  bigpanda:
    kind: alerts_v2
    url: http://127.0.0.1:9/data/v2/alerts
    token: {TOKEN}
    app_key: {APP_KEY}
  other:
    kind: log
routes:
  - name: other
    target: other
    match:
      task: other
  - name: default
    target: bigpanda
state:
  flap:
    transitions: 2
    window: 10m
    hold: 5m
"""
