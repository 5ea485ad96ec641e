"""The alert-state store on SQLite (forwarder.queue.sqlite.states): what only this backend does.

Its write-through cache (bounded, updated only after a COMMIT), restarts, a failed commit,
files of earlier releases, the read-only admin connection beside the daemon, and the
scheduler's pass on real files. The backend-neutral behaviour is proven by
``test_state_contract.py``.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from forwarder import jsonio
from forwarder.config import QueueConfig
from forwarder.config.schema import FlapConfig, StateConfig
from forwarder.model import Outgoing
from forwarder.queue import QueueUnavailable
from forwarder.queue.contract import PutResult
from forwarder.queue.sqlite import SQLiteQueue
from forwarder.state import Observation, SuppressReason
from tests.fakes.clock import FakeClock
from tests.queue.conftest import KEY, TARGET, checks, item, lease
from tests.queue.test_sqlite import BIG, RELEASE_0_1_0, fill_disk, free_disk

POLICY = StateConfig(repeat_interval=3600.0, retention=86400.0)
DUPLICATE: tuple[str, SuppressReason] = (TARGET, "duplicate")


def alert(
    check: str,
    status: str = "critical",
    *,
    ts: int = 1000,
    size: int = 0,
    policy: StateConfig = POLICY,
    target: str = TARGET,
) -> Outgoing:
    """A mapped alert with the state stage's observation attached, as the pipeline makes it."""
    body: dict[str, object] = {"check": check, "host": "web-1", "status": status, "timestamp": ts}
    if size:
        body["description"] = "x" * size
    return Outgoing(target, KEY, check, jsonio.dumps(body), ts, Observation(status, "", policy))


def state_rows(path: Path) -> dict[str, tuple[str, int]]:
    """Each identity's stored (status, suppressed), read as another process would."""
    with sqlite3.connect(path) as conn:
        got = conn.execute("SELECT identity, status, suppressed FROM alert_states").fetchall()
    conn.close()
    return {identity: (status, suppressed) for identity, status, suppressed in got}


def queued(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        n = int(conn.execute("SELECT COUNT(*) FROM queue").fetchone()[0])
    conn.close()
    return n


Factory = Callable[..., Awaitable[SQLiteQueue]]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def open_sqlite(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Factory]:
    """Open real queues on ``tmp_path/queue.db`` with the test's clock; closed at teardown."""
    opened: list[SQLiteQueue] = []

    async def factory(
        *,
        path: Path | None = None,
        admin: bool = False,
        max_events: int = 1_000_000,
        cache_rows: int = 100_000,
    ) -> SQLiteQueue:
        cfg = QueueConfig(
            path=path or tmp_path / "queue.db", max_events=max_events, synchronous="normal"
        )
        q = SQLiteQueue(cfg, clock=clock, admin=admin, state_cache_rows=cache_rows)
        await q.open()
        opened.append(q)
        return q

    yield factory
    for q in reversed(opened):
        if q.is_open:
            await q.close()


# --------------------------------------------------------------------------- ingest


async def test_a_repeat_is_suppressed_and_counted(open_sqlite: Factory, tmp_path: Path) -> None:
    """The same status again is acknowledged but not queued; the answer and the row count it."""
    q = await open_sqlite()
    assert await q.put([alert("cpu")]) == PutResult(1)
    assert await q.put([alert("cpu")]) == PutResult(0, {DUPLICATE: 1})
    assert await q.put([alert("cpu", "warning")]) == PutResult(1)
    assert queued(tmp_path / "queue.db") == 2
    assert state_rows(tmp_path / "queue.db") == {"cpu": ("warning", 1)}
    assert (await q.stats()).events == 2  # suppressed repeats take no room


async def test_each_put_of_a_group_commit_gets_its_own_answer(open_sqlite: Factory) -> None:
    """Concurrent puts share a transaction but are decided in order, each answered for itself."""
    q = await open_sqlite()
    results = await asyncio.gather(*(q.put([alert("cpu"), item(f"plain-{n}")]) for n in range(20)))
    assert results[0] == PutResult(2)
    # Items without an observation (a replayed dead letter) are queued unconditionally.
    assert results[1:] == [PutResult(1, {DUPLICATE: 1})] * 19
    assert (await q.stats()).events == 21


async def test_a_put_with_refused_alerts_stores_both_with_its_decisions(
    open_sqlite: Factory, tmp_path: Path
) -> None:
    """State rows, queued alerts and refused dead letters land in the same commit."""
    q = await open_sqlite()
    refused = [(item("bad"), "missingPrimaryProperty")]
    assert await q.put([alert("cpu"), alert("cpu")], refused) == PutResult(1, {DUPLICATE: 1})
    assert [d.reason for d in await q.dead_letters.list()] == ["missingPrimaryProperty"]
    assert checks((await lease(q)).entries) == ["cpu"]
    assert state_rows(tmp_path / "queue.db") == {"cpu": ("critical", 1)}


async def test_state_survives_a_restart(open_sqlite: Factory, clock: FakeClock) -> None:
    """After close and reopen a repeat is still suppressed; the repeat interval still runs."""
    q = await open_sqlite()
    await q.put([alert("cpu")])
    await q.close()
    q = await open_sqlite()
    assert await q.put([alert("cpu")]) == PutResult(0, {DUPLICATE: 1})
    clock.advance(POLICY.repeat_interval)
    assert await q.put([alert("cpu")]) == PutResult(1)  # the reminder


async def test_decisions_stay_right_beyond_the_cache_bound(
    open_sqlite: Factory, tmp_path: Path
) -> None:
    """More identities than the cache holds: evicted rows are read back, never forgotten."""
    q = await open_sqlite(cache_rows=10)
    names = [f"c{n}" for n in range(50)]
    for name in names:  # one by one, so the cache evicts as it goes
        assert await q.put([alert(name)]) == PutResult(1)
    assert len(q.cache) == 10
    again = await asyncio.gather(*(q.put([alert(name)]) for name in names))
    assert again == [PutResult(0, {DUPLICATE: 1})] * 50
    changed = await q.put([alert(name, "ok") for name in names])
    assert changed == PutResult(50)
    assert len(q.cache) == 10
    assert set(state_rows(tmp_path / "queue.db").values()) == {("ok", 1)}


async def test_a_failed_commit_leaves_the_state_unchanged(
    open_sqlite: Factory, tmp_path: Path
) -> None:
    """A commit the disk refuses stores no row change and the cache remembers none either."""
    q = await open_sqlite()
    await q.put([alert("cpu", size=BIG)])
    await fill_disk(q)
    with pytest.raises(QueueUnavailable, match="database or disk is full"):
        await q.put([alert("cpu", "warning", size=2 * BIG), alert("new", size=BIG)])
    assert state_rows(tmp_path / "queue.db") == {"cpu": ("critical", 0)}
    await free_disk(q)
    # Had the failed decisions been remembered, these would be suppressed as repeats.
    assert await q.put([alert("cpu", "warning"), alert("new")]) == PutResult(2)
    assert await q.put([alert("cpu", "warning"), alert("new")]) == PutResult(0, {DUPLICATE: 2})
    assert (await q.stats()).events == 3


# --------------------------------------------------------------------------- files and admin


async def test_a_file_of_release_0_1_0_gets_the_state_table(
    open_sqlite: Factory, tmp_path: Path
) -> None:
    """An older queue file opens with its alerts and gains the state table and its indexes."""
    path = tmp_path / "old.db"
    shutil.copyfile(RELEASE_0_1_0, path)
    q = await open_sqlite(path=path)
    assert (await q.stats()).events == 3
    assert await q.put([alert("cpu")]) == PutResult(1)
    assert await q.put([alert("cpu")]) == PutResult(0, {DUPLICATE: 1})
    with sqlite3.connect(path) as conn:
        indexes = {
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='alert_states'"
            )
        }
    conn.close()
    assert {"alert_states_key", "alert_states_due", "alert_states_open"} <= indexes
    assert (await q.stats()).events == 4


async def test_an_admin_connection_to_a_file_without_states_lists_nothing(
    open_sqlite: Factory, tmp_path: Path
) -> None:
    """``forwarder alerts`` on a file no new daemon opened yet: empty, and no table created."""
    path = tmp_path / "old.db"
    shutil.copyfile(RELEASE_0_1_0, path)
    admin = await open_sqlite(path=path, admin=True)
    assert await admin.alerts.list() == []
    counts = await admin.alerts.counts()
    assert (counts.open, counts.flapping) == ({}, {})
    await admin.close()
    with sqlite3.connect(path) as conn:
        assert (
            conn.execute("SELECT name FROM sqlite_master WHERE name='alert_states'").fetchall()
            == []
        )
    conn.close()


async def test_admin_lists_and_counts_beside_the_running_queue(
    open_sqlite: Factory, clock: FakeClock
) -> None:
    """The CLI's read-only connection sees what the daemon committed; it cannot tick."""
    q = await open_sqlite()
    for a in (alert("cpu"), alert("disk", "warning", target="other"), alert("mem", "ok")):
        await q.put([a])
        clock.advance(1)
    await q.put([alert("cpu")])  # seen again: the newest
    # A repeat's row waits for the next scheduler pass (at most a second in the
    # daemon) before another connection sees it.
    await q.alerts.tick()
    admin = await open_sqlite(admin=True)
    views = await admin.alerts.list()
    assert [(v.check, v.status, v.suppressed) for v in views] == [
        ("cpu", "critical", 1),
        ("mem", "ok", 0),
        ("disk", "warning", 0),
    ]
    assert views[0].last_seen == clock.time()
    firing = await admin.alerts.list(status="firing", target=TARGET)
    assert [v.check for v in firing] == ["cpu"]
    assert [v.check for v in await admin.alerts.list(status="ok")] == ["mem"]
    assert len(await admin.alerts.list(limit=1)) == 1
    counts = await admin.alerts.counts()
    assert (counts.open, counts.flapping) == ({TARGET: 1, "other": 1}, {})
    with pytest.raises(QueueUnavailable, match="admin"):
        await admin.alerts.tick()


async def test_flapping_identities_are_listed_and_counted(open_sqlite: Factory) -> None:
    """An identity damped for flapping shows under ``flapping`` and in the flapping gauge."""
    policy = StateConfig(flap=FlapConfig(transitions=2, window=600.0, hold=300.0))
    q = await open_sqlite()
    await q.put([alert("steady", policy=policy)])
    for status in ("critical", "ok", "critical", "ok"):
        await q.put([alert("cpu", status, policy=policy)])
    (flapping,) = await q.alerts.list(status="flapping")
    assert (flapping.check, flapping.flapping, flapping.status) == ("cpu", True, "ok")
    counts = await q.alerts.counts()
    assert (counts.open, counts.flapping) == ({TARGET: 1}, {TARGET: 1})


async def test_the_owners_counts_follow_every_write_and_agree_with_the_file(
    open_sqlite: Factory, clock: FakeClock
) -> None:
    """The daemon's gauges (kept in memory) match a fresh count from the file at every step.

    Openings, recoveries, flaps, auto-resolves, expiry and a restart all move them.
    """
    flappy = StateConfig(flap=FlapConfig(transitions=2, window=600.0, hold=300.0))
    resolving = StateConfig(resolve_after=60.0, retention=120.0)
    q = await open_sqlite()
    admin = await open_sqlite(admin=True)

    async def agree() -> dict[str, dict[str, int]]:
        mine, theirs = await q.alerts.counts(), await admin.alerts.counts()
        assert (mine.open, mine.flapping) == (theirs.open, theirs.flapping)
        return {"open": dict(mine.open), "flapping": dict(mine.flapping)}

    await q.put([alert(f"c{n}", policy=resolving) for n in range(3)])
    await q.put([alert("x", target="other"), alert("c0", "ok", policy=resolving)])
    assert await agree() == {"open": {TARGET: 2, "other": 1}, "flapping": {}}
    for status in ("ok", "critical", "ok", "critical"):
        await q.put([alert("f", status, policy=flappy)])
    assert await agree() == {"open": {TARGET: 3, "other": 1}, "flapping": {TARGET: 1}}
    clock.advance(60)
    assert (await q.alerts.tick()).resolved == {TARGET: 2}
    assert await agree() == {"open": {TARGET: 1, "other": 1}, "flapping": {TARGET: 1}}
    clock.advance(300)
    passed = await q.alerts.tick()  # the resolved ones' retention is over too
    assert (passed.released, passed.expired) == ({TARGET: 1}, 3)
    assert await agree() == {"open": {TARGET: 1, "other": 1}, "flapping": {}}
    await q.close()
    q = await open_sqlite()
    assert await agree() == {"open": {TARGET: 1, "other": 1}, "flapping": {}}
    await q.put([alert("c1", policy=resolving)])
    assert await agree() == {"open": {TARGET: 2, "other": 1}, "flapping": {}}


async def test_counts_read_only_the_partial_indexes(open_sqlite: Factory) -> None:
    """Gauges are scraped often: each count is answered from its partial index, not the table."""
    q = await open_sqlite()
    await q.put([alert("cpu")])

    def plans() -> list[str]:
        out = []
        for where in ("status <> 'ok'", "flapping = 1"):
            rows = q.conn.execute(
                "EXPLAIN QUERY PLAN SELECT target, COUNT(*) FROM alert_states"
                f" WHERE {where} GROUP BY target"
            ).fetchall()
            out.append(" ".join(str(r[-1]) for r in rows))
        return out

    open_plan, flapping_plan = await q.run(plans)
    assert "COVERING INDEX alert_states_open" in open_plan
    assert "COVERING INDEX alert_states_flapping" in flapping_plan


# --------------------------------------------------------------------------- the scheduler


async def test_tick_resolves_a_silent_identity_once(
    open_sqlite: Factory, clock: FakeClock, tmp_path: Path
) -> None:
    """A non-ok identity unseen for ``resolve_after`` gets one ``ok`` queued for it, not two."""
    policy = StateConfig(resolve_after=600.0, retention=86400.0)
    q = await open_sqlite()
    seen = clock.time()
    await q.put([alert("cpu", policy=policy)])
    await q.ack((await lease(q)).entries)
    early = await q.alerts.tick()
    assert (early.resolved, early.next_due) == ({}, clock.time() + 600)
    clock.advance(600)
    done = await q.alerts.tick()
    assert (done.resolved, done.more) == ({TARGET: 1}, False)
    assert done.next_due == seen + 86400  # resolved: kept until unseen for the retention
    assert q.new_work(TARGET).is_set()
    (sent,) = (await lease(q)).entries
    body = jsonio.loads(sent.payload)
    assert (body["status"], body["resolved_by"], body["timestamp"]) == (
        "ok",
        "forwarder",
        int(clock.time()),
    )
    again = await q.alerts.tick()
    assert again.resolved == {}
    assert state_rows(tmp_path / "queue.db") == {"cpu": ("ok", 0)}
    assert (await q.stats()).events == 1
    # A repeat of the resolution by the source itself is now a duplicate.
    assert await q.put([alert("cpu", "ok", policy=policy)]) == PutResult(0, {DUPLICATE: 1})


async def test_tick_expires_an_ok_identity_after_its_retention(
    open_sqlite: Factory, clock: FakeClock, tmp_path: Path
) -> None:
    """Resolved and unseen for ``retention``: the row is deleted, from the file and the cache."""
    q = await open_sqlite()
    await q.put([alert("cpu", "ok"), alert("mem")])
    clock.advance(POLICY.retention - 1)
    assert (await q.alerts.tick()).expired == 0
    clock.advance(1)
    result = await q.alerts.tick()
    assert (result.expired, result.next_due) == (1, None)  # mem: critical, no resolve_after
    assert set(state_rows(tmp_path / "queue.db")) == {"mem"}
    assert [v.check for v in await q.alerts.list()] == ["mem"]
    # Forgotten: the next ok is a new identity's first alert, and queued.
    assert await q.put([alert("cpu", "ok")]) == PutResult(1)


async def test_tick_stops_at_its_limit_oldest_due_first(
    open_sqlite: Factory, clock: FakeClock
) -> None:
    """A pass takes ``limit`` rows, says more are due, and the next pass takes the rest."""
    q = await open_sqlite()
    for n in range(5):
        await q.put([alert(f"c{n}", "ok")])
        clock.advance(1)
    clock.advance(POLICY.retention)
    first = await q.alerts.tick(limit=3)
    assert (first.expired, first.more) == (3, True)
    assert first.next_due is not None
    assert first.next_due <= clock.time()
    second = await q.alerts.tick(limit=3)
    assert (second.expired, second.more, second.next_due) == (2, False, None)


async def test_a_resolve_that_does_not_fit_leaves_its_row_due(
    open_sqlite: Factory, clock: FakeClock
) -> None:
    """On a full queue the auto-resolve waits, still due, and goes out once there is room."""
    policy = StateConfig(resolve_after=60.0)
    q = await open_sqlite(max_events=1)
    await q.put([alert("cpu", policy=policy)])
    clock.advance(60)
    blocked = await q.alerts.tick()
    assert blocked.resolved == {}
    assert blocked.next_due is not None
    assert blocked.next_due <= clock.time()
    assert [v.status for v in await q.alerts.list()] == ["critical"]
    await q.ack((await lease(q)).entries)
    assert (await q.alerts.tick()).resolved == {TARGET: 1}
    assert (await q.stats()).events == 1


# --------------------------------------------------------------------------- coalesced repeats


async def test_a_repeats_row_is_written_within_a_second_not_per_repeat(
    open_sqlite: Factory, tmp_path: Path, clock: FakeClock
) -> None:
    """A storm of repeats does not write a row per repeat: the rows of pure repeats wait up to a
    second (queue clock) and go with a later commit, each identity's latest only."""
    path = tmp_path / "queue.db"
    q = await open_sqlite()
    await q.put([alert("cpu"), alert("disk")])
    for _ in range(5):
        assert await q.put([alert("cpu")]) == PutResult(0, {DUPLICATE: 1})
    assert state_rows(path) == {"cpu": ("critical", 0), "disk": ("critical", 0)}
    clock.advance(1)
    await q.put([alert("disk")])  # a second on: every waiting row goes with this commit
    assert state_rows(path) == {"cpu": ("critical", 5), "disk": ("critical", 1)}


async def test_a_status_change_is_written_by_its_own_commit(
    open_sqlite: Factory, tmp_path: Path
) -> None:
    """What decisions depend on never waits: a change is on disk when its put returns."""
    path = tmp_path / "queue.db"
    q = await open_sqlite()
    await q.put([alert("cpu")])
    await q.put([alert("cpu")])  # a repeat: waits
    assert await q.put([alert("cpu", "ok")]) == PutResult(1)
    assert state_rows(path) == {"cpu": ("ok", 1)}


async def test_waiting_rows_are_written_at_close_and_by_a_scheduler_pass(
    open_sqlite: Factory, tmp_path: Path
) -> None:
    """A stop (SIGTERM) loses no suppressed count; a scheduler pass writes them too."""
    path = tmp_path / "queue.db"
    q = await open_sqlite()
    await q.put([alert("cpu"), alert("disk")])
    await q.put([alert("cpu")])
    await q.alerts.tick()
    assert state_rows(path)["cpu"] == ("critical", 1)
    await q.put([alert("disk")])
    await q.close()
    assert state_rows(path) == {"cpu": ("critical", 1), "disk": ("critical", 1)}
    q = await open_sqlite()
    assert await q.put([alert("disk")]) == PutResult(0, {DUPLICATE: 1})


async def test_a_waiting_row_evicted_from_the_cache_is_still_the_one_decided_on(
    open_sqlite: Factory, tmp_path: Path, clock: FakeClock
) -> None:
    """With a cache of two rows, an identity whose repeat waits and whose cached row was evicted
    is decided on its waiting row, not on the older one in the file: no count is lost."""
    q = await open_sqlite(cache_rows=2)
    await q.put([alert("cpu")])
    await q.put([alert("cpu")])  # waits (suppressed 1)
    await q.put([alert("a"), alert("b"), alert("c")])  # evicts cpu from the cache
    await q.put([alert("cpu")])  # suppressed 2
    await q.alerts.tick()
    assert state_rows(tmp_path / "queue.db")["cpu"] == ("critical", 2)
