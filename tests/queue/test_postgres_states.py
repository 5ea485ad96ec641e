"""The alert-state store on PostgreSQL where only it can fail: replicas sharing one database.

The backend-neutral behaviour (deduplication, flapping, resolve, listings) is
the contract suite's (``test_state_contract.py``, both backends). These tests
cover what needs two queue objects on one real database, racing: the same
repeat put by two replicas at once is queued once, two scheduler passes
resolve a silent identity once, a database of the previous schema version is
migrated in place with its queued alerts, and a put refused for capacity
leaves every state row as it was.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from forwarder import jsonio
from forwarder.config import FlapConfig, QueueConfig, StateConfig
from forwarder.config.secrets import Secret
from forwarder.model import Outgoing
from forwarder.queue import QueueFull, QueueUnavailable
from forwarder.queue.contract import PutResult
from forwarder.queue.postgres import PostgresQueue, schema
from forwarder.queue.postgres.states import PUT_BEGIN, from_record
from forwarder.queue.putting import StateKey, decide
from forwarder.state import AlertState, Observation
from tests.fakes.clock import FakeClock
from tests.queue.conftest import KEY, TARGET, checks, lease

REPEAT = 600.0
SELECT_ROWS = "SELECT * FROM forwarder.alert_states ORDER BY identity"


def queue(
    dsn: str, clock: FakeClock, *, max_events: int = 10**6, admin: bool = False
) -> PostgresQueue:
    """A PostgreSQL queue on ``dsn``: one replica of several, or the admin commands' view."""
    cfg = QueueConfig(backend="postgres", dsn=Secret(dsn), max_events=max_events)
    return PostgresQueue(cfg, dsn=dsn, clock=clock, admin=admin)


def alert(
    identity: str,
    status: str,
    clock: FakeClock,
    *,
    policy: StateConfig | None = None,
    check: str | None = None,
) -> Outgoing:
    """A mapped alert of ``identity`` in ``status``, observed now, as the state stage leaves it."""
    ts = int(clock.time())
    body = {"check": check or identity, "host": "web-1", "status": status, "timestamp": ts}
    return Outgoing(
        TARGET,
        KEY,
        identity,
        jsonio.dumps(body),
        ts,
        Observation(status, "", policy or StateConfig(repeat_interval=REPEAT)),
    )


async def version(dsn: str) -> int:
    """The schema version recorded in the database, read as another process would."""
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT version FROM forwarder.schema_version"))
    finally:
        await conn.close()


@pytest.fixture(params=["optimistic", "locked"])
async def pair(
    postgres_dsn: str, clock: FakeClock, request: pytest.FixtureRequest
) -> AsyncIterator[list[PostgresQueue]]:
    """Two replicas on one database, sharing one fake clock; their group commits decide
    optimistically (falling back to the lock on conflicts), or always under the lock."""
    qs = [queue(postgres_dsn, clock) for _ in range(2)]
    if request.param == "locked":
        for q in qs:
            q.optimistic_tries = 0
    await asyncio.gather(*(q.open() for q in qs))
    yield qs
    for q in qs:
        if q.is_open:
            await q.close()


# --------------------------------------------------------------------------- concurrency


async def test_two_replicas_putting_one_repeat_at_once_queue_it_once(
    pair: list[PostgresQueue], clock: FakeClock
) -> None:
    """Round after round, both replicas receive the same alerts at the same moment: a
    change of status or a due reminder, for five identities. Each is queued exactly once a
    round, and the other replica's copy is suppressed as a duplicate."""
    a, b = pair
    names = [f"cpu-{n}" for n in range(5)]
    rounds = 20
    for r in range(rounds):
        if r % 2:
            clock.advance(REPEAT + 1)  # same status again, after repeat_interval: a reminder
            status = "critical" if (r // 2) % 2 == 0 else "warning"
        else:
            clock.advance(1)  # a change of status (the first round: a new identity)
            status = "critical" if (r // 2) % 2 == 0 else "warning"
        results = await asyncio.gather(
            a.put([alert(n, status, clock) for n in names]),
            b.put([alert(n, status, clock) for n in reversed(names)]),
        )
        assert sum(x.queued for x in results) == len(names), f"round {r}"
        assert sum(x.suppressed_total for x in results) == len(names), f"round {r}"
        for x in results:
            assert set(x.suppressed) <= {(TARGET, "duplicate")}
    assert (await a.stats()).events == rounds * len(names)
    views = await b.alerts.list()
    assert sorted(v.check for v in views) == names
    assert {v.suppressed for v in views} == {rounds}


async def test_two_ticks_resolve_a_silent_identity_once(
    pair: list[PostgresQueue], clock: FakeClock
) -> None:
    """Two replicas' schedulers pass at once, in small claims, over 30 silent identities:
    each gets exactly one ``ok`` on its behalf."""
    a, b = pair
    policy = StateConfig(repeat_interval=REPEAT, resolve_after=60.0)
    names = [f"disk-{n}" for n in range(30)]
    await a.put([alert(n, "critical", clock, policy=policy) for n in names])
    await a.ack((await lease(a)).entries)
    clock.advance(61)
    resolved = 0
    while True:
        passes = await asyncio.gather(a.alerts.tick(limit=4), b.alerts.tick(limit=4))
        resolved += sum(sum(p.resolved.values()) for p in passes)
        if not any(p.more for p in passes):
            break
    assert resolved == len(names)
    got = (await lease(b, limit=1000)).entries
    assert sorted(checks(got)) == sorted(names)
    sent = [jsonio.loads(e.payload) for e in got]
    assert {(s["status"], s["resolved_by"]) for s in sent} == {("ok", "forwarder")}
    counts = await b.alerts.counts()
    assert counts.open == {}
    again = await a.alerts.tick()
    assert again.resolved == {}
    assert again.next_due == pytest.approx(clock.time() - 61 + policy.retention, abs=1)


async def test_a_row_another_replica_resolved_is_read_again(
    pair: list[PostgresQueue], clock: FakeClock
) -> None:
    """Replica A wrote the row last (and remembers it); B's scheduler resolves it. The same
    ``critical`` arriving at A again is a change of status, not a duplicate of A's memory."""
    a, b = pair
    policy = StateConfig(repeat_interval=REPEAT, resolve_after=60.0)
    assert (await a.put([alert("fan", "critical", clock, policy=policy)])).queued == 1
    clock.advance(61)
    assert (await b.alerts.tick()).resolved == {TARGET: 1}
    again = await a.put([alert("fan", "critical", clock, policy=policy)])
    assert (again.queued, again.suppressed) == (1, {})
    assert [v.status for v in await a.alerts.list()] == ["critical"]


async def test_a_pass_that_finds_no_room_leaves_the_row_due(
    postgres_dsn: str, clock: FakeClock
) -> None:
    """The queue is full: the resolve is not queued and its row is not changed, so the next
    pass with room resolves it."""
    q = queue(postgres_dsn, clock, max_events=1)
    await q.open()
    try:
        policy = StateConfig(repeat_interval=REPEAT, resolve_after=60.0)
        await q.put([alert("mem", "critical", clock, policy=policy)])
        clock.advance(61)
        full = await q.alerts.tick()
        assert full.resolved == {}
        assert full.next_due == pytest.approx(clock.time() - 1)  # still due
        assert [v.status for v in await q.alerts.list()] == ["critical"]
        await q.ack((await lease(q)).entries)
        roomy = await q.alerts.tick()
        assert roomy.resolved == {TARGET: 1}
        assert [v.status for v in await q.alerts.list()] == ["ok"]
    finally:
        await q.close()


# --------------------------------------------------------------------------- capacity


async def test_a_put_refused_for_room_changes_no_state(postgres_dsn: str, clock: FakeClock) -> None:
    """A refused put queues nothing and leaves its identities' rows alone, also beside an
    admitted put in the same group commit."""
    q = queue(postgres_dsn, clock, max_events=2)
    await q.open()
    try:
        await q.put([alert("load", "critical", clock)])
        clock.advance(1)
        admitted, refused = await asyncio.gather(
            q.put([alert("swap", "critical", clock)]),  # fits: one event left
            q.put([alert("load", "warning", clock), alert("net", "critical", clock)]),
            return_exceptions=True,
        )
        assert admitted == PutResult(1)
        assert isinstance(refused, QueueFull)
        views = {v.check: v for v in await q.alerts.list()}
        assert sorted(views) == ["load", "swap"]
        assert (views["load"].status, views["load"].suppressed) == ("critical", 0)
        await q.ack((await lease(q)).entries)
        # The refused change was never recorded, so it is a change now.
        assert await q.put([alert("load", "warning", clock)]) == PutResult(1)
    finally:
        await q.close()


# --------------------------------------------------------------------------- schema


async def test_a_version_1_database_is_migrated_in_place(
    postgres_dsn: str, clock: FakeClock
) -> None:
    """A database the previous release made, with an alert queued, gains the state table on
    open; the alert is still there and leased first; the admin commands of this release
    read an unmigrated one without changing it."""
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(schema.MIGRATIONS[0])
        await conn.execute("UPDATE forwarder.schema_version SET version = 1")
        await conn.fetchval(  # a put of the previous release
            "SELECT forwarder.put_batch($1, $2, $3, $4, $5, $6, $7, $8,"
            " '{}', '{}', '{}', '{}', '{}', '{}', '{}', $9, 100, 100000)",
            [TARGET],
            [KEY],
            ["old"],
            [jsonio.dumps({"check": "old", "status": "critical"})],
            [1],
            [1],
            [1],
            [40],
            clock.time(),
        )
    finally:
        await conn.close()
    admin = queue(postgres_dsn, clock, admin=True)
    await admin.open()
    try:
        assert await admin.dead_letters.list() == []
        with pytest.raises(QueueUnavailable, match=r"version 1; alert state needs version 2"):
            await admin.alerts.list()
    finally:
        await admin.close()
    assert await version(postgres_dsn) == 1

    q = queue(postgres_dsn, clock)
    await q.open()
    try:
        assert await version(postgres_dsn) == schema.VERSION
        await q.put([alert("new", "critical", clock)])
        assert checks((await lease(q)).entries) == ["old", "new"]
        assert [v.check for v in await q.alerts.list()] == ["new"]
    finally:
        await q.close()


# --------------------------------------------------------------------------- seeing it


async def test_admin_listing_beside_a_replica(postgres_dsn: str, clock: FakeClock) -> None:
    """``forwarder alerts`` opens the queue as admin beside a running replica and sees its
    identities and gauges; an identity whose NUL the database cannot hold is stored too."""
    q = queue(postgres_dsn, clock)
    await q.open()
    admin = queue(postgres_dsn, clock, admin=True)
    try:
        flappy = StateConfig(repeat_interval=REPEAT)
        await q.put([alert("a\x00b", "critical", clock, check="nul"), alert("b", "ok", clock)])
        clock.advance(5)
        result = await q.put([alert("a\x00b", "critical", clock, policy=flappy, check="nul")])
        assert result.suppressed == {(TARGET, "duplicate"): 1}
        await admin.open()
        firing = await admin.alerts.list(status="firing")
        # Shown from its identity (no alert kept without auto-resolve): NUL as U+FFFD.
        assert [(v.check, v.status, v.suppressed) for v in firing] == [("a\ufffdb", "critical", 1)]
        assert [v.check for v in await admin.alerts.list(status="ok", target=TARGET)] == ["b"]
        assert await admin.alerts.list(target="elsewhere") == []
        counts = await admin.alerts.counts()
        assert (counts.open, counts.flapping) == ({TARGET: 1}, {})
    finally:
        await admin.close()
        await q.close()


# --------------------------------------------------------------------------- storage


async def test_rows_are_stored_exactly_as_the_state_machine_left_them(
    postgres_dsn: str,
) -> None:
    """Every field survives the trip through the database unchanged: fractional clocks,
    transition lists, unset fields, a payload with escapes and non-ASCII text."""
    clock = FakeClock(start=1_700_000_000.123456789)
    q = queue(postgres_dsn, clock)
    await q.open()
    try:
        policy = StateConfig(
            repeat_interval=REPEAT, resolve_after=90.5, flap=FlapConfig(transitions=2)
        )
        expected: dict[StateKey, AlertState | None] = {}
        for n, status in enumerate(["critical", "ok", "critical", "warning", "ok"]):
            clock.advance(0.1 + n / 3)
            item = alert("zoë", status, clock, policy=policy, check='a "\\u0000" \u00e9')
            decided = decide([[item]], expected, clock.time())
            expected.update(decided.rows)
            assert await q.put([item]) == decided.results[0]
        conn = await asyncpg.connect(postgres_dsn)
        try:
            stored = [from_record(r) for r in await conn.fetch(SELECT_ROWS)]
        finally:
            await conn.close()
        assert stored == list(expected.values())
        assert stored[0].flapping
        assert len(stored[0].transitions) == 3
    finally:
        await q.close()


async def test_a_put_with_state_bounds_how_long_it_may_hold_the_lock_idle(
    postgres_dsn: str, clock: FakeClock
) -> None:
    """put_begin limits its own transaction's idle time, so a stopped replica holding the
    ``in`` lock cannot stall every other replica's ingest for long; only that transaction."""
    q = queue(postgres_dsn, clock)
    await q.open()
    await q.close()
    conn = await asyncpg.connect(postgres_dsn)
    try:
        async with conn.transaction():
            await conn.fetch(PUT_BEGIN, [1], [10], 10, 1000, ["t"], ["k"], ["i"])
            assert await conn.fetchval("SHOW idle_in_transaction_session_timeout") == "10s"
        # Only that transaction's: the session's own setting is back.
        assert await conn.fetchval("SHOW idle_in_transaction_session_timeout") != "10s"
    finally:
        await conn.close()


async def test_pooled_sessions_read_committed_whatever_the_database_default(
    postgres_dsn: str, clock: FakeClock
) -> None:
    """Under REPEATABLE READ, a put's single-statement transaction would read the rows in a
    snapshot taken before it waited for the ``in`` lock; the queue's sessions use READ
    COMMITTED even where the database's default says otherwise."""
    name = postgres_dsn.rsplit("/", 1)[1]
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(
            f"ALTER DATABASE \"{name}\" SET default_transaction_isolation = 'repeatable read'"
        )
    finally:
        await conn.close()
    q = queue(postgres_dsn, clock)
    await q.open()
    try:
        isolation = await q.call(lambda c: c.fetchval("SHOW default_transaction_isolation"))
        assert isolation == "read committed"
    finally:
        await q.close()


async def test_identities_one_stored_row_holds_are_decided_against_that_row(
    postgres_dsn: str, clock: FakeClock
) -> None:
    """Two identities that differ only by a NUL (which PostgreSQL text cannot hold) share
    one stored row. The next alert of either is decided against what that row holds (here
    the later one's ``warning``), not against what the queue last wrote for it."""
    q = queue(postgres_dsn, clock)
    await q.open()
    try:
        first = await q.put(
            [alert("x\x00y", "critical", clock), alert("x\ufffdy", "warning", clock)]
        )
        assert first.queued == 2
        clock.advance(1)
        again = await q.put([alert("x\x00y", "critical", clock)])
        assert (again.queued, again.suppressed) == (1, {})
    finally:
        await q.close()
