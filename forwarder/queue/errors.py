"""The errors every queue backend raises, so the web layer and the sender need not know which."""

from __future__ import annotations


class QueueFull(Exception):
    """The queue is at ``queue.max_events`` or ``queue.max_bytes``; try again later."""

    retry_after = 5


class QueueUnavailable(Exception):
    """The queue cannot commit (disk full, directory unwritable, database down)."""

    retry_after = 10


class QueueLocked(Exception):
    """Another forwarder already owns this queue (a backend that allows one owner)."""
