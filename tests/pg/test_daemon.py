"""``forwarder run`` on a PostgreSQL queue, as a subprocess: what operators see when it fails.

- The database goes down mid-run: ingest answers 503 with ``Retry-After``
  and ``/-/ready`` 503 with the reason. When it comes back, both recover
  without a restart, and the alerts acknowledged before and after are
  delivered.
- The database is down at start-up: the daemon waits for it and becomes
  ready once it is up.
- A wrong password: the daemon exits 1 with one line that names the
  database and never shows the password.
- ``forwarder dlq`` with the daemon's config lists and replays the dead
  letters in the shared database.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Daemon, forwarder_cli, free_port, write_config
from tests.fakes.bigpanda import FakeBigPanda, FaultPlan
from tests.pg.cluster import Cluster
from tests.pg.fixtures import own_cluster
from tests.pg.replica import alert, replica_config


@pytest.fixture
def server() -> Iterator[Cluster]:
    """A PostgreSQL server this test may stop and start."""
    yield from own_cluster()


def daemon_on(server: Cluster, fake: FakeBigPanda, tmp_path: Path, *, dsn: str = "") -> Daemon:
    port = free_port()
    text = replica_config(fake.alerts_url, dsn or server.dsn(), port)
    return Daemon(write_config(tmp_path, text), port, tmp_path / "daemon.log")


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as resp:
        return resp.status, await resp.text()


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, str | None]:
    async with session.post(url, data=body) as resp:
        await resp.read()
        return resp.status, resp.headers.get("Retry-After")


async def test_database_down_mid_run_is_503_then_recovers(
    server: Cluster, fake_bigpanda: FakeBigPanda, tmp_path: Path
) -> None:
    """No 200 without a commit while the database is away; readiness says why; both come back."""
    daemon = daemon_on(server, fake_bigpanda, tmp_path)
    daemon.start()
    try:
        await daemon.wait_ready(timeout=60)
        async with aiohttp.ClientSession() as s:
            url = f"{daemon.url}/kapacitor/down"
            assert (await post(s, url, alert(1, 0)))[0] == 200
            await asyncio.to_thread(server.stop, "immediate")
            try:
                status, retry_after = await post(s, url, alert(2, 0))
                assert status == 503
                assert retry_after is not None
                assert int(retry_after) > 0
                deadline = time.monotonic() + 20
                while (ready := await get(s, f"{daemon.url}/-/ready"))[0] != 503:
                    assert time.monotonic() < deadline, "readiness never noticed the outage"
                    await asyncio.sleep(0.1)
                assert "queue database" in ready[1]
                assert server.password not in ready[1]
            finally:
                await asyncio.to_thread(server.start)
            deadline = time.monotonic() + 30
            while (await post(s, url, alert(3, 0)))[0] != 200:
                assert time.monotonic() < deadline, "ingest did not recover"
                await asyncio.sleep(0.2)
            await daemon.wait_ready(timeout=30)
        await fake_bigpanda.wait_for(
            lambda f: {"chaos-00001", "chaos-00003"} <= {r.alert.get("check") for r in f.received},
            timeout=30,
        )
        assert server.password not in daemon.log()
    finally:
        daemon.kill()


async def test_database_down_at_start_up_is_waited_for(
    server: Cluster, fake_bigpanda: FakeBigPanda, tmp_path: Path
) -> None:
    """Started before its database, the daemon keeps trying and becomes ready once it is up."""
    daemon = daemon_on(server, fake_bigpanda, tmp_path)
    server.stop()
    try:
        daemon.start()
        await asyncio.sleep(1.0)  # the daemon is retrying now; it must not have given up
        assert daemon.proc is not None
        assert daemon.proc.poll() is None, daemon.log()
    finally:
        server.start()
    try:
        await daemon.wait_ready(timeout=60)
    finally:
        daemon.kill()


async def test_a_wrong_password_exits_with_one_line_without_it(
    server: Cluster, fake_bigpanda: FakeBigPanda, tmp_path: Path
) -> None:
    """A refused login stops the daemon at once: exit 1, one line, no password."""
    dsn = server.dsn(password="Daemon-wr0ng-pw")
    port = free_port()
    path = write_config(tmp_path, replica_config(fake_bigpanda.alerts_url, dsn, port))
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "forwarder", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    errors = [ln for ln in done.stderr.splitlines() if "error" in ln]
    assert len(errors) == 1, done.stderr
    assert "password authentication failed" in errors[0]
    assert "Daemon-wr0ng-pw" not in done.stdout + done.stderr
    assert json.dumps(dsn) not in done.stderr


async def test_dead_letter_commands_work_beside_running_replicas(
    server: Cluster, fake_bigpanda: FakeBigPanda, tmp_path: Path
) -> None:
    """``forwarder dlq list`` and ``replay`` with the daemon's config, on the shared database."""
    fake_bigpanda.set_faults(FaultPlan(refuse_checks=frozenset({"chaos-00007"})))
    daemon = daemon_on(server, fake_bigpanda, tmp_path)
    daemon.start()
    try:
        await daemon.wait_ready(timeout=60)
        async with aiohttp.ClientSession() as s:
            assert (await post(s, f"{daemon.url}/kapacitor/dlq", alert(7, 0)))[0] == 200
        code, out = await forwarder_cli(daemon.config_path, "dlq", "list")
        deadline = time.monotonic() + 30
        while "chaos-00007" not in out:
            assert time.monotonic() < deadline, out
            await asyncio.sleep(0.2)
            code, out = await forwarder_cli(daemon.config_path, "dlq", "list")
        assert code == 0
        assert "clientError" in out
        assert server.password not in out
        fake_bigpanda.set_faults(FaultPlan())
        code, out = await forwarder_cli(daemon.config_path, "dlq", "replay", "--all")
        assert (code, "replayed 1 dead letter" in out) == (0, True), out
        await fake_bigpanda.wait_for(
            lambda f: any(r.alert.get("check") == "chaos-00007" for r in f.received), timeout=30
        )
    finally:
        daemon.kill()
