"""The SQLite alert-state store: one ``alert_states`` row per identity, and its cache.

Every write of a row happens on the queue thread, in the transaction that
queues what its decision says (contract invariant 5): a group commit's
decisions in :meth:`.queue.SQLiteQueue._insert`, the scheduler's in
:meth:`SQLiteAlertStates.tick`. An admin connection (``forwarder alerts``
beside the daemon) only reads.

**The cache.** The daemon is the file's only writer (its lock file), so the
rows it last wrote are the rows on disk: a write-through LRU cache of
:data:`CACHE_ROWS` rows, updated only after a COMMIT, spares the ingest hot
path every read of a known identity. Misses are read in one SELECT per
(target, app key) and chunk of SQLite's variable limit. Cached rows carry no
payload (``b""``): :func:`forwarder.state.observe` replaces it with the new
alert's and never reads the old one, and the scheduler reads its rows, payload
included, from the file. That keeps the cache's memory to 600 bytes to 1 KB a
row (bench/state_scale.py: RSS levels off at about 230 MB with the cache full),
whatever the alerts' size.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from forwarder import jsonio
from forwarder.model import Outgoing
from forwarder.queue.contract import AlertCounts, AlertFilter, TickResult
from forwarder.queue.errors import QueueUnavailable
from forwarder.queue.putting import StateKey, TickTally
from forwarder.queue.sqlite import rows as queue_rows
from forwarder.queue.sqlite.schema import transaction
from forwarder.state import OK, AlertState, AlertView, tick
from forwarder.state.record import view

if TYPE_CHECKING:
    from forwarder.queue.sqlite.queue import SQLiteQueue

# Rows the cache keeps (up to 1 KB each, payload excluded: 100 MB): a storm's
# working set, while a million identities stay on disk.
CACHE_ROWS: Final = 100_000

# AlertState's fields in order, as the table's columns (``ts`` is ``timestamp``).
COLUMNS: Final = (
    "target, app_key, identity, status, dedup, payload, ts, first_seen, seen, clock, since,"
    " queued_status, queued_dedup, queued_at, sent, transitions, flapping, suppressed,"
    " resolve_after, hold, retention, due"
)
_NCOLS: Final = 22
# The same, with the payload left out (what the cache needs).
_NO_PAYLOAD: Final = COLUMNS.replace(" payload,", " x'',")
_UPDATED: Final = ", ".join(f"{c}=excluded.{c}" for c in COLUMNS.replace(" ", "").split(",")[3:])
_NO_TRANSITIONS: Final = "[]"


def repeat_only(old: AlertState | None, new: AlertState) -> bool:
    """Whether ``new`` differs from ``old`` only by a repeat's news (seen again, suppressed).

    Such a row may be written later (:meth:`SQLiteQueue._coalesce`): no
    decision depends on what it changes.
    """
    return (
        old is not None
        and new.suppressed > old.suppressed
        and new.queued_at == old.queued_at
        and new.status == old.status
        and new.flapping == old.flapping
        and new.transitions == old.transitions
        and new.dedup == old.dedup
        and new.resolve_after == old.resolve_after
        and new.hold == old.hold
        and new.retention == old.retention
    )


class StateCache:
    """A bounded LRU of rows as last committed (see the module docstring)."""

    def __init__(self, bound: int = CACHE_ROWS) -> None:
        self.bound = bound
        self._rows: OrderedDict[StateKey, AlertState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._rows)

    def lookup(self, keys: Iterable[StateKey]) -> tuple[dict[StateKey, AlertState], list[StateKey]]:
        """The cached rows of ``keys`` (each marked recently used), and the keys not cached."""
        found: dict[StateKey, AlertState] = {}
        missing: list[StateKey] = []
        cached = self._rows
        touch = cached.move_to_end
        for key in keys:
            row = cached.get(key)
            if row is None:
                missing.append(key)
            else:
                found[key] = row
                touch(key)
        return found, missing

    def committed(self, rows: Iterable[AlertState], *, only_cached: bool = False) -> None:
        """After a COMMIT: keep ``rows`` (their payloads dropped), then evict down to the bound.

        The rows become the cache's: the caller must not use their payload any more.
        ``only_cached`` refreshes rows already cached and adds none (the scheduler's).
        """
        cached = self._rows
        for row in rows:
            key = (row.target, row.app_key, row.identity)
            if only_cached and key not in cached:
                continue
            row.payload = b""
            cached[key] = row
        while len(cached) > self.bound:
            cached.popitem(last=False)

    def forget(self, keys: Iterable[StateKey]) -> None:
        """After a COMMIT that deleted rows."""
        for key in keys:
            self._rows.pop(key, None)

    def clear(self) -> None:
        """Drop everything (the file is closed, or was written by another connection)."""
        self._rows.clear()


class Gauges:
    """Open and flapping identities per target, kept by the owner as it writes rows.

    Read at open from the partial indexes (50 ms at 900,000 open rows), then
    moved by each committed change: a scrape costs O(targets), not a scan. The
    owner is the only writer of the table, so the figures stay exact; an admin
    connection counts from the indexes instead.
    """

    def __init__(self) -> None:
        self.open: Counter[str] = Counter()
        self.flapping: Counter[str] = Counter()

    def load(self, conn: sqlite3.Connection) -> None:
        """Count from the file (at open)."""
        counts = count(conn)
        self.open = Counter(counts.open)
        self.flapping = Counter(counts.flapping)

    def changed(self, old: AlertState | None, new: AlertState | None) -> None:
        """After a COMMIT that replaced ``old`` by ``new`` (None: absent before, or deleted)."""
        if old is not None:
            if old.status != OK:
                self.open[old.target] -= 1
            if old.flapping:
                self.flapping[old.target] -= 1
        if new is not None:
            if new.status != OK:
                self.open[new.target] += 1
            if new.flapping:
                self.flapping[new.target] += 1

    def snapshot(self) -> AlertCounts:
        """The figures now, targets at zero left out (as the indexes would)."""
        return AlertCounts(
            open={t: n for t, n in self.open.items() if n},
            flapping={t: n for t, n in self.flapping.items() if n},
        )


# --------------------------------------------------------------------------- rows


def encode(row: AlertState) -> tuple[Any, ...]:
    """``row`` as the table's columns, in :data:`COLUMNS` order."""
    t = row.transitions
    return (
        row.target,
        row.app_key,
        row.identity,
        row.status,
        row.dedup,
        row.payload,
        row.timestamp,
        row.first_seen,
        row.seen,
        row.clock,
        row.since,
        row.queued_status,
        row.queued_dedup,
        row.queued_at,
        row.sent,
        jsonio.dumps(t).decode() if t else _NO_TRANSITIONS,
        1 if row.flapping else 0,
        row.suppressed,
        row.resolve_after,
        row.hold,
        row.retention,
        row.due,
    )


def decode(r: Sequence[Any]) -> AlertState:
    """A row read with :data:`COLUMNS` (or :data:`_NO_PAYLOAD`)."""
    text = r[15]
    transitions = [] if text == _NO_TRANSITIONS else list(jsonio.loads(text.encode()))
    return AlertState(
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        r[5],
        r[6],
        r[7],
        r[8],
        r[9],
        r[10],
        r[11],
        r[12],
        r[13],
        r[14],
        transitions,
        bool(r[16]),
        r[17],
        r[18],
        r[19],
        r[20],
        r[21],
    )


def variables(conn: sqlite3.Connection) -> int:
    """How many values one statement may bind (999 on old builds, 32766 on new ones)."""
    return min(conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER), 32766)


def load(
    conn: sqlite3.Connection, keys: Iterable[StateKey], limit: int
) -> dict[StateKey, AlertState]:
    """The stored rows of ``keys`` (absent: a new identity), without payloads.

    One SELECT per (target, app key) and ``limit - 2`` identities: the
    unique index answers each ``IN`` list.
    """
    by_owner: dict[tuple[str, str], list[str]] = {}
    for target, app_key, identity in keys:
        by_owner.setdefault((target, app_key), []).append(identity)
    out: dict[StateKey, AlertState] = {}
    per = max(1, limit - 2)
    for (target, app_key), identities in by_owner.items():
        for start in range(0, len(identities), per):
            chunk = identities[start : start + per]
            for r in conn.execute(
                f"SELECT {_NO_PAYLOAD} FROM alert_states WHERE target=? AND app_key=?"
                f" AND identity IN ({','.join('?' * len(chunk))})",
                (target, app_key, *chunk),
            ):
                row = decode(r)
                # The caller's strings, shared by every row of the owner, not a copy per row.
                row.target, row.app_key = target, app_key
                out[(target, app_key, row.identity)] = row
    return out


def upsert(conn: sqlite3.Connection, states: Sequence[AlertState], limit: int) -> None:
    """Store ``states`` (inside the caller's transaction), new or replacing their rows.

    A multi-row ``INSERT … ON CONFLICT DO UPDATE`` per chunk rather than
    executemany, for the reason :func:`.rows.insert` gives: one step per
    statement, so the queue thread does not hand the GIL to the event loop
    and wait to get it back once per row.
    """
    per = max(1, limit // _NCOLS)
    for start in range(0, len(states), per):
        chunk = states[start : start + per]
        params: list[Any] = []
        for row in chunk:
            params += encode(row)
        conn.execute(_upsert_sql(len(chunk)), params)


@functools.lru_cache(maxsize=64)
def _upsert_sql(n: int) -> str:
    marks = "(" + ",".join("?" * _NCOLS) + ")"
    return (
        f"INSERT INTO alert_states ({COLUMNS}) VALUES {','.join([marks] * n)}"
        f" ON CONFLICT (target, app_key, identity) DO UPDATE SET {_UPDATED}"
    )


def delete(conn: sqlite3.Connection, keys: Sequence[StateKey]) -> None:
    """Delete rows (inside the caller's transaction)."""
    conn.executemany("DELETE FROM alert_states WHERE target=? AND app_key=? AND identity=?", keys)


def exists(conn: sqlite3.Connection) -> bool:
    """Whether the file has the table (one written before issue 13, opened read-only, has not)."""
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='alert_states'"
    ).fetchone()
    return found is not None


# Each filter repeats its partial index's WHERE term literally, so SQLite may use it.
_FILTERS: Final[Mapping[AlertFilter | None, str]] = {
    None: "1",
    "firing": "status <> 'ok'",
    "ok": "status = 'ok'",
    "flapping": "flapping = 1",
}
# Flapping identities are few: sort them, rather than walk every row newest first
# (which the planner would, for the ORDER BY, finding none at a million rows in 0.5 s).
_FROM: Final[Mapping[AlertFilter | None, str]] = {
    "flapping": "alert_states INDEXED BY alert_states_flapping",
}


def list_views(
    conn: sqlite3.Connection, status: AlertFilter | None, target: str | None, limit: int
) -> list[AlertView]:
    """Identities most recently seen first, as the API and the CLI show them."""
    if not exists(conn):
        return []
    where = _FILTERS[status]
    params: list[Any] = []
    if target is not None:
        where += " AND target = ?"
        params.append(target)
    params.append(limit)
    cur = conn.execute(
        f"SELECT {COLUMNS} FROM {_FROM.get(status, 'alert_states')} WHERE {where}"
        " ORDER BY seen DESC LIMIT ?",
        params,
    )
    return [view(decode(r)) for r in cur.fetchall()]


def count(conn: sqlite3.Connection) -> AlertCounts:
    """Open and flapping identities per target, each from its partial index alone."""
    if not exists(conn):
        return AlertCounts()
    open_ = conn.execute(
        "SELECT target, COUNT(*) FROM alert_states WHERE status <> 'ok' GROUP BY target"
    ).fetchall()
    flapping = conn.execute(
        "SELECT target, COUNT(*) FROM alert_states WHERE flapping = 1 GROUP BY target"
    ).fetchall()
    return AlertCounts(open=dict(open_), flapping=dict(flapping))


def earliest_due(conn: sqlite3.Connection) -> float | None:
    """When the scheduler must look next (the ``due`` index's first entry)."""
    row = conn.execute("SELECT MIN(due) FROM alert_states WHERE due IS NOT NULL").fetchone()
    return None if row is None or row[0] is None else float(row[0])


# --------------------------------------------------------------------------- the store


class SQLiteAlertStates:
    """:class:`~forwarder.queue.contract.AlertStates` on the queue's file, run on its thread."""

    def __init__(self, queue: SQLiteQueue) -> None:
        self._queue = queue

    async def list(
        self, *, status: AlertFilter | None = None, target: str | None = None, limit: int = 100
    ) -> list[AlertView]:
        q = self._queue

        def read() -> list[AlertView]:
            with contextlib.suppress(sqlite3.Error):  # a full disk: list what is written
                q.flush_deferred()  # repeats' last seen and counts, not yet written
            return list_views(q.conn, status, target, limit)

        return await q.run(read)

    async def counts(self) -> AlertCounts:
        q = self._queue
        if q.admin:
            return await q.run(lambda: count(q.conn))
        return await q.run(q.gauges.snapshot)

    async def tick(self, *, limit: int = 1000) -> TickResult:
        q = self._queue
        if q.admin:
            raise QueueUnavailable("an admin connection does not run the alert scheduler")
        result, targets = await q.run(self._tick_sync, limit)
        q.wake(targets)
        return result

    def _tick_sync(self, limit: int) -> tuple[TickResult, set[str]]:
        """On the queue thread: one scheduler pass in one transaction."""
        q = self._queue
        q.flush_deferred()  # the rows read below must be the latest
        conn = q.conn
        now = q.now()
        due = [
            decode(r)
            for r in conn.execute(
                f"SELECT {COLUMNS} FROM alert_states WHERE due IS NOT NULL AND due <= ?"
                " ORDER BY due LIMIT ?",
                (now, limit + 1),
            )
        ]
        more = len(due) > limit
        del due[limit:]
        room_count, room_bytes = q.room()
        store: list[AlertState] = []
        gone: list[StateKey] = []
        items: list[Outgoing] = []
        size = 0
        tally = TickTally()
        changes: list[tuple[AlertState, AlertState | None]] = []
        for row in due:
            verdict = tick(row, now)
            if verdict.queue is not None:
                n = len(verdict.queue.payload)
                if len(items) >= room_count or size + n > room_bytes:
                    continue  # no room: the row stays as it is, due, for a later pass
                items.append(verdict.queue)
                size += n
            if verdict.row is None:
                gone.append(row.key)
            else:
                store.append(verdict.row)
            changes.append((row, verdict.row))
            tally.count(row, verdict.kind)
        if store or gone:
            limit_vars = variables(conn)

            def write() -> int:
                with transaction(conn):
                    upsert(conn, store, limit_vars)
                    if gone:
                        delete(conn, gone)
                    return queue_rows.insert_in(conn, items, (), now, q.rows_per_insert())

            last_id = q.state_write(write, len(store) + len(gone), size)
            q.cache.committed(store, only_cached=True)
            q.cache.forget(gone)
            for old, new in changes:
                q.gauges.changed(old, new)
            q.counted(items, last_id)
        return tally.result(earliest_due(conn), more), {i.target for i in items}
