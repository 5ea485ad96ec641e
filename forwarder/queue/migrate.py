"""Moving a SQLite queue into PostgreSQL: queued alerts and dead letters, without loss.

:func:`sqlite_to_postgres` copies rows in chunks, oldest first. Each chunk is
committed in PostgreSQL, with the highest SQLite id it contains recorded in
``forwarder.imports`` in the same transaction, and only then deleted from the
SQLite file. A run interrupted anywhere (Ctrl-C, a crash, the database going
away) is simply run again: rows already imported are recognised by their id
and only deleted, so nothing is lost and nothing is queued twice. A second
run on an emptied file moves nothing.

Alerts keep their app key, identity, payload, creation time, attempts, last
error and retry time; leases are dropped (the SQLite file is opened as its
owner, which proves no daemon holds it). Migrate before the PostgreSQL
replicas take traffic: an alert already queued there for the same identity
would otherwise be older in fact but newer in queue order.

The SQLite side goes through the backend's own queue object (its lock and
its thread); only the row reads and deletes are SQL of its file.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from forwarder.queue.postgres import PostgresQueue
from forwarder.queue.sqlite import SQLiteQueue

CHUNK: Final = 1000

_QUEUE_COLUMNS: Final = (
    "id, target, app_key, identity, payload, ts, created, attempts, next_attempt, last_error"
)
_DEAD_COLUMNS: Final = (
    "id, target, app_key, identity, payload, ts, created, attempts, reason, status, response,"
    " last_error, failed_at"
)
_INSERT_QUEUE: Final = """
INSERT INTO forwarder.queue (target, app_key, identity, payload, size, ts, created, attempts,
                             next_attempt, last_error)
SELECT u.t, u.k, u.i, u.p, length(u.p), u.ts, u.cr, u.a, u.na, u.le
  FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bigint[],
              $6::float8[], $7::int[], $8::float8[], $9::text[])
       WITH ORDINALITY AS u(t, k, i, p, ts, cr, a, na, le, ord)
 ORDER BY u.ord
"""
_INSERT_DEAD: Final = """
INSERT INTO forwarder.dead_letters (target, app_key, identity, payload, size, ts, created,
                                    attempts, reason, status, response, last_error, failed_at)
SELECT u.t, u.k, u.i, u.p, length(u.p), u.ts, u.cr, u.a, u.r, u.s, u.rs, u.le, u.f
  FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bigint[],
              $6::float8[], $7::int[], $8::text[], $9::int[], $10::text[], $11::text[],
              $12::float8[])
       WITH ORDINALITY AS u(t, k, i, p, ts, cr, a, r, s, rs, le, f, ord)
 ORDER BY u.ord
"""


_NOTIFY: Final = "SELECT pg_notify('forwarder_work', t) FROM unnest($1::text[]) t"


@dataclass(frozen=True, slots=True)
class Moved:
    """What one run moved; ``already`` counts rows an earlier, interrupted run had imported."""

    alerts: int = 0
    dead_letters: int = 0
    already: int = 0


async def sqlite_to_postgres(
    source: SQLiteQueue, target: PostgresQueue, *, source_key: str, chunk: int = CHUNK
) -> Moved:
    """Move every queued alert, then every dead letter, from ``source`` to ``target``.

    Both must be open, ``source`` as its owner (not admin), so no daemon
    writes to it meanwhile. ``source_key`` names the file in
    ``forwarder.imports`` (its absolute path).
    """
    alerts, skipped_a = await _move(source, target, "queue", source_key, chunk)
    dead, skipped_d = await _move(source, target, "dead_letters", source_key, chunk)
    if alerts:
        target.wake_all()
    return Moved(alerts=alerts, dead_letters=dead, already=skipped_a + skipped_d)


async def _move(
    source: SQLiteQueue, target: PostgresQueue, table: str, source_key: str, chunk: int
) -> tuple[int, int]:
    columns = _QUEUE_COLUMNS if table == "queue" else _DEAD_COLUMNS

    def read() -> list[tuple[Any, ...]]:
        return source.conn.execute(
            f"SELECT {columns} FROM {table} ORDER BY id LIMIT ?", (chunk,)
        ).fetchall()

    def delete(first: int, last: int) -> None:
        source.conn.execute(f"DELETE FROM {table} WHERE id BETWEEN ? AND ?", (first, last))

    moved = skipped = 0
    while rows := await source.run(read):
        added = await target.call(partial(_import, table=table, rows=rows, source_key=source_key))
        moved += added
        skipped += len(rows) - added
        await source.run(delete, rows[0][0], rows[-1][0])
    return moved, skipped


async def _import(
    conn: Any, *, table: str, rows: Sequence[tuple[Any, ...]], source_key: str
) -> int:
    """One chunk into PostgreSQL, counters and import mark in the same transaction."""
    async with conn.transaction():
        if table == "queue":
            # The lock puts take first: ids stay in commit order (see the schema).
            await conn.execute(
                "SELECT 1 FROM forwarder.counters WHERE kind = 'in' AND target = '' FOR UPDATE"
            )
        mark = await conn.fetchrow(
            "SELECT upto, digest FROM forwarder.imports WHERE source = $1 AND kind = $2",
            source_key,
            table,
        )
        fresh = list(rows)
        if mark is not None:
            # The chunk imported last, still in the file (a crash before its delete)?
            # Only if the very rows match: a new file at the same path has low ids too.
            done = [r for r in rows if r[0] <= mark["upto"]]
            if done and _digest(done) == mark["digest"]:
                fresh = [r for r in rows if r[0] > mark["upto"]]
        if not fresh:
            return 0
        columns = list(zip(*(r[1:] for r in fresh), strict=True))
        columns[3] = tuple(_bytes(p) for p in columns[3])
        await conn.execute(_INSERT_QUEUE if table == "queue" else _INSERT_DEAD, *columns)
        sizes: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for r in fresh:
            sizes[r[1]][0] += 1
            sizes[r[1]][1] += len(_bytes(r[4]))
        targets = sorted(sizes)
        await conn.execute(
            "SELECT forwarder.count($1, $2, $3, $4)",
            "in" if table == "queue" else "dead",
            targets,
            [sizes[t][0] for t in targets],
            [sizes[t][1] for t in targets],
        )
        await conn.execute(
            "INSERT INTO forwarder.imports (source, kind, upto, digest) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (source, kind) DO UPDATE SET upto = excluded.upto,"
            " digest = excluded.digest",
            source_key,
            table,
            fresh[-1][0],
            _digest(fresh),
        )
        if table == "queue":
            await conn.execute(_NOTIFY, targets)
        return len(fresh)


def _digest(rows: Sequence[tuple[Any, ...]]) -> str:
    """A digest of whole rows (ids, times and payloads), to recognise one chunk again."""
    h = hashlib.sha256()
    for row in rows:
        for value in row:
            h.update(_bytes(value) if isinstance(value, bytes | str) else repr(value).encode())
            h.update(b"\x1f")
        h.update(b"\x1e")
    return h.hexdigest()


def _bytes(payload: object) -> bytes:
    """A stored payload as bytes (a file written by hand may hold it as text)."""
    return payload if isinstance(payload, bytes) else str(payload).encode()
