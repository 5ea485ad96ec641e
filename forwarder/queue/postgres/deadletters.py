"""The PostgreSQL dead-letter store: list, show, replay and purge, through the storage contract.

Replay and purge are server-side functions (:mod:`forwarder.queue.postgres.schema`)
that keep the counters in the same transaction. A replay notifies every
replica's sender of the target; listings never include the app key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from forwarder.model import DEAD_LETTER_COLUMNS, DeadLetter

# Dead letters replayed per transaction.
_CHUNK: Final = 1000

if TYPE_CHECKING:
    from forwarder.queue.postgres.queue import PostgresQueue


class PostgresDeadLetters:
    """:class:`~forwarder.queue.DeadLetters` in the queue's database."""

    def __init__(self, queue: PostgresQueue) -> None:
        self._queue = queue

    async def list(self, *, target: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """Newest first, optionally for one target."""
        rows = await self._queue.call(
            lambda c: c.fetch(
                f"SELECT {DEAD_LETTER_COLUMNS} FROM forwarder.dead_letters"
                " WHERE $1::text IS NULL OR target = $1 ORDER BY id DESC LIMIT $2",
                target,
                limit,
            )
        )
        return [DeadLetter.from_row(r) for r in rows]

    async def get(self, dl_id: int) -> DeadLetter | None:
        """One dead letter by id, or None."""
        row = await self._queue.call(
            lambda c: c.fetchrow(
                f"SELECT {DEAD_LETTER_COLUMNS} FROM forwarder.dead_letters WHERE id = $1", dl_id
            )
        )
        return DeadLetter.from_row(row) if row is not None else None

    async def replay(self, *, ids: Sequence[int] | None = None, target: str | None = None) -> int:
        """Back into the queue afresh (no attempts, due now, age from now); how many moved."""
        q = self._queue
        now = q.now()
        id_list = None if ids is None else list(ids)
        moved = 0
        while True:  # in chunks: each a short transaction beside the ingest's commits
            n = int(
                await q.call(
                    lambda c: c.fetchval(
                        "SELECT forwarder.replay($1, $2, $3, $4)", id_list, target, now, _CHUNK
                    )
                )
            )
            moved += n
            if n < _CHUNK:
                break
        q.wake_all()
        return moved

    async def purge(
        self, *, ids: Sequence[int] | None = None, older_than: float | None = None
    ) -> int:
        """Delete dead letters by id, or those that failed over ``older_than`` seconds ago."""
        if ids is None and older_than is None:
            raise ValueError("purge needs ids or older_than")
        q = self._queue
        id_list = None if ids is None else list(ids)
        before = q.now() - older_than if older_than is not None else None
        return int(
            await q.call(lambda c: c.fetchval("SELECT forwarder.purge($1, $2)", id_list, before))
        )
