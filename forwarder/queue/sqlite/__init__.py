"""The embedded SQLite backend: one file holds the queue and the dead-letter store.

* :mod:`.queue` — :class:`SQLiteQueue`: lifecycle, put, the sender side, stats;
* :mod:`.commit` — group commit of concurrent puts;
* :mod:`.rows` — the SQL, as functions on a connection;
* :mod:`.writes` — the write path: WAL generations, checkpoints, full-disk retries;
* :mod:`.files` — checks of the file and its WAL before SQLite opens them;
* :mod:`.schema` — tables, marks and connections;
* :mod:`.space` — free-space reserve and ballast;
* :mod:`.lockfile` — the owner's lock (with its PID) and the generation lock;
* :mod:`.deadletters` — list, show, replay and purge.
"""

from __future__ import annotations

from forwarder.queue.sqlite.queue import SQLiteQueue

__all__ = ["SQLiteQueue"]
