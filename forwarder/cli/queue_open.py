"""Opening the queue from a command: which failures are expected, and their one-line text.

``run``, ``dlq`` and ``check-config --connect`` open the queue; a file owned by
another user, a corrupt file, another daemon's lock or a wrong database
password is a one-line error naming the queue, never a traceback.
"""

from __future__ import annotations

from typing import Final

from forwarder.cli.common import err
from forwarder.config import QueueConfig, mask_dsn
from forwarder.obs.logs import Redactor
from forwarder.queue import Queue, create_queue
from forwarder.queue.errors import QueueOpenError, QueueUnavailable

# What opening a queue may raise that is the operator's to fix. The backends
# turn their driver's errors into QueueOpenError (QueueLocked among them: its
# text names the other daemon's PID) and QueueUnavailable; OSError covers a
# path that cannot be created or read before the database is reached.
QUEUE_OPEN_ERRORS: Final = (QueueOpenError, QueueUnavailable, OSError)


def describe_queue(cfg: QueueConfig) -> str:
    """Where the queue is and its limits, for ``check-config`` (the DSN without password)."""
    limits = f"max_events={cfg.max_events}, max_bytes={cfg.max_bytes}"
    if cfg.backend == "postgres":
        return f"{mask_dsn(cfg.dsn.reveal())} (backend=postgres, {limits})"
    return f"{cfg.path} (backend=sqlite, synchronous={cfg.synchronous}, {limits})"


def where(cfg: QueueConfig) -> str:
    """The queue's location, safe to print."""
    return mask_dsn(cfg.dsn.reveal()) if cfg.backend == "postgres" else str(cfg.path)


def open_failure(cfg: QueueConfig, exc: BaseException, redactor: Redactor) -> str:
    """One line saying why the queue at ``cfg`` did not open, secrets masked."""
    if isinstance(exc, OSError) and not isinstance(exc, QueueOpenError):
        reason = exc.strerror or str(exc)
        other = exc.filename and str(exc.filename) != str(cfg.path)
        text = f"cannot open the queue at {where(cfg)}: {reason}" + (
            f" ({exc.filename})" if other else ""
        )
    else:
        text = str(exc) or type(exc).__name__
    scrubbed = redactor.scrub(text)
    return " ".join(str(scrubbed).split())


async def open_admin(cfg: QueueConfig, redactor: Redactor) -> Queue | None:
    """The queue opened for an admin command beside a running daemon, or None (error said).

    Admin commands (``dlq``, ``alerts``) read and write the store without
    the lock, the schema upgrade or the sender's work; any failure is one line
    on stderr.
    """
    queue = create_queue(cfg, admin=True)
    try:
        await queue.open()
    except FileNotFoundError as exc:
        err(f"{exc} (has the daemon ever run with this config?)")
        return None
    except QUEUE_OPEN_ERRORS as exc:
        err(open_failure(cfg, exc, redactor))
        return None
    return queue
