"""Crash and graceful stop of ``forwarder run`` as a real subprocess, on a real queue file.

The daemon is killed with SIGKILL in the middle of a burst and restarted on the
same queue: every alert it answered 200 for must reach the fake BigPanda
(at-least-once). SIGTERM must exit 0 and leave undelivered alerts queued.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.conftest import Daemon, example, target_config
from tests.fakes.bigpanda import FakeBigPanda, FaultPlan

DaemonFactory = Callable[[str], Daemon]


def daemon_config(url: str, *, synchronous: str = "full", timeout: str = "2s") -> str:
    """A daemon config for the fake at ``url``, with the shipping durability level by default."""
    doc = yaml.safe_load(target_config(url, max_in_flight=4))
    doc["targets"]["bigpanda"]["timeout"] = timeout
    doc["queue"]["synchronous"] = synchronous
    doc["queue"]["lease_timeout"] = "30s"
    return yaml.safe_dump(doc, sort_keys=False)


def alert_body(check: str) -> bytes:
    """A real Kapacitor alert body (``examples/``) with its own id."""
    body: dict[str, Any] = json.loads(example("kapacitor-alert-critical.json"))
    body["id"] = check
    return json.dumps(body).encode()


def queue_rows(path: Path) -> int:
    """Alerts in the queue file, read the way another process would."""
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM queue").fetchone()[0])


async def post_burst(
    url: str,
    checks: list[str],
    *,
    concurrency: int,
    acked: list[str],
    milestone: tuple[int, asyncio.Event] | None = None,
) -> dict[str, int]:
    """POST one alert per check concurrently; append each check answered 200 to ``acked``.

    ``milestone=(n, event)`` sets ``event`` once ``n`` alerts are acknowledged.
    Returns how the requests ended (``"200"``, other statuses, or the exception name).
    """
    outcomes: dict[str, int] = {}
    gate = asyncio.Semaphore(concurrency)
    headers = {"Content-Type": "application/json"}

    async def one(session: aiohttp.ClientSession, check: str) -> None:
        async with gate:
            try:
                async with session.post(
                    f"{url}/kapacitor", data=alert_body(check), headers=headers
                ) as r:
                    await r.read()
                    key = str(r.status)
                    if r.status == 200:
                        acked.append(check)
                        if milestone is not None and len(acked) >= milestone[0]:
                            milestone[1].set()
            except (aiohttp.ClientError, OSError) as exc:
                key = type(exc).__name__
        outcomes[key] = outcomes.get(key, 0) + 1

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(session, c) for c in checks))
    return outcomes


async def test_every_acknowledged_alert_arrives_after_kill_9(
    daemon_factory: DaemonFactory, fake_bigpanda: FakeBigPanda
) -> None:
    """``kill -9`` mid-burst, then a restart on the same queue: every alert answered 200 arrives."""
    fake = fake_bigpanda
    # Slow, flaky delivery, so acknowledged alerts are still queued when the kill comes.
    fake.set_faults(FaultPlan(p_503=0.3, latency=0.25))
    daemon = daemon_factory(daemon_config(fake.alerts_url))
    daemon.start()
    await daemon.wait_ready()

    checks = [f"crash-{i}" for i in range(3000)]
    acked: list[str] = []
    reached = asyncio.Event()
    burst = asyncio.create_task(
        post_burst(daemon.url, checks, concurrency=32, acked=acked, milestone=(600, reached))
    )
    await asyncio.wait_for(reached.wait(), timeout=60)
    await asyncio.to_thread(daemon.kill)
    outcomes = await burst
    acked_at_kill = len(acked)
    delivered_before = len(set(fake.checks()) & set(acked))
    assert acked_at_kill < len(checks), f"the burst ended before the kill: {outcomes}"
    assert acked_at_kill >= 600

    fake.set_faults(FaultPlan())
    daemon.start()
    await daemon.wait_ready()
    await fake.wait_for(lambda f: set(acked) <= set(f.checks()), timeout=60)

    received = fake.checks()
    print(
        f"\ncrash: {acked_at_kill} acknowledged before kill -9 ({outcomes});"
        f" {delivered_before} of them delivered before the kill, the rest after the restart;"
        f" received {len(received)} alerts, {len(received) - len(set(received))} duplicates"
    )
    assert "queue_opened" in daemon.log()


async def test_sigterm_exits_0_and_leaves_undelivered_alerts_queued(
    daemon_factory: DaemonFactory, fake_bigpanda: FakeBigPanda, tmp_path: Path
) -> None:
    """SIGTERM with BigPanda down exits 0, keeps every alert queued, and a restart sends them."""
    fake = fake_bigpanda
    await fake.stop_listening()
    daemon = daemon_factory(daemon_config(fake.alerts_url))
    daemon.start()
    await daemon.wait_ready()

    checks = [f"term-{i}" for i in range(200)]
    acked: list[str] = []
    outcomes = await post_burst(daemon.url, checks, concurrency=16, acked=acked)
    assert outcomes == {"200": 200}

    assert await asyncio.to_thread(daemon.terminate) == 0
    assert '"stopped"' in daemon.log()
    assert queue_rows(tmp_path / "queue.db") == 200

    await fake.start_listening()
    daemon.start()
    await daemon.wait_ready()
    await fake.wait_for(lambda f: set(checks) <= set(f.checks()), timeout=30)

    async def drained() -> bool:
        return queue_rows(tmp_path / "queue.db") == 0

    deadline = asyncio.get_running_loop().time() + 10
    while not await drained():
        assert asyncio.get_running_loop().time() < deadline, "queue not drained after delivery"
        await asyncio.sleep(0.05)
    assert await asyncio.to_thread(daemon.terminate) == 0


async def test_sigterm_during_a_hung_request_exits_0_within_the_drain_bound(
    daemon_factory: DaemonFactory, fake_bigpanda: FakeBigPanda, tmp_path: Path
) -> None:
    """A request BigPanda never answers is abandoned after ``shutdown_timeout``; its alerts stay."""
    fake = fake_bigpanda
    fake.set_faults(FaultPlan(hang=True))
    # The request timeout (60 s) is far beyond the drain bound (shutdown_timeout: 2s).
    daemon = daemon_factory(daemon_config(fake.alerts_url, timeout="60s"))
    daemon.start()
    await daemon.wait_ready()
    checks = [f"hung-{i}" for i in range(20)]
    acked: list[str] = []
    assert await post_burst(daemon.url, checks, concurrency=8, acked=acked) == {"200": 20}
    await fake.wait_for(lambda f: any(r.fault == "hang" for r in f.requests), timeout=10)

    # terminate() waits at most 20 s: far less than the hung request's 60 s timeout.
    assert await asyncio.to_thread(daemon.terminate) == 0
    assert queue_rows(tmp_path / "queue.db") == 20

    fake.set_faults(FaultPlan())
    daemon.start()
    await daemon.wait_ready()
    await fake.wait_for(lambda f: set(checks) <= set(f.checks()), timeout=30)


def run_once(config: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``forwarder run`` that is expected to exit by itself (it could not start)."""
    return subprocess.run(
        [sys.executable, "-m", "forwarder", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=str(config.parent),
        timeout=timeout,
        check=False,
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The ``forwarder: error:`` lines of a run; there must be no traceback."""
    out = result.stdout + result.stderr
    assert "Traceback" not in out, out
    return [line for line in out.splitlines() if line.startswith("forwarder: error: ")]


async def test_second_daemon_on_the_same_queue_says_who_holds_it_in_one_line(
    daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    """A second ``forwarder run`` on a queue file a running daemon owns exits 1 with one
    error line naming the file and the other daemon's PID."""
    first = daemon_factory(daemon_config("http://127.0.0.1:9/unused"))
    first.start()
    await first.wait_ready()
    assert first.proc is not None
    second_config = tmp_path / "second.yaml"
    second_config.write_text(first.config_path.read_text().replace(str(first.port), "0"))

    result = await asyncio.to_thread(run_once, second_config)
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = error_lines(result)
    assert "queue.db" in line
    assert str(first.proc.pid) in line
    assert await asyncio.to_thread(first.terminate) == 0


def unopenable_dir(path: Path) -> None:
    path.mkdir()


def unopenable_garbage(path: Path) -> None:
    path.write_bytes(b"not a database, and never was\n" * 200)


@pytest.mark.parametrize(
    "spoil", [unopenable_dir, unopenable_garbage], ids=["directory-in-place", "not-a-database"]
)
def test_queue_that_cannot_be_opened_is_one_line_and_left_alone(
    tmp_path: Path, spoil: Callable[[Path], None]
) -> None:
    """``run`` on a queue path that holds a directory or a non-database file exits 1 with one
    line naming the path, and leaves what is there untouched."""
    config = tmp_path / "forwarder.yaml"
    config.write_text(daemon_config("http://127.0.0.1:9/unused"))
    queue = tmp_path / "queue.db"
    spoil(queue)
    before = queue.read_bytes() if queue.is_file() else None

    result = run_once(config)
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = error_lines(result)
    assert str(queue) in line or "queue.db" in line
    assert (queue.read_bytes() if queue.is_file() else None) == before
    assert queue.exists()
