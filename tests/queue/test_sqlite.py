"""What only the SQLite backend does (forwarder.queue.sqlite): group commit, the lock file,
SQLite's limits, a full disk, rows written by another process, and files of earlier releases.

The contract itself is proven for SQLite by ``test_contract.py``.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import pytest

from forwarder.config import QueueConfig
from forwarder.model import Identity, Outgoing
from forwarder.queue import QueueFull, QueueLocked, QueueUnavailable
from forwarder.queue.sqlite import SQLiteQueue
from tests.fakes.clock import FakeClock
from tests.queue.conftest import TARGET, checks, dead_letter_all, item, lease

BIG = 64 * 1024  # payloads this large need fresh pages, so a full database refuses them
RELEASE_0_1_0 = Path(__file__).parent / "data" / "queue-0.1.0.db"


class CountingQueue(SQLiteQueue):
    """The real queue, recording how many alerts each commit transaction carried."""

    def __init__(self, cfg: QueueConfig, *, clock: FakeClock) -> None:
        super().__init__(cfg, clock=clock)
        self.commits: list[int] = []

    def _insert_sync(self, items: Sequence[Outgoing]) -> None:
        super()._insert_sync(items)
        self.commits.append(len(items))


def rows(path: Path, table: str = "queue") -> int:
    """Count rows with a separate connection, as another process would see them."""
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


Factory = Callable[..., Awaitable[SQLiteQueue]]


@pytest.fixture
async def sqlite_queue(tmp_path: Path) -> AsyncIterator[Factory]:
    """Open real SQLite queues on ``tmp_path/queue.db``; closed at teardown."""
    opened: list[SQLiteQueue] = []
    clock = FakeClock()

    async def factory(
        *, max_events: int = 1_000_000, cls: type[SQLiteQueue] = SQLiteQueue, admin: bool = False
    ) -> SQLiteQueue:
        cfg = QueueConfig(path=tmp_path / "queue.db", max_events=max_events, synchronous="normal")
        q = CountingQueue(cfg, clock=clock) if cls is CountingQueue else cls(cfg, admin=admin)
        await q.open()
        opened.append(q)
        return q

    yield factory
    for q in reversed(opened):
        if q.is_open:
            await q.close()


# --------------------------------------------------------------------------- group commit


async def test_concurrent_puts_share_transactions(sqlite_queue: Factory, tmp_path: Path) -> None:
    """200 concurrent ingests are committed in far fewer than 200 transactions, and all land."""
    q = await sqlite_queue(cls=CountingQueue)
    assert isinstance(q, CountingQueue)
    await asyncio.gather(*(q.put([item(f"c{i}")]) for i in range(200)))
    assert sum(q.commits) == 200
    assert max(q.commits) > 1
    assert len(q.commits) < 200
    assert rows(tmp_path / "queue.db") == 200


async def test_a_lone_put_commits_at_once(sqlite_queue: Factory) -> None:
    """An idle queue commits a single alert in its own transaction, without waiting for company."""
    q = await sqlite_queue(cls=CountingQueue)
    assert isinstance(q, CountingQueue)
    await q.put([item("alone")])
    assert q.commits == [1]


async def test_puts_arriving_during_a_commit_form_the_next_group(sqlite_queue: Factory) -> None:
    """Alerts put while a commit is on disk are gathered into the following transaction."""
    q = await sqlite_queue(cls=CountingQueue)
    assert isinstance(q, CountingQueue)
    first = asyncio.ensure_future(q.put([item("first")]))
    await asyncio.sleep(0)  # the commit of "first" has gone to the queue thread
    rest = [asyncio.ensure_future(q.put([item(f"c{i}")])) for i in range(50)]
    await asyncio.gather(first, *rest)
    assert sum(q.commits) == 51
    assert len(q.commits) < 51


async def test_a_commit_larger_than_sqlites_variable_limit_is_split_but_atomic(
    sqlite_queue: Factory, tmp_path: Path
) -> None:
    """Old SQLite builds allow 999 bound values; a big group commit still lands whole and exact."""
    q = await sqlite_queue(cls=CountingQueue)
    assert isinstance(q, CountingQueue)

    def lower_limit() -> None:
        q.conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)

    await q.run(lower_limit)
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
    stats = await q.stats()
    assert (stats.events, stats.bytes) == (450, sum(len(i.payload) for i in batch))


# --------------------------------------------------------------------------- ownership


async def test_a_second_owner_is_locked_out(sqlite_queue: Factory, tmp_path: Path) -> None:
    """Only one forwarder may own a queue file; a second gets QueueLocked until the first closes."""
    q = await sqlite_queue()
    other = SQLiteQueue(QueueConfig(path=tmp_path / "queue.db"))
    with pytest.raises(QueueLocked, match=r"in use by another forwarder"):
        await other.open()
    assert not other.is_open
    await q.close()
    await other.open()
    await other.close()


async def test_the_owner_releases_a_dead_owners_leases_at_once(sqlite_queue: Factory) -> None:
    """Holding the lock proves the old leases' owner is dead: they are free without waiting."""
    q = await sqlite_queue()
    await q.put([item("a"), item("b")])
    assert len((await lease(q, lease_for=3600)).entries) == 2
    await q.close()  # the hour-long lease is still on disk, as after kill -9
    q2 = await sqlite_queue()
    assert checks((await lease(q2)).entries) == ["a", "b"]


async def test_an_admin_connection_takes_no_lock_and_leaves_leases_alone(
    sqlite_queue: Factory,
) -> None:
    """``forwarder dlq`` beside a running daemon neither waits for the lock nor frees its leases."""
    q = await sqlite_queue()
    await q.put([item("a"), item("b")])
    leased = (await lease(q, lease_for=3600)).entries
    admin = await sqlite_queue(admin=True)
    assert (await admin.stats()).events == 2
    assert (await lease(q)).entries == []  # still leased
    await q.ack(leased)


async def test_an_admin_connection_needs_an_existing_file(tmp_path: Path) -> None:
    """The dead-letter commands never create a queue where there was none."""
    admin = SQLiteQueue(QueueConfig(path=tmp_path / "none.db"), admin=True)
    with pytest.raises(FileNotFoundError):
        await admin.open()
    assert not (tmp_path / "none.db").exists()


# --------------------------------------------------------------------------- a full disk


async def fill_disk(q: SQLiteQueue) -> None:
    """Make the database refuse to grow, as a full disk does (SQLite answers SQLITE_FULL)."""

    def cap() -> None:
        q.conn.execute("VACUUM")  # no free pages left to reuse
        pages = q.conn.execute("PRAGMA page_count").fetchone()[0]
        q.conn.execute(f"PRAGMA max_page_count={pages}")

    await q.run(cap)


async def free_disk(q: SQLiteQueue) -> None:
    await q.run(lambda: q.conn.execute("PRAGMA max_page_count=1073741823"))


async def test_a_full_disk_makes_put_unavailable(sqlite_queue: Factory, tmp_path: Path) -> None:
    """A put the disk refuses raises QueueUnavailable naming the cause, and queues nothing."""
    q = await sqlite_queue()
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
    assert (await q.stats()).events == 1
    await free_disk(q)
    await q.put([item("after", size=BIG)])
    assert q.last_error is None
    assert rows(tmp_path / "queue.db") == 2


async def test_a_failed_dead_letter_move_leaves_the_alert_queued(
    sqlite_queue: Factory, tmp_path: Path
) -> None:
    """If the dead-letter insert fails the delete is rolled back too: the alert is never lost."""
    q = await sqlite_queue()
    await q.put([item("a", size=BIG)])
    entries = (await lease(q)).entries
    await fill_disk(q)
    with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
        await q.dead_letter(entries, reason="clientError", status=400, response="bad", error="e")
    assert (rows(tmp_path / "queue.db"), rows(tmp_path / "queue.db", "dead_letters")) == (1, 0)
    assert (await q.stats()).events == 1
    await free_disk(q)
    await q.dead_letter(entries, reason="clientError", status=400, response="bad", error="e")
    assert rows(tmp_path / "queue.db", "dead_letters") == 1


# --------------------------------------------------------------------------- other writers


async def replay_from_another_process(path: Path) -> int:
    """Replay every dead letter over an admin connection, as ``forwarder dlq replay`` does."""
    admin = SQLiteQueue(QueueConfig(path=path), admin=True)
    await admin.open()
    try:
        return await admin.dead_letters.replay()
    finally:
        await admin.close()


async def test_rows_replayed_by_another_process_count_against_capacity(
    sqlite_queue: Factory, tmp_path: Path
) -> None:
    """The next commit notices rows another process added, so ``max_events`` still holds."""
    q = await sqlite_queue(max_events=3)
    await q.put([item("a"), item("b")])
    await dead_letter_all(q)
    assert await replay_from_another_process(tmp_path / "queue.db") == 2
    await q.put([item("c")])
    assert (await q.stats()).events == 3
    with pytest.raises(QueueFull):
        await q.put([item("d")])
    assert rows(tmp_path / "queue.db") == 3


async def test_stats_see_rows_replayed_by_another_process_without_a_write(
    sqlite_queue: Factory, tmp_path: Path
) -> None:
    """A scrape reports alerts the CLI re-queued even when nothing was ingested or leased since."""
    q = await sqlite_queue()
    await q.put([item("a"), item("b"), item("c")])
    await dead_letter_all(q)
    assert (await q.stats()).events == 0
    await replay_from_another_process(tmp_path / "queue.db")
    stats = await q.stats()
    assert (stats.targets[TARGET].events, stats.targets[TARGET].dead_letters) == (3, 0)


# --------------------------------------------------------------------------- upgrades


async def test_a_queue_written_by_release_0_1_0_opens_and_leases_in_order(tmp_path: Path) -> None:
    """A file from before the storage contract keeps every alert, dead letter and state order."""
    path = tmp_path / "queue.db"
    shutil.copyfile(RELEASE_0_1_0, path)
    q = SQLiteQueue(QueueConfig(path=path, synchronous="normal"))
    await q.open()
    try:
        stats = await q.stats()
        assert (stats.events, stats.targets[TARGET].dead_letters) == (3, 1)
        (dead,) = await q.dead_letters.list()
        assert (dead.check, dead.reason, dead.status) == ("disk:web-2", "clientError", 400)
        first = (await lease(q)).entries
        # Two states of cpu:web-1 and one of mem:web-3, oldest first, app key kept.
        assert [(e.check, e.timestamp) for e in first] == [
            ("cpu:web-1", 1_699_999_990),
            ("mem:web-3", 1_699_999_992),
            ("cpu:web-1", 1_699_999_995),
        ]
        assert {e.app_key for e in first} == {"release-0.1.0-app-key"}
        assert Identity.from_key(first[0].identity) == Identity("cpu:web-1", ("web-1", "", "", ""))
        await q.ack(first)
        assert (await q.stats()).events == 0
    finally:
        await q.close()
