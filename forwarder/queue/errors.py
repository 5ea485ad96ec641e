"""The errors every queue backend raises, so the web layer, sender and CLI need not know which.

:class:`QueueOpenError` and its subclasses are raised by ``Queue.open`` only:
their message is one line that names the store, what is wrong and how to fix
it, so the CLI prints ``str(exc)`` as it is and exits, without a traceback.
"""

from __future__ import annotations


class QueueFull(Exception):
    """The queue is at ``queue.max_events`` or ``queue.max_bytes``, or its disk is low."""

    retry_after = 5


class QueueUnavailable(Exception):
    """The queue cannot commit (disk full, directory unwritable, database down)."""

    retry_after = 10


class QueueOpenError(Exception):
    """The store cannot be opened as it is; the one-line message says where, why and the fix.

    A backend raises it rather than repair anything: an existing queue is
    never deleted, overwritten or re-created to "recover".
    """


class QueueLocked(QueueOpenError):
    """Another forwarder already owns this queue (a backend that allows one owner)."""


class QueueMissing(QueueOpenError, FileNotFoundError):
    """An admin open found no store: the daemon has never run with this config.

    Also a :class:`FileNotFoundError`, which is what admin opens raised before.
    """
