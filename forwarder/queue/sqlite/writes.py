"""The write path of the queue's connection: WAL generations, checkpoints, full-disk retries.

Every write of the queue goes through :class:`Writes` on the queue thread:

* a *mark* (:func:`.schema.mark`) opens every WAL generation, which is what
  lets :func:`.files.check_wal` tell this file's WAL from a stray one: after
  each checkpoint, before the first write of a process, and before every write
  of an admin process, always under the lock file's generation lock;
* the WAL is checkpointed here (``wal_autocheckpoint`` is off) once about
  :data:`CHECKPOINT_BYTES` have been written, or half the ballast on a small
  volume, so the ballast can hold what a checkpoint adds to the main file;
* a write of the sender's side that fails with SQLITE_FULL gives back the
  ballast, checkpoints, and runs once more: delivery drains a full disk.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Final, TypeVar

from forwarder.obs.logs import get_logger
from forwarder.queue.sqlite import schema
from forwarder.queue.sqlite.lockfile import LockFile
from forwarder.queue.sqlite.space import Space

R = TypeVar("R")

# Checkpoint after about this much WAL (SQLite's own default is 1000 pages).
CHECKPOINT_BYTES: Final = 4 * 1024**2
# What one changed row is assumed to add to the WAL (a page per few rows touched).
ROW_WAL_COST: Final = 512


class Writes:
    """Writes on one connection (``conn()`` returns it, on the queue thread only)."""

    def __init__(
        self, conn: Callable[[], sqlite3.Connection], lock: LockFile, space: Space, *, admin: bool
    ) -> None:
        self._conn = conn
        self._lock = lock
        self._space = space
        self._admin = admin
        self.mark_due = True  # the first write of this process marks first
        self._since_checkpoint = 0

    def write(self, fn: Callable[[], R], *, rows_changed: int = 1) -> R:
        """Run the write ``fn``, marked when due; on a full disk free room and run it again."""
        try:
            result = self.marked(fn)
        except sqlite3.Error as exc:
            if self._admin or not schema.is_full(exc):
                raise
            released = self._space.release_ballast()
            get_logger().warning("queue_disk_full", ballast_released=released, error=str(exc))
            self.checkpoint()
            result = self.marked(fn)
        self.wrote(rows_changed * ROW_WAL_COST)
        return result

    def marked(self, fn: Callable[[], R]) -> R:
        """Run ``fn`` after a mark if one is due (always, for an admin process)."""
        conn = self._conn()
        if self._admin:
            with self._lock.generation():
                schema.mark(conn)
                return fn()
        if self.mark_due:
            with self._lock.generation():
                schema.mark(conn)
            self.mark_due = False
        return fn()

    def wrote(self, wal_bytes: int) -> None:
        """After a write: checkpoint when the WAL has grown enough; measure the disk (throttled)."""
        if self._admin:
            return
        self._since_checkpoint += wal_bytes
        # The ballast must hold what a checkpoint may add to the main file.
        if self._since_checkpoint >= min(CHECKPOINT_BYTES, self._space.ballast // 2):
            self.checkpoint()
        self.measure()

    def measure(self, *, force: bool = False) -> None:
        """Measure the disk (see :class:`.space.Space`), counting the WAL not yet checkpointed."""
        self._space.measure(self._conn(), wal_pending=self._since_checkpoint, force=force)

    def checkpoint(self) -> None:
        """Checkpoint and mark the next WAL generation; a failure is tried again later."""
        self._since_checkpoint = 0
        self.mark_due = True  # whatever happens below, the next write marks first
        conn = self._conn()
        try:
            with self._lock.generation():
                schema.checkpoint(conn)
                schema.mark(conn)
            self.mark_due = False
        except sqlite3.Error:
            self._since_checkpoint = CHECKPOINT_BYTES // 2
