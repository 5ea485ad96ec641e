"""The alert-state scheduler on a real SQLite store, driven by a fake clock.

Alerts are made by the real pipeline from a Kapacitor example under a config
with ``resolve_after: 1m``; the scheduler runs as the daemon runs it, and the
tests move the clock and wait (with a deadline) for its passes.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog
from prometheus_client import CollectorRegistry

from forwarder import jsonio
from forwarder.config import QueueConfig
from forwarder.model import Outgoing
from forwarder.obs.metrics import Metrics
from forwarder.pipeline import Pipeline
from forwarder.queue.contract import AlertCounts, AlertFilter, AlertStates, TickResult
from forwarder.queue.errors import QueueUnavailable
from forwarder.queue.sqlite import SQLiteQueue
from forwarder.state import AlertView
from forwarder.state.scheduler import AlertScheduler
from tests.conftest import APP_KEY, TOKEN, example, make_config, target_config
from tests.fakes.clock import FakeClock

CONFIG = target_config("http://127.0.0.1:9/data/v2/alerts") + "state:\n  resolve_after: 1m\n"
TARGET = {"target": "bigpanda"}


def alert(tmp_path: Path, check: str, level: str = "CRITICAL") -> Outgoing:
    """The queue item (with its state observation) the pipeline makes of a Kapacitor alert."""
    body: dict[str, Any] = json.loads(example("kapacitor-alert-critical.json"))
    body.update(id=check, level=level)
    (item,) = Pipeline(make_config(tmp_path, CONFIG)).process("kapacitor", body).items
    assert item.state is not None
    return item


@pytest.fixture
def clock() -> FakeClock:
    """A stopped fake clock: time moves only when the test moves it."""
    return FakeClock(1_700_000_000.0)


@pytest.fixture
async def queue(tmp_path: Path, clock: FakeClock) -> AsyncIterator[SQLiteQueue]:
    """A real SQLite queue on the fake clock."""
    q = SQLiteQueue(QueueConfig(path=tmp_path / "queue.db", synchronous="normal"), clock=clock)
    await q.open()
    yield q
    await q.close()


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for ``condition`` with a deadline (polling: the pass runs in the store's thread)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.005)


async def step(clock: FakeClock, scheduler: AlertScheduler, seconds: float) -> None:
    """Move the clock by ``seconds`` and wait for the scheduler's next pass to end."""
    passes = scheduler.passes
    clock.advance(seconds)
    await until(lambda: scheduler.passes > passes)
    await until(lambda: clock.sleepers == 1)  # asleep again: the pass is fully done


def queued(path: Path) -> list[dict[str, Any]]:
    """The alerts waiting in the queue file, oldest first, read as another process would."""
    with sqlite3.connect(path / "queue.db") as conn:
        rows = conn.execute("SELECT payload FROM queue ORDER BY id").fetchall()
    return [jsonio.loads(payload) for (payload,) in rows]


async def test_a_silent_identity_is_resolved_once_and_counted(
    tmp_path: Path, queue: SQLiteQueue, clock: FakeClock
) -> None:
    """A ``critical`` identity unseen for ``resolve_after`` gets exactly one ``ok`` queued
    (its last alert, ``resolved_by: forwarder``), one info line without the app key, and
    ``forwarder_alerts_auto_resolved_total`` 1; a fresh identity is left alone."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.init_target("bigpanda")
    scheduler = AlertScheduler(queue.alerts, metrics, clock)
    assert (await queue.put([alert(tmp_path, "cpu-high")])).queued == 1
    with structlog.testing.capture_logs() as logs:
        scheduler.start()
        try:
            await until(lambda: scheduler.passes == 1 and clock.sleepers == 1)
            await step(clock, scheduler, 30)
            assert (await queue.put([alert(tmp_path, "disk-full")])).queued == 1  # seen at 30 s
            await step(clock, scheduler, 29)
            assert [a["check"] for a in queued(tmp_path)] == ["cpu-high", "disk-full"]
            await step(clock, scheduler, 1)  # cpu-high unseen for 60 s
            await step(clock, scheduler, 10)
            for _ in range(10):  # and nothing more, however often it looks
                await step(clock, scheduler, 1)
        finally:
            await scheduler.stop()
    alerts = queued(tmp_path)
    assert [(a["check"], a["status"]) for a in alerts] == [
        ("cpu-high", "critical"),
        ("disk-full", "critical"),
        ("cpu-high", "ok"),
    ]
    resolve = alerts[2]
    assert resolve["resolved_by"] == "forwarder"
    assert resolve["host"] == alerts[0]["host"]
    assert resolve["timestamp"] == 1_700_000_060
    assert registry.get_sample_value("forwarder_alerts_auto_resolved_total", TARGET) == 1
    assert registry.get_sample_value("forwarder_alerts_flap_released_total", TARGET) == 0
    lines = [e for e in logs if e["event"] == "alert_auto_resolved"]
    assert lines == [
        {
            "event": "alert_auto_resolved",
            "log_level": "info",
            "target": "bigpanda",
            "check": "cpu-high",
        }
    ]
    assert all(APP_KEY not in repr(e) and TOKEN not in repr(e) for e in logs)
    firing = [v.check for v in await queue.alerts.list(status="firing")]
    assert firing == ["disk-full"]
    assert scheduler.passes >= 15


class FlakyStates:
    """The real store, whose ``tick`` fails ``failures`` times first (a database outage)."""

    def __init__(self, real: AlertStates, failures: int) -> None:
        self.real = real
        self.failures = failures

    async def list(
        self, *, status: AlertFilter | None = None, target: str | None = None, limit: int = 100
    ) -> list[AlertView]:
        return await self.real.list(status=status, target=target, limit=limit)

    async def counts(self) -> AlertCounts:
        return await self.real.counts()

    async def tick(self, *, limit: int = 1000) -> TickResult:
        if self.failures:
            self.failures -= 1
            raise QueueUnavailable("could not reach postgres://forwarder:hunter2@db/forwarder")
        return await self.real.tick(limit=limit)


async def test_store_errors_are_logged_and_retried_with_a_growing_pause(
    tmp_path: Path, queue: SQLiteQueue, clock: FakeClock
) -> None:
    """Two failed passes: two warnings (password masked) with pauses of 1 s then 2 s;
    the scheduler goes on, and does the due work once the store answers again."""
    registry = CollectorRegistry()
    flaky = FlakyStates(queue.alerts, failures=2)
    scheduler = AlertScheduler(flaky, Metrics(registry), clock)
    await queue.put([alert(tmp_path, "cpu-high")])
    clock.advance(120)  # already due when the scheduler starts
    with structlog.testing.capture_logs() as logs:
        scheduler.start()
        try:
            await until(lambda: scheduler.passes == 1 and clock.sleepers == 1)
            await step(clock, scheduler, 1)
            assert flaky.failures == 0
            await step(clock, scheduler, 2)
        finally:
            await scheduler.stop()
    failed = [e for e in logs if e["event"] == "alert_scheduler_failed"]
    assert [(e["log_level"], e["retry_in"]) for e in failed] == [("warning", 1.0), ("warning", 2.0)]
    assert all("hunter2" not in e["error"] and "QueueUnavailable" in e["error"] for e in failed)
    assert any(e["event"] == "alert_scheduler_recovered" for e in logs)
    assert registry.get_sample_value("forwarder_alerts_auto_resolved_total", TARGET) == 1
    assert [a["status"] for a in queued(tmp_path)] == ["critical", "ok"]


class BlockingStates(FlakyStates):
    """The real store, whose ``tick`` waits for the test to let it finish."""

    def __init__(self, real: AlertStates) -> None:
        super().__init__(real, 0)
        self.entered = asyncio.Event()
        self.proceed = asyncio.Event()
        self.finished = False

    async def tick(self, *, limit: int = 1000) -> TickResult:
        self.entered.set()
        await self.proceed.wait()
        result = await self.real.tick(limit=limit)
        self.finished = True
        return result


async def test_stop_lets_a_running_pass_finish(queue: SQLiteQueue, clock: FakeClock) -> None:
    """``stop()`` during a pass waits for it to commit rather than cancel it mid-way."""
    blocking = BlockingStates(queue.alerts)
    scheduler = AlertScheduler(blocking, Metrics(CollectorRegistry()), clock)
    scheduler.start()
    await asyncio.wait_for(blocking.entered.wait(), 10)
    stopping = asyncio.create_task(scheduler.stop())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not stopping.done()
    blocking.proceed.set()
    await asyncio.wait_for(stopping, 10)
    assert blocking.finished
    assert clock.sleepers == 0  # it did not go back to sleep


async def test_stop_while_waiting_is_immediate(queue: SQLiteQueue, clock: FakeClock) -> None:
    """Between passes the scheduler sleeps on the clock; ``stop()`` does not wait for it."""
    scheduler = AlertScheduler(queue.alerts, Metrics(CollectorRegistry()), clock)
    scheduler.start()
    await until(lambda: scheduler.passes == 1 and clock.sleepers == 1)
    await asyncio.wait_for(scheduler.stop(), 10)
    assert clock.sleepers == 0
