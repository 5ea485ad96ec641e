"""Dead-letter operations: list, show, replay and purge.

These are plain synchronous functions on a connection so that the CLI (which
opens the database beside a running daemon, as SQLite's WAL mode allows) and
the daemon's admin API (which runs them on its queue thread) share one
implementation. Listings never include the app key.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from forwarder import jsonio, store


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One alert that will not be delivered without an operator's help."""

    id: int
    target: str
    reason: str
    status: int | None
    attempts: int
    created: float
    failed_at: float
    check: str
    alert: dict[str, Any]
    response: str | None
    last_error: str | None

    def summary(self, now: float | None = None) -> dict[str, Any]:
        """The fields of a listing line, JSON-ready (no payload, no app key)."""
        now = time.time() if now is None else now
        return {
            "id": self.id,
            "target": self.target,
            "reason": self.reason,
            "status": self.status,
            "attempts": self.attempts,
            "age_seconds": round(max(0.0, now - self.failed_at), 1),
            "check": self.check,
        }

    def detail(self) -> dict[str, Any]:
        """Everything known about it, JSON-ready (still no app key)."""
        return {
            **self.summary(),
            "created": self.created,
            "failed_at": self.failed_at,
            "response": self.response,
            "last_error": self.last_error,
            "alert": self.alert,
        }


_COLUMNS = "id, target, reason, status, attempts, created, failed_at, payload, response, last_error"


def _row(row: tuple[Any, ...]) -> DeadLetter:
    try:
        alert = jsonio.loads(row[7])
    except ValueError:
        alert = {}
    if not isinstance(alert, dict):
        alert = {}
    check = alert.get("check")
    return DeadLetter(
        id=row[0],
        target=row[1],
        reason=row[2],
        status=row[3],
        attempts=row[4],
        created=row[5],
        failed_at=row[6],
        check=check if isinstance(check, str) else "",
        alert=alert,
        response=row[8],
        last_error=row[9],
    )


def list_dead_letters(
    conn: sqlite3.Connection, *, target: str | None = None, limit: int = 100
) -> list[DeadLetter]:
    """Newest first, optionally for one target."""
    if target is None:
        cur = conn.execute(
            f"SELECT {_COLUMNS} FROM dead_letters ORDER BY id DESC LIMIT ?", (limit,)
        )
    else:
        cur = conn.execute(
            f"SELECT {_COLUMNS} FROM dead_letters WHERE target=? ORDER BY id DESC LIMIT ?",
            (target, limit),
        )
    return [_row(r) for r in cur.fetchall()]


def get_dead_letter(conn: sqlite3.Connection, dl_id: int) -> DeadLetter | None:
    """One dead letter by id, or ``None``."""
    row = conn.execute(f"SELECT {_COLUMNS} FROM dead_letters WHERE id=?", (dl_id,)).fetchone()
    return _row(row) if row else None


def replay(
    conn: sqlite3.Connection,
    *,
    ids: Sequence[int] | None = None,
    target: str | None = None,
    now: float | None = None,
) -> int:
    """Move dead letters back into the queue (all of them when ``ids`` is None).

    A replayed alert starts afresh: no attempts, due now, and its age (for
    ``retry.max_age`` and the latency metric) counted from the replay.
    """
    now = time.time() if now is None else now
    where, params = _where(ids, target)
    with store.transaction(conn):
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
    ids: Sequence[int] | None = None,
    older_than: float | None = None,
    now: float | None = None,
) -> int:
    """Delete dead letters by id, or those that failed more than ``older_than`` seconds ago."""
    now = time.time() if now is None else now
    if ids is not None:
        where, params = _where(ids, None)
        cur = conn.execute(f"DELETE FROM dead_letters {where}", params)
    elif older_than is not None:
        cur = conn.execute("DELETE FROM dead_letters WHERE failed_at < ?", (now - older_than,))
    else:
        raise ValueError("purge needs ids or older_than")
    return cur.rowcount


def counts(conn: sqlite3.Connection) -> dict[str, int]:
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
