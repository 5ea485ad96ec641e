"""The SQLite dead-letter store: list, show, replay and purge.

The operations are synchronous functions on a connection, run on the queue's
thread by :class:`SQLiteDeadLetters`. The CLI opens the same file beside a
running daemon (WAL mode allows it) through an admin :class:`SQLiteQueue`, so
both go through the storage contract. Listings never include the app key.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from forwarder.model import DEAD_LETTER_COLUMNS, DeadLetter
from forwarder.queue.sqlite import schema

if TYPE_CHECKING:
    from forwarder.queue.sqlite.queue import SQLiteQueue


class SQLiteDeadLetters:
    """:class:`~forwarder.queue.DeadLetters` on the queue's file, run on its thread."""

    def __init__(self, queue: SQLiteQueue) -> None:
        self._queue = queue

    async def list(self, *, target: str | None = None, limit: int = 100) -> list[DeadLetter]:
        q = self._queue
        return await q.run(lambda: list_dead_letters(q.conn, target, limit))

    async def get(self, dl_id: int) -> DeadLetter | None:
        q = self._queue
        return await q.run(lambda: get_dead_letter(q.conn, dl_id))

    async def replay(self, *, ids: Sequence[int] | None = None, target: str | None = None) -> int:
        queue = self._queue
        now = queue.now()

        def go() -> int:
            moved = replay(queue.conn, ids=ids, target=target, now=now)
            queue.recount()
            return moved

        moved = await queue.write(go, rows_changed=2 * len(ids) if ids is not None else 1000)
        queue.wake_all()
        return moved

    async def purge(
        self, *, ids: Sequence[int] | None = None, older_than: float | None = None
    ) -> int:
        queue = self._queue
        now = queue.now()
        return await queue.write(
            lambda: purge(queue.conn, ids=ids, older_than=older_than, now=now),
            rows_changed=len(ids) if ids is not None else 1000,
        )


_SELECT = f"SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters"


def list_dead_letters(conn: sqlite3.Connection, target: str | None, limit: int) -> list[DeadLetter]:
    """Newest first, optionally for one target."""
    if target is None:
        cur = conn.execute(_SELECT + " ORDER BY id DESC LIMIT ?", (limit,))
    else:
        cur = conn.execute(
            _SELECT + " WHERE target=? ORDER BY id DESC LIMIT ?",
            (target, limit),
        )
    return [DeadLetter.from_row(r) for r in cur.fetchall()]


def get_dead_letter(conn: sqlite3.Connection, dl_id: int) -> DeadLetter | None:
    """One dead letter by id, or ``None``."""
    row = conn.execute(_SELECT + " WHERE id=?", (dl_id,)).fetchone()
    return DeadLetter.from_row(row) if row else None


def replay(
    conn: sqlite3.Connection,
    *,
    ids: Sequence[int] | None,
    target: str | None,
    now: float,
) -> int:
    """Move dead letters back into the queue (all of them when ``ids`` is None).

    A replayed alert starts afresh: no attempts, due now, and its age (for
    ``retry.max_age`` and the latency metric) counted from the replay.
    """
    where, params = _where(ids, target)
    with schema.transaction(conn):
        cur = conn.execute(
            "INSERT INTO queue (target, app_key, identity, payload, size, ts, created,"
            " attempts, next_attempt, lease_until, last_error)"
            " SELECT target, app_key, identity, payload, size, ts, ?, 0, ?, 0, NULL"
            f" FROM dead_letters {where} ORDER BY id",
            (now, now, *params),
        )
        moved = cur.rowcount
        conn.execute(f"DELETE FROM dead_letters {where}", params)
    return moved


def purge(
    conn: sqlite3.Connection,
    *,
    ids: Sequence[int] | None,
    older_than: float | None,
    now: float,
) -> int:
    """Delete dead letters by id, or those that failed more than ``older_than`` seconds ago."""
    if ids is not None:
        where, params = _where(ids, None)
        cur = conn.execute(f"DELETE FROM dead_letters {where}", params)
    elif older_than is not None:
        cur = conn.execute("DELETE FROM dead_letters WHERE failed_at < ?", (now - older_than,))
    else:
        raise ValueError("purge needs ids or older_than")
    return cur.rowcount


def dead_letter_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Dead letters per target."""
    return dict(conn.execute("SELECT target, COUNT(*) FROM dead_letters GROUP BY target"))


def _where(ids: Sequence[int] | None, target: str | None) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    params: list[Any] = []
    if ids is not None:
        clauses.append(f"id IN ({','.join('?' * len(ids))})" if ids else "0")
        params += list(ids)
    if target is not None:
        clauses.append("target=?")
        params.append(target)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", tuple(params)
