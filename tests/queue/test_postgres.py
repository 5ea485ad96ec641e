"""What only the PostgreSQL backend has: migrations, replicas sharing one database, outages.

The contract suite (``test_contract.py``) already runs on PostgreSQL; these
tests cover what it cannot: several queue objects (replicas) on one database,
a process killed with SIGKILL, the server stopped and started under a running
queue, and the errors of a wrong password or a newer schema. Everything runs
against a real server the suite starts itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import asyncpg
import pytest

from forwarder.clock import SYSTEM_CLOCK, Clock
from forwarder.config import QueueConfig
from forwarder.config.secrets import Secret
from forwarder.queue import QueueFull, QueueUnavailable, create_queue
from forwarder.queue.contract import PutResult
from forwarder.queue.errors import QueueMissing, QueueOpenError
from forwarder.queue.postgres import PostgresQueue, schema
from tests.fakes.clock import FakeClock
from tests.pg.cluster import Cluster
from tests.pg.fixtures import own_cluster
from tests.queue.conftest import TARGET, checks, item, lease

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def queue(
    dsn: str, clock: Clock | None = None, *, max_events: int = 10**6, open_timeout: float = 30.0
) -> PostgresQueue:
    """A PostgreSQL queue on ``dsn`` (a replica, when several share one database)."""
    cfg = QueueConfig(backend="postgres", dsn=Secret(dsn), max_events=max_events)
    return PostgresQueue(cfg, dsn=dsn, clock=clock or FakeClock(), open_timeout=open_timeout)


async def fetchval(dsn: str, sql: str) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


@pytest.fixture
async def replicas(postgres_dsn: str, clock: FakeClock) -> AsyncIterator[list[PostgresQueue]]:
    """Three open queues on one database, sharing one fake clock, as three replicas would."""
    qs = [queue(postgres_dsn, clock) for _ in range(3)]
    await asyncio.gather(*(q.open() for q in qs))
    yield qs
    for q in qs:
        if q.is_open:
            await q.close()


# --------------------------------------------------------------------------- schema


async def test_replicas_starting_together_migrate_once(postgres_dsn: str) -> None:
    """Five replicas opening an empty database at once all start; the schema is made once."""
    qs = [queue(postgres_dsn) for _ in range(5)]
    await asyncio.gather(*(q.open() for q in qs))
    assert await fetchval(postgres_dsn, "SELECT version FROM forwarder.schema_version") == (
        schema.VERSION
    )
    assert await fetchval(postgres_dsn, "SELECT count(*) FROM forwarder.schema_version") == 1
    await qs[0].put([item("a")])
    assert (await qs[4].stats()).events == 1
    for q in qs:
        await q.close()
    again = queue(postgres_dsn)
    await again.open()  # a restart on a migrated database changes nothing
    assert (await again.stats()).events == 1
    await again.close()


async def test_a_newer_schema_is_refused_with_a_clear_error(postgres_dsn: str) -> None:
    """A database migrated by a newer release is not written by this one."""
    q = queue(postgres_dsn)
    await q.open()
    await q.close()
    await fetchval(postgres_dsn, "UPDATE forwarder.schema_version SET version = 99")
    with pytest.raises(QueueOpenError, match=r"version 99, newer than this forwarder") as exc:
        await queue(postgres_dsn).open()
    assert "\n" not in str(exc.value)


async def test_admin_open_of_an_empty_database_says_what_to_do(postgres_dsn: str) -> None:
    """The dead-letter commands do not create a queue; they say how one comes to be."""
    cfg = QueueConfig(backend="postgres", dsn=Secret(postgres_dsn))
    with pytest.raises(QueueMissing, match="forwarder run creates it when it first starts"):
        await create_queue(cfg, admin=True).open()


# --------------------------------------------------------------------------- fatal open errors


async def test_a_wrong_password_is_one_line_without_the_password(
    postgres_server: Cluster,
) -> None:
    """A wrong password fails at once, in one line naming the database, never the password."""
    dsn = postgres_server.dsn("postgres", password="Wr0ng-s3cret-pw")
    started = time.monotonic()
    with pytest.raises(QueueOpenError) as exc:
        await queue(dsn, open_timeout=60).open()
    message = str(exc.value)
    assert time.monotonic() - started < 30  # not retried for the whole open timeout
    assert "password authentication failed" in message
    assert "Wr0ng-s3cret-pw" not in message
    assert postgres_server.password not in message
    assert "\n" not in message
    assert message.startswith("cannot open the queue at postgresql://")


async def test_a_missing_database_is_named(postgres_server: Cluster) -> None:
    """A database that does not exist is a one-line error naming it."""
    with pytest.raises(QueueOpenError, match='database "no_such_db" does not exist'):
        await queue(postgres_server.dsn("no_such_db")).open()


async def test_a_libpq_keyword_dsn_works_and_is_described_without_its_password(
    postgres_dsn: str, postgres_server: Cluster
) -> None:
    """A libpq ``key=value`` DSN opens like a URL; the description hides the password."""
    parts = urlsplit(postgres_dsn)
    keywords = (
        f"host={parts.hostname} port={parts.port} user={parts.username}"
        f" password='{postgres_server.password}' dbname={parts.path.lstrip('/')}"
    )
    q = queue(keywords)
    await q.open()
    await q.put([item("a")])
    assert (await q.stats()).events == 1
    assert (
        q.description == f"postgresql://{parts.username}@{parts.hostname}:{parts.port}{parts.path}"
    )
    await q.close()
    with pytest.raises(QueueOpenError, match="keyword 'service' is not supported"):
        await queue("service=forwarder").open()


# --------------------------------------------------------------------------- replicas


async def test_commits_are_durable_even_where_the_database_says_otherwise(
    postgres_dsn: str,
) -> None:
    """A database set to synchronous_commit=off would acknowledge before the WAL is flushed;
    the queue's sessions raise it to on."""
    name = urlsplit(postgres_dsn).path.lstrip("/")
    await fetchval(postgres_dsn, f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    q = queue(postgres_dsn)
    await q.open()
    try:
        assert await q.call(lambda c: c.fetchval("SHOW synchronous_commit")) == "on"
    finally:
        await q.close()


async def test_capacity_holds_across_replicas(postgres_dsn: str) -> None:
    """Puts racing on three replicas cannot together pass ``max_events``."""
    clock = FakeClock()
    qs = [queue(postgres_dsn, clock, max_events=10) for _ in range(3)]
    await asyncio.gather(*(q.open() for q in qs))
    results = await asyncio.gather(
        *(qs[i % 3].put([item(f"c{i}")]) for i in range(30)), return_exceptions=True
    )
    assert sum(isinstance(r, PutResult) for r in results) == 10
    assert all(isinstance(r, QueueFull) for r in results if not isinstance(r, PutResult))
    assert (await qs[1].stats()).events == 10
    for q in qs:
        await q.close()


async def test_an_identity_in_flight_on_one_replica_holds_back_the_others(
    replicas: list[PostgresQueue],
) -> None:
    """A newer state is not leased by replica B while replica A holds the older one."""
    a, b, _ = replicas
    await a.put([item("x1", identity="X")])
    in_flight = (await lease(a)).entries
    await b.put([item("x2", identity="X"), item("y1", identity="Y")])
    assert checks((await lease(b)).entries) == ["y1"]
    await a.ack(in_flight)
    assert checks((await lease(b)).entries) == ["x2"]


async def test_a_state_its_old_holder_is_settling_still_holds_back_newer_ones(
    replicas: list[PostgresQueue], postgres_dsn: str, clock: FakeClock
) -> None:
    """x1's lease expired and its old holder is writing its retry (the row is locked) while
    another replica leases: x2 must not be handed out past the row it could not lock."""
    a, b, _ = replicas
    await a.put([item("x1", identity="X"), item("x2", identity="X"), item("y1", identity="Y")])
    (x1, y1) = sorted((await lease(a, lease_for=5)).entries, key=lambda e: e.check)
    await a.ack([y1])
    clock.advance(10)  # x1's lease has expired; its holder is late, settling it now
    settling = await asyncpg.connect(postgres_dsn)
    try:
        tx = settling.transaction()
        await tx.start()
        await settling.execute("SELECT 1 FROM forwarder.queue WHERE id = $1 FOR UPDATE", x1.id)
        assert checks((await lease(b)).entries) == []
        await tx.rollback()
    finally:
        await settling.close()
    assert checks((await lease(b)).entries) == ["x1"]


async def test_concurrent_leases_across_replicas_keep_identity_order(
    replicas: list[PostgresQueue],
) -> None:
    """Replicas leasing one target at once share no alert and move one state per identity."""
    await replicas[0].put(
        [item(f"{i}-s{s}", identity=f"I{i}", ts=s) for s in range(3) for i in range(30)]
    )
    batches = await asyncio.gather(*(lease(q, limit=10) for q in replicas for _ in range(3)))
    leased = [e for b in batches for e in b.entries]
    assert len({e.id for e in leased}) == len(leased)
    assert {e.timestamp for e in leased} == {0}


async def test_a_commit_on_one_replica_wakes_the_others(replicas: list[PostgresQueue]) -> None:
    """LISTEN/NOTIFY: a put on replica A sets the target's new-work event on replica C."""
    a, _, c = replicas
    wake, other = c.new_work(TARGET), c.new_work("other")
    wake.clear()
    other.clear()
    await a.put([item("a")])
    await asyncio.wait_for(wake.wait(), timeout=10)
    assert not other.is_set()


async def test_a_refused_alert_is_dead_lettered_with_its_put(postgres_dsn: str) -> None:
    """Alerts refused at ingest go to the dead letters in the same commit as the accepted ones."""
    q = queue(postgres_dsn)
    await q.open()
    await q.put([item("good")], refused=[(item("bad"), "unmappable")])
    (d,) = await q.dead_letters.list()
    assert (d.check, d.reason, d.attempts) == ("bad", "unmappable", 0)
    stats = await q.stats()
    assert (stats.events, stats.targets[TARGET].dead_letters) == (1, 1)
    await q.close()


# --------------------------------------------------------------------------- a replica dies

_HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from forwarder.config import QueueConfig
    from forwarder.config.secrets import Secret
    from forwarder.model import Outgoing
    from forwarder.queue.postgres import PostgresQueue

    async def main():
        dsn = sys.argv[1]
        q = PostgresQueue(QueueConfig(backend="postgres", dsn=Secret(dsn)), dsn=dsn)
        await q.open()
        await q.put([Outgoing("bigpanda", "k", "X", b'{"check":"x"}', 1)])
        got = await q.lease("bigpanda", limit=10, lease_for=600)
        assert await q.claim_target("bigpanda")
        print(len(got.entries), flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


@pytest.fixture
def holder(postgres_dsn: str) -> Iterator[subprocess.Popen[str]]:
    """A replica in another process that leased an alert and claimed the target, then hangs."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, postgres_dsn],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": REPO},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "1"
    yield proc
    proc.kill()
    proc.wait()


async def test_leases_of_a_killed_replica_expire(
    postgres_dsn: str, holder: subprocess.Popen[str]
) -> None:
    """After kill -9 the alert stays leased until its deadline, then another replica gets it."""
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    clock = FakeClock(start=time.time())
    q = queue(postgres_dsn, clock)
    await q.open()  # start-up clears no lease
    assert (await lease(q)).entries == []
    clock.advance(601)
    assert checks((await lease(q)).entries) == ["x"]
    await q.close()


async def test_the_sender_claim_is_exclusive_and_moves_when_its_holder_dies(
    postgres_dsn: str, holder: subprocess.Popen[str]
) -> None:
    """One replica sends for a target; kill -9 of it frees the claim for another."""
    q = queue(postgres_dsn)
    await q.open()
    assert not await q.claim_target(TARGET)
    assert not q.holds_target(TARGET)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    deadline = time.monotonic() + 10
    while not await q.claim_target(TARGET):
        assert time.monotonic() < deadline, "the claim of a killed replica was not freed"
        await asyncio.sleep(0.05)
    assert q.holds_target(TARGET)
    assert q.claimed_targets == {TARGET}
    await q.close()


async def test_release_hands_the_claim_over(replicas: list[PostgresQueue]) -> None:
    """A released claim is taken by the next replica that asks; a holder may ask again."""
    a, b, _ = replicas
    assert await a.claim_target(TARGET)
    assert await a.claim_target(TARGET)
    assert not await b.claim_target(TARGET)
    assert await b.claim_target("other")
    await a.release_target(TARGET)
    assert not a.holds_target(TARGET)
    assert await b.claim_target(TARGET)


async def test_a_holder_whose_session_is_killed_stops_holding(
    replicas: list[PostgresQueue], postgres_dsn: str, clock: FakeClock
) -> None:
    """When the database ends a replica's session, it learns it lost its claims, and reconnects."""
    a, b, _ = replicas
    assert await a.claim_target(TARGET)
    await fetchval(
        postgres_dsn,
        "SELECT pg_terminate_backend(pid) FROM pg_locks"
        f" WHERE locktype = 'advisory' AND classid = {schema.LOCK_SENDER}",
    )
    assert await b.claim_target(TARGET)
    deadline = time.monotonic() + 10
    while a.holds_target(TARGET):
        assert time.monotonic() < deadline
        clock.advance(2)  # the next ping finds the session gone
        await asyncio.sleep(0.05)
    await a.put([item("after")])  # the pool was not affected


# --------------------------------------------------------------------------- the server goes away


@pytest.fixture(scope="module")
def own_server() -> Iterator[Cluster]:
    """A server of this module's own, to stop and start (never the shared one)."""
    yield from own_cluster()


async def test_database_down_means_unavailable_then_recovery(own_server: Cluster) -> None:
    """Server stopped: puts fail with QueueUnavailable and a reason; then they work again."""
    dsn = own_server.dsn()
    clock = FakeClock()
    q = queue(dsn, clock)
    await q.open()
    await q.put([item("before")])
    own_server.stop("immediate")
    try:
        with pytest.raises(QueueUnavailable):
            await q.put([item("during")])
        assert q.last_error is not None
        assert own_server.password not in q.last_error
    finally:
        own_server.start()
    deadline = time.monotonic() + 20
    while True:
        clock.advance(5)  # past any backoff
        try:
            await q.put([item("after")])
            break
        except QueueUnavailable:
            assert time.monotonic() < deadline, "no recovery after the server came back"
            await asyncio.sleep(0.1)
    assert q.last_error is None
    got = await lease(q)
    assert checks(got.entries) == ["before", "after"]
    await q.ack(got.entries)
    await q.close()


async def test_open_waits_for_a_server_that_is_starting(own_server: Cluster) -> None:
    """Down at start-up: open retries and succeeds once the server is up, or says why it gave up."""
    dsn = own_server.dsn()
    own_server.stop()
    try:
        with pytest.raises(QueueOpenError, match=r"cannot open the queue at postgresql://"):
            await queue(dsn, SYSTEM_CLOCK, open_timeout=0.3).open()
        q = queue(dsn, SYSTEM_CLOCK)
        opening = asyncio.ensure_future(q.open())
        # Not a wait for something to happen: room for a few refused attempts,
        # after which open must still be trying rather than have given up.
        await asyncio.sleep(0.3)
        assert not opening.done()
    finally:
        own_server.start()
    await asyncio.wait_for(opening, timeout=30)
    assert q.is_open
    await q.close()
