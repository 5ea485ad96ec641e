"""The queue's SQL: plain functions on a connection, run on the queue thread.

Kept apart from the class, which owns the thread, the group commit, the
counters and the disk-space rules, so each can be read on its own.
"""

from __future__ import annotations

import functools
import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Final

from forwarder.model import Entry, Outgoing
from forwarder.queue.sqlite.schema import transaction

_DEAD_LETTER_INSERT: Final = (
    "INSERT INTO dead_letters (target, app_key, identity, payload, size, ts, created,"
    " attempts, reason, status, response, last_error, failed_at)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def rows_per_insert(conn: sqlite3.Connection) -> int:
    """How many rows one INSERT may carry: 5 numbered parameters a row plus the shared time."""
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    return max(1, min(500, (limit - 1) // 5))


def insert(
    conn: sqlite3.Connection,
    items: Sequence[Outgoing],
    refused: Sequence[tuple[Outgoing, str]],
    now: float,
    per_statement: int,
) -> int:
    """Queue ``items`` and dead-letter ``refused`` in one transaction; the last queue id (or 0).

    One multi-row INSERT per group commit rather than executemany: in
    autocommit mode a single statement is its own transaction, and sqlite3
    releases and re-takes the GIL around every step, so one step instead of
    one per row keeps the event loop and the queue thread from handing the GIL
    back and forth (up to sys.getswitchinterval() each). The caller rolls back
    on error.
    """
    explicit = len(items) > per_statement or bool(refused)
    if explicit:
        conn.execute("BEGIN IMMEDIATE")
    last_id = insert_in(conn, items, refused, now, per_statement)
    if explicit:
        conn.execute("COMMIT")
    return last_id


def insert_in(
    conn: sqlite3.Connection,
    items: Sequence[Outgoing],
    refused: Sequence[tuple[Outgoing, str]],
    now: float,
    per_statement: int,
) -> int:
    """:func:`insert` inside the caller's transaction (several statements when large)."""
    last_id = 0
    for start in range(0, len(items), per_statement):
        chunk = items[start : start + per_statement]
        params: list[Any] = [now]
        for i in chunk:
            params += (i.target, i.app_key, i.identity, i.payload, i.timestamp)
        # AUTOINCREMENT ids inside one write transaction are consecutive.
        last_id = int(conn.execute(_insert_sql(len(chunk)), params).lastrowid or 0)
    if refused:
        conn.executemany(
            _DEAD_LETTER_INSERT,
            [
                (
                    o.target,
                    o.app_key,
                    o.identity,
                    o.payload,
                    len(o.payload),
                    o.timestamp,
                    now,
                    0,
                    reason,
                    None,
                    None,
                    None,
                    now,
                )
                for o, reason in refused
            ],
        )
    return last_id


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


def lease(
    conn: sqlite3.Connection, target: str, limit: int, lease_for: float, now: float
) -> tuple[list[Entry], float | None, int]:
    """Lease up to ``limit`` due alerts of one app key: the entries, the next due time, top id.

    Identities with a state leased or waiting for a retry, and the oldest such
    row of each, are read first: every later row of that identity must wait. A
    batch takes at most one state of an identity (the oldest); the next waits
    until that one is settled.
    The partial index holds only rows ever leased or attempted, so this reads
    the batches in flight, not the whole queue.
    """
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
        # One state per identity a batch: if a batch is sent again after a crash,
        # no older state can reach BigPanda after a newer one was delivered.
        held[ident] = rid
        if len(chosen) >= limit:
            break
    if chosen:
        ids = [e.id for e in chosen]
        conn.execute(
            f"UPDATE queue SET lease_until=? WHERE id IN ({','.join('?' * len(ids))})",
            (now + lease_for, *ids),
        )
    return chosen, earliest, max((r[0] for r in rows), default=0)


def peek(conn: sqlite3.Connection, target: str, now: float) -> tuple[int, float | None]:
    """How many due, unleased alerts ``target`` has (up to 1000), and the oldest's ``created``."""
    count, oldest = conn.execute(
        "SELECT COUNT(*), MIN(created) FROM (SELECT created FROM queue"
        " WHERE target=? AND lease_until<=? AND next_attempt<=? ORDER BY id LIMIT 1000)",
        (target, now, now),
    ).fetchone()
    return int(count), oldest


def delete(conn: sqlite3.Connection, ids: Sequence[int]) -> list[tuple[int, str, int]]:
    """Delete queue rows (inside the caller's transaction); the ids, targets and sizes gone."""
    out: list[tuple[int, str, int]] = []
    for chunk in _chunks(ids, 500):
        marks = ",".join("?" * len(chunk))
        out += conn.execute(
            f"DELETE FROM queue WHERE id IN ({marks}) RETURNING id, target, size", chunk
        ).fetchall()
    return out


def retry(conn: sqlite3.Connection, ids: Sequence[int], at: float, error: str) -> None:
    """Count an attempt, end the lease and make the rows due at ``at``."""
    for chunk in _chunks(ids, 500):
        conn.execute(
            "UPDATE queue SET attempts=attempts+1, next_attempt=?, lease_until=0, last_error=?"
            f" WHERE id IN ({','.join('?' * len(chunk))})",
            (at, error[:1024], *chunk),
        )


def release(conn: sqlite3.Connection, ids: Sequence[int] | None) -> None:
    """End leases without counting an attempt (every lease when ``ids`` is None)."""
    if ids is None:
        conn.execute("UPDATE queue SET lease_until=0 WHERE lease_until>0")
        return
    for chunk in _chunks(ids, 500):
        conn.execute(
            f"UPDATE queue SET lease_until=0 WHERE id IN ({','.join('?' * len(chunk))})", chunk
        )


def remove(conn: sqlite3.Connection, ids: Sequence[int]) -> list[tuple[str, int]]:
    """Delete queue rows in one transaction; their targets and sizes."""
    with transaction(conn):
        return [(target, size) for _, target, size in delete(conn, ids)]


def dead_letter(
    conn: sqlite3.Connection,
    entries: Sequence[Entry],
    *,
    reason: str,
    status: int | None,
    response: str | None,
    error: str | None,
    now: float,
) -> list[tuple[str, int]]:
    """Move ``entries`` to the dead letters in one transaction; the deleted targets and sizes.

    Only rows still queued move: an entry whose lease expired may have been
    delivered by another sender meanwhile, and must not come back by a replay.
    """
    with transaction(conn):
        gone = delete(conn, [e.id for e in entries])
        still = {row_id for row_id, _, _ in gone}
        _insert_dead_letters(
            conn, [e for e in entries if e.id in still], reason, status, response, error, now
        )
        return [(target, size) for _, target, size in gone]


def _insert_dead_letters(
    conn: sqlite3.Connection,
    entries: Sequence[Entry],
    reason: str,
    status: int | None,
    response: str | None,
    error: str | None,
    now: float,
) -> None:
    conn.executemany(
        _DEAD_LETTER_INSERT,
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


def count(conn: sqlite3.Connection) -> tuple[dict[str, int], int, int]:
    """Alerts per target, their payload bytes and the highest id, from one snapshot."""
    per_target: dict[str, int] = defaultdict(int)
    total_bytes = 0
    conn.execute("BEGIN")
    try:
        for target, n, size in conn.execute(
            "SELECT target, COUNT(*), COALESCE(SUM(size),0) FROM queue GROUP BY target"
        ):
            per_target[target] = n
            total_bytes += size
        top = highest_id(conn)
    finally:
        conn.execute("COMMIT")
    return per_target, total_bytes, top


def highest_id(conn: sqlite3.Connection) -> int:
    """The largest queue id ever handed out (AUTOINCREMENT's high-water mark)."""
    row = conn.execute(
        "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name='queue'), 0)"
    ).fetchone()
    return int(row[0])


def oldest_created(conn: sqlite3.Connection, target: str) -> float | None:
    """``created`` of the target's first row: ``created`` grows with the id (one index lookup)."""
    row = conn.execute(
        "SELECT created FROM queue WHERE target=? ORDER BY id LIMIT 1", (target,)
    ).fetchone()
    return row[0] if row else None


def _chunks(ids: Sequence[int], size: int) -> list[Sequence[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]
