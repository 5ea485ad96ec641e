"""The embedded SQLite backend: one file holds the queue and the dead-letter store."""

from __future__ import annotations

from forwarder.queue.sqlite.queue import SQLiteQueue

__all__ = ["SQLiteQueue"]
