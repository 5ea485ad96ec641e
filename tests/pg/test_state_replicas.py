"""Alert state across two ``forwarder run`` replicas on one PostgreSQL queue (subprocesses).

- Two replicas receiving the same alert at the same moment queue it once:
  each commit decides against the row the other committed, never both
  against the same old one (invariant 5 of :mod:`forwarder.queue.contract`).
- A silent ``httpPost`` series gets exactly one ``ok`` after
  ``resolve_after``, although both replicas' schedulers look for due rows:
  the row is claimed in the store.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Daemon, free_port, write_config
from tests.fakes.bigpanda import FakeBigPanda
from tests.pg.replica import replica_config
from tests.state.daemon_support import (
    BASE_S,
    answered,
    at_least,
    httppost_row,
    kapacitor_alert,
    post_all,
    post_json,
    received,
    verdict,
    with_state,
)

IDENTITIES = 50

Replicas = Callable[[str], Awaitable[list[Daemon]]]
_names = itertools.count()


@pytest.fixture
async def start_two(
    postgres_dsn: str, fake_bigpanda: FakeBigPanda, tmp_path: Path
) -> AsyncIterator[Replicas]:
    """Start two ready replicas on this test's database, with a global ``state`` section."""
    daemons: list[Daemon] = []

    async def start(state: str) -> list[Daemon]:
        for _ in range(2):
            i = next(_names)
            port = free_port()
            text = with_state(replica_config(fake_bigpanda.alerts_url, postgres_dsn, port), state)
            path = write_config(tmp_path, text, name=f"replica-{i}.yaml")
            daemons.append(Daemon(path, port, tmp_path / f"replica-{i}.log"))
            daemons[-1].start()
        for d in daemons:
            await d.wait_ready(timeout=60)
        return daemons

    yield start
    for d in daemons:
        if d.proc is not None and d.proc.poll() is None:
            d.kill()


def session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=40), timeout=aiohttp.ClientTimeout(total=30)
    )


async def test_two_replicas_receiving_the_same_alert_at_once_queue_it_once(
    start_two: Replicas, fake_bigpanda: FakeBigPanda
) -> None:
    """Every alert posted to both replicas together: one queued, one suppressed, per identity."""
    a, b = await start_two("repeat_interval: 1h")
    checks = [f"twice-{i:03d}" for i in range(IDENTITIES)]

    async def together(level: str, at: int) -> tuple[int, int]:
        bodies = [kapacitor_alert(c, level, at) for c in checks]
        async with session() as s:
            # Each body to both replicas at the same moment: all requests in flight together.
            answers = await asyncio.gather(
                *(post_json(s, f"{d.url}/kapacitor/race", body) for body in bodies for d in (a, b))
            )
        return answered(answers)

    assert await together("CRITICAL", BASE_S) == (IDENTITIES, IDENTITIES)
    assert await together("CRITICAL", BASE_S + 60) == (0, 2 * IDENTITIES)  # repeats
    assert await together("WARNING", BASE_S + 120) == (IDENTITIES, IDENTITIES)  # a change
    # The same repeat an hour (of event time) later is due as a reminder: once.
    assert await together("WARNING", BASE_S + 120 + 3600) == (IDENTITIES, IDENTITIES)
    await fake_bigpanda.wait_for(at_least(3 * IDENTITIES), timeout=60)
    for c in checks:
        got = received(fake_bigpanda, check=c)
        assert [x["status"] for x in got] == ["critical", "warning", "warning"], got
        assert got[2]["timestamp"] == BASE_S + 120 + 3600
    assert len(fake_bigpanda.received) == 3 * IDENTITIES


async def test_two_replicas_resolve_a_silent_series_exactly_once(
    start_two: Replicas, fake_bigpanda: FakeBigPanda
) -> None:
    """Series seen by both replicas, then silent: one ``ok`` each, ``resolved_by: forwarder``."""
    a, b = await start_two("resolve_after: 3s")
    now = int(time.time())
    hosts = [f"quiet-{i:02d}" for i in range(20)]
    async with session() as s:
        first = await post_all(s, f"{a.url}/kapacitor/quiet", [httppost_row(h, now) for h in hosts])
        assert answered(first) == (len(hosts), 0)
        again = await post_all(
            s, f"{b.url}/kapacitor/quiet", [httppost_row(h, now + 1) for h in hosts]
        )
        assert answered(again) == (0, len(hosts))
        await fake_bigpanda.wait_for(at_least(len(hosts), status="ok"), timeout=60)
        # A later series resolved too: both schedulers passed the first ones again since.
        late = httppost_row("quiet-late", now + 2)
        assert await verdict(s, f"{a.url}/kapacitor/quiet", late) == (1, 0)
        await fake_bigpanda.wait_for(at_least(1, host="quiet-late", status="ok"), timeout=60)
    for h in hosts:
        got = received(fake_bigpanda, host=h)
        assert [x["status"] for x in got] == ["critical", "ok"], (h, got)
        assert got[1]["resolved_by"] == "forwarder"
    assert len(received(fake_bigpanda, status="ok")) == len(hosts) + 1
