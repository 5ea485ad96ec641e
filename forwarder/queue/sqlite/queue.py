"""The SQLite backend of the queue: alerts are committed here before the ingest answers 200.

All SQLite work runs on one dedicated thread that owns the connection, so the
event loop never blocks on disk. Ingest requests that arrive while a commit is
in progress are gathered and committed together in the next transaction
(group commit): under load many requests share one fsync, and an idle
forwarder still commits a lone alert at once.

Work handed to a sender is *leased* until ``lease_until``; a daemon killed
with ``kill -9`` leaves leases behind that simply expire, so every
acknowledged, undelivered alert is sent again: at-least-once delivery.

One daemon owns a queue file, as a lock file beside it guarantees. Holding that
lock *proves* that leases found at start-up belong to a dead process, so the
daemon releases them at once instead of waiting out ``queue.lease_timeout``:
faster recovery, not an assumption (an admin connection, which takes no lock,
never touches leases). Counts are kept in memory for the same reason, and
recounted whenever rows written by another process (``forwarder dlq replay``)
show up.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import os
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from forwarder.clock import SYSTEM_CLOCK, Clock
from forwarder.config import QueueConfig
from forwarder.model import Entry, Outgoing
from forwarder.queue.contract import Lease, QueueStats, TargetStats
from forwarder.queue.errors import QueueFull, QueueLocked, QueueUnavailable
from forwarder.queue.sqlite import schema
from forwarder.queue.sqlite.deadletters import SQLiteDeadLetters, dead_letter_counts

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(slots=True)
class _Pending:
    """One ``put`` waiting for its group commit."""

    items: Sequence[Outgoing]
    size: int
    fut: asyncio.Future[None]


class SQLiteQueue:
    """The queue and dead-letter store on one SQLite file (:class:`~forwarder.queue.Queue`).

    ``clock`` stamps leases and retries; tests pass a fake one. ``admin``
    opens an existing file beside its running daemon, for the dead-letter
    commands: no lock, no schema changes, no lease release.
    """

    def __init__(
        self, cfg: QueueConfig, *, clock: Clock = SYSTEM_CLOCK, admin: bool = False
    ) -> None:
        self.cfg = cfg
        self.path = Path(cfg.path)
        self.admin = admin
        self._clock = clock.time
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._pending: list[_Pending] = []
        self._committing = False
        self._drained: asyncio.Future[None] | None = None
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
        self._rows_per_insert = 0  # set from SQLite's variable limit at the first insert
        self._new_work: dict[str, asyncio.Event] = {}
        self.last_error: str | None = None
        self.is_open = False
        self.dead_letters = SQLiteDeadLetters(self)

    @property
    def description(self) -> str:
        """The file, for logs."""
        return str(self.path)

    # ----------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        """Lock, open and recover the queue; release leases left by a dead owner."""
        if not self.admin:
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
        self._conn = schema.connect(
            self.path, synchronous=self.cfg.synchronous, create=not self.admin
        )
        if not self.admin:
            # The lock proves these leases' owner is dead (see the module docstring).
            self._conn.execute("UPDATE queue SET lease_until=0 WHERE lease_until>0")
        self._recount_sync()

    async def close(self) -> None:
        """Commit what is pending, then close the file and release the lock."""
        if self._committing or self._pending:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained
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

    def put(self, items: Sequence[Outgoing]) -> asyncio.Future[None]:
        """Commit ``items`` durably; the returned future is done once they are on disk.

        The future fails with :class:`QueueFull` when the bounds would be
        exceeded (nothing is evicted to make room) and with
        :class:`QueueUnavailable` when the queue is closed or the disk refuses
        the write. Either way nothing of ``items`` is queued.

        A plain function returning a future rather than a coroutine: ``await
        queue.put(items)`` reads the same, and the ingest hot path saves a
        coroutine frame on every suspension and resumption.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if not self.is_open:
            fut.set_exception(QueueUnavailable("queue is closed"))
            return fut
        if not items:
            fut.set_result(None)
            return fut
        size = 0
        for i in items:
            size += len(i.payload)
        if (
            self._count + self._reserved_count + len(items) > self.cfg.max_events
            or self._bytes + self._reserved_bytes + size > self.cfg.max_bytes
        ):
            fut.set_exception(
                QueueFull(
                    f"queue full ({self._count} alerts, {self._bytes} bytes; limits "
                    f"queue.max_events={self.cfg.max_events}, "
                    f"queue.max_bytes={self.cfg.max_bytes})"
                )
            )
            return fut
        self._reserved_count += len(items)
        self._reserved_bytes += size
        # If the waiter goes away (client disconnect), the items are committed
        # anyway: they are in the pending list already; only the waiting stops.
        self._pending.append(_Pending(items, size, fut))
        if not self._committing:
            # Start at the end of this loop iteration, so every request whose
            # body already arrived joins the same commit.
            self._committing = True
            loop.call_soon(self._start_commit, loop)
        return fut

    def _start_commit(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand everything pending to the queue thread as one transaction."""
        batch, self._pending = self._pending, []
        executor = self._executor
        if executor is None:  # closed under our feet: fail the waiters, commit nothing
            self._committed(batch, QueueUnavailable("queue is closed"))
            return
        try:
            # ``executor.submit`` plus one ``call_soon_threadsafe`` back, rather
            # than ``run_in_executor`` and a flusher task: a group commit costs
            # the event loop one callback, whatever the number of requests in it.
            executor.submit(self._commit_on_thread, loop, batch)
        except RuntimeError:  # the executor is shutting down
            self._committed(batch, QueueUnavailable("queue is closed"))

    def _commit_on_thread(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        error: BaseException | None = None
        try:
            self._insert_sync([i for p in batch for i in p.items])
        except QueueUnavailable as exc:
            error = exc
        except BaseException as exc:
            error = QueueUnavailable(f"queue commit failed: {exc!r}")
        loop.call_soon_threadsafe(self._committed, batch, error)

    def _committed(self, batch: list[_Pending], error: BaseException | None) -> None:
        """On the event loop: answer the waiters of one group commit, start the next."""
        targets: set[str] = set()
        for p in batch:
            self._reserved_count -= len(p.items)
            self._reserved_bytes -= p.size
            if error is None:
                for i in p.items:
                    targets.add(i.target)
            if not p.fut.done():
                if error is None:
                    p.fut.set_result(None)
                else:
                    p.fut.set_exception(QueueUnavailable(str(error)))
        for target in targets:
            self.new_work(target).set()
        if self._pending:
            # Requests that arrived during this commit go in the next one.
            loop = asyncio.get_running_loop()
            loop.call_soon(self._start_commit, loop)
            return
        self._committing = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _insert_sync(self, items: Sequence[Outgoing]) -> None:
        conn = self.conn
        per_statement = self._rows_per_insert
        if not per_statement:
            # Numbered parameters: 5 a row plus the shared time (see _insert_sql).
            limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            per_statement = self._rows_per_insert = max(1, min(500, (limit - 1) // 5))
        now = self._clock()
        # One multi-row INSERT per group commit rather than executemany: in
        # autocommit mode a single statement is its own transaction, and
        # sqlite3 releases and re-takes the GIL around every step, so one step
        # instead of one per row keeps the event loop and this thread from
        # handing the GIL back and forth (up to sys.getswitchinterval() each).
        chunks = [items[i : i + per_statement] for i in range(0, len(items), per_statement)]
        try:
            if len(chunks) > 1:
                conn.execute("BEGIN IMMEDIATE")
            for chunk in chunks:
                params: list[Any] = [now]
                for i in chunk:
                    params += (i.target, i.app_key, i.identity, i.payload, i.timestamp)
                cur = conn.execute(_insert_sql(len(chunk)), params)
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
        if last_id - len(items) != self._counted_upto:
            self._recount_sync()  # another process inserted rows since we last counted
            return
        self._counted_upto = last_id
        self._count += len(items)
        per_target = self._per_target
        for i in items:
            self._bytes += len(i.payload)
            per_target[i.target] += 1

    # ----------------------------------------------------------------- sender side

    async def lease(self, target: str, *, limit: int, lease_for: float) -> Lease:
        """Lease up to ``limit`` due alerts of one app key, oldest first (contract invariant 3)."""
        return await self._run(self._lease_sync, target, limit, lease_for)

    def _lease_sync(self, target: str, limit: int, lease_for: float) -> Lease:
        now = self._clock()
        conn = self.conn
        # Identities with a state leased or waiting for a retry, and the oldest
        # such row of each: every later row of that identity must wait. The
        # partial index holds only rows ever leased or attempted, so this
        # reads the batches in flight, not the whole queue.
        held: dict[tuple[str, str], int] = {}
        for key, identity, first in conn.execute(
            "SELECT app_key, identity, MIN(id) FROM queue"
            " WHERE target=? AND (lease_until>0 OR attempts>0)"
            " AND (lease_until>? OR next_attempt>?) GROUP BY app_key, identity",
            (target, now, now),
        ):
            held[(key, identity)] = first
        rows = conn.execute(
            "SELECT id, app_key, identity, payload, ts, created, attempts, next_attempt"
            " FROM queue WHERE target=? AND lease_until<=? ORDER BY id LIMIT ?",
            (target, now, limit * 4),
        ).fetchall()
        if rows and max(r[0] for r in rows) > self._counted_upto:
            self._recount_sync()  # rows another process inserted: count them before acking
        chosen: list[Entry] = []
        app_key: str | None = None
        earliest: float | None = None
        for rid, key, identity, payload, ts, created, attempts, next_attempt in rows:
            ident = (key, identity)
            first = held.get(ident)
            if first is not None and first < rid:
                continue
            if next_attempt > now:
                held[ident] = rid
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
            conn.execute(
                f"UPDATE queue SET lease_until=? WHERE id IN ({','.join('?' * len(ids))})",
                (now + lease_for, *ids),
            )
        return Lease(chosen, earliest)

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
        with schema.transaction(self.conn):
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
        with schema.transaction(self.conn) as conn:
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

    async def stats(self) -> QueueStats:
        """Depth, bytes, oldest age and dead letters per target (for each scrape).

        Cheap at any queue size, because it runs on the thread that commits
        ingests: depths come from the counters (kept exact on every write, and
        recounted when rows from another process show up), and the oldest
        alert of a target is its first row by id (``created`` grows with the
        id; a replay gets a new id and a new ``created``), one index lookup.
        """
        return await self._run(self._stats_sync)

    def _stats_sync(self) -> QueueStats:
        if self._highest_id() != self._counted_upto:
            self._recount_sync()  # another process (``dlq replay``) added rows
        now = self._clock()
        dead = dead_letter_counts(self.conn)
        out: dict[str, TargetStats] = {}
        for target in {t for t, n in self._per_target.items() if n} | set(dead):
            row = self.conn.execute(
                "SELECT created FROM queue WHERE target=? ORDER BY id LIMIT 1", (target,)
            ).fetchone()
            first = row[0] if row else None
            out[target] = TargetStats(
                events=self._per_target.get(target, 0),
                oldest_age=max(0.0, now - first) if first is not None else 0.0,
                dead_letters=dead.get(target, 0),
            )
        return QueueStats(events=self._count, bytes=self._bytes, targets=out)

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

    async def run(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn`` on the queue thread, where :attr:`conn` may be used."""
        return await self._run(fn, *args, **kwargs)

    def now(self) -> float:
        """The queue clock's Unix time."""
        return self._clock()

    def wake_all(self) -> None:
        """Wake every sender: alerts may have become available (a replay)."""
        for ev in self._new_work.values():
            ev.set()

    def recount(self) -> None:
        """On the queue thread: re-read the counters after a bulk change."""
        self._recount_sync()


@functools.lru_cache(maxsize=500)
def _insert_sql(n: int) -> str:
    """``INSERT`` of ``n`` rows with numbered parameters.

    ``?1`` is the commit time (``created`` and ``next_attempt`` of every row);
    each row then takes five: target, app key, identity, payload and alert
    timestamp, with ``size`` computed by SQLite from the payload. Fewer values
    to bind is less work on the queue thread while it holds the GIL.
    """
    rows = []
    for j in range(n):
        b = 2 + 5 * j
        rows.append(f"(?{b},?{b + 1},?{b + 2},?{b + 3},length(?{b + 3}),?{b + 4},?1,?1)")
    return (
        "INSERT INTO queue (target, app_key, identity, payload, size, ts, created, next_attempt)"
        " VALUES " + ",".join(rows)
    )


def _chunks(ids: Sequence[int], size: int) -> list[Sequence[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]
