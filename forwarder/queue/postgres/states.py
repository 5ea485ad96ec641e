"""The PostgreSQL alert-state store: rows to and from ``forwarder.alert_states``, and the scheduler.

The decisions are :mod:`forwarder.state`'s, the same as on SQLite; this
module only moves rows. Writes go through ``forwarder.state_apply`` (the rows
as one JSON value plus their payloads, so one statement for any number of
rows); a group commit's puts use it from
:meth:`~forwarder.queue.postgres.PostgresQueue._commit`, the scheduler from
:meth:`PostgresAlertStates.tick`. Both write only while holding the ``in``
totals row lock, after checking (puts) or reading (passes) the rows under it,
so every put and every pass is decided against the rows the previous one
left, across replicas (contract invariant 5).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from forwarder import jsonio
from forwarder.model import Outgoing
from forwarder.queue.contract import AlertCounts, AlertFilter, TickResult
from forwarder.queue.postgres import schema
from forwarder.queue.postgres.batch import alert_columns, pg_text
from forwarder.queue.putting import StateKey, TickTally
from forwarder.state import AlertState, AlertView, tick
from forwarder.state.record import view

if TYPE_CHECKING:
    from forwarder.queue.postgres.queue import PostgresQueue


_COLUMNS: Final = (
    "target, app_key, identity, status, dedup, payload, ts, first_seen, seen, clock, since,"
    " queued_status, queued_dedup, queued_at, sent, transitions, flapping, suppressed,"
    " resolve_after, hold, retention, due"
)

APPLY: Final = "SELECT forwarder.state_apply(" + ",".join(f"${i}" for i in range(1, 18)) + ")"
PUT_BEGIN: Final = "SELECT * FROM forwarder.put_begin($1, $2, $3, $4, $5, $6, $7)"
PUT_STATES: Final = (
    "SELECT * FROM forwarder.put_states(" + ",".join(f"${i}" for i in range(1, 27)) + ")"
)
LOAD_STATES: Final = (
    "SELECT s.xmin::text AS version, s.* FROM forwarder.alert_states s"
    " JOIN unnest($1::text[], $2::text[], $3::text[]) AS u(t, k, i)"
    " ON s.target = u.t AND s.app_key = u.k AND s.identity = u.i"
)
_TICK_BEGIN: Final = "SELECT * FROM forwarder.tick_begin($1, $2)"
_NEXT_DUE: Final = "SELECT min(due) FROM forwarder.alert_states WHERE due IS NOT NULL"

# list(): the condition of each filter. "firing" and "flapping" match the
# partial indexes' predicates, so those listings read only their index.
_FILTERS: Final[dict[AlertFilter | None, str]] = {
    None: "true",
    "firing": "status <> 'ok'",
    "ok": "status = 'ok'",
    "flapping": "flapping",
}

_COUNTS: Final = (
    "SELECT 'open', target, count(*) FROM forwarder.alert_states WHERE status <> 'ok'"
    " GROUP BY target"
    " UNION ALL SELECT 'flapping', target, count(*) FROM forwarder.alert_states WHERE flapping"
    " GROUP BY target"
)


def stored_key(target: str, app_key: str, identity: str) -> StateKey:
    """The row key as the table holds it (NUL-safe identity, as the queue stores it)."""
    return (target, app_key, pg_text(identity))


def from_record(r: Any) -> AlertState:
    """The :class:`AlertState` of one ``forwarder.alert_states`` row (a record or composite)."""
    return AlertState(
        r["target"],
        r["app_key"],
        r["identity"],
        r["status"],
        r["dedup"],
        bytes(r["payload"]),
        int(r["ts"]),
        r["first_seen"],
        r["seen"],
        r["clock"],
        r["since"],
        r["queued_status"],
        r["queued_dedup"],
        r["queued_at"],
        r["sent"],
        list(r["transitions"]),
        bool(r["flapping"]),
        int(r["suppressed"]),
        r["resolve_after"],
        r["hold"],
        r["retention"],
        r["due"],
    )


def _row_json(key: StateKey, r: AlertState) -> dict[str, Any]:
    """One row as ``json_populate_recordset`` reads it: columns by name (payload apart)."""
    return {
        "target": key[0],
        "app_key": key[1],
        "identity": key[2],
        "status": pg_text(r.status),
        "dedup": pg_text(r.dedup),
        "ts": r.timestamp,
        "first_seen": r.first_seen,
        "seen": r.seen,
        "clock": r.clock,
        "since": r.since,
        "queued_status": None if r.queued_status is None else pg_text(r.queued_status),
        "queued_dedup": None if r.queued_dedup is None else pg_text(r.queued_dedup),
        "queued_at": r.queued_at,
        "sent": r.sent,
        "transitions": r.transitions,
        "flapping": r.flapping,
        "suppressed": r.suppressed,
        "resolve_after": r.resolve_after,
        "hold": r.hold,
        "retention": r.retention,
        "due": r.due,
    }


def apply_args(
    store: Iterable[AlertState],
    delete: Iterable[StateKey],
    queue: Iterable[Outgoing],
    refused: Iterable[tuple[Outgoing, str]],
    now: float,
) -> list[Any]:
    """The 17 arguments of ``forwarder.state_apply``: the rows to store (one JSON value and
    their payloads), then column arrays of the keys to delete, the alerts to queue and the
    refused ones.

    Rows to store are keyed as the table keys them; when two keys become one
    there (identities differing only by NUL), the last row wins, since one
    statement may not write one row twice.
    """
    rows: dict[StateKey, AlertState] = {}
    for r in store:
        rows[stored_key(r.target, r.app_key, r.identity)] = r
    # JSON, whose floats round-trip exactly (shortest repr); text holds no NUL (pg_text).
    doc = jsonio.dumps([_row_json(k, r) for k, r in rows.items()]).decode() if rows else None
    payloads = [r.payload for r in rows.values()]
    xt: list[str] = []
    xk: list[str] = []
    xi: list[str] = []
    for key in delete:
        xt.append(key[0])
        xk.append(key[1])
        xi.append(pg_text(key[2]))
    refused = list(refused)
    return [
        doc,
        payloads,
        xt,
        xk,
        xi,
        *alert_columns(list(queue)),
        *alert_columns([o for o, _ in refused]),
        [why for _, why in refused],
        now,
    ]


class PostgresAlertStates:
    """:class:`~forwarder.queue.AlertStates` in the queue's database (any replica, or admin)."""

    def __init__(self, queue: PostgresQueue) -> None:
        self._queue = queue

    def _require(self) -> None:
        q = self._queue
        schema.require(q.schema_version, schema.STATES_VERSION, "alert state", q.description)

    async def list(
        self, *, status: AlertFilter | None = None, target: str | None = None, limit: int = 100
    ) -> list[AlertView]:
        """Identities, most recently seen first; ``firing`` is any status but ``ok``."""
        self._require()
        sql = (
            f"SELECT {_COLUMNS} FROM forwarder.alert_states"
            f" WHERE {_FILTERS[status]} AND ($1::text IS NULL OR target = $1)"
            " ORDER BY seen DESC LIMIT $2"
        )
        rows = await self._queue.call(lambda c: c.fetch(sql, target, limit))
        return [view(from_record(r)) for r in rows]

    async def counts(self) -> AlertCounts:
        """Open and flapping identities per target: a count over each partial index."""
        self._require()
        rows = await self._queue.call(lambda c: c.fetch(_COUNTS))
        open_: dict[str, int] = {}
        flapping: dict[str, int] = {}
        for kind, target, n in rows:
            (open_ if kind == "open" else flapping)[target] = int(n)
        return AlertCounts(open_, flapping)

    async def tick(self, *, limit: int = 1000) -> TickResult:
        """Claim up to ``limit`` due rows, act on each (:func:`forwarder.state.tick`), at once.

        One transaction: ``tick_begin`` takes the ``in`` lock and the due
        rows ``FOR UPDATE SKIP LOCKED``, so two passes (two replicas) never
        act on one row, and no put decides against a row a pass is changing.
        An alert a pass would queue counts against the bounds; a row whose
        alert does not fit is left as it was, still due, for a later pass.
        """
        self._require()
        q = self._queue
        now = q.now()
        max_events, max_bytes = q.cfg.max_events, q.cfg.max_bytes

        async def work(conn: Any) -> tuple[TickResult, set[str], list[StateKey]]:
            tally = TickTally()
            store: list[AlertState] = []
            delete: list[StateKey] = []
            queued: list[Outgoing] = []
            async with conn.transaction(isolation="read_committed"):  # as in put
                # One row more than the limit, to tell whether due rows are left.
                got = await conn.fetch(_TICK_BEGIN, now, limit + 1)
                used_events, used_bytes = int(got[0][0]), int(got[0][1])
                claimed = [from_record(r[2]) for r in got[1 : limit + 1]]
                more = len(got) - 1 > limit
                for row in claimed:
                    verdict = tick(row, now)
                    item = verdict.queue
                    if item is not None:
                        size = len(item.payload)
                        if used_events + 1 > max_events or used_bytes + size > max_bytes:
                            continue  # stays as it was: due, for a pass with room
                        used_events += 1
                        used_bytes += size
                        queued.append(item)
                    if verdict.row is None:
                        delete.append(row.key)
                    else:
                        store.append(verdict.row)
                    tally.count(row, verdict.kind)
                if store or delete or queued:
                    await conn.execute(APPLY, *apply_args(store, delete, queued, (), now))
                next_due = await conn.fetchval(_NEXT_DUE)
            result = tally.result(next_due, more)
            touched = [r.key for r in store] + delete
            return result, {i.target for i in queued}, touched

        try:
            result, targets, touched = await q.call(work)
        except BaseException:
            q.forget_states()  # the outcome is unknown: any row may have changed
            raise
        # Rows this pass changed are no longer what the put cache holds (a put
        # would find out by their version, at the cost of a try).
        q.forget_states(touched)
        for target in targets:
            q.new_work(target).set()
        return result
