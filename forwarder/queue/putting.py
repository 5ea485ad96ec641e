"""What both backends share of :meth:`~forwarder.queue.contract.Queue.put`.

A put is gathered into the next group commit as a :class:`Pending`; one that
needs no commit at all is answered by :func:`settled_put`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from forwarder.model import Outgoing
from forwarder.queue.errors import QueueUnavailable


@dataclass(slots=True)
class Pending:
    """One ``put`` waiting for its group commit."""

    items: Sequence[Outgoing]
    refused: Sequence[tuple[Outgoing, str]]
    size: int
    fut: asyncio.Future[None]


def settled_put(
    is_open: bool, items: Sequence[Outgoing], refused: Sequence[tuple[Outgoing, str]]
) -> asyncio.Future[None] | None:
    """The answer of a :meth:`Queue.put` that needs no commit, for every backend.

    A closed queue fails with :class:`~forwarder.queue.errors.QueueUnavailable`
    and an empty put succeeds at once; None means "commit it".
    """
    if is_open and (items or refused):
        return None
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    if not is_open:
        fut.set_exception(QueueUnavailable("queue is closed"))
    else:
        fut.set_result(None)
    return fut
