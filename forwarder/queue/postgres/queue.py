"""The PostgreSQL backend of the queue: one database shared by every replica.

Ingest requests that arrive while a commit is in flight are gathered and
committed together by one call of ``forwarder.put_batch`` (group commit): a
storm costs one round trip and one transaction per commit, not per request.
The capacity check, the per-identity order and the counters are all kept by
the server-side functions in :mod:`forwarder.queue.postgres.schema`, so they
hold across replicas.

A commit with alert-state observations is decided in Python by
:mod:`forwarder.state` (as on SQLite) against rows read from the database,
and written with the alerts it queues in one transaction (contract
invariant 5). One or two round trips when nothing interferes: read the rows
(unlocked, with their ``xmin``; the rows this replica wrote last are cached
with theirs), then ``put_states`` takes the ``in`` totals lock that every put
and scheduler pass of every replica takes first, checks that the admission
and every row are as they were decided on, and applies. When
another replica or a scheduler pass changed one meanwhile, the commit decides
again; after a few conflicts it decides under the lock instead (four round
trips: BEGIN, ``put_begin``, ``state_apply``, COMMIT), so it always completes.

Lease and retry deadlines are stamped with this process's clock, as with
SQLite; replicas of one deployment therefore need synchronised clocks (NTP),
and a skew of a few seconds only moves when an expired lease is taken over.

When the database is unreachable, commits fail with
:class:`~forwarder.queue.QueueUnavailable` (the ingest answers 503) and
:attr:`PostgresQueue.last_error` says why (readiness answers 503); further
attempts back off for up to two seconds, and the pool reconnects by itself.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import asyncpg

from forwarder.clock import SYSTEM_CLOCK, Clock
from forwarder.config import QueueConfig
from forwarder.model import Entry, Outgoing
from forwarder.queue.contract import Lease, PutResult, QueueStats
from forwarder.queue.errors import QueueFull, QueueOpenError, QueueUnavailable
from forwarder.queue.postgres import schema
from forwarder.queue.postgres.batch import no_reset, pg_text, put_args
from forwarder.queue.postgres.connect import (
    connect_args,
    describe,
    is_connection_error,
    is_fatal,
    reason,
)
from forwarder.queue.postgres.deadletters import PostgresDeadLetters
from forwarder.queue.postgres.session import Session, target_key
from forwarder.queue.postgres.states import (
    APPLY,
    LOAD_STATES,
    PUT_BEGIN,
    PUT_STATES,
    PostgresAlertStates,
    apply_args,
    from_record,
    stored_key,
)
from forwarder.queue.postgres.stats import STATS_SQL, stats_from_counters
from forwarder.queue.putting import Pending, StateKey, decide, settled_put, state_keys
from forwarder.state import AlertState

R = TypeVar("R")

_PUT = "SELECT forwarder.put_batch(" + ",".join(f"${i}" for i in range(1, 19)) + ")"
_LEASE = "SELECT * FROM forwarder.lease($1, $2, $3, $4, $5)"
_REMOVE = "SELECT forwarder.remove($1::bigint[], $2, $3, $4, $5, $6)"
_MAX_BACKOFF = 2.0
# Rows the state cache keeps (the most recently written): the repeating series of
# a storm fit; beyond it a commit reads the rows it misses (one more round trip).
_STATE_CACHE_ROWS = 10_000


class PostgresQueue:
    """The queue and dead-letter store in a PostgreSQL database (:class:`~forwarder.queue.Queue`).

    ``dsn`` is a ``postgresql://`` URI. ``admin`` opens an existing queue for
    the dead-letter and alert commands beside running replicas: no migration
    (an older schema is used as it is, see :func:`schema.migrate`), no
    session. Opening retries an unreachable server for ``open_timeout``
    seconds, then fails with :class:`QueueOpenError`, as it does at once for
    errors retrying cannot fix.
    """

    def __init__(
        self,
        cfg: QueueConfig,
        *,
        dsn: str,
        clock: Clock = SYSTEM_CLOCK,
        admin: bool = False,
        open_timeout: float = 30.0,
        pool_size: int = 10,
        command_timeout: float = 10.0,
    ) -> None:
        self.cfg = cfg
        self.admin = admin
        self._dsn = dsn
        self._clock = clock
        self._open_timeout = open_timeout
        self._pool_size = pool_size
        self._command_timeout = command_timeout
        self._pool: asyncpg.Pool[Any] | None = None
        self._session: Session | None = None
        self._pending: list[Pending] = []
        self._committing = False
        self._commit_task: asyncio.Task[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._retry_at = 0.0  # monotonic: connection errors back off until then
        self._backoff = 0.0
        self._new_work: dict[str, asyncio.Event] = {}
        # Backend pids of this replica's pooled connections. Only ever a few
        # dozen: connections are replaced after failures only.
        self._own_backends: set[int] = set()
        self.last_error: str | None = None
        self.is_open = False
        self.schema_version = schema.VERSION  # an admin open may find an older one
        self.dead_letters = PostgresDeadLetters(self)
        self.alerts = PostgresAlertStates(self)
        # Optimistic tries of a group commit with states before it decides under the lock.
        self.optimistic_tries = 3
        # State rows as this replica last wrote them, with their version (xmin): a
        # commit whose identities are all here skips reading them. Never trusted
        # blindly: put_states checks each version under the lock.
        self._states: dict[StateKey, tuple[AlertState, str]] = {}
        self.state_cache_rows = _STATE_CACHE_ROWS

    @property
    def description(self) -> str:
        """``postgresql://user@host:port/db``, never the password."""
        return describe(self._dsn)

    # ----------------------------------------------------------------- lifecycle

    def _connect_args(self) -> dict[str, Any]:
        return connect_args(self._dsn, self._open_timeout, self._command_timeout)

    async def open(self) -> None:
        """Connect (retrying a server that is not up yet), migrate the schema, start the session."""
        # min_size=0: the pool connects on demand. With a floor, asyncpg would
        # log a traceback for every failed attempt to restore it during an outage.
        try:
            pool = self._pool = await asyncpg.create_pool(
                min_size=0,
                max_size=self._pool_size,
                reset=no_reset,
                init=self._pooled,
                **self._connect_args(),
            )
        except QueueOpenError:
            raise
        except Exception as exc:  # a DSN asyncpg cannot use
            raise QueueOpenError(
                f"cannot open the queue at {self.description}: {reason(exc, self._dsn)}"
            ) from None
        deadline = self._clock.monotonic() + self._open_timeout
        backoff = 0.1
        while True:
            try:
                async with pool.acquire() as conn:
                    self.schema_version = await schema.migrate(
                        conn, admin=self.admin, where=self.description
                    )
                break
            except QueueOpenError:
                await self._close_pool()
                raise
            except Exception as exc:
                if is_fatal(exc) or self._clock.monotonic() + backoff > deadline:
                    await self._close_pool()
                    raise QueueOpenError(
                        f"cannot open the queue at {self.description}: {reason(exc, self._dsn)}"
                    ) from None
            except BaseException:
                await self._close_pool()
                raise
            await self._clock.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)
        if not self.admin:
            self._session = Session(
                lambda: asyncpg.connect(**self._connect_args()),
                dsn=self._dsn,
                clock=self._clock,
                on_notify=self._notified,
                on_state=self._session_state,
                wake_all=self.wake_all,
            )
            await self._session.start()
        self.is_open = True

    async def close(self) -> None:
        """Commit what is pending, release the claims and close every connection."""
        if self._committing or self._pending:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained
        self.is_open = False
        if self._session is not None:
            await self._session.stop()
            self._session = None
        await self._close_pool()

    async def _close_pool(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _pooled(self, conn: Any) -> None:
        """A new pooled connection: remember its backend, whose NOTIFYs are our own commits.

        An acknowledged alert must be on disk before the 200: a server, database
        or role set to ``synchronous_commit = off`` would answer a commit before
        its WAL is flushed, so such a session is raised to ``on``. Any other
        setting (``remote_apply``, ``local``…) is the operator's choice and stays.

        The state functions read rows after waiting for the ``in`` lock and
        rely on that read seeing every commit before the lock was granted,
        which READ COMMITTED gives (a fresh snapshot per statement); a stricter
        default isolation would date an implicit transaction's snapshot from
        before the wait, so such a session is set back to READ COMMITTED.
        """
        self._own_backends.add(conn.get_server_pid())
        sync, isolation = await conn.fetchrow(
            "SELECT current_setting('synchronous_commit'),"
            " current_setting('default_transaction_isolation')"
        )
        if sync == "off":
            await conn.execute("SET synchronous_commit = on")
        if isolation != "read committed":
            await conn.execute("SET default_transaction_isolation = 'read committed'")

    def _notified(self, target: str, pid: int) -> None:
        """Another replica committed work for ``target`` (our own commits set the event already)."""
        if pid not in self._own_backends:
            self.new_work(target).set()

    def _session_state(self, error: str | None) -> None:
        if error is not None:
            self.last_error = error
        elif self.last_error is not None and self._retry_at <= self._clock.monotonic():
            self.last_error = None  # the database answers again

    # ----------------------------------------------------------------- calls

    async def call(self, fn: Callable[[asyncpg.pool.PoolConnectionProxy[Any]], Awaitable[R]]) -> R:
        """Run ``fn`` on a pooled connection; failures become :class:`QueueUnavailable`."""
        pool = self._pool
        if pool is None:
            raise QueueUnavailable("queue is closed")
        if self._clock.monotonic() < self._retry_at:
            raise QueueUnavailable(self.last_error or "queue database unavailable")
        try:
            async with pool.acquire(timeout=self._command_timeout) as conn:
                result = await fn(conn)
        except Exception as exc:
            if is_connection_error(exc):
                await pool.expire_connections()  # a failover: reconnect every one
            raise self._failed(exc) from None
        # The database answered: readiness recovers with the first success.
        self._backoff = 0.0
        self.last_error = None
        return result

    def _failed(self, exc: BaseException) -> QueueUnavailable:
        """Record a failed call: back off if the connection failed, and say why."""
        if is_connection_error(exc):
            self._backoff = min(max(self._backoff * 2, 0.05), _MAX_BACKOFF)
            self._retry_at = self._clock.monotonic() + self._backoff
        self.last_error = f"queue database error: {reason(exc, self._dsn)}"
        return QueueUnavailable(self.last_error)

    # ----------------------------------------------------------------- ingest side

    def new_work(self, target: str) -> asyncio.Event:
        """An event set whenever alerts for ``target`` may have become available."""
        ev = self._new_work.get(target)
        if ev is None:
            ev = self._new_work[target] = asyncio.Event()
        return ev

    def wake_all(self) -> None:
        """Wake every sender (a replay, a reconnect that may have missed notifications)."""
        for ev in self._new_work.values():
            ev.set()

    def put(
        self, items: Sequence[Outgoing], refused: Sequence[tuple[Outgoing, str]] = ()
    ) -> asyncio.Future[PutResult]:
        """Commit ``items`` (and dead-letter ``refused``) durably, all or none.

        The future completes with what the put queued and suppressed
        (contract invariant 5), or fails with :class:`QueueFull` when the
        deployment-wide bounds would be exceeded, and with :class:`QueueUnavailable` when the
        database cannot commit. A plain function returning a future, as the
        SQLite backend's, so the ingest hot path saves a coroutine frame.
        """
        settled = settled_put(self.is_open, items, refused)
        if settled is not None:
            return settled
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[PutResult] = loop.create_future()
        size = 0
        for i in items:
            size += len(i.payload)
        self._pending.append(Pending(items, refused, size, fut))
        if not self._committing:
            # At the end of this loop iteration, so every request whose body
            # has arrived joins the same commit.
            self._committing = True
            loop.call_soon(self._start_commit)
        return fut

    def _start_commit(self) -> None:
        batch, self._pending = self._pending, []
        # Kept: the event loop holds only a weak reference to a task.
        self._commit_task = asyncio.get_running_loop().create_task(self._commit(batch))

    async def _commit(self, batch: list[Pending]) -> None:
        now = self._clock.time()
        try:
            if any(i.state is not None for p in batch for i in p.items):
                results, targets = await self.call(lambda conn: self._put_states(conn, batch, now))
            else:
                args = put_args(batch, now, self.cfg.max_events, self.cfg.max_bytes)
                ok = await self.call(lambda conn: conn.fetchval(_PUT, *args))
                results = [
                    PutResult(len(p.items)) if a else None for p, a in zip(batch, ok, strict=True)
                ]
                targets = {i.target for p, a in zip(batch, ok, strict=True) if a for i in p.items}
        except QueueUnavailable as exc:
            # The commit may have happened all the same (a connection lost after
            # COMMIT): what the cache holds may no longer be what is stored.
            self._states.clear()
            for p in batch:
                if not p.fut.done():
                    p.fut.set_exception(QueueUnavailable(str(exc)))
        else:
            for p, result in zip(batch, results, strict=True):
                if p.fut.done():
                    continue  # the client went away; the alerts are committed all the same
                if result is not None:
                    p.fut.set_result(result)
                else:
                    p.fut.set_exception(
                        QueueFull(
                            "queue full (limits queue.max_events="
                            f"{self.cfg.max_events}, queue.max_bytes={self.cfg.max_bytes})"
                        )
                    )
            for target in targets:
                self.new_work(target).set()
        if self._pending:
            asyncio.get_running_loop().call_soon(self._start_commit)
            return
        self._committing = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    async def _put_states(
        self, conn: Any, batch: list[Pending], now: float
    ) -> tuple[list[PutResult | None], set[str]]:
        """One group commit with alert states (see the module docstring).

        Admission is decided on all of a put's items, before deduplication, as
        ``put_batch`` decides it: a refused put changes no state row. Returns
        each put's result (None: refused, queue full) and the targets queued to.

        First optimistically, in two round trips and without holding the
        ``in`` lock across the network: read the rows, decide, and let
        ``put_states`` apply the decisions under the lock if neither the
        admission nor any row changed meanwhile. Only another replica's commit
        or a scheduler pass on the same identities can change them; after
        :attr:`optimistic_tries` such conflicts the locked path
        (:meth:`_put_states_locked`) decides under the lock, so a put always
        completes.
        """
        keys = state_keys(p.items for p in batch)
        by_stored: dict[StateKey, StateKey] = {stored_key(*k): k for k in keys}
        kt, kk, ki = ([k[n] for k in by_stored] for n in range(3))
        events = [len(p.items) for p in batch]
        sizes = [p.size for p in batch]
        cfg = self.cfg
        cache = self._states
        assume = [True] * len(batch)
        stale = False
        for _ in range(self.optimistic_tries):
            if stale:
                for k in keys:
                    cache.pop(k, None)
            missing = [k for k in by_stored.items() if k[1] not in cache]
            found: dict[StateKey, tuple[AlertState, str]] = {}
            if missing:
                mt, mk, mi = ([k[0][n] for k in missing] for n in range(3))
                found = self._loaded(await conn.fetch(LOAD_STATES, mt, mk, mi), by_stored)
            loaded: dict[StateKey, AlertState | None] = {}
            versions: list[str | None] = []
            for key in by_stored.values():
                got = cache.get(key) or found.get(key)
                loaded[key] = got[0] if got else None
                versions.append(got[1] if got else None)
            admitted = [p for p, a in zip(batch, assume, strict=True) if a]
            decided = decide((p.items for p in admitted), loaded, now)
            queued = [i for items in decided.queue for i in items]
            refused = [r for p in admitted for r in p.refused]
            args = apply_args(decided.rows.values(), (), queued, refused, now)
            res = await conn.fetchrow(
                PUT_STATES, assume, events, sizes, cfg.max_events, cfg.max_bytes,
                kt, kk, ki, versions, *args,
            )  # fmt: skip
            ok: list[bool] = res[0]
            if res[1] is False:  # applied: the admission was as assumed, no row had changed
                if len(by_stored) == len(keys):
                    self._remember((k, r, res[2]) for k, r in decided.rows.items())
                else:  # identities that differ only by NUL share one stored row: not cached
                    for k in keys:
                        cache.pop(k, None)
                answers = iter(decided.results)
                return [next(answers) if a else None for a in ok], {i.target for i in queued}
            stale = bool(res[1])
            if not stale:
                self._remember((k, r, v) for k, (r, v) in found.items())
            assume = ok
        for k in keys:
            cache.pop(k, None)
        return await self._put_states_locked(conn, batch, now, by_stored, events, sizes)

    def _remember(self, entries: Iterable[tuple[StateKey, AlertState, str]]) -> None:
        """Cache each (key, row, version), newest last; the oldest go beyond the bound."""
        cache = self._states
        for key, row, version in entries:
            cache.pop(key, None)
            cache[key] = (row, version)
        excess = len(cache) - self.state_cache_rows
        if excess > 0:
            for key in list(itertools.islice(cache, excess)):
                del cache[key]

    def forget_states(self, keys: Iterable[StateKey] | None = None) -> None:
        """Drop cached rows (``keys``, or all): something else wrote them (a scheduler pass)."""
        if keys is None:
            self._states.clear()
        else:
            for key in keys:
                self._states.pop(key, None)

    @staticmethod
    def _loaded(
        rows: Sequence[Any], by_stored: dict[StateKey, StateKey]
    ) -> dict[StateKey, tuple[AlertState, str]]:
        """The rows read, by the items' own keys, each with its version (xmin)."""
        out: dict[StateKey, tuple[AlertState, str]] = {}
        for r in rows:
            row = from_record(r)
            key = by_stored[row.key]
            row.identity = key[2]  # the item's own spelling (NUL kept)
            out[key] = (row, r["version"])
        return out

    async def _put_states_locked(
        self,
        conn: Any,
        batch: list[Pending],
        now: float,
        by_stored: dict[StateKey, StateKey],
        events: list[int],
        sizes: list[int],
    ) -> tuple[list[PutResult | None], set[str]]:
        """The group commit deciding under the ``in`` lock: four round trips, never retried."""
        kt, kk, ki = ([k[n] for k in by_stored] for n in range(3))
        # READ COMMITTED whatever the server's default: put_begin's row read
        # must see every commit made before it got the lock (a repeatable-read
        # snapshot would date from before the wait).
        async with conn.transaction(isolation="read_committed"):
            got = await conn.fetch(
                PUT_BEGIN, events, sizes, self.cfg.max_events, self.cfg.max_bytes, kt, kk, ki
            )
            ok: list[bool] = got[0][0]
            loaded: dict[StateKey, AlertState | None] = {}
            for r in got[1:]:
                row = from_record(r[1])
                key = by_stored[row.key]
                row.identity = key[2]
                loaded[key] = row
            admitted = [p for p, a in zip(batch, ok, strict=True) if a]
            if not admitted:
                return [None] * len(batch), set()
            decided = decide((p.items for p in admitted), loaded, now)
            queued = [i for items in decided.queue for i in items]
            refused = [r for p in admitted for r in p.refused]
            await conn.execute(APPLY, *apply_args(decided.rows.values(), (), queued, refused, now))
        answers = iter(decided.results)
        results = [next(answers) if a else None for a in ok]
        return results, {i.target for i in queued}

    # ----------------------------------------------------------------- sender side

    async def lease(self, target: str, *, limit: int, lease_for: float) -> Lease:
        """Lease up to ``limit`` due alerts of one app key, oldest first (contract invariant 3)."""
        now = self._clock.time()
        rows = await self.call(
            lambda c: c.fetch(_LEASE, target, target_key(target), limit, now, now + lease_for)
        )
        entries: list[Entry] = []
        next_due: float | None = None
        for r in rows:
            if r[0] is None:
                next_due = r[7]
            else:
                entries.append(Entry(r[0], target, r[1], r[2], r[3], r[4], r[5], r[6]))
        return Lease(entries, next_due)

    async def peek(self, target: str) -> tuple[int, float | None]:
        """How many due, unleased alerts ``target`` has (up to 1000), and the oldest's time."""
        now = self._clock.time()
        row = await self.call(
            lambda c: c.fetchrow(
                "SELECT count(*), min(created) FROM (SELECT created FROM forwarder.queue"
                " WHERE target=$1 AND lease_until<=$2 AND next_attempt<=$2"
                " ORDER BY id LIMIT 1000) s",
                target,
                now,
            )
        )
        assert row is not None
        return int(row[0]), row[1]

    async def ack(self, entries: Sequence[Entry]) -> None:
        """Delivered: delete them."""
        ids = [e.id for e in entries]
        now = self._clock.time()
        await self.call(lambda c: c.fetchval(_REMOVE, ids, None, None, None, None, now))

    async def retry_later(self, entries: Sequence[Entry], *, at: float, error: str) -> None:
        """A retryable failure: count the attempt, end the lease, due again at ``at``."""
        ids = [e.id for e in entries]
        await self.call(
            lambda c: c.execute(
                "UPDATE forwarder.queue SET attempts=attempts+1, next_attempt=$2, lease_until=0,"
                " last_error=$3 WHERE id = ANY($1::bigint[])",
                ids,
                at,
                pg_text(error[:1024]),
            )
        )

    async def release(self, entries: Sequence[Entry]) -> None:
        """Give leases back unattempted."""
        ids = [e.id for e in entries]
        await self.call(
            lambda c: c.execute(
                "UPDATE forwarder.queue SET lease_until=0 WHERE id = ANY($1::bigint[])", ids
            )
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
        """Move them to the dead-letter store with ``reason``, in one transaction."""
        ids = [e.id for e in entries]
        now = self._clock.time()
        response, error = (None if t is None else pg_text(t) for t in (response, error))
        await self.call(lambda c: c.fetchval(_REMOVE, ids, reason, status, response, error, now))

    # ----------------------------------------------------------------- sender claims

    async def claim_target(self, target: str) -> bool:
        """Become the one replica that sends for ``target``, if no live replica is.

        A session-level advisory lock on the replica's own connection: it is
        released by :meth:`release_target`, by :meth:`close`, or by
        PostgreSQL when the session dies, so another replica takes over.
        """
        return self._session is not None and await self._session.claim(target)

    def holds_target(self, target: str) -> bool:
        """Whether this replica currently holds the sender claim of ``target``."""
        return self._session is not None and self._session.holds(target)

    async def release_target(self, target: str) -> None:
        """Let another replica send for ``target``."""
        if self._session is not None:
            await self._session.release(target)

    @property
    def claimed_targets(self) -> frozenset[str]:
        """The targets this replica sends for now (for the metrics gauge)."""
        return self._session.claims if self._session is not None else frozenset()

    # ----------------------------------------------------------------- inspection

    async def stats(self) -> QueueStats:
        """Depth, bytes, oldest age and dead letters per target, from the counter rows.

        One round trip reading a few rows per target, plus one index probe for
        the oldest alert of each target that has any: cheap at any depth.
        """
        rows = await self.call(lambda c: c.fetch(STATS_SQL))
        return stats_from_counters(rows, self._clock.time())

    def now(self) -> float:
        """The queue clock's Unix time."""
        return self._clock.time()
