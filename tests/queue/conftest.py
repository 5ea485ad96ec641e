"""Fixtures of the storage tests: every backend behind one factory, real stores, a fake clock.

``backend`` is parametrized over the backends the contract suite runs on
(SQLite, and PostgreSQL on a real server the suite starts itself); a test
asking for ``open_queue`` runs once per backend. Each :class:`Backend` knows
how to configure a fresh store of its kind and how to count rows as another
process would; the queues themselves are the real ones.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Protocol

import asyncpg
import pytest

from forwarder import jsonio
from forwarder.config import QueueConfig
from forwarder.config.secrets import Secret
from forwarder.model import Entry, Outgoing
from forwarder.queue import Lease, Queue, create_queue
from tests.fakes.clock import FakeClock
from tests.pg.fixtures import run_sync

TARGET = "bigpanda"
KEY = "app-key-1"


class Backend(Protocol):
    """What the contract suite needs to know about a backend."""

    name: str

    def config(self, *, max_events: int, max_bytes: int) -> QueueConfig:
        """The config of a fresh, empty store."""
        ...

    def rows(self, table: str) -> int:
        """Rows in ``queue`` or ``dead_letters``, read over a separate connection."""
        ...


class SQLiteBackend:
    """A SQLite file under the test's ``tmp_path``."""

    name = "sqlite"

    def __init__(self, directory: Path) -> None:
        self.path = directory / "queue.db"

    def config(self, *, max_events: int, max_bytes: int) -> QueueConfig:
        return QueueConfig(
            path=self.path, max_events=max_events, max_bytes=max_bytes, synchronous="normal"
        )

    def rows(self, table: str) -> int:
        with sqlite3.connect(self.path) as conn:
            return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


class PostgresBackend:
    """A fresh database on the test PostgreSQL server."""

    name = "postgres"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def config(self, *, max_events: int, max_bytes: int) -> QueueConfig:
        return QueueConfig(
            backend="postgres", dsn=Secret(self.dsn), max_events=max_events, max_bytes=max_bytes
        )

    def rows(self, table: str) -> int:
        async def count() -> int:
            conn = await asyncpg.connect(self.dsn)
            try:
                return int(await conn.fetchval(f"SELECT count(*) FROM forwarder.{table}"))
            finally:
                await conn.close()

        return run_sync(count)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each backend of the contract suite in turn."""
    if request.param == "postgres":
        return PostgresBackend(request.getfixturevalue("postgres_dsn"))
    return SQLiteBackend(tmp_path)


QueueFactory = Callable[..., Awaitable[Queue]]


@pytest.fixture
def clock() -> FakeClock:
    """The store's clock: leases, retries and ages move only when the test says so."""
    return FakeClock()


@pytest.fixture
async def open_queue(backend: Backend, clock: FakeClock) -> AsyncIterator[QueueFactory]:
    """Open real queues of ``backend``; every one still open is closed at teardown."""
    opened: list[Queue] = []

    async def factory(
        *, max_events: int = 1_000_000, max_bytes: int = 1024**3, admin: bool = False
    ) -> Queue:
        q = create_queue(
            backend.config(max_events=max_events, max_bytes=max_bytes), clock=clock, admin=admin
        )
        await q.open()
        opened.append(q)
        return q

    yield factory
    for q in reversed(opened):
        if q.is_open:
            await q.close()


def item(
    check: str,
    *,
    ts: int = 1000,
    target: str = TARGET,
    key: str = KEY,
    identity: str | None = None,
    size: int = 0,
) -> Outgoing:
    """An outgoing alert whose payload is real alert JSON (padded to ``size`` bytes if asked)."""
    alert = {"check": check, "host": "web-1", "status": "critical", "timestamp": ts}
    if size:
        alert["description"] = "x" * size
    return Outgoing(
        target=target,
        app_key=key,
        identity=identity if identity is not None else check,
        payload=jsonio.dumps(alert),
        timestamp=ts,
    )


def checks(entries: Sequence[Entry]) -> list[str]:
    """The ``check`` of each entry, in order."""
    return [str(jsonio.loads(e.payload)["check"]) for e in entries]


async def lease(
    q: Queue, *, limit: int = 100, lease_for: float = 60.0, target: str = TARGET
) -> Lease:
    """Lease from ``target`` with test defaults."""
    return await q.lease(target, limit=limit, lease_for=lease_for)


async def dead_letter_all(
    q: Queue, *, reason: str = "clientError", status: int | None = 400, target: str = TARGET
) -> list[Entry]:
    """Lease everything due and move it to the dead-letter store."""
    entries = (await lease(q, target=target)).entries
    await q.dead_letter(
        entries, reason=reason, status=status, response='{"error":"bad"}', error="HTTP 400: bad"
    )
    return entries
