"""The SQLite file behind the queue and the dead-letter store: schema and connections.

The schema only ever grows by ``IF NOT EXISTS`` additions, so a file written
by an earlier release opens as it is and gets what it lacks (the
``alert_states`` table of issue 13, say) from :func:`upgrade` at the owner's
next start; an admin connection changes nothing, and reads a missing table as
empty. A queue file is marked as one
(``application_id``) and stamped (``user_version``); a file of release 0.1.0,
which had neither, is adopted once its tables are found to be a queue's, and
nothing is ever created over a non-empty file that is not a queue.
:mod:`.files` checks the file and its WAL before SQLite opens it.

The WAL is checkpointed by the queue itself (``wal_autocheckpoint=0``): each
checkpoint is followed by :func:`mark`, which advances the stamp and writes
nothing else, so every WAL generation begins with a mark; that is how
:func:`.files.check_wal` recognises a WAL as this file's.

One database holds both tables, so moving an alert between them is a single
transaction. The file is opened in WAL mode; ``synchronous`` decides what an
acknowledged commit survives:

* ``full`` (default): the WAL is fsynced at every commit, so an alert the
  ingest answered 200 for survives a power cut. Group commit spreads that one
  fsync over every request waiting at that moment.
* ``normal``: survives a crash of the process, but the last commits before a
  power cut or kernel panic may be lost. Faster on slow disks.
* ``off``: no fsync at all; for benchmarks and throwaway setups only.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from forwarder.queue.errors import QueueOpenError
from forwarder.queue.sqlite.files import APPLICATION_ID, MainFile, damaged, new_stamp, next_stamp

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS queue (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    target       TEXT    NOT NULL,
    app_key      TEXT    NOT NULL,
    identity     TEXT    NOT NULL,
    payload      BLOB    NOT NULL,
    size         INTEGER NOT NULL,
    ts           INTEGER NOT NULL,
    created      REAL    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL    NOT NULL DEFAULT 0,
    lease_until  REAL    NOT NULL DEFAULT 0,
    last_error   TEXT
);
CREATE INDEX IF NOT EXISTS queue_target ON queue (target, id);
-- Rows ever leased or attempted: what holds back newer states of an identity.
-- A new row is in neither state, so ingest never writes this index.
CREATE INDEX IF NOT EXISTS queue_held ON queue (target, id)
    WHERE lease_until > 0 OR attempts > 0;
CREATE TABLE IF NOT EXISTS dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    target      TEXT    NOT NULL,
    app_key     TEXT    NOT NULL,
    identity    TEXT    NOT NULL,
    payload     BLOB    NOT NULL,
    size        INTEGER NOT NULL,
    ts          INTEGER NOT NULL,
    created     REAL    NOT NULL,
    attempts    INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    status      INTEGER,
    response    TEXT,
    last_error  TEXT,
    failed_at   REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_target ON dead_letters (target, id);
-- One row per identity (forwarder.state.AlertState, field for field, transitions
-- as a JSON array). Added by issue 13: an older file gets it at its next open.
CREATE TABLE IF NOT EXISTS alert_states (
    target        TEXT    NOT NULL,
    app_key       TEXT    NOT NULL,
    identity      TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    dedup         TEXT    NOT NULL,
    payload       BLOB    NOT NULL,
    ts            INTEGER NOT NULL,
    first_seen    REAL    NOT NULL,
    seen          REAL    NOT NULL,
    clock         REAL    NOT NULL,
    since         REAL    NOT NULL,
    queued_status TEXT,
    queued_dedup  TEXT,
    queued_at     REAL,
    sent          REAL,
    transitions   TEXT    NOT NULL,
    flapping      INTEGER NOT NULL,
    suppressed    INTEGER NOT NULL,
    resolve_after REAL    NOT NULL,
    hold          REAL    NOT NULL,
    retention     REAL    NOT NULL,
    due           REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS alert_states_key ON alert_states (target, app_key, identity);
-- The scheduler's work list: only rows something is due for.
CREATE INDEX IF NOT EXISTS alert_states_due ON alert_states (due) WHERE due IS NOT NULL;
-- Listings, newest seen first.
CREATE INDEX IF NOT EXISTS alert_states_seen ON alert_states (seen);
-- The gauges: open and flapping identities per target, counted from these alone.
-- Each holds the column of its WHERE term, so a count never reads the table, and
-- SQLite uses a partial index only for a query repeating that term literally.
-- The first also lists a target's firing identities newest first.
-- (No semicolons in comments here: upgrade() splits this text on them.)
CREATE INDEX IF NOT EXISTS alert_states_open ON alert_states (target, seen, status)
    WHERE status <> 'ok';
CREATE INDEX IF NOT EXISTS alert_states_flapping ON alert_states (target, flapping)
    WHERE flapping = 1;
"""


# What a file must hold to be adopted as a queue (0.1.0's columns; later ones are added).
_QUEUE_COLUMNS: Final = frozenset(
    [
        "id",
        "target",
        "app_key",
        "identity",
        "payload",
        "size",
        "ts",
        "created",
        "attempts",
        "next_attempt",
        "lease_until",
        "last_error",
    ]
)
_DEAD_LETTER_COLUMNS: Final = frozenset(
    [
        "id",
        "target",
        "app_key",
        "identity",
        "payload",
        "size",
        "ts",
        "created",
        "attempts",
        "reason",
        "status",
        "response",
        "last_error",
        "failed_at",
    ]
)
BUSY_TIMEOUT_MS: Final = 10_000


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any error.

    SQLite may already have rolled back by itself (SQLITE_FULL, SQLITE_IOERR);
    a failing ROLLBACK then must not hide the error that says why.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


def is_full(exc: BaseException) -> bool:
    """Whether SQLite refused a write because the disk (or ``max_page_count``) is full."""
    return isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", 0) == 13


def connect(path: Path, main: MainFile, *, synchronous: str = "full") -> sqlite3.Connection:
    """Open a checked file (see :mod:`.files`) with the pragmas the queue relies on.

    A new file is created marked; a marked one must hold the queue's tables; an
    unmarked non-empty one (release 0.1.0) is first read through a read-only
    connection, which never checkpoints, and refused unless it is a queue.
    ``isolation_level=None`` leaves transactions to explicit ``BEGIN``/``COMMIT``,
    so a group commit is exactly one transaction.
    """
    fresh = main.size == 0 and not Path(f"{path}-wal").exists()
    if not fresh and main.application_id != APPLICATION_ID:
        _probe_unmarked(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        str(path),
        isolation_level=None,
        check_same_thread=False,
        timeout=BUSY_TIMEOUT_MS / 1000,
        cached_statements=1024,  # multi-row INSERTs of every group size
    )
    try:
        if fresh:
            # Made whole in rollback-journal mode, so the main file holds the marked
            # schema before the first WAL generation begins.
            upgrade(conn)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA wal_autocheckpoint=0")  # the queue checkpoints, then marks
        if not fresh:
            _require_tables(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def upgrade(conn: sqlite3.Connection) -> None:
    """Create what is missing (all of it for a new file); mark and stamp an unmarked file.

    A write only when something is missing, so it may fail on a full disk and
    be tried again at the next start.
    """
    with transaction(conn):
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        if int(conn.execute("PRAGMA application_id").fetchone()[0]) != APPLICATION_ID:
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version={new_stamp()}")


def mark(conn: sqlite3.Connection) -> None:
    """Advance the stamp and write nothing else: the first commit of a WAL generation."""
    with transaction(conn):
        stamp = int(conn.execute("PRAGMA user_version").fetchone()[0])
        conn.execute(f"PRAGMA user_version={next_stamp(stamp)}")


def checkpoint(conn: sqlite3.Connection) -> bool:
    """Copy the WAL into the main file and let the next write start it over; True if complete.

    ``RESTART`` rather than ``TRUNCATE``: the WAL file keeps its size and is
    written over from its start, so a disk that fills meanwhile still has room
    for the queue's next writes. It waits for no reader (busy timeout 0); an
    incomplete checkpoint is simply tried again later.
    """
    conn.execute("PRAGMA busy_timeout=0")
    try:
        busy, log, done = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
    finally:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return bool(busy == 0 and log == done)


def _probe_unmarked(path: Path) -> None:
    """Refuse an unmarked file that lacks the queue's tables, without writing to it."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        probe = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as exc:
        raise damaged(path, str(exc)) from None
    try:
        _require_tables(probe, path)
    except sqlite3.Error as exc:
        raise damaged(path, str(exc)) from None
    finally:
        probe.close()


def _require_tables(conn: sqlite3.Connection, path: Path) -> None:
    def columns(table: str) -> set[str]:
        return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}

    if not (columns("queue") >= _QUEUE_COLUMNS and columns("dead_letters") >= _DEAD_LETTER_COLUMNS):
        raise QueueOpenError(
            f"queue file {path} is a SQLite database without the queue's tables: point"
            " queue.path at another file; forwarder creates nothing over an existing database"
        )
