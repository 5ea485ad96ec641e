"""The SQLite backend of the queue: alerts are committed here before the ingest answers 200.

All SQLite work runs on one dedicated thread that owns the connection, so the
event loop never blocks on disk. Ingest requests that arrive while a commit is
in progress are gathered and committed together in the next transaction
(group commit): under load many requests share one fsync, and an idle
forwarder still commits a lone alert at once. The SQL itself is in
:mod:`.rows`; the checks made before SQLite sees the file in :mod:`.files`;
disk-space rules in :mod:`.space`.

Work handed to a sender is *leased* until ``lease_until``; a daemon killed
with ``kill -9`` leaves leases behind that simply expire, so every
acknowledged, undelivered alert is sent again: at-least-once delivery.

One daemon owns a queue file, as a lock file beside it (holding the owner's
PID) guarantees. Holding that lock *proves* that leases found at start-up
belong to a dead process, so the daemon releases them at once instead of
waiting out ``queue.lease_timeout``: faster recovery, not an assumption (an
admin connection never touches leases, and if the release fails, on a full
disk, the leases still expire). Counts are kept in memory for the same
reason, and recounted whenever rows written by another process (``forwarder
dlq replay``) show up.

Delivery must drain a queue even on a full disk: every write of the sender's
side that fails with SQLITE_FULL gives back the ballast file, checkpoints and
tries once more. The queue checkpoints its WAL itself and marks each new WAL
generation (:mod:`.writes`).

Alert state (contract invariant 5): a group commit decides every alert that
carries an observation against its identity's row (from the write-through
cache of :mod:`.states`, or the file), and stores the changed rows, the
queued alerts and the refused dead letters in one transaction.

At about 500 lines on purpose: opening (checks, lock, recovery on a full
disk) and the contract's methods belong to one object; the row work, alert
states, group commit, disk space and file checks live in the sibling modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final, ParamSpec, TypeVar

from forwarder.clock import SYSTEM_CLOCK, Clock
from forwarder.config import QueueConfig
from forwarder.model import Entry, Outgoing
from forwarder.obs.logs import get_logger
from forwarder.queue.contract import Lease, PutResult, QueueStats, TargetStats
from forwarder.queue.errors import QueueFull, QueueOpenError, QueueUnavailable
from forwarder.queue.putting import Pending, StateKey, decide, settled_put, state_keys
from forwarder.queue.sqlite import files, rows, schema, states
from forwarder.queue.sqlite.commit import GroupCommit
from forwarder.queue.sqlite.deadletters import SQLiteDeadLetters, dead_letter_counts
from forwarder.queue.sqlite.lockfile import LockFile, SoleSender
from forwarder.queue.sqlite.space import BALLAST_BYTES, RESERVE_BYTES, Space
from forwarder.queue.sqlite.states import CACHE_ROWS, Gauges, SQLiteAlertStates, StateCache
from forwarder.queue.sqlite.writes import ROW_WAL_COST, Writes
from forwarder.state import AlertState

P = ParamSpec("P")
R = TypeVar("R")

# How long, and for how many rows, the state rows of pure repeats may wait to be
# written (:meth:`SQLiteQueue._coalesce`): what a kill -9 may cost of "last
# seen" and suppressed counts, against a write per repeat in a storm.
COALESCE_FOR: Final = 1.0
COALESCE_ROWS: Final = 10_000

_SQLITE_CORRUPT: Final = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB
_SQLITE_NO_ROOM: Final = (10, 13)  # SQLITE_IOERR (a -shm that cannot grow), SQLITE_FULL


class SQLiteQueue(SoleSender):
    """The queue and dead-letter store on one SQLite file (:class:`~forwarder.queue.Queue`).

    ``clock`` stamps leases and retries; tests pass a fake one. ``admin``
    opens an existing file beside its running daemon, for the dead-letter
    commands: no lock, no schema changes, no lease release, alert states read
    only. ``reserve_bytes`` and ``ballast_bytes`` size the disk-space guards
    (:mod:`.space`); ``state_cache_rows`` bounds the alert-state cache.
    """

    def __init__(
        self,
        cfg: QueueConfig,
        *,
        clock: Clock = SYSTEM_CLOCK,
        admin: bool = False,
        reserve_bytes: int = RESERVE_BYTES,
        ballast_bytes: int = BALLAST_BYTES,
        state_cache_rows: int = CACHE_ROWS,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.path = Path(cfg.path)
        self.admin = admin
        self._clock = clock.time
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._lock = LockFile(self.path)
        self._group = GroupCommit(lambda: self._executor, self._insert, self._wake)
        # Accounting, written only on the queue thread (reads elsewhere are
        # advisory: a capacity check may be a commit late, never unsafe).
        self._count = 0
        self._bytes = 0
        self._per_target: dict[str, int] = defaultdict(int)
        # The highest queue row id the counters include. A row above it that this
        # process did not insert came from another one (``forwarder dlq replay``).
        self._counted_upto = 0
        self._rows_per_insert = 0  # from SQLite's variable limit, at the first insert
        self._variables = 0  # SQLite's variable limit, at the first insert
        self._states_ready = False  # the alert_states table exists (an owner creates it)
        self.cache = StateCache(state_cache_rows)
        # Rows of pure repeats not yet written (see _coalesce), and since when.
        self._deferred: dict[StateKey, AlertState] = {}
        self._deferred_since = 0.0
        self.gauges = Gauges()
        self._space = Space(self.path, reserve_bytes=reserve_bytes, ballast_bytes=ballast_bytes)
        self._measuring = False
        self._writes = Writes(lambda: self.conn, self._lock, self._space, admin=admin)
        self._write_error: str | None = None
        self._new_work: dict[str, asyncio.Event] = {}
        self.is_open = False
        self.dead_letters = SQLiteDeadLetters(self)
        self.alerts = SQLiteAlertStates(self)

    @property
    def description(self) -> str:
        """The file, for logs."""
        return str(self.path)

    @property
    def last_error(self) -> str | None:
        """Why the last commit failed, or why the disk refuses new alerts (for readiness)."""
        return self._write_error or self._space.refusal

    # ----------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        """Check, lock, open and recover the queue; release leases left by a dead owner.

        Raises :class:`QueueOpenError` (one line: the file, the problem, the
        fix) for a file that cannot be used as it is; nothing is repaired.
        """
        if not self.admin:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        files.check_access(self.path, create=not self.admin)
        owner = self._lock.acquire(admin=self.admin)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="queue")
        try:
            try:
                await self.run(self._open_sync, owner)
            except sqlite3.OperationalError as exc:
                # Opening writes (the -wal and -shm files): on a disk something else
                # filled while we were stopped, the ballast is what makes room.
                full = getattr(exc, "sqlite_errorcode", 0) & 0xFF in _SQLITE_NO_ROOM
                if self.admin or not full or not self._space.release_ballast():
                    raise
                get_logger().warning(
                    "queue_ballast_released", when="opening on a full disk", error=str(exc)
                )
                await self.run(self._open_sync, owner)
        except BaseException as exc:
            self._executor.shutdown(wait=True)
            self._executor = None
            self._lock.close()
            if isinstance(exc, sqlite3.Error):
                raise self._open_error(exc) from None
            raise
        self.is_open = True

    def _open_error(self, exc: sqlite3.Error) -> QueueOpenError:
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF in _SQLITE_CORRUPT:
            return files.damaged(self.path, str(exc))
        return QueueOpenError(f"cannot open queue file {self.path}: {exc}")

    def _open_sync(self, owner: bool) -> None:
        main = files.read_main(self.path)
        files.check_foreign_main(self.path, main)
        if owner:  # no daemon has this file open: whatever WAL is there is replayed next
            files.check_wal(self.path, main)
        conn = self._conn = schema.connect(self.path, main, synchronous=self.cfg.synchronous)
        try:
            if not self.admin:
                self._writes.measure(force=True)
                self._best_effort("upgrade", lambda: schema.upgrade(conn))
                self._writes.checkpoint()
                # The lock proves these leases' owner is dead (see the module docstring).
                self._best_effort("release_leases", lambda: rows.release(conn, None))
            self._states_ready = states.exists(conn)
            if self._states_ready and not self.admin:
                self.gauges.load(conn)
            self.recount()
        except BaseException:
            self._conn = None
            conn.close()
            raise

    def _best_effort(self, what: str, fn: Callable[[], None]) -> None:
        """A start-up write that may wait for the next start (a full disk must not stop one)."""
        try:
            self._writes.write(fn)
        except sqlite3.Error as exc:
            get_logger().warning("queue_startup_write_failed", step=what, error=str(exc))

    async def close(self) -> None:
        """Commit what is pending (coalesced state rows too), then close the file and the lock."""
        await self._group.drain()
        if self._deferred and self._executor is not None and self._conn is not None:
            try:
                await self.run(self.flush_deferred)
            except sqlite3.Error as exc:  # a full disk: the rows' last-seen times stay older
                get_logger().warning("alert_states_flush_failed", error=str(exc))
        self.is_open = False
        if self._executor is not None:
            if self._conn is not None:
                conn = self._conn
                await self.run(conn.close)
            self._executor.shutdown(wait=True)
            self._executor = None
        self._conn = None
        self.cache.clear()
        self.gauges = Gauges()
        self._lock.close()

    async def run(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn`` on the queue thread, where :attr:`conn` may be used."""
        if self._executor is None:
            raise QueueUnavailable("queue is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    @property
    def conn(self) -> sqlite3.Connection:
        assert self._conn is not None, "queue not open"
        assert threading.current_thread().name.startswith("queue"), "queue thread only"
        return self._conn

    # ----------------------------------------------------------------- writes and the WAL

    async def write(self, fn: Callable[[], R], *, rows_changed: int = 1) -> R:
        """Run the write ``fn`` on the queue thread (see :mod:`.writes`); for the dead letters."""
        return await self.run(self._writes.write, fn, rows_changed=rows_changed)

    # ----------------------------------------------------------------- ingest side

    def new_work(self, target: str) -> asyncio.Event:
        """An event set whenever alerts for ``target`` are committed."""
        ev = self._new_work.get(target)
        if ev is None:
            ev = self._new_work[target] = asyncio.Event()
        return ev

    def put(
        self, items: Sequence[Outgoing], refused: Sequence[tuple[Outgoing, str]] = ()
    ) -> asyncio.Future[PutResult]:
        """Commit ``items``, and ``refused`` as dead letters, durably; the future is done on disk.

        Items with an observation are decided at the commit (contract
        invariant 5); the result says how many were queued and suppressed.

        The future fails with :class:`QueueFull` when the bounds would be
        exceeded (nothing is evicted to make room) or the disk is down to its
        reserve, and with :class:`QueueUnavailable` when the queue is closed or
        the disk refuses the write. Either way nothing of the put is stored.

        Capacity is checked here, on every item, before any decision: which
        items are repeats is only known at the commit, so a put of repeats is
        refused on a full queue like any other (the sender frees room; the
        source sends again).

        A plain function returning a future rather than a coroutine: ``await
        queue.put(items)`` reads the same, and the ingest hot path saves a
        coroutine frame on every suspension and resumption.
        """
        settled = settled_put(self.is_open, items, refused)
        if settled is not None:
            return settled
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[PutResult] = loop.create_future()
        size = 0
        for i in items:
            size += len(i.payload)
        if items and (
            self._count + self._group.reserved_count + len(items) > self.cfg.max_events
            or self._bytes + self._group.reserved_bytes + size > self.cfg.max_bytes
        ):
            fut.set_exception(
                QueueFull(
                    f"queue full ({self._count} alerts, {self._bytes} bytes; limits "
                    f"queue.max_events={self.cfg.max_events}, "
                    f"queue.max_bytes={self.cfg.max_bytes})"
                )
            )
            return fut
        # Dead letters take disk space too: refused alerts must not eat the reserve
        # that lets the queue drain.
        on_disk = size + sum(len(i.payload) for i, _ in refused) if refused else size
        refusal = self._space.check(self._group.reserved_bytes + on_disk)
        if refusal is not None:
            self._measure_soon()
            fut.set_exception(QueueFull(refusal))
            return fut
        self._group.add(loop, Pending(items, refused, size, fut))
        return fut

    def _wake(self, targets: set[str]) -> None:
        for target in targets:
            self.new_work(target).set()

    def wake(self, targets: set[str]) -> None:
        """On the event loop: wake the senders of ``targets`` (new alerts committed)."""
        self._wake(targets)

    def _measure_soon(self) -> None:
        """Measure the disk again on the queue thread (space may have come back)."""
        if self._measuring or self._executor is None:
            return
        self._measuring = True

        def measure() -> None:
            try:
                self._writes.measure()
            finally:
                self._measuring = False

        with contextlib.suppress(RuntimeError):
            self._executor.submit(measure)

    def _insert(self, batch: Sequence[Pending]) -> list[PutResult]:
        """On the queue thread: one group commit, then the cache and the counters.

        Decides the group's alerts against their rows (the cache, then one
        SELECT per chunk of misses) with the queue clock's time, then stores
        the changed rows, what the decisions queue and the refused dead letters
        in one transaction. The cache and counters change only after COMMIT: on
        failure nothing of the group is stored, and nothing is remembered.
        """
        conn = self.conn
        puts = [p.items for p in batch]
        refused = [r for p in batch if p.refused for r in p.refused]
        size = sum(p.size for p in batch)
        now = self._clock()
        if not self._rows_per_insert:
            self._rows_per_insert = rows.rows_per_insert(conn)
            self._variables = states.variables(conn)
        keys = state_keys(puts)
        changed: list[AlertState] = []
        known: dict[tuple[str, str, str], AlertState] = {}
        try:
            if keys:
                if not self._states_ready:  # the start-up upgrade failed (a full disk)
                    self._writes.marked(lambda: schema.upgrade(conn))
                    self._states_ready = True
                known, missing = self.cache.lookup(keys)
                if missing and self._deferred:  # evicted from the cache, not yet written
                    deferred = self._deferred
                    for key in [k for k in missing if k in deferred]:
                        known[key] = deferred[key]
                        missing.remove(key)
                if missing:
                    known.update(states.load(conn, missing, self._variables))
                decided = decide(puts, known, now)
                queued, results = decided.queue, decided.results
                changed = list(decided.rows.values())
                items = [i for q in queued for i in q]
                write, later, flush = self._coalesce(changed, known, now)
            else:
                results = [PutResult(len(p)) for p in puts]
                items = [i for p in puts for i in p]
                write, later, flush = [], [], False
            self._writes.marked(lambda: None)
            if write:
                with schema.transaction(conn):
                    states.upsert(conn, write, self._variables)
                    last_id = rows.insert_in(conn, items, refused, now, self._rows_per_insert)
            elif items or refused:
                last_id = rows.insert(conn, items, refused, now, self._rows_per_insert)
            else:  # repeats only, their rows coalesced: nothing to write, no fsync
                last_id = self._counted_upto
        except sqlite3.Error as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            self._write_error = f"queue write failed: {exc}"
            raise QueueUnavailable(self._write_error) from None
        self._write_error = None
        if write or items or refused:
            # The payload bytes written: the queued alerts' (``size`` counts every
            # alert of the group, suppressed ones too, which reach no disk).
            written = sum(len(i.payload) for i in items) if keys else size
            self._space.committed(written)
            self._writes.wrote(written + ROW_WAL_COST * (len(refused) + len(write)))
        deferred = self._deferred
        if flush:
            deferred.clear()
        else:
            for row in write:
                deferred.pop(row.key, None)
            if later and not deferred:
                self._deferred_since = now
            for row in later:
                deferred[row.key] = row
        if changed:
            gauges = self.gauges.changed
            for row in changed:
                gauges(known.get((row.target, row.app_key, row.identity)), row)
            # The cache drops payloads; a deferred row keeps its own until written.
            self.cache.committed(
                row.copy() if row.payload and deferred.get(row.key) is row else row
                for row in changed
            )
        self.counted(items, last_id)
        return results

    def _coalesce(
        self,
        changed: list[AlertState],
        known: Mapping[StateKey, AlertState],
        now: float,
    ) -> tuple[list[AlertState], list[AlertState], bool]:
        """Which rows this commit writes, which wait, and whether the waiting ones go now.

        A row whose only news is that its identity was seen again (a
        suppressed duplicate: last seen, clock, suppressed count, latest
        alert) waits in :attr:`_deferred` and is written with a later commit,
        at most :data:`COALESCE_FOR` seconds on, or at a scheduler pass, or at
        close. Everything a decision depends on (what was queued and when,
        status, flapping, transitions) is written by the commit that changed
        it, so a crash loses at most that long of "last seen" and suppressed
        counts, never a decision; in a storm of repeats most commits write
        nothing at all. Nothing changes here: the caller applies the result
        after its COMMIT.
        """
        write: list[AlertState] = []
        later: list[AlertState] = []
        for row in changed:
            (later if states.repeat_only(known.get(row.key), row) else write).append(row)
        deferred = self._deferred
        waiting = len(deferred) + len(later)
        if not waiting:
            return write, later, False
        since = self._deferred_since if deferred else now
        if now - since < COALESCE_FOR and waiting < COALESCE_ROWS:
            return write, later, False
        merged = dict(deferred)
        for row in later:
            merged[row.key] = row
        for row in write:
            merged.pop(row.key, None)  # this commit writes a newer state
        return write + list(merged.values()), [], True

    def flush_deferred(self) -> None:
        """On the queue thread: write the coalesced rows now (a scheduler pass, close)."""
        if not self._deferred:
            return
        rows_ = list(self._deferred.values())

        def write() -> None:
            with schema.transaction(self.conn):
                states.upsert(self.conn, rows_, self._variables or states.variables(self.conn))

        self._writes.marked(write)
        self._writes.wrote(ROW_WAL_COST * len(rows_))
        self._deferred.clear()

    def counted(self, items: Sequence[Outgoing], last_id: int) -> None:
        """On the queue thread, after a COMMIT that queued ``items`` up to id ``last_id``."""
        if not items:
            return
        if last_id - len(items) != self._counted_upto:
            self.recount()  # another process inserted rows since we last counted
            return
        self._counted_upto = last_id
        self._count += len(items)
        per_target = self._per_target
        for i in items:
            self._bytes += len(i.payload)
            per_target[i.target] += 1

    def room(self) -> tuple[int, int]:
        """How many alerts, and payload bytes, the capacity still takes (the scheduler's)."""
        return (
            self.cfg.max_events - self._count - self._group.reserved_count,
            self.cfg.max_bytes - self._bytes - self._group.reserved_bytes,
        )

    def rows_per_insert(self) -> int:
        """Queue rows one INSERT carries (see :func:`.rows.rows_per_insert`)."""
        if not self._rows_per_insert:
            self._rows_per_insert = rows.rows_per_insert(self.conn)
        return self._rows_per_insert

    def state_write(self, fn: Callable[[], R], rows_changed: int, payload_bytes: int) -> R:
        """On the queue thread: the scheduler's transaction ``fn``, written as ingest writes."""
        try:
            result = self._writes.marked(fn)
        except sqlite3.Error as exc:
            raise QueueUnavailable(f"alert state write failed: {exc}") from None
        self._space.committed(payload_bytes)
        self._writes.wrote(payload_bytes + ROW_WAL_COST * rows_changed)
        return result

    # ----------------------------------------------------------------- sender side

    async def lease(self, target: str, *, limit: int, lease_for: float) -> Lease:
        """Lease up to ``limit`` due alerts of one app key, oldest first (contract invariant 3)."""
        return await self.run(self._lease_sync, target, limit, lease_for)

    def _lease_sync(self, target: str, limit: int, lease_for: float) -> Lease:
        now = self._clock()
        chosen, earliest, top = self._writes.write(
            lambda: rows.lease(self.conn, target, limit, lease_for, now), rows_changed=limit
        )
        if top > self._counted_upto:
            self.recount()  # rows another process inserted: count them before acking
        return Lease(chosen, earliest)

    async def peek(self, target: str) -> tuple[int, float | None]:
        """How many unleased alerts ``target`` has, and the oldest one's ``created`` time."""
        return await self.run(lambda: rows.peek(self.conn, target, self._clock()))

    async def ack(self, entries: Sequence[Entry]) -> None:
        """Delivered: delete them."""
        ids = [e.id for e in entries]
        await self.run(self._removed, lambda: rows.remove(self.conn, ids), len(ids))

    def _removed(self, remove: Callable[[], Sequence[tuple[str, int]]], n: int) -> None:
        """On the queue thread: run the write ``remove`` and take its rows off the counters."""
        for target, size in self._writes.write(remove, rows_changed=n):
            self._count -= 1
            self._bytes -= size
            self._per_target[target] -= 1

    async def retry_later(self, entries: Sequence[Entry], *, at: float, error: str) -> None:
        """A retryable failure: count the attempt and make them due again at ``at``."""
        ids = [e.id for e in entries]
        await self.write(lambda: rows.retry(self.conn, ids, at, error), rows_changed=len(ids))

    async def release(self, entries: Sequence[Entry]) -> None:
        """Give leases back unattempted (shutdown while waiting to send)."""
        ids = [e.id for e in entries]
        await self.write(lambda: rows.release(self.conn, ids), rows_changed=len(ids))

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
        now = self._clock()

        def move() -> list[tuple[str, int]]:
            c = self.conn
            return rows.dead_letter(
                c, entries, reason=reason, status=status, response=response, error=error, now=now
            )

        await self.run(self._removed, move, 2 * len(entries))

    # ----------------------------------------------------------------- inspection

    async def stats(self) -> QueueStats:
        """Depth, bytes, oldest age and dead letters per target (for each scrape).

        Cheap at any queue size, because it runs on the thread that commits
        ingests: depths come from the counters (kept exact on every write, and
        recounted when rows from another process show up), and the oldest
        alert of a target is its first row by id, one index lookup. A scrape
        also measures the disk again, so a refusal for lack of space ends once
        space comes back even while nothing is written.
        """
        return await self.run(self._stats_sync)

    def _stats_sync(self) -> QueueStats:
        conn = self.conn
        if rows.highest_id(conn) != self._counted_upto:
            self.recount()  # another process (``dlq replay``) added rows
        if not self.admin:
            self._writes.measure()
        now = self._clock()
        dead = dead_letter_counts(conn)
        out: dict[str, TargetStats] = {}
        for target in {t for t, n in self._per_target.items() if n} | set(dead):
            first = rows.oldest_created(conn, target)
            out[target] = TargetStats(
                events=self._per_target.get(target, 0),
                oldest_age=max(0.0, now - first) if first is not None else 0.0,
                dead_letters=dead.get(target, 0),
            )
        return QueueStats(events=self._count, bytes=self._bytes, targets=out)

    def recount(self) -> None:
        """On the queue thread: re-read the counters (after a bulk change, or another process's)."""
        self._per_target, self._bytes, self._counted_upto = rows.count(self.conn)
        self._count = sum(self._per_target.values())

    def now(self) -> float:
        """The queue clock's Unix time."""
        return self._clock()

    def wake_all(self) -> None:
        """Wake every sender: alerts may have become available (a replay)."""
        for ev in self._new_work.values():
            ev.set()
