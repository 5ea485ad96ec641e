"""Chaos soak: many alerts through a faulty BigPanda while the daemon is killed and restarted."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, deque
from collections.abc import Callable

import aiohttp
import pytest

from tests.conftest import Daemon
from tests.fakes.bigpanda import FakeBigPanda, FaultPlan
from tests.reliability.conftest import (
    Arrivals,
    check_name,
    daemon_config,
    kapacitor_alert,
    post,
    wait_until,
)

pytestmark = pytest.mark.reliability

N_ALERTS = 20_000
CLIENTS = 16
SEED = 20_240_605
PREFIX = "soak"
INGEST_TIMEOUT = 300.0
DRAIN_TIMEOUT = 300.0


async def test_chaos_soak_loses_no_acknowledged_alert(
    fake_bigpanda: FakeBigPanda, daemon_factory: Callable[[str], Daemon]
) -> None:
    """Every alert answered 200 reaches BigPanda through 503s, 429s, resets and two kill -9s."""
    rng = random.Random(SEED)
    fake_bigpanda.set_faults(
        FaultPlan(p_503=0.20, p_429=0.10, retry_after="1", p_reset=0.05, latency_jitter=0.2)
    )
    daemon = daemon_factory(
        daemon_config(
            fake_bigpanda.alerts_url,
            synchronous="full",
            max_in_flight=8,
            max_alerts=100,
            linger="50ms",
            retry_initial="50ms",
            retry_max="1s",
        )
    )
    daemon.start()
    await daemon.wait_ready()
    arrivals = Arrivals(fake_bigpanda)

    # Two kill moments drawn from the seed: one while ingesting (by alerts acknowledged),
    # one later in the run (by alerts delivered), so both phases are hit.
    kill_after_acked = int(N_ALERTS * rng.uniform(0.2, 0.5))
    kill_after_delivered = int(N_ALERTS * rng.uniform(0.55, 0.85))
    kills: list[str] = []

    pending: deque[int] = deque(range(N_ALERTS))
    acked: set[str] = set()
    statuses: Counter[str] = Counter()
    started = time.monotonic()

    async def client(session: aiohttp.ClientSession) -> None:
        url = f"{daemon.url}/kapacitor/soak"
        while pending:
            seq = pending.popleft()
            status = await post(session, url, kapacitor_alert(PREFIX, seq))
            statuses[str(status)] += 1
            if status == 200:
                acked.add(check_name(PREFIX, seq))
            else:
                # Not acknowledged (daemon dead or refusing): post it again later, as a
                # retrying sender would; only 200-acknowledged alerts are promised.
                pending.append(seq)
                await asyncio.sleep(0.05)

    async def kill_and_restart(label: str) -> None:
        assert daemon.proc is not None
        pid = daemon.proc.pid
        daemon.kill()
        arrivals.update()
        kills.append(
            f"{label} at t={time.monotonic() - started:.1f}s (pid {pid}, acked={len(acked)},"
            f" delivered unique={arrivals.unique})"
        )
        daemon.start()
        await daemon.wait_ready()

    async def killer() -> None:
        await wait_until(
            lambda: len(acked) >= kill_after_acked,
            timeout=INGEST_TIMEOUT,
            what=f"{kill_after_acked} alerts acknowledged",
        )
        await kill_and_restart("kill 1")

        def delivered_enough() -> bool:
            arrivals.update()
            return arrivals.unique >= kill_after_delivered

        await wait_until(
            delivered_enough,
            timeout=INGEST_TIMEOUT + DRAIN_TIMEOUT,
            what=f"{kill_after_delivered} alerts delivered",
            interval=0.1,
        )
        await kill_and_restart("kill 2")

    timeout = aiohttp.ClientTimeout(total=10)
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        kill_task = asyncio.create_task(killer())
        try:
            async with asyncio.timeout(INGEST_TIMEOUT):
                await asyncio.gather(*(client(session) for _ in range(CLIENTS)))
            ingest_seconds = time.monotonic() - started
            async with asyncio.timeout(DRAIN_TIMEOUT):
                await kill_task
        finally:
            kill_task.cancel()

    def all_arrived() -> bool:
        return not arrivals.missing(acked)

    drain_error = ""
    try:
        await fake_bigpanda.wait_for(lambda _: all_arrived(), timeout=DRAIN_TIMEOUT)
    except TimeoutError as exc:
        drain_error = str(exc)
    runtime = time.monotonic() - started
    lost = sorted(arrivals.missing(acked))
    stats = fake_bigpanda.stats()
    report = (
        f"soak: acknowledged={len(acked)} delivered unique={arrivals.unique}"
        f" deliveries={arrivals.total} lost={len(lost)} duplicates={arrivals.duplicates}"
        f" (fake-counted exact duplicates={stats['duplicates']})"
        f" ingest={ingest_seconds:.1f}s runtime={runtime:.1f}s"
        f"\n  kills: {'; '.join(kills)}"
        f"\n  ingest answers: {dict(statuses)}"
        f"\n  fake requests: {stats['requests']} by status {stats['status_counts']}"
    )
    print(report)
    assert len(kills) == 2, report
    assert len(acked) == N_ALERTS, report
    assert not lost, f"{report}\n  lost (first 20): {lost[:20]}\n  {drain_error}"
