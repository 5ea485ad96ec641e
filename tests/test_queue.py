"""The durable SQLite queue and dead-letter store (forwarder.queue, forwarder.deadletters).

Every test uses a real SQLite file under ``tmp_path`` and, where time matters,
a fake clock passed to the queue; nothing is patched.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import pytest

from forwarder import deadletters, jsonio, store
from forwarder.config import QueueConfig
from forwarder.queue import Entry, Outgoing, QueueFull, QueueLocked, QueueUnavailable, SQLiteQueue

TARGET = "bigpanda"
KEY = "app-key-1"
BIG = 64 * 1024  # payloads this large need fresh pages, so a full database refuses them


class FakeClock:
    """Unix seconds that move only when the test says so."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CountingQueue(SQLiteQueue):
    """The real queue, recording how many alerts each commit transaction carried."""

    def __init__(self, cfg: QueueConfig) -> None:
        super().__init__(cfg)
        self.commits: list[int] = []

    def _insert_sync(self, items: Sequence[Outgoing]) -> None:
        super()._insert_sync(items)
        self.commits.append(len(items))


def item(
    check: str,
    *,
    ts: int = 1000,
    target: str = TARGET,
    key: str = KEY,
    identity: str | None = None,
    size: int = 0,
) -> Outgoing:
    """An outgoing alert whose payload is real alert JSON (padded to ``size`` bytes if asked)."""
    alert = {"check": check, "host": "web-1", "status": "critical", "timestamp": ts}
    if size:
        alert["description"] = "x" * size
    return Outgoing(
        target=target,
        app_key=key,
        identity=identity if identity is not None else check,
        payload=jsonio.dumps(alert),
        timestamp=ts,
    )


def checks(entries: Sequence[Entry]) -> list[str]:
    return [str(jsonio.loads(e.payload)["check"]) for e in entries]


def rows(path: Path, table: str = "queue") -> int:
    """Count rows with a separate connection, as another process would see them."""
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


QueueFactory = Callable[..., Awaitable[SQLiteQueue]]


@pytest.fixture
async def open_queue(tmp_path: Path) -> AsyncIterator[QueueFactory]:
    """Open real queues on ``tmp_path/queue.db``; every one still open is closed at teardown."""
    opened: list[SQLiteQueue] = []

    async def factory(
        *,
        max_events: int = 1_000_000,
        max_bytes: int = 1024**3,
        clock: Callable[[], float] | None = None,
        cls: type[SQLiteQueue] = SQLiteQueue,
    ) -> SQLiteQueue:
        cfg = QueueConfig(
            path=tmp_path / "queue.db",
            max_events=max_events,
            max_bytes=max_bytes,
            synchronous="normal",
        )
        q = cls(cfg) if clock is None else cls(cfg, clock=clock)
        await q.open()
        opened.append(q)
        return q

    yield factory
    for q in reversed(opened):
        if q.is_open:
            await q.close()


async def lease(
    q: SQLiteQueue,
    *,
    limit: int = 100,
    busy: set[tuple[str, str]] | None = None,
    lease_for: float = 60.0,
) -> tuple[list[Entry], float | None]:
    return await q.lease(TARGET, limit=limit, busy=busy or set(), lease_for=lease_for)


# --------------------------------------------------------------------------- put / lease / ack


async def test_put_commits_to_disk_before_returning(
    open_queue: QueueFactory, tmp_path: Path
) -> None:
    """Once ``put`` returns, another connection to the file sees the alerts."""
    q = await open_queue()
    await q.put([item("a"), item("b")])
    assert rows(tmp_path / "queue.db") == 2
    assert q.sizes()[0] == 2
    assert q.sizes()[2] == {TARGET: 2}


async def test_entry_stores_everything_a_retry_needs(
    open_queue: QueueFactory, tmp_path: Path
) -> None:
    """A row keeps target, app key, payload, created time, attempts, next attempt, last error."""
    clock = FakeClock()
    q = await open_queue(clock=clock)
    await q.put([item("a", ts=1234)])
    (entry,), _ = await lease(q)
    await q.retry_later([entry], at=clock.now + 30, error="HTTP 503: busy")
    with sqlite3.connect(tmp_path / "queue.db") as conn:
        row = conn.execute(
            "SELECT target, app_key, payload, ts, created, attempts, next_attempt, last_error"
            " FROM queue"
        ).fetchone()
    assert row[0] == TARGET
    assert row[1] == KEY
    assert jsonio.loads(row[2])["check"] == "a"
    assert row[3:] == (1234, clock.now, 1, clock.now + 30, "HTTP 503: busy")


async def test_lease_ack_round_trip(open_queue: QueueFactory, tmp_path: Path) -> None:
    """Leased alerts come oldest first with their payload; acknowledged ones are deleted."""
    q = await open_queue()
    await q.put([item(f"c{i}") for i in range(5)])
    entries, earliest = await lease(q, limit=3)
    assert checks(entries) == ["c0", "c1", "c2"]
    assert earliest is None
    assert all(e.app_key == KEY and e.target == TARGET and e.attempts == 0 for e in entries)
    await q.ack(entries)
    assert rows(tmp_path / "queue.db") == 2
    assert q.sizes()[0] == 2
    rest, _ = await lease(q)
    assert checks(rest) == ["c3", "c4"]


async def test_leased_alerts_are_not_leased_twice_until_the_lease_expires(
    open_queue: QueueFactory,
) -> None:
    """A lease hides its alerts from other leases; once expired they come back (at-least-once)."""
    clock = FakeClock()
    q = await open_queue(clock=clock)
    await q.put([item("a")])
    first, _ = await lease(q, lease_for=120)
    assert checks(first) == ["a"]
    assert (await lease(q))[0] == []
    clock.advance(121)
    again, _ = await lease(q)
    assert checks(again) == ["a"]


async def test_one_batch_holds_one_app_key(open_queue: QueueFactory) -> None:
    """A lease returns alerts of a single app key; the other key's alerts wait for the next one."""
    q = await open_queue()
    await q.put([item("a1", key="A"), item("b1", key="B"), item("a2", key="A")])
    first, _ = await lease(q)
    assert [(e.app_key, c) for e, c in zip(first, checks(first), strict=True)] == [
        ("A", "a1"),
        ("A", "a2"),
    ]
    second, _ = await lease(q)
    assert checks(second) == ["b1"]


async def test_lease_is_per_target(open_queue: QueueFactory) -> None:
    """Alerts for another target are never leased by this target's sender."""
    q = await open_queue()
    await q.put([item("x", target="other"), item("a")])
    entries, _ = await lease(q)
    assert checks(entries) == ["a"]


async def test_release_gives_the_lease_back_without_counting_an_attempt(
    open_queue: QueueFactory,
) -> None:
    """Released alerts are leasable again at once and their attempt count is unchanged."""
    q = await open_queue()
    await q.put([item("a")])
    entries, _ = await lease(q)
    await q.release(entries)
    again, _ = await lease(q)
    assert checks(again) == ["a"]
    assert again[0].attempts == 0


# --------------------------------------------------------------------------- group commit


async def test_concurrent_puts_share_transactions(open_queue: QueueFactory, tmp_path: Path) -> None:
    """200 concurrent ingests are committed in far fewer than 200 transactions, and all land."""
    q = await open_queue(cls=CountingQueue)
    assert isinstance(q, CountingQueue)
    await asyncio.gather(*(q.put([item(f"c{i}")]) for i in range(200)))
    print(f"group commit: 200 puts in {len(q.commits)} transactions {q.commits}")
    assert sum(q.commits) == 200
    assert max(q.commits) > 1
    assert len(q.commits) < 200
    assert rows(tmp_path / "queue.db") == 200


async def test_a_commit_larger_than_sqlites_variable_limit_is_split_but_atomic(
    open_queue: QueueFactory, tmp_path: Path
) -> None:
    """Old SQLite builds allow 999 bound values; a big group commit still lands whole and exact."""
    q = await open_queue(cls=CountingQueue)
    assert isinstance(q, CountingQueue)

    def lower_limit(conn: sqlite3.Connection) -> None:
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)

    await q.call(lower_limit)
    batch = [item(f"c{i}", ts=2000 + i, size=i % 7) for i in range(450)]
    await q.put(batch)
    assert q.commits == [450]  # one transaction, in three statements of up to 199 rows
    with sqlite3.connect(tmp_path / "queue.db") as conn:
        got = conn.execute(
            "SELECT target, app_key, identity, payload, size, ts, created = next_attempt"
            " FROM queue ORDER BY id"
        ).fetchall()
    assert got == [
        (i.target, i.app_key, i.identity, i.payload, len(i.payload), i.timestamp, 1) for i in batch
    ]
    count, size, per_target = q.sizes()
    assert (count, size, per_target) == (450, sum(len(i.payload) for i in batch), {TARGET: 450})


async def test_a_lone_put_commits_at_once(open_queue: QueueFactory) -> None:
    """An idle queue commits a single alert in its own transaction, without waiting for company."""
    q = await open_queue(cls=CountingQueue)
    assert isinstance(q, CountingQueue)
    await q.put([item("alone")])
    assert q.commits == [1]


async def test_puts_arriving_during_a_commit_form_the_next_group(open_queue: QueueFactory) -> None:
    """Alerts put while a commit is on disk are gathered into the following transaction."""
    q = await open_queue(cls=CountingQueue)
    assert isinstance(q, CountingQueue)
    first = asyncio.ensure_future(q.put([item("first")]))
    await asyncio.sleep(0)  # the flusher has taken "first" to the queue thread
    rest = [asyncio.ensure_future(q.put([item(f"c{i}")])) for i in range(50)]
    await asyncio.gather(first, *rest)
    assert sum(q.commits) == 51
    assert len(q.commits) < 51


# --------------------------------------------------------------------------- capacity


async def test_max_events_refuses_without_evicting(
    open_queue: QueueFactory, tmp_path: Path
) -> None:
    """At ``max_events`` a put raises QueueFull, every queued alert stays, and an ack makes room."""
    q = await open_queue(max_events=5)
    for i in range(5):
        await q.put([item(f"c{i}")])
    with pytest.raises(QueueFull, match=r"queue\.max_events=5"):
        await q.put([item("overflow")])
    assert rows(tmp_path / "queue.db") == 5
    entries, _ = await lease(q, limit=1)
    assert checks(entries) == ["c0"]
    await q.ack(entries)
    await q.put([item("after")])
    assert rows(tmp_path / "queue.db") == 5
    left, _ = await lease(q)
    assert checks(left) == ["c1", "c2", "c3", "c4", "after"]


async def test_a_request_that_does_not_fit_is_refused_whole(
    open_queue: QueueFactory, tmp_path: Path
) -> None:
    """A multi-alert put that would cross the limit queues none of its alerts."""
    q = await open_queue(max_events=4)
    await q.put([item("a"), item("b")])
    with pytest.raises(QueueFull):
        await q.put([item("c"), item("d"), item("e")])
    assert rows(tmp_path / "queue.db") == 2


async def test_max_bytes_refuses_without_evicting(open_queue: QueueFactory, tmp_path: Path) -> None:
    """At ``max_bytes`` a put raises QueueFull naming the limit; the queued alerts are kept."""
    one = len(item("c0", size=1000).payload)
    q = await open_queue(max_bytes=int(one * 2.5))
    await q.put([item("c0", size=1000)])
    await q.put([item("c1", size=1000)])
    with pytest.raises(QueueFull, match=r"queue\.max_bytes="):
        await q.put([item("c2", size=1000)])
    assert rows(tmp_path / "queue.db") == 2
    assert q.sizes()[1] == 2 * one
    entries, _ = await lease(q, limit=1)
    await q.ack(entries)
    await q.put([item("c2", size=1000)])
    assert rows(tmp_path / "queue.db") == 2


async def test_concurrent_puts_cannot_overshoot_the_limit(
    open_queue: QueueFactory, tmp_path: Path
) -> None:
    """Puts waiting for the same commit count against the limit: exactly ``max_events`` get in."""
    q = await open_queue(max_events=10)
    results = await asyncio.gather(
        *(q.put([item(f"c{i}")]) for i in range(25)), return_exceptions=True
    )
    assert sum(r is None for r in results) == 10
    assert sum(isinstance(r, QueueFull) for r in results) == 15
    assert rows(tmp_path / "queue.db") == 10


async def test_queue_full_suggests_a_retry_after() -> None:
    """QueueFull and QueueUnavailable carry the ``Retry-After`` seconds the ingest answers with."""
    assert QueueFull.retry_after > 0
    assert QueueUnavailable.retry_after > 0


# --------------------------------------------------------------------------- ordering in lease


async def test_lease_skips_identities_busy_in_flight(open_queue: QueueFactory) -> None:
    """Every state of an identity in flight (``busy``) is skipped, older and newer alike."""
    q = await open_queue()
    await q.put([item("x1", identity="X"), item("y1", identity="Y"), item("x2", identity="X")])
    entries, _ = await lease(q, busy={(KEY, "X")})
    assert checks(entries) == ["y1"]


async def test_busy_identity_of_another_app_key_does_not_block(open_queue: QueueFactory) -> None:
    """Identity is per app key: a busy X under key B does not hold back X under key A."""
    q = await open_queue()
    await q.put([item("x-a", identity="X")])
    entries, _ = await lease(q, busy={("B", "X")})
    assert checks(entries) == ["x-a"]


async def test_a_state_waiting_for_retry_blocks_newer_states(open_queue: QueueFactory) -> None:
    """While an older state waits for its retry, newer states of that identity are not leased."""
    clock = FakeClock()
    q = await open_queue(clock=clock)
    await q.put([item("x1", identity="X", ts=1)])
    first, _ = await lease(q)
    await q.retry_later(first, at=clock.now + 10, error="HTTP 503")
    await q.put([item("x2", identity="X", ts=2), item("y1", identity="Y", ts=2)])

    entries, earliest = await lease(q)
    assert checks(entries) == ["y1"]
    await q.ack(entries)
    entries, earliest = await lease(q)
    assert entries == []
    assert earliest == clock.now + 10

    clock.advance(10)
    entries, _ = await lease(q)
    assert checks(entries) == ["x1", "x2"]
    assert [e.attempts for e in entries] == [1, 0]


async def test_nothing_due_reports_when_something_will_be(open_queue: QueueFactory) -> None:
    """With every alert waiting for a retry, lease returns nothing and the earliest due time."""
    clock = FakeClock()
    q = await open_queue(clock=clock)
    await q.put([item("a"), item("b")])
    entries, _ = await lease(q)
    await q.retry_later(entries[:1], at=clock.now + 7, error="e")
    await q.retry_later(entries[1:], at=clock.now + 3, error="e")
    assert await lease(q) == ([], clock.now + 3)


# --------------------------------------------------------------------------- crash recovery, lock


async def test_leases_are_cleared_on_reopen(open_queue: QueueFactory, tmp_path: Path) -> None:
    """Alerts leased by a process that died are leasable at once by the next one, counts intact."""
    q = await open_queue()
    await q.put([item("a"), item("b")])
    leased, _ = await lease(q, lease_for=3600)
    assert len(leased) == 2
    await q.close()  # the lease (an hour) is still on disk, as after kill -9

    q2 = await open_queue()
    assert q2.sizes()[0] == 2
    assert q2.sizes()[1] == sum(len(e.payload) for e in leased)
    again, _ = await lease(q2)
    assert checks(again) == ["a", "b"]


async def test_retry_state_survives_a_restart(open_queue: QueueFactory) -> None:
    """Attempts and the next attempt time are on disk, so a restart does not reset the backoff."""
    clock = FakeClock()
    q = await open_queue(clock=clock)
    await q.put([item("a")])
    entries, _ = await lease(q)
    await q.retry_later(entries, at=clock.now + 50, error="HTTP 502")
    await q.close()

    q2 = await open_queue(clock=clock)
    assert await lease(q2) == ([], clock.now + 50)
    clock.advance(50)
    (entry,), _ = await lease(q2)
    assert entry.attempts == 1


async def test_a_second_opener_is_locked_out(open_queue: QueueFactory, tmp_path: Path) -> None:
    """Only one forwarder may own a queue file; a second gets QueueLocked until the first closes."""
    q = await open_queue()
    other = SQLiteQueue(QueueConfig(path=tmp_path / "queue.db"))
    with pytest.raises(QueueLocked, match=r"in use by another forwarder"):
        await other.open()
    assert not other.is_open
    await q.close()
    await other.open()
    await other.close()


async def test_put_after_close_is_unavailable(open_queue: QueueFactory) -> None:
    """A closed queue refuses puts with QueueUnavailable rather than losing them."""
    q = await open_queue()
    await q.close()
    with pytest.raises(QueueUnavailable):
        await q.put([item("late")])


# --------------------------------------------------------------------------- disk failures


async def fill_disk(q: SQLiteQueue) -> None:
    """Make the database refuse to grow, as a full disk does (SQLite answers SQLITE_FULL)."""

    def cap(conn: sqlite3.Connection) -> None:
        conn.execute("VACUUM")  # no free pages left to reuse
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count={pages}")

    await q.call(cap)


async def free_disk(q: SQLiteQueue) -> None:
    def uncap(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA max_page_count=1073741823")

    await q.call(uncap)


async def test_a_full_disk_makes_put_unavailable(open_queue: QueueFactory, tmp_path: Path) -> None:
    """A put the disk refuses raises QueueUnavailable naming the cause, and queues nothing."""
    q = await open_queue()
    await q.put([item("before", size=BIG)])
    await fill_disk(q)
    results = await asyncio.gather(
        *(q.put([item(f"c{i}", size=BIG)]) for i in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, QueueUnavailable) for r in results), results
    assert "database or disk is full" in str(results[0])
    assert q.last_error is not None
    assert "database or disk is full" in q.last_error
    assert rows(tmp_path / "queue.db") == 1
    assert q.sizes()[0] == 1

    await free_disk(q)
    await q.put([item("after", size=BIG)])
    assert q.last_error is None
    assert rows(tmp_path / "queue.db") == 2


async def test_a_failed_dead_letter_move_leaves_the_alert_queued(
    open_queue: QueueFactory, tmp_path: Path
) -> None:
    """If the dead-letter insert fails the delete is rolled back too: the alert is never lost."""
    q = await open_queue()
    await q.put([item("a", size=BIG)])
    entries, _ = await lease(q)
    await fill_disk(q)
    with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
        await q.dead_letter(entries, reason="clientError", status=400, response="bad", error="e")
    assert rows(tmp_path / "queue.db", "queue") == 1
    assert rows(tmp_path / "queue.db", "dead_letters") == 0
    assert q.sizes()[0] == 1
    await free_disk(q)
    await q.dead_letter(entries, reason="clientError", status=400, response="bad", error="e")
    assert rows(tmp_path / "queue.db", "dead_letters") == 1


# --------------------------------------------------------------------------- dead letters


async def dead_letter_all(
    q: SQLiteQueue, *, reason: str = "clientError", status: int | None = 400
) -> list[Entry]:
    entries, _ = await lease(q)
    await q.dead_letter(
        entries, reason=reason, status=status, response='{"error":"bad"}', error="HTTP 400: bad"
    )
    return entries


async def test_dead_letter_moves_rows_in_one_transaction(
    open_queue: QueueFactory, tmp_path: Path
) -> None:
    """Dead-lettered alerts leave the queue and appear in the store with reason, status and body."""
    clock = FakeClock()
    q = await open_queue(clock=clock)
    await q.put([item("a", ts=11), item("b", ts=12), item("keep")])
    entries, _ = await lease(q, limit=2)
    clock.advance(5)
    await q.dead_letter(
        entries, reason="clientError", status=400, response='{"error":"bad"}', error="HTTP 400"
    )
    assert rows(tmp_path / "queue.db", "queue") == 1
    assert q.sizes()[0] == 1
    listed = await q.call(deadletters.list_dead_letters)
    assert [d.check for d in listed] == ["b", "a"]  # newest first
    d = listed[1]
    assert (d.target, d.reason, d.status, d.attempts) == (TARGET, "clientError", 400, 1)
    assert d.response == '{"error":"bad"}'
    assert d.last_error == "HTTP 400"
    assert d.failed_at == clock.now
    assert d.created == clock.now - 5
    assert d.alert["check"] == "a"
    assert d.summary(now=clock.now + 3)["age_seconds"] == 3.0


async def test_dead_letter_listing_never_shows_the_app_key(open_queue: QueueFactory) -> None:
    """Neither the summary nor the detail of a dead letter contains the app key."""
    q = await open_queue()
    await q.put([item("a", key="very-secret-app-key")])
    await dead_letter_all(q)
    (d,) = await q.call(deadletters.list_dead_letters)
    assert "very-secret-app-key" not in jsonio.dumps_str(d.summary())
    assert "very-secret-app-key" not in jsonio.dumps_str(d.detail())


async def test_list_filters_by_target_and_limit(open_queue: QueueFactory) -> None:
    """Listing can be narrowed to one target and capped in length."""
    q = await open_queue()
    await q.put([item(f"a{i}") for i in range(3)])
    await q.put([item("o1", target="other")])
    await dead_letter_all(q)
    other, _ = await q.lease("other", limit=10, busy=set(), lease_for=60)
    await q.dead_letter(other, reason="authError", status=401, response=None, error=None)
    mine = await q.call(deadletters.list_dead_letters, target=TARGET)
    assert [d.check for d in mine] == ["a2", "a1", "a0"]
    assert [d.check for d in await q.call(deadletters.list_dead_letters, limit=2)] == ["o1", "a2"]
    assert await q.call(deadletters.counts) == {TARGET: 3, "other": 1}
    stats = await q.stats()
    assert stats["other"].dead_letters == 1
    assert stats[TARGET].events == 0


async def test_replay_requeues_as_new(open_queue: QueueFactory, tmp_path: Path) -> None:
    """Replay moves dead letters back into the queue with no attempts, due now, and app key kept."""
    clock = FakeClock()
    q = await open_queue(clock=clock)
    await q.put([item("a"), item("b")])
    await dead_letter_all(q)
    clock.advance(100)
    moved = await q.replay_dead_letters(ids=None, target=None)
    assert moved == 2
    assert rows(tmp_path / "queue.db", "dead_letters") == 0
    assert q.sizes()[0] == 2
    entries, _ = await lease(q)
    assert checks(entries) == ["a", "b"]
    assert all(e.attempts == 0 and e.created == clock.now and e.app_key == KEY for e in entries)


async def test_replay_wakes_the_sender(open_queue: QueueFactory) -> None:
    """Replaying through the queue sets the target's new-work event, so delivery starts at once."""
    q = await open_queue()
    await q.put([item("a")])
    await dead_letter_all(q)
    ev = q.new_work(TARGET)
    ev.clear()
    await q.replay_dead_letters(ids=None, target=None)
    assert ev.is_set()


async def test_replay_by_id_and_by_target(open_queue: QueueFactory) -> None:
    """Replay takes only the listed ids, or only one target's dead letters."""
    q = await open_queue()
    await q.put([item("a"), item("b"), item("c")])
    await q.put([item("o", target="other")])
    await dead_letter_all(q)
    other, _ = await q.lease("other", limit=10, busy=set(), lease_for=60)
    await q.dead_letter(other, reason="authError", status=401, response=None, error=None)
    by_check = {d.check: d.id for d in await q.call(deadletters.list_dead_letters)}

    assert await q.replay_dead_letters(ids=[by_check["b"]], target=None) == 1
    assert checks((await lease(q))[0]) == ["b"]
    assert await q.replay_dead_letters(ids=[], target=None) == 0
    assert await q.replay_dead_letters(ids=None, target="other") == 1
    left = await q.call(deadletters.list_dead_letters)
    assert sorted(d.check for d in left) == ["a", "c"]


def replay_from_another_process(path: Path) -> int:
    """Replay every dead letter over a second connection, as ``forwarder dlq replay`` does."""
    conn = store.connect(path, create=False)
    try:
        return deadletters.replay(conn)
    finally:
        conn.close()


async def test_rows_replayed_by_another_process_are_counted_when_leased(
    open_queue: QueueFactory, tmp_path: Path
) -> None:
    """Alerts the CLI re-queues behind the daemon's back are counted before they are acked."""
    q = await open_queue()
    await q.put([item("a"), item("b")])
    await dead_letter_all(q)
    assert q.sizes()[0] == 0
    assert replay_from_another_process(tmp_path / "queue.db") == 2

    entries, _ = await lease(q)
    assert checks(entries) == ["a", "b"]
    assert q.sizes()[0] == 2
    await q.ack(entries)
    assert q.sizes() == (0, 0, {TARGET: 0})


async def test_rows_replayed_by_another_process_count_against_capacity(
    open_queue: QueueFactory, tmp_path: Path
) -> None:
    """The next commit notices rows another process added, so ``max_events`` still holds."""
    q = await open_queue(max_events=3)
    await q.put([item("a"), item("b")])
    await dead_letter_all(q)
    replay_from_another_process(tmp_path / "queue.db")
    await q.put([item("c")])
    assert q.sizes()[0] == 3
    with pytest.raises(QueueFull):
        await q.put([item("d")])
    assert rows(tmp_path / "queue.db") == 3


async def test_stats_see_rows_replayed_by_another_process_without_a_write(
    open_queue: QueueFactory, tmp_path: Path
) -> None:
    """A scrape reports alerts the CLI re-queued even when nothing was ingested or leased since."""
    q = await open_queue()
    await q.put([item("a"), item("b"), item("c")])
    await dead_letter_all(q)
    assert (await q.stats())[TARGET].events == 0
    replay_from_another_process(tmp_path / "queue.db")
    stats = await q.stats()
    assert stats[TARGET].events == 3
    assert stats[TARGET].dead_letters == 0
    assert q.sizes()[0] == 3


async def test_oldest_age_is_the_age_of_the_first_queued_alert(open_queue: QueueFactory) -> None:
    """``oldest_age`` counts from the oldest alert still queued, and moves on when it is acked."""
    clock = FakeClock()
    q = await open_queue(clock=clock)
    await q.put([item("first")])
    clock.advance(30)
    await q.put([item("second")])
    clock.advance(10)
    assert (await q.stats())[TARGET].oldest_age == pytest.approx(40)
    entries, _ = await lease(q)
    await q.ack([e for e in entries if checks([e]) == ["first"]])
    assert (await q.stats())[TARGET].oldest_age == pytest.approx(10)


async def test_purge_by_id_and_by_age(open_queue: QueueFactory) -> None:
    """Purge deletes the given ids, or dead letters that failed longer ago than the given age."""
    clock = FakeClock()
    q = await open_queue(clock=clock)
    await q.put([item("old1"), item("old2")])
    await dead_letter_all(q)
    clock.advance(8 * 86400)
    await q.put([item("new")])
    await dead_letter_all(q)
    ids = {d.check: d.id for d in await q.call(deadletters.list_dead_letters)}

    assert await q.call(deadletters.purge, ids=[ids["old1"]], now=clock.now) == 1
    assert await q.call(deadletters.purge, older_than=7 * 86400, now=clock.now) == 1
    left = await q.call(deadletters.list_dead_letters)
    assert [d.check for d in left] == ["new"]
    with pytest.raises(ValueError, match="ids or older_than"):
        await q.call(deadletters.purge)


async def test_get_dead_letter_by_id(open_queue: QueueFactory) -> None:
    """One dead letter is found by id with its alert; an unknown id gives None."""
    q = await open_queue()
    await q.put([item("a")])
    await dead_letter_all(q)
    (d,) = await q.call(deadletters.list_dead_letters)
    got = await q.call(deadletters.get_dead_letter, d.id)
    assert got is not None
    assert got.alert["check"] == "a"
    assert await q.call(deadletters.get_dead_letter, d.id + 1000) is None
