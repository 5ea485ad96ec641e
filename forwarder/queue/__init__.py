"""The durable queue: the storage contract, its errors, and the backends.

:mod:`~forwarder.queue.contract` is the contract (:class:`Queue`,
:class:`DeadLetters`) with the invariants every backend keeps;
:mod:`~forwarder.queue.sqlite` is the embedded backend and
:mod:`~forwarder.queue.postgres` the one several replicas share. Nothing
outside a backend's package knows which database it talks to.
"""

from __future__ import annotations

from forwarder.clock import SYSTEM_CLOCK, Clock
from forwarder.config import QueueConfig
from forwarder.queue.contract import DeadLetters, Lease, Queue, QueueStats, TargetStats
from forwarder.queue.errors import (
    QueueFull,
    QueueLocked,
    QueueMissing,
    QueueOpenError,
    QueueUnavailable,
)

__all__ = [
    "DeadLetters",
    "Lease",
    "Queue",
    "QueueFull",
    "QueueLocked",
    "QueueMissing",
    "QueueOpenError",
    "QueueStats",
    "QueueUnavailable",
    "TargetStats",
    "create_queue",
]


def create_queue(cfg: QueueConfig, *, clock: Clock = SYSTEM_CLOCK, admin: bool = False) -> Queue:
    """The queue backend ``cfg`` names.

    ``admin`` opens it for the dead-letter commands beside a running daemon:
    it must exist already, and the daemon's ownership is not disturbed.
    """
    if cfg.backend == "postgres":
        # Imported here: asyncpg is an optional dependency (the "postgres" extra).
        from forwarder.queue.postgres import PostgresQueue

        return PostgresQueue(cfg, dsn=cfg.dsn.reveal(), clock=clock, admin=admin)
    from forwarder.queue.sqlite import SQLiteQueue

    return SQLiteQueue(
        cfg,
        clock=clock,
        admin=admin,
        reserve_bytes=cfg.reserve_bytes,
        ballast_bytes=cfg.ballast_bytes,
    )
