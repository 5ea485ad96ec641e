"""BigPanda outage: the daemon holds alerts on disk without spinning, then drains oldest first."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

import aiohttp
import pytest

from tests.conftest import Daemon
from tests.fakes.bigpanda import FakeBigPanda
from tests.reliability.conftest import (
    Arrivals,
    check_name,
    cpu_seconds,
    daemon_config,
    kapacitor_alert,
    rss_bytes,
    seq_of,
)

pytestmark = pytest.mark.reliability

N_ALERTS = 2_000
PREFIX = "outage"
WINDOW = 6.0  # seconds of the outage over which CPU and memory are sampled
SAMPLE_EVERY = 0.5
MAX_CPU_SHARE = 0.20  # of one core; an idle retry loop uses well under 5 %
MAX_RSS_GROWTH = 20 * 1024 * 1024


def _failures(metrics_text: str) -> float:
    """Sum of ``forwarder_delivery_failures_total`` over its labels."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith("forwarder_delivery_failures_total{")
    )


async def test_outage_holds_alerts_without_busy_loop_then_drains_oldest_first(
    fake_bigpanda: FakeBigPanda, daemon_factory: Callable[[str], Daemon]
) -> None:
    """While BigPanda is unreachable CPU and RSS stay flat; when it returns, the oldest go first."""
    await fake_bigpanda.stop_listening()
    # max_in_flight 1 makes "oldest first" a strict claim: one batch at a time, in order.
    daemon = daemon_factory(
        daemon_config(
            fake_bigpanda.alerts_url,
            max_in_flight=1,
            retry_initial="50ms",
            retry_max="1s",
            linger="50ms",
        )
    )
    daemon.start()
    await daemon.wait_ready()
    assert daemon.proc is not None
    pid = daemon.proc.pid

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        # One request at a time, so the ingest order is the order of the posts.
        async with asyncio.timeout(120):
            for seq in range(N_ALERTS):
                async with session.post(
                    f"{daemon.url}/kapacitor/outage", data=kapacitor_alert(PREFIX, seq)
                ) as resp:
                    assert resp.status == 200, await resp.text()
        async with session.get(f"{daemon.url}/metrics") as resp:
            failures_before = _failures(await resp.text())

        # Measurement window: the queue is full of due alerts and the target refuses
        # connections. Sleeping here is the sampling interval, not a wait for an outcome.
        rss = [rss_bytes(pid)]
        cpu_start, wall_start = cpu_seconds(pid), time.monotonic()
        while time.monotonic() - wall_start < WINDOW:
            await asyncio.sleep(SAMPLE_EVERY)
            rss.append(rss_bytes(pid))
        cpu_share = (cpu_seconds(pid) - cpu_start) / (time.monotonic() - wall_start)
        async with session.get(f"{daemon.url}/metrics") as resp:
            failures_after = _failures(await resp.text())

    mib = [round(r / 2**20, 1) for r in rss]
    report = (
        f"outage: {N_ALERTS} alerts queued; CPU {cpu_share:.1%} of one core over {WINDOW}s;"
        f" RSS MiB samples {mib}; delivery failures during window"
        f" {failures_after - failures_before:.0f}"
    )
    print(report)
    assert failures_after > failures_before, f"the daemon did not retry at all: {report}"
    assert cpu_share < MAX_CPU_SHARE, f"busy loop while BigPanda is down: {report}"
    assert max(rss) - rss[0] < MAX_RSS_GROWTH, f"memory grows while BigPanda is down: {report}"
    assert not fake_bigpanda.received

    await fake_bigpanda.start_listening()
    arrivals = Arrivals(fake_bigpanda)
    expected = {check_name(PREFIX, seq) for seq in range(N_ALERTS)}
    drain_started = time.monotonic()
    await fake_bigpanda.wait_for(lambda _: not arrivals.missing(expected), timeout=120)
    drain = time.monotonic() - drain_started
    order = [seq_of(c) for c in arrivals.first]
    out_of_order = [(a, b) for a, b in itertools.pairwise(order) if b < a]
    print(
        f"outage: drained {arrivals.unique} alerts in {drain:.1f}s,"
        f" {arrivals.duplicates} duplicates, {len(out_of_order)} out-of-order first arrivals"
    )
    assert not out_of_order, f"not oldest first; (earlier, later) pairs: {out_of_order[:10]}"
