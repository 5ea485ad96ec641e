"""The durable queue: alerts are committed here before the ingest answers 200.

All SQLite work runs on one dedicated thread that owns the connection, so the
event loop never blocks on disk. Ingest requests that arrive while a commit is
in progress are gathered and committed together in the next transaction
(group commit): under load many requests share one fsync, and an idle
forwarder still commits a lone alert at once.

Work handed to a sender is *leased* until ``lease_until``; a daemon killed
with ``kill -9`` leaves leases behind that simply expire (and are cleared at
start-up, since an exclusive lock file guarantees one daemon per queue), so
every acknowledged, undelivered alert is sent again: at-least-once delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import os
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from forwarder import deadletters, store
from forwarder.config import QueueConfig

P = ParamSpec("P")
R = TypeVar("R")


class QueueFull(Exception):
    """The queue is at ``queue.max_events`` or ``queue.max_bytes``; try again later."""

    retry_after = 5


class QueueUnavailable(Exception):
    """The queue cannot commit (disk full, directory unwritable, I/O error)."""

    retry_after = 10


class QueueLocked(Exception):
    """Another forwarder already owns this queue file."""


@dataclass(slots=True)  # not frozen: built once per alert on the ingest hot path
class Outgoing:
    """A mapped alert ready to be queued for one target and app key."""

    target: str
    app_key: str
    identity: str
    payload: bytes
    timestamp: int


@dataclass(frozen=True, slots=True)
class Entry:
    """A queued alert as a sender leases it."""

    id: int
    target: str
    app_key: str
    identity: str
    payload: bytes
    timestamp: int
    created: float
    attempts: int


@dataclass(frozen=True, slots=True)
class TargetStats:
    """What the queue holds for one target."""

    events: int
    oldest_age: float
    dead_letters: int


class SQLiteQueue:
    """The queue and dead-letter store on one SQLite file.

    ``clock`` returns Unix seconds; tests pass a fake one.
    """

    def __init__(self, cfg: QueueConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.path = Path(cfg.path)
        self._clock = clock
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._pending: list[tuple[Sequence[Outgoing], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        # Accounting, written only on the queue thread (reads elsewhere are
        # advisory: a capacity check may be a commit late, never unsafe).
        self._count = 0
        self._bytes = 0
        self._per_target: dict[str, int] = defaultdict(int)
        self._reserved_count = 0
        self._reserved_bytes = 0
        # The highest queue row id the counters include. A row above it that this
        # process did not insert came from another one (``forwarder dlq replay``).
        self._counted_upto = 0
        self._new_work: dict[str, asyncio.Event] = {}
        self.last_error: str | None = None
        self.is_open = False

    # ----------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        """Lock, open and recover the queue; clear leases left by a previous process."""
        self._lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="queue")
        try:
            await self._run(self._open_sync)
        except BaseException:
            self._executor.shutdown(wait=True)
            self._executor = None
            self._unlock()
            raise
        self.is_open = True

    def _open_sync(self) -> None:
        self._conn = store.connect(self.path, synchronous=self.cfg.synchronous)
        self._conn.execute("UPDATE queue SET lease_until=0 WHERE lease_until>0")
        self._recount_sync()

    async def close(self) -> None:
        """Commit what is pending, then close the file and release the lock."""
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher
        self.is_open = False
        if self._executor is not None:
            if self._conn is not None:
                conn = self._conn
                await self._run(conn.close)
            self._executor.shutdown(wait=True)
            self._executor = None
        self._conn = None
        self._unlock()

    def _lock(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise QueueLocked(
                f"queue {self.path} is in use by another forwarder (lock {self.path}.lock)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    async def _run(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        if self._executor is None:
            raise QueueUnavailable("queue is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    @property
    def conn(self) -> sqlite3.Connection:
        assert self._conn is not None, "queue not open"
        assert threading.current_thread().name.startswith("queue"), "queue thread only"
        return self._conn

    # ----------------------------------------------------------------- ingest side

    def new_work(self, target: str) -> asyncio.Event:
        """An event set whenever alerts for ``target`` are committed."""
        ev = self._new_work.get(target)
        if ev is None:
            ev = self._new_work[target] = asyncio.Event()
        return ev

    async def put(self, items: Sequence[Outgoing]) -> None:
        """Commit ``items`` durably; return only once they are on disk.

        Raises :class:`QueueFull` when the bounds would be exceeded (nothing is
        evicted to make room) and :class:`QueueUnavailable` when the disk
        refuses the write. Either way nothing of ``items`` is queued.
        """
        if not self.is_open:
            raise QueueUnavailable("queue is closed")
        if not items:
            return
        size = sum(len(i.payload) for i in items)
        if (
            self._count + self._reserved_count + len(items) > self.cfg.max_events
            or self._bytes + self._reserved_bytes + size > self.cfg.max_bytes
        ):
            raise QueueFull(
                f"queue full ({self._count} alerts, {self._bytes} bytes; limits "
                f"queue.max_events={self.cfg.max_events}, queue.max_bytes={self.cfg.max_bytes})"
            )
        self._reserved_count += len(items)
        self._reserved_bytes += size
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((items, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop())
        # Not shielded: if the client goes away the commit still happens (the
        # items are already in the flush list); only the waiting stops.
        try:
            await fut
        finally:
            self._reserved_count -= len(items)
            self._reserved_bytes -= size

    async def _flush_loop(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            items = [i for group, _ in batch for i in group]
            try:
                await self._run(self._insert_sync, items)
            except QueueUnavailable as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(QueueUnavailable(str(exc)))
                continue
            except BaseException as exc:  # e.g. cancellation at shutdown
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(QueueUnavailable(f"queue commit failed: {exc!r}"))
                raise
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)
            for target in {i.target for i in items}:
                self.new_work(target).set()

    def _insert_sync(self, items: Sequence[Outgoing]) -> None:
        now = self._clock()
        rows = [
            (i.target, i.app_key, i.identity, i.payload, len(i.payload), i.timestamp, now, now)
            for i in items
        ]
        conn = self.conn
        # One multi-row INSERT per group commit rather than executemany: in
        # autocommit mode a single statement is its own transaction, and
        # sqlite3 releases and re-takes the GIL around every step, so one step
        # instead of one per row keeps the event loop and this thread from
        # handing the GIL back and forth (up to sys.getswitchinterval() each).
        chunks = [rows[i : i + _ROWS_PER_INSERT] for i in range(0, len(rows), _ROWS_PER_INSERT)]
        try:
            if len(chunks) > 1:
                conn.execute("BEGIN IMMEDIATE")
            for chunk in chunks:
                cur = conn.execute(_insert_sql(len(chunk)), [v for row in chunk for v in row])
            if len(chunks) > 1:
                conn.execute("COMMIT")
            # AUTOINCREMENT ids inside one write transaction are consecutive.
            last_id = int(cur.lastrowid or 0)
        except sqlite3.Error as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            self.last_error = f"queue write failed: {exc}"
            raise QueueUnavailable(self.last_error) from None
        self.last_error = None
        if last_id - len(rows) != self._counted_upto:
            self._recount_sync()  # another process inserted rows since we last counted
            return
        self._counted_upto = last_id
        self._count += len(rows)
        self._bytes += sum(r[4] for r in rows)
        for r in rows:
            self._per_target[r[0]] += 1

    # ----------------------------------------------------------------- sender side

    async def lease(
        self, target: str, *, limit: int, busy: set[tuple[str, str]], lease_for: float
    ) -> tuple[list[Entry], float | None]:
        """Lease up to ``limit`` due alerts of one app key, oldest first.

        An alert is skipped while an older state of the same identity (same
        app key) is in flight (``busy``) or waiting for a retry, so a newer
        state never overtakes an older one. Returns the entries and, when
        nothing was due, the earliest time something becomes due (or None).
        """
        return await self._run(self._lease_sync, target, limit, busy, lease_for)

    def _lease_sync(
        self, target: str, limit: int, busy: set[tuple[str, str]], lease_for: float
    ) -> tuple[list[Entry], float | None]:
        now = self._clock()
        rows = self.conn.execute(
            "SELECT id, app_key, identity, payload, ts, created, attempts, next_attempt"
            " FROM queue WHERE target=? AND lease_until<=? ORDER BY id LIMIT ?",
            (target, now, limit * 4),
        ).fetchall()
        if rows and max(r[0] for r in rows) > self._counted_upto:
            self._recount_sync()  # rows another process inserted: count them before acking
        blocked = set(busy)
        chosen: list[Entry] = []
        app_key: str | None = None
        earliest: float | None = None
        for rid, key, identity, payload, ts, created, attempts, next_attempt in rows:
            ident = (key, identity)
            if ident in blocked:
                continue
            if next_attempt > now:
                blocked.add(ident)
                earliest = next_attempt if earliest is None else min(earliest, next_attempt)
                continue
            if app_key is None:
                app_key = key
            elif key != app_key:
                continue
            chosen.append(Entry(rid, target, key, identity, payload, ts, created, attempts))
            if len(chosen) >= limit:
                break
        if chosen:
            ids = [e.id for e in chosen]
            self.conn.execute(
                f"UPDATE queue SET lease_until=? WHERE id IN ({','.join('?' * len(ids))})",
                (now + lease_for, *ids),
            )
        return chosen, earliest

    async def peek(self, target: str) -> tuple[int, float | None]:
        """How many unleased alerts ``target`` has, and the oldest one's ``created`` time."""
        return await self._run(self._peek_sync, target)

    def _peek_sync(self, target: str) -> tuple[int, float | None]:
        now = self._clock()
        count, oldest = self.conn.execute(
            "SELECT COUNT(*), MIN(created) FROM (SELECT created FROM queue"
            " WHERE target=? AND lease_until<=? AND next_attempt<=? ORDER BY id LIMIT 1000)",
            (target, now, now),
        ).fetchone()
        return int(count), oldest

    async def ack(self, entries: Sequence[Entry]) -> None:
        """Delivered: delete them."""
        await self._run(self._delete_sync, entries)

    def _delete_sync(self, entries: Sequence[Entry]) -> None:
        ids = [e.id for e in entries]
        with store.transaction(self.conn):
            deleted = self._delete_rows(ids)
        self._account_removed(deleted)

    def _delete_rows(self, ids: Sequence[int]) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        for chunk in _chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            out += self.conn.execute(
                f"DELETE FROM queue WHERE id IN ({marks}) RETURNING target, size", chunk
            ).fetchall()
        return out

    def _account_removed(self, rows: Sequence[tuple[str, int]]) -> None:
        for target, size in rows:
            self._count -= 1
            self._bytes -= size
            self._per_target[target] -= 1

    async def retry_later(self, entries: Sequence[Entry], *, at: float, error: str) -> None:
        """A retryable failure: count the attempt and make them due again at ``at``."""
        ids = [e.id for e in entries]
        await self._run(self._retry_sync, ids, at, error)

    def _retry_sync(self, ids: Sequence[int], at: float, error: str) -> None:
        for chunk in _chunks(ids, 500):
            self.conn.execute(
                "UPDATE queue SET attempts=attempts+1, next_attempt=?, lease_until=0, last_error=?"
                f" WHERE id IN ({','.join('?' * len(chunk))})",
                (at, error[:1024], *chunk),
            )

    async def release(self, entries: Sequence[Entry]) -> None:
        """Give leases back unattempted (shutdown while waiting to send)."""
        await self._run(self._release_sync, [e.id for e in entries])

    def _release_sync(self, ids: Sequence[int]) -> None:
        for chunk in _chunks(ids, 500):
            self.conn.execute(
                f"UPDATE queue SET lease_until=0 WHERE id IN ({','.join('?' * len(chunk))})",
                chunk,
            )

    async def dead_letter(
        self,
        entries: Sequence[Entry],
        *,
        reason: str,
        status: int | None,
        response: str | None,
        error: str | None,
    ) -> None:
        """Move them to the dead-letter store, in the same transaction as the delete."""
        await self._run(self._dead_letter_sync, entries, reason, status, response, error)

    def _dead_letter_sync(
        self,
        entries: Sequence[Entry],
        reason: str,
        status: int | None,
        response: str | None,
        error: str | None,
    ) -> None:
        now = self._clock()
        with store.transaction(self.conn) as conn:
            conn.executemany(
                "INSERT INTO dead_letters (target, app_key, identity, payload, size, ts, created,"
                " attempts, reason, status, response, last_error, failed_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        e.target,
                        e.app_key,
                        e.identity,
                        e.payload,
                        len(e.payload),
                        e.timestamp,
                        e.created,
                        e.attempts + 1,
                        reason,
                        status,
                        response,
                        error,
                        now,
                    )
                    for e in entries
                ],
            )
            deleted = self._delete_rows([e.id for e in entries])
        self._account_removed(deleted)

    # ----------------------------------------------------------------- inspection

    def sizes(self) -> tuple[int, int, dict[str, int]]:
        """Committed alerts, bytes, and alerts per target (cheap; no I/O)."""
        return self._count, self._bytes, dict(self._per_target)

    async def stats(self) -> dict[str, TargetStats]:
        """Per-target queue depth, oldest age and dead letters (for each scrape).

        Cheap at any queue size, because it runs on the thread that commits
        ingests: depths come from the counters (kept exact on every write, and
        recounted when rows from another process show up), and the oldest
        alert of a target is its first row by id (``created`` grows with the
        id; a replay gets a new id and a new ``created``), one index lookup.
        """
        return await self._run(self._stats_sync)

    def _stats_sync(self) -> dict[str, TargetStats]:
        if self._highest_id() != self._counted_upto:
            self._recount_sync()  # another process (``dlq replay``) added rows
        now = self._clock()
        dead = deadletters.counts(self.conn)
        out: dict[str, TargetStats] = {}
        for target in set(self._per_target) | set(dead):
            row = self.conn.execute(
                "SELECT created FROM queue WHERE target=? ORDER BY id LIMIT 1", (target,)
            ).fetchone()
            first = row[0] if row else None
            out[target] = TargetStats(
                events=self._per_target.get(target, 0),
                oldest_age=max(0.0, now - first) if first is not None else 0.0,
                dead_letters=dead.get(target, 0),
            )
        return out

    def _recount_sync(self) -> None:
        """Re-read the counters from disk (another process may have replayed dead letters)."""
        per_target: dict[str, int] = defaultdict(int)
        total_bytes = 0
        conn = self.conn
        conn.execute("BEGIN")  # one snapshot for the counts and the id they reach
        try:
            for target, count, size in conn.execute(
                "SELECT target, COUNT(*), COALESCE(SUM(size),0) FROM queue GROUP BY target"
            ):
                per_target[target] = count
                total_bytes += size
            self._counted_upto = self._highest_id()
        finally:
            conn.execute("COMMIT")
        self._per_target = per_target
        self._count = sum(per_target.values())
        self._bytes = total_bytes

    def _highest_id(self) -> int:
        """The largest queue id ever handed out (AUTOINCREMENT's high-water mark)."""
        row = self.conn.execute(
            "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name='queue'), 0)"
        ).fetchone()
        return int(row[0])

    async def call(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """Run ``fn(conn, *args, **kwargs)`` on the queue thread (admin operations)."""
        return await self._run(lambda: fn(self.conn, *args, **kwargs))

    async def replay_dead_letters(self, *, ids: Sequence[int] | None, target: str | None) -> int:
        """Re-queue dead letters and wake the senders."""
        moved = await self._run(lambda: self._replay_sync(ids, target))
        for ev in self._new_work.values():
            ev.set()
        return moved

    def _replay_sync(self, ids: Sequence[int] | None, target: str | None) -> int:
        moved = deadletters.replay(self.conn, ids=ids, target=target, now=self._clock())
        self._recount_sync()
        return moved


# 8 columns a row; 500 rows keep a statement well under SQLite's variable limit.
_ROWS_PER_INSERT = 500


@functools.lru_cache(maxsize=_ROWS_PER_INSERT)
def _insert_sql(n: int) -> str:
    return (
        "INSERT INTO queue (target, app_key, identity, payload, size, ts, created, next_attempt)"
        " VALUES " + ",".join(["(?,?,?,?,?,?,?,?)"] * n)
    )


def _chunks(ids: Sequence[int], size: int) -> list[Sequence[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]
