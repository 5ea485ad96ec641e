"""The SQLite file behind the queue and the dead-letter store: schema and connections.

The schema only ever grows by ``IF NOT EXISTS`` additions, so a file written
by an earlier release opens as it is.

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
"""


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


def connect(path: Path, *, synchronous: str = "full", create: bool = True) -> sqlite3.Connection:
    """Open the database with the pragmas the queue relies on.

    ``isolation_level=None`` leaves transactions to explicit ``BEGIN``/``COMMIT``,
    so a group commit is exactly one transaction.
    """
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.exists():
        raise FileNotFoundError(f"no queue database at {path}")
    conn = sqlite3.connect(
        str(path),
        isolation_level=None,
        check_same_thread=False,
        timeout=10.0,
        cached_statements=1024,  # multi-row INSERTs of every group size
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.executescript(SCHEMA)
    return conn
