"""Queue statistics from the ``counters`` rows: what every metrics scrape reads.

Depth and bytes are ``in - out`` per target, kept in the same transactions
that move alerts, so a scrape reads a few rows instead of counting the queue;
the oldest alert of a target is one index probe on ``(target, id)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from forwarder.queue.contract import QueueStats, TargetStats

STATS_SQL: Final = (
    "SELECT c.kind, c.target, c.events, c.bytes,"
    " CASE WHEN c.kind = 'in' AND c.target <> '' THEN"
    " (SELECT q.created FROM forwarder.queue q WHERE q.target = c.target"
    "  ORDER BY q.id LIMIT 1) END"
    " FROM forwarder.counters c"
)


def stats_from_counters(rows: Iterable[Any], now: float) -> QueueStats:
    """The :class:`QueueStats` of the rows :data:`STATS_SQL` returns, ages as of ``now``."""
    counts: dict[tuple[str, str], tuple[int, int]] = {}
    oldest: dict[str, float] = {}
    for kind, target, events, size, first in rows:
        counts[(kind, target)] = (int(events), int(size))
        if first is not None:
            oldest[target] = first
    out: dict[str, TargetStats] = {}
    for target in sorted({t for (_, t) in counts if t}):
        queued = counts.get(("in", target), (0, 0))[0] - counts.get(("out", target), (0, 0))[0]
        dead = counts.get(("dead", target), (0, 0))[0]
        if queued or dead:
            first = oldest.get(target)
            out[target] = TargetStats(
                events=queued,
                oldest_age=max(0.0, now - first) if first is not None else 0.0,
                dead_letters=dead,
            )
    total_in, total_out = counts.get(("in", ""), (0, 0)), counts.get(("out", ""), (0, 0))
    return QueueStats(
        events=total_in[0] - total_out[0], bytes=total_in[1] - total_out[1], targets=out
    )
