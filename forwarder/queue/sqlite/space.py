"""Disk space of a SQLite queue: honest bounds, a free-space reserve, and a ballast for draining.

A queue that fills its own disk deadlocks: every step of delivery is a write
(taking a lease, acknowledging, even clearing old leases at start-up), and the
WAL cannot be checkpointed into a full disk. Three things keep that from
happening:

* **Honest sizing.** ``queue.max_bytes`` counts the alerts' payload (the
  storage contract's bound), but the file holds more: the identity, the app
  key, row and index overhead, partly filled pages, and the WAL. Measured, a
  queued alert takes 1.2-1.5x its payload on disk for payloads of 0.3-1 KB
  and 2x at 2 KB (one row per 4 KiB page), so a volume needs about twice
  ``max_bytes``, plus the reserve and the ballast below (README "Limits").
* **A free-space reserve.** The ingest is refused (503, ``QueueFull``) while
  the file system has less than the reserve left, counting the pages free
  inside the file, so the queue itself never takes the last bytes.
* **A ballast file**, :data:`BALLAST_SUFFIX` beside the queue, made at open.
  When something else fills the disk and a delivery write or a checkpoint
  fails with SQLITE_FULL, it is deleted, which gives the checkpoint room to
  copy the WAL into the main file; from then on the WAL is written over from
  its start and delivery, which only deletes rows, needs no new space. It is
  made again once the disk has room for it and the reserve.

All of it is measured on the queue thread, at most every :data:`REFRESH` seconds
(a ``statvfs``, a ``stat`` and two header reads), not per request.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from forwarder.config import QueueConfig

# Default sizes, the config's (queue.reserve_bytes / queue.ballast_bytes); a ballast of 0 is none.
RESERVE_BYTES: Final = QueueConfig.reserve_bytes
BALLAST_BYTES: Final = QueueConfig.ballast_bytes
BALLAST_SUFFIX: Final = ".ballast"
# On small volumes (tests, tmpfs) the defaults shrink to these fractions of the volume.
_RESERVE_SHARE: Final = 8
_BALLAST_SHARE: Final = 16
REFRESH: Final = 0.02
# Between two measurements, a new alert is assumed to take this much of its payload on disk.
DISK_FACTOR: Final = 2


@dataclass(frozen=True, slots=True)
class Usage:
    """One measurement: the queue's size on disk and the room left to grow into."""

    on_disk: int  # the main file less its free pages, plus the WAL
    free: int  # free bytes of the file system
    room: int  # free bytes of the file system and pages free inside the file, less the WAL
    total: int  # size of the file system


class Space:
    """The disk-space bookkeeping of one queue file; used on the queue thread only."""

    def __init__(
        self,
        path: Path,
        *,
        reserve_bytes: int = RESERVE_BYTES,
        ballast_bytes: int = BALLAST_BYTES,
    ) -> None:
        self.path = path
        self.ballast_path = Path(f"{path}{BALLAST_SUFFIX}")
        self._want_reserve = reserve_bytes
        self._want_ballast = ballast_bytes
        self.reserve = reserve_bytes
        self.ballast = ballast_bytes
        self.usage = Usage(0, 1 << 62, 1 << 62, 1 << 62)
        self._measured_at = -1.0
        self._since = 0  # payload bytes committed since the last measurement
        self.refusal: str | None = None  # why the ingest is refused now, if it is

    def measure(
        self, conn: sqlite3.Connection, *, wal_pending: int = 0, force: bool = False
    ) -> None:
        """Measure again (throttled unless ``force``); update :attr:`refusal`; remake the ballast.

        ``wal_pending`` is about how much WAL has been written since the last
        checkpoint: what the next one may add to the main file.
        """
        now = time.monotonic()
        if not force and now - self._measured_at < REFRESH:
            return
        self._measured_at = now
        try:
            page_size, pages, free = (
                int(conn.execute(f"PRAGMA {p}").fetchone()[0])
                for p in ("page_size", "page_count", "freelist_count")
            )
            fs = os.statvfs(self.path.parent)
        except (OSError, sqlite3.Error):
            return  # keep the last measurement; the next write tries again
        try:
            wal = os.stat(f"{self.path}-wal").st_size
        except FileNotFoundError:
            wal = 0
        total = fs.f_blocks * fs.f_frsize
        self.reserve = min(self._want_reserve, total // _RESERVE_SHARE)
        self.ballast = min(self._want_ballast, total // _BALLAST_SHARE)
        self.usage = Usage(
            on_disk=(pages - free) * page_size + wal,
            free=fs.f_bavail * fs.f_frsize,
            # The next checkpoint may copy that much WAL into new pages of the main file.
            room=fs.f_bavail * fs.f_frsize + free * page_size - min(wal, wal_pending),
            total=total,
        )
        self._since = 0
        u = self.usage
        room_for_ballast = u.free >= 2 * self.ballast and u.room >= self.reserve + self.ballast
        if self.ballast > 0 and room_for_ballast and not self.ballast_path.exists():
            self.make_ballast()
        self.refusal = self._refusal(0)

    def committed(self, payload_bytes: int) -> None:
        """Count a commit until the next measurement."""
        self._since += payload_bytes

    def check(self, incoming: int) -> str | None:
        """Why ``incoming`` more payload bytes may not be queued now, or None (event loop side)."""
        if self.refusal is not None:
            return self.refusal
        return self._refusal(incoming)

    def _refusal(self, incoming: int) -> str | None:
        u = self.usage
        if u.room - (self._since + incoming) * DISK_FACTOR < self.reserve:
            return (
                f"queue disk is full ({max(0, u.room)} bytes free beside {self.path},"
                f" {self.reserve} kept free for delivery)"
            )
        return None

    def make_ballast(self) -> bool:
        """Create the ballast (its blocks really allocated); False if the disk is too full."""
        tmp = self.ballast_path.with_name(self.ballast_path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.ballast)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.ballast_path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            return False
        return True

    def release_ballast(self) -> bool:
        """Delete the ballast to give its space to the queue; True if there was one."""
        try:
            self.ballast_path.unlink()
        except FileNotFoundError:
            return False
        self._measured_at = -1.0
        return True
