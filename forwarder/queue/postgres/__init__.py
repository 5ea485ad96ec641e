"""The PostgreSQL backend: one database shared by several forwarder replicas."""

from __future__ import annotations

from forwarder.queue.postgres.queue import PostgresQueue

__all__ = ["PostgresQueue"]
