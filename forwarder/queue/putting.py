"""What both backends share of :meth:`~forwarder.queue.contract.Queue.put`.

A put is gathered into the next group commit as a :class:`Pending`; one that
needs no commit at all is answered by :func:`settled_put`. Inside the commit,
:func:`decide` runs the alert-state decisions of the whole group, in order,
against the rows the backend loaded (contract invariant 5).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from forwarder.model import Outgoing
from forwarder.queue.contract import NOTHING_PUT, PutResult, TickResult
from forwarder.queue.errors import QueueUnavailable
from forwarder.state import AlertState, SuppressReason, observe
from forwarder.state.decide import TickKind

StateKey = tuple[str, str, str]


@dataclass(slots=True)
class Pending:
    """One ``put`` waiting for its group commit."""

    items: Sequence[Outgoing]
    refused: Sequence[tuple[Outgoing, str]]
    size: int
    fut: asyncio.Future[PutResult]


def settled_put(
    is_open: bool, items: Sequence[Outgoing], refused: Sequence[tuple[Outgoing, str]]
) -> asyncio.Future[PutResult] | None:
    """The answer of a :meth:`Queue.put` that needs no commit, for every backend.

    A closed queue fails with :class:`~forwarder.queue.errors.QueueUnavailable`
    and an empty put succeeds at once; None means "commit it".
    """
    if is_open and (items or refused):
        return None
    fut: asyncio.Future[PutResult] = asyncio.get_running_loop().create_future()
    if not is_open:
        fut.set_exception(QueueUnavailable("queue is closed"))
    else:
        fut.set_result(NOTHING_PUT)
    return fut


def state_keys(puts: Iterable[Sequence[Outgoing]]) -> set[StateKey]:
    """The state rows a group commit needs: one per identity with an observation."""
    return {(i.target, i.app_key, i.identity) for items in puts for i in items if i.state}


@dataclass(slots=True)
class Decided:
    """A group commit after its state decisions.

    ``queue[n]`` is what put ``n`` queues, ``results[n]`` its answer; ``rows``
    the state rows to store (each identity's last row of the group).
    """

    queue: list[list[Outgoing]] = field(default_factory=list)
    results: list[PutResult] = field(default_factory=list)
    rows: dict[StateKey, AlertState] = field(default_factory=dict)


def decide(
    puts: Iterable[Sequence[Outgoing]], rows: Mapping[StateKey, AlertState | None], now: float
) -> Decided:
    """Decide every item of ``puts`` in order against ``rows`` (None: a new identity).

    An item without an observation is queued as it is. ``rows`` is not
    changed: the updated rows are in the result.
    """
    out = Decided()
    current = out.rows
    for items in puts:
        queued: list[Outgoing] = []
        suppressed: dict[tuple[str, SuppressReason], int] | None = None
        for item in items:
            obs = item.state
            if obs is None:
                queued.append(item)
                continue
            key = (item.target, item.app_key, item.identity)
            row = current.get(key)
            if row is None:
                row = rows.get(key)
            verdict = observe(row, item, obs, now)
            current[key] = verdict.row
            if verdict.queue is not None:
                queued.append(verdict.queue)
            elif verdict.suppressed is not None:
                why = (item.target, verdict.suppressed)
                if suppressed is None:
                    suppressed = {why: 1}
                else:
                    suppressed[why] = suppressed.get(why, 0) + 1
        out.queue.append(queued)
        out.results.append(_result(len(queued), suppressed))
    return out


# Answers shared by every put with the same outcome (a storm repeats a few):
# PutResult is frozen and nobody changes its mapping.
_RESULTS: dict[tuple[int, tuple[tuple[str, SuppressReason], int] | None], PutResult] = {}


def _result(queued: int, suppressed: dict[tuple[str, SuppressReason], int] | None) -> PutResult:
    if suppressed is None:
        key: tuple[int, tuple[tuple[str, SuppressReason], int] | None] = (queued, None)
    elif len(suppressed) == 1:
        key = (queued, next(iter(suppressed.items())))
    else:
        return PutResult(queued, suppressed)
    result = _RESULTS.get(key)
    if result is None:
        result = PutResult(queued, suppressed or {})
        if len(_RESULTS) < 4096:
            _RESULTS[key] = result
    return result


@dataclass(slots=True)
class TickTally:
    """What one scheduler pass did, counted as each backend applies its verdicts."""

    released: dict[str, int] = field(default_factory=dict)
    resolved: dict[str, int] = field(default_factory=dict)
    sent: list[tuple[str, str, str]] = field(default_factory=list)
    expired: int = 0

    def count(self, row: AlertState, kind: TickKind | None) -> None:
        """Count ``row``'s verdict (call it only for verdicts that were applied)."""
        if kind == "expired":
            self.expired += 1
        elif kind is not None:
            per_target = self.released if kind == "released" else self.resolved
            per_target[row.target] = per_target.get(row.target, 0) + 1
            self.sent.append((kind, row.target, row.identity))

    def result(self, next_due: float | None, more: bool) -> TickResult:
        """The pass's :class:`~forwarder.queue.contract.TickResult`."""
        return TickResult(self.released, self.resolved, self.expired, next_due, more, self.sent)
