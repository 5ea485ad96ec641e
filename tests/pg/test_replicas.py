"""Several ``forwarder run`` replicas on one PostgreSQL queue, as real subprocesses.

The chaos test posts alerts, each identity through several states, across
three replicas. Meanwhile a fake BigPanda answers with 503s, 429s and
resets, one replica is killed with SIGKILL (then restarted), and PostgreSQL
itself is restarted. The test then checks:

- every acknowledged alert arrives;
- per identity, the last state BigPanda sees is the last one acknowledged;
- no older state arrives after a newer one. A batch holds one state per
  identity, so a batch sent again after its acknowledgement was lost repeats
  that state and goes back to none.

Duplicates are counted and reported: delivery is at-least-once.

The rate-limit test keeps a backlog in front of three replicas and checks
that BigPanda sees the deployment's ``rate_limit``, not three times it.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import Daemon, free_port, write_config
from tests.fakes.bigpanda import FakeBigPanda, FaultPlan
from tests.pg.cluster import Cluster
from tests.pg.fixtures import own_cluster
from tests.pg.replica import BASE_TS, alert, replica_config

IDENTITIES = 5_000
STATES = 4  # 20 000 alerts in all
CLIENTS = 24


@pytest.fixture(scope="module")
def server() -> Iterator[Cluster]:
    """A PostgreSQL server of this module's own: the chaos test restarts it."""
    yield from own_cluster()


_databases = itertools.count()


ReplicaFactory = Callable[..., Awaitable[list[Daemon]]]


@pytest.fixture
async def start_replicas(
    server: Cluster, fake_bigpanda: FakeBigPanda, tmp_path: Path
) -> AsyncIterator[ReplicaFactory]:
    """Start three ready replicas on a fresh database (options go to :func:`replica_config`)."""
    daemons: list[Daemon] = []

    async def start(**options: Any) -> list[Daemon]:
        dsn = server.create_database(f"replicas_{next(_databases)}")
        for i in range(3):
            port = free_port()
            path = write_config(
                tmp_path,
                replica_config(fake_bigpanda.alerts_url, dsn, port, **options),
                name=f"replica-{i}.yaml",
            )
            daemons.append(Daemon(path, port, tmp_path / f"replica-{i}.log"))
        for d in daemons:
            d.start()
        await asyncio.gather(*(d.wait_ready(timeout=60) for d in daemons))
        return daemons

    yield start
    for d in daemons:
        if d.proc is not None and d.proc.poll() is None:
            d.kill()


async def sender_of(replicas: list[Daemon]) -> Daemon:
    """The replica whose ``forwarder_target_sending`` gauge says it sends for the target."""
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            for d in replicas:
                async with session.get(f"{d.url}/metrics") as resp:
                    text = await resp.text()
                if 'forwarder_target_sending{target="bigpanda"} 1.0' in text:
                    return d
            await asyncio.sleep(0.1)
    raise AssertionError("no replica reports sending for the target")


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> int | None:
    """POST ``body``; the status, or None when no replica answered (killed, restarting)."""
    try:
        async with session.post(url, data=body) as resp:
            await resp.read()
            return resp.status
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None


@pytest.mark.reliability
async def test_three_replicas_lose_nothing_and_keep_order_through_kill_and_db_restart(
    start_replicas: ReplicaFactory, fake_bigpanda: FakeBigPanda, server: Cluster
) -> None:
    """Chaos across replicas: 0 acknowledged alerts lost, per-identity order kept."""
    replicas = await start_replicas(lease_timeout="5s")
    fake_bigpanda.set_faults(
        FaultPlan(p_503=0.10, p_429=0.05, retry_after="1", p_reset=0.05, latency_jitter=0.05)
    )
    rng = random.Random(20_261_205)
    todo = list(range(IDENTITIES))
    rng.shuffle(todo)
    last_acked: dict[str, int] = {}
    acked: set[tuple[str, int]] = set()  # every acknowledged state must arrive, not only the last
    statuses: Counter[str] = Counter()
    events: list[str] = []
    started = time.monotonic()
    acked_total = 0
    quarter, half = asyncio.Event(), asyncio.Event()  # the chaos moments, by alerts acknowledged

    async def client(session: aiohttp.ClientSession, n: int) -> None:
        nonlocal acked_total
        while todo:
            identity = todo.pop()
            for state in range(STATES):
                body = alert(identity, state)
                attempt = n
                while True:  # a sender that retries until acknowledged, any replica
                    d = replicas[attempt % len(replicas)]
                    status = await post(session, f"{d.url}/kapacitor/chaos", body)
                    statuses[str(status)] += 1
                    if status == 200:
                        break
                    attempt += 1
                    await asyncio.sleep(0.02)
                last_acked[f"chaos-{identity:05d}"] = BASE_TS + state
                acked.add((f"chaos-{identity:05d}", BASE_TS + state))
                acked_total += 1
                if acked_total >= IDENTITIES * STATES // 4:
                    quarter.set()
                if acked_total >= IDENTITIES * STATES // 2:
                    half.set()

    async def chaos() -> None:
        await quarter.wait()
        victim = await sender_of(replicas)  # the one replica sending: its batches are in flight
        victim.kill()
        events.append(f"kill -9 {victim.log_path.stem} at {time.monotonic() - started:.1f}s")
        await half.wait()
        await asyncio.to_thread(server.stop, "fast")
        events.append(f"postgres stopped at {time.monotonic() - started:.1f}s")
        await asyncio.sleep(1.0)  # an outage of about a second, whatever it costs
        await asyncio.to_thread(server.start)
        events.append(f"postgres started at {time.monotonic() - started:.1f}s")
        victim.start()
        await victim.wait_ready(timeout=60)
        events.append(f"{victim.log_path.stem} restarted at {time.monotonic() - started:.1f}s")

    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(limit=CLIENTS)
    ) as session:
        chaos_task = asyncio.create_task(chaos())
        await asyncio.gather(*(client(session, n) for n in range(CLIENTS)))
        await chaos_task

    def all_last_states_arrived(fake: FakeBigPanda) -> bool:
        seen: dict[str, int] = {}
        for r in fake.received:
            seen[str(r.alert.get("check"))] = int(r.alert.get("timestamp", 0))
        return all(seen.get(c) == ts for c, ts in last_acked.items())

    drained = True
    try:
        await fake_bigpanda.wait_for(all_last_states_arrived, timeout=300)
    except TimeoutError:
        drained = False

    arrivals: dict[str, list[int]] = defaultdict(list)
    for r in fake_bigpanda.received:
        arrivals[str(r.alert.get("check"))].append(int(r.alert.get("timestamp", 0)))
    total = sum(len(v) for v in arrivals.values())
    distinct = sum(len(set(v)) for v in arrivals.values())
    lost = sorted(acked - {(c, ts) for c, seq in arrivals.items() for ts in seq})
    wrong_last = [c for c, ts in last_acked.items() if arrivals.get(c, [0])[-1] != ts]
    # Duplicates may repeat a state (0 1 1 2); going back (0 2 1) is a reorder.
    reordered = [c for c, seq in arrivals.items() if seq != sorted(seq)]
    report = (
        f"replicas: acknowledged={acked_total} identities={len(last_acked)}"
        f" deliveries={total} distinct states={distinct} duplicates={total - distinct}"
        f" lost={len(lost)} wrong last={len(wrong_last)} reordered={len(reordered)}"
        f" runtime={time.monotonic() - started:.1f}s drained={drained}"
        f"\n  events: {'; '.join(events)}\n  ingest answers: {dict(statuses)}"
    )
    print(report)
    assert acked_total == IDENTITIES * STATES, report
    assert not lost, f"{report}\n  lost: {lost[:10]}"
    assert not wrong_last, f"{report}\n  wrong last state: {wrong_last[:10]}"
    assert not reordered, f"{report}\n  reordered: {[(c, arrivals[c]) for c in reordered[:5]]}"


@pytest.mark.reliability
async def test_the_rate_limit_holds_for_the_deployment(
    start_replicas: ReplicaFactory, fake_bigpanda: FakeBigPanda
) -> None:
    """Three replicas with ``rate_limit: 10`` send about 10 requests/s in all, not 30."""
    replicas = await start_replicas(rate_limit=10, burst=10, max_alerts=1)
    n = 200
    async with aiohttp.ClientSession() as session:
        for i in range(n):
            d = replicas[i % len(replicas)]
            body = alert(i, 0)
            assert await post(session, f"{d.url}/kapacitor/rate", body) == 200
    await fake_bigpanda.wait_for(lambda f: len(f.requests) >= 120, timeout=60)
    times = sorted(r.at for r in fake_bigpanda.requests)
    worst = max(sum(1 for t in times if start <= t < start + 5.0) for start in times)
    # 10/s over 5 s, plus the bucket's burst of 10 (and one more for a take-over's full bucket).
    assert worst <= 10 * 5 + 10 + 10, f"{worst} requests in a 5 s window"
    assert worst >= 30, f"only {worst} requests in the busiest 5 s window: not sending"
