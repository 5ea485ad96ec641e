"""The lock file beside a queue: one owning daemon, its PID for the error, and the generation lock.

``queue.db.lock`` is held with ``flock`` by the daemon that owns the queue for
as long as it runs, and holds that daemon's PID, so a second daemon's error
can say which process to look at. Byte 1 of the same file is a short POSIX
record lock (independent of ``flock`` on Linux) that the owner holds around a
checkpoint and the mark after it, and an admin process around each of its
writes: so the first write of every WAL generation is a mark (see
:mod:`.schema`), whoever writes next. The single owner is also why
:class:`SoleSender` grants every sender claim.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from forwarder.queue.errors import QueueLocked, QueueOpenError


class SoleSender:
    """Sender claims where one daemon owns the store: every claim is granted to it.

    The lock file already guarantees the single owner, so a claim is only
    bookkeeping for :attr:`claimed_targets`.
    """

    def __init__(self) -> None:
        self._claimed: set[str] = set()

    async def claim_target(self, target: str) -> bool:
        """Granted: this daemon owns the queue file."""
        self._claimed.add(target)
        return True

    def holds_target(self, target: str) -> bool:
        """Whether :meth:`claim_target` was called for ``target`` and not released."""
        return target in self._claimed

    async def release_target(self, target: str) -> None:
        """Forget the claim (nobody else can send from this file meanwhile anyway)."""
        self._claimed.discard(target)

    @property
    def claimed_targets(self) -> frozenset[str]:
        """The targets claimed, for the metrics gauge."""
        return frozenset(self._claimed)


class LockFile:
    """``<queue>.lock``: :meth:`acquire` it, :meth:`generation` around marks, :meth:`close`."""

    def __init__(self, queue_path: Path) -> None:
        self.queue_path = queue_path
        self.path = Path(f"{queue_path}.lock")
        self._fd: int | None = None

    def acquire(self, *, admin: bool) -> bool:
        """Take the owner lock; True if held.

        A daemon gets :class:`QueueLocked` naming the holder's PID when another
        one runs; an admin process takes the lock only when no daemon runs (so
        it may check the WAL as the owner would) and otherwise just shares the
        generation lock.
        """
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            if admin:
                return False
            raise QueueOpenError(f"cannot open the lock file {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if admin:
                self._fd = fd
                return False
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            pid = f"pid {holder}" if holder.isdigit() else "pid unknown"
            raise QueueLocked(
                f"queue {self.queue_path} is in use by another forwarder ({pid}; lock {self.path})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return True

    @contextlib.contextmanager
    def generation(self) -> Iterator[None]:
        """Hold byte 1 of the lock file for a checkpoint and its mark, or for an admin write."""
        fd = self._fd
        if fd is not None:
            fcntl.lockf(fd, fcntl.LOCK_EX, 1, 1)
        try:
            yield
        finally:
            if fd is not None:
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, 1)

    def close(self) -> None:
        """Release everything (closing the descriptor drops both locks)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
