"""Checks of a queue file before SQLite opens it: reachable, a forwarder queue, its WAL its own.

Everything here reads bytes with plain file I/O and never hands the file to
SQLite, because opening a database in WAL mode is already a write: SQLite
replays a ``-wal`` file it finds beside the database, whatever database that
WAL came from, and checkpoints it into the main file on close. A WAL left
from another database (a careless restore, a copied directory) would then
silently replace the queue. Each problem is a :class:`QueueOpenError` with a
one-line message naming the file, what is wrong and the fix; nothing is ever
deleted, moved or rewritten here.

**Which file is ours.** A queue file carries ``PRAGMA application_id`` =
:data:`APPLICATION_ID`: ``FWQ`` and the schema version in its last byte
(offset 68 of page 1), so a newer schema is recognised as a forwarder's too.
Files written by release 0.1.0 have application id 0; they are adopted when
their tables are a queue's.

**Whose WAL it is.** SQLite's WAL has no field naming its database, so the
check rests on three facts:

* What SQLite would replay can be computed exactly: the 32-byte WAL header
  (magic, format 3007000, page size, salts, checksum) and, for each 24-byte
  frame header, matching salts and a valid cumulative checksum; replay keeps
  the frames up to the last *commit frame* (non-zero "database size"). This
  module recomputes that (SQLite's file-format document, section 4), so a WAL
  SQLite would ignore is harmless and one it would replay is inspected.
* ``PRAGMA user_version`` (offset 60) holds a *stamp*: random when the file
  is made, and advanced by :func:`next_stamp` at every *mark*, a write of page
  1 and nothing else. The queue checkpoints its WAL itself
  (``wal_autocheckpoint=0``) and marks right after each checkpoint; SQLite
  starts a WAL over only after a checkpoint copied all of it; and the first
  write after open, and every write of an admin process, marks first, under
  a lock all of them take (:mod:`.lockfile`). So every WAL generation of a
  queue begins with a mark whose stamp is ``next_stamp`` of the stamp in the
  main file at that moment.
* A checkpoint only ever copies frames into the main file, so the main file's
  page 1 is either still the one the generation began from, or, byte for
  byte, one of the generation's page-1 frames. Bytes 92-99
  (``version-valid-for`` and the writing SQLite's version) are left out.

A WAL beside one of our files is therefore foreign when its page size differs,
when it holds no page 1, when its last page 1 is not a forwarder queue's, or
when neither of the last two facts holds: a WAL of another database, of
another queue (whose stamps are its own), or of this queue at another point
in time (the main file restored from a backup taken before the WAL's
generation began). For a 0.1.0 file, which had no stamps, only the page size
and the application id can be checked.
"""

from __future__ import annotations

import os
import pwd
import secrets
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from forwarder.queue.errors import QueueMissing, QueueOpenError

SCHEMA_VERSION: Final = 1
# "FWQ" and the schema version: the forwarder's queue file (a positive 32-bit value).
_OURS: Final = 0x465751
APPLICATION_ID: Final = _OURS << 8 | SCHEMA_VERSION

_SQLITE_MAGIC: Final = b"SQLite format 3\x00"
_WAL_MAGIC: Final = 0x377F0682  # the low bit says the checksums use big-endian words
_WAL_VERSION: Final = 3007000
_WAL_HEADER: Final = 32
_FRAME_HEADER: Final = 24
_NEVER_OURS: Final = "forwarder has opened and changed neither file"


@dataclass(frozen=True, slots=True)
class MainFile:
    """What the header of the main database file says (all zero for an empty or missing file)."""

    size: int = 0
    page_size: int = 0
    application_id: int = 0
    stamp: int = 0  # user_version
    page1: bytes = b""

    @property
    def ours(self) -> bool:
        """Marked as a forwarder queue (of any schema version)."""
        return self.application_id >> 8 == _OURS


@dataclass(slots=True)
class Wal:
    """The part of a ``-wal`` file SQLite would replay."""

    page_size: int
    frames: int = 0
    page1: list[bytes] = field(default_factory=list)


def user_name(uid: int) -> str:
    """``name`` for a uid, or ``uid N`` when the system has no name for it."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def check_access(path: Path, *, create: bool) -> None:
    """The queue file, its directory and its ``-wal``/``-shm`` are usable by this process.

    ``create``: a missing file is fine (it will be made); otherwise the file must exist.
    """
    me = user_name(os.geteuid())
    if path.is_dir():
        raise QueueOpenError(
            f"queue file {path} is a directory: set queue.path to a file inside it,"
            f" e.g. {path / 'queue.db'}"
        )
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise QueueOpenError(f"queue directory {folder} is not a directory: fix queue.path")
    if not create and not path.exists():
        raise QueueMissing(f"no queue database at {path}")
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if p.exists() and not os.access(p, os.R_OK | os.W_OK):
            raise QueueOpenError(_not_writable(p, me))
    if folder.exists() and not os.access(folder, os.W_OK | os.X_OK):
        # SQLite creates the database, its -wal and its -shm in this directory.
        raise QueueOpenError(_not_writable(folder, me, what="queue directory"))


def _not_writable(p: Path, me: str, *, what: str = "queue file") -> str:
    st = p.stat()
    owner = user_name(st.st_uid)
    mode = stat.filemode(st.st_mode)
    return (
        f"{what} {p} is not writable by {me} (owner {owner}, {mode}): run forwarder as"
        f" {owner}, or give it to this user (chown {me} {p})"
    )


def read_main(path: Path) -> MainFile:
    """The main file's header; :class:`QueueOpenError` when it is no SQLite database at all."""
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            header = f.read(100)
            if size < 100:
                if size == 0:
                    return MainFile()
                raise damaged(path, f"truncated to {size} bytes")
            if header[:16] != _SQLITE_MAGIC:
                raise damaged(path, "not a SQLite database")
            page_size = _page_size(struct.unpack(">H", header[16:18])[0])
            if page_size == 0:
                raise damaged(path, "its header is corrupt")
            f.seek(0)
            page1 = f.read(page_size)
    except FileNotFoundError:
        return MainFile()
    counter, pages = struct.unpack(">II", header[24:32])
    valid_for = struct.unpack(">I", header[92:96])[0]
    if size % page_size or (valid_for == counter and size < pages * page_size):
        raise damaged(path, f"truncated: {size} bytes, header says {pages} pages of {page_size}")
    return MainFile(size, page_size, _application_id(page1), _stamp(page1), page1)


def _application_id(page1: bytes) -> int:
    return int(struct.unpack(">I", page1[68:72])[0])


def _stamp(page1: bytes) -> int:
    return int(struct.unpack(">I", page1[60:64])[0])


def new_stamp() -> int:
    """The stamp of a new file: random, non-zero, a positive 31-bit ``user_version``."""
    return secrets.randbits(31) or 1


def next_stamp(stamp: int) -> int:
    """The stamp a mark writes after ``stamp``: a fixed permutation of the 31-bit values."""
    return (stamp * 1103515245 + 12345) & 0x7FFFFFFF or 1


def damaged(path: Path, why: str) -> QueueOpenError:
    """The one-line error for a file that is not a readable SQLite database."""
    return QueueOpenError(
        f"queue file {path} is damaged ({why}): restore it from a backup, or move it aside to"
        " start an empty queue; forwarder never deletes or overwrites a queue file"
    )


def _page_size(raw: int) -> int:
    size = 65536 if raw == 1 else raw
    return size if 512 <= size <= 65536 and size & (size - 1) == 0 else 0


def read_wal(path: Path) -> Wal | None:
    """What SQLite would replay from the WAL at ``path``, or None when it would replay nothing."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return None
    with f:
        header = f.read(_WAL_HEADER)
        if len(header) < _WAL_HEADER:
            return None
        magic, version, page_size, _, salt1, salt2, c1, c2 = struct.unpack(">8I", header)
        if magic & ~1 != _WAL_MAGIC or version != _WAL_VERSION or not _page_size(page_size):
            return None
        order = ">" if magic & 1 else "<"
        s0, s1 = _checksum(order, header[:24], 0, 0)
        if (s0, s1) != (c1, c2):
            return None
        wal = Wal(page_size)
        pending: list[bytes] = []
        frame_no = 0
        while True:
            frame = f.read(_FRAME_HEADER + page_size)
            if len(frame) < _FRAME_HEADER + page_size:
                break
            pgno, commit, fs1, fs2, fc1, fc2 = struct.unpack(">6I", frame[:_FRAME_HEADER])
            if pgno == 0 or (fs1, fs2) != (salt1, salt2):
                break
            s0, s1 = _checksum(order, frame[:8], s0, s1)
            s0, s1 = _checksum(order, frame[_FRAME_HEADER:], s0, s1)
            if (s0, s1) != (fc1, fc2):
                break
            frame_no += 1
            if pgno == 1:
                pending.append(frame[_FRAME_HEADER:])
            if commit:
                wal.frames = frame_no
                wal.page1 += pending
                pending = []
    return wal if wal.frames else None


def _checksum(order: str, data: bytes, s0: int, s1: int) -> tuple[int, int]:
    """SQLite's WAL checksum: Fibonacci-weighted sums of 32-bit word pairs, modulo 2**32."""
    words = struct.unpack(f"{order}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def check_wal(path: Path, main: MainFile) -> None:
    """Refuse a ``-wal`` beside ``path`` that does not belong to it (see the module docstring)."""
    wal_path = Path(f"{path}-wal")
    wal = read_wal(wal_path)
    if wal is None:
        return

    def foreign(why: str) -> QueueOpenError:
        return QueueOpenError(
            f"{wal_path} does not belong to the queue {path} ({why}); {_NEVER_OURS}:"
            f" move the stray WAL aside (mv {wal_path} {wal_path}.stray, and {path}-shm"
            " likewise) and start again"
        )

    if main.size and wal.page_size != main.page_size:
        raise foreign(f"page size {wal.page_size}, the queue's is {main.page_size}")
    if not wal.page1:
        if main.ours or not main.size:
            raise foreign("it never wrote the queue's header")
        return  # a 0.1.0 file wrote no stamps: nothing more can be told
    last = _application_id(wal.page1[-1])
    # A 0.1.0 file (or a new one) may be marked in its WAL and not yet in the main file.
    if last != APPLICATION_ID and (main.ours or last != 0):
        raise foreign(f"it is the WAL of a database with application id {last:#x}")
    if main.ours and main.size:
        continues = _stamp(wal.page1[0]) == next_stamp(main.stamp)
        if not continues and not any(_same_page1(main.page1, p) for p in wal.page1):
            raise foreign("it continues another queue, or this one before a restore")


def _same_page1(a: bytes, b: bytes) -> bool:
    """Equal but for ``version-valid-for`` and the writer's SQLite version (bytes 92-99)."""
    return a[:92] == b[:92] and a[100:] == b[100:]


def check_foreign_main(path: Path, main: MainFile) -> None:
    """Refuse a non-empty main file that is plainly another application's database."""
    if main.size and main.application_id != 0 and not main.ours:
        raise QueueOpenError(
            f"queue file {path} is not a forwarder queue (application id"
            f" {main.application_id:#x}): point queue.path at another file; {_NEVER_OURS}"
        )
    if main.ours and main.application_id != APPLICATION_ID:
        raise QueueOpenError(
            f"queue file {path} has schema {main.application_id & 0xFF}, this forwarder"
            f" knows {SCHEMA_VERSION}: run the release that wrote it"
        )
