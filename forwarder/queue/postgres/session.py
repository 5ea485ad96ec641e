"""The replica's own PostgreSQL session: wake-ups by LISTEN/NOTIFY and per-target sender claims.

One dedicated connection, outside the pool, because both things it holds
belong to a session: a ``LISTEN`` registration and session-level advisory
locks. When the session dies (the replica is killed, its host vanishes, the
database restarts) PostgreSQL drops both on its own, so a claim can never
outlive its holder; the server notices a vanished client by TCP keepalive
within about ``keepalive`` seconds, set per session below.

While the session is down every sender is woken at each reconnect attempt
(the polling fallback: notifications may have been missed), and this replica
holds no claim until its sender claims again.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Callable
from typing import Any

import asyncpg

from forwarder.clock import Clock
from forwarder.queue.postgres import schema
from forwarder.queue.postgres.connect import reason


def target_key(target: str) -> int:
    """The second advisory-lock key of ``target``: a stable signed 32-bit hash of its name.

    Two targets may share a key; they then share a lease lock and a sender
    claim, which costs only parallelism, never order or the rate limit.
    """
    return zlib.crc32(target.encode()) - 2**31


class Session:
    """Keeps the dedicated connection alive; see the module docstring."""

    def __init__(
        self,
        connect: Callable[[], Any],
        *,
        dsn: str,
        clock: Clock,
        on_notify: Callable[[str, int], None],
        on_state: Callable[[str | None], None],
        wake_all: Callable[[], None],
        ping_interval: float = 2.0,
    ) -> None:
        self._connect = connect
        self._dsn = dsn
        self._clock = clock
        self._on_notify = on_notify
        self._on_state = on_state
        self._wake_all = wake_all
        self._ping_interval = ping_interval
        self._conn: asyncpg.Connection[Any] | None = None
        self._lock = asyncio.Lock()  # one operation at a time on the connection
        self._claims: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    async def start(self) -> None:
        """Connect and LISTEN now, then keep the session (ping; reconnect with backoff)."""
        try:
            await self._attach()
        except Exception as exc:
            self._on_state(f"queue database session failed: {reason(exc, self._dsn)}")
        self._task = asyncio.create_task(self._keep(), name="postgres-session")

    async def _attach(self) -> asyncpg.Connection[Any]:
        conn: asyncpg.Connection[Any] = await self._connect()
        try:
            await conn.add_listener(schema.CHANNEL, self._notified)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        self.connected.set()
        return conn

    async def stop(self) -> None:
        """Release every claim and close the session."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._drop()

    @property
    def claims(self) -> frozenset[str]:
        """The targets this replica holds the sender claim for."""
        return frozenset(self._claims)

    async def claim(self, target: str) -> bool:
        """Try to become the one sender of ``target``; True if this replica holds it now."""
        if target in self._claims:
            return True
        conn = self._conn
        if conn is None:
            return False
        try:
            async with self._lock:
                got = await conn.fetchval(
                    "SELECT pg_try_advisory_lock($1, $2)", schema.LOCK_SENDER, target_key(target)
                )
        except Exception as exc:
            await self._lost(exc)
            return False
        if got and self._conn is conn:
            self._claims.add(target)
            return True
        return False

    async def release(self, target: str) -> None:
        """Give up the sender claim of ``target`` (another replica may take it at once)."""
        if target not in self._claims:
            return
        self._claims.discard(target)
        conn = self._conn
        if conn is None:
            return
        try:
            async with self._lock:
                await conn.fetchval(
                    "SELECT pg_advisory_unlock($1, $2)", schema.LOCK_SENDER, target_key(target)
                )
        except Exception as exc:
            await self._lost(exc)

    def holds(self, target: str) -> bool:
        """Whether this replica holds the claim of ``target`` (no round trip)."""
        return target in self._claims and self._conn is not None

    async def _keep(self) -> None:
        backoff = 0.1
        while True:
            conn = self._conn
            if conn is None:
                try:
                    conn = await self._attach()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._on_state(f"queue database unreachable: {reason(exc, self._dsn)}")
                    self._wake_all()
                    await self._clock.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                backoff = 0.1
                self._on_state(None)
                self._wake_all()  # notifications sent while we were away are lost
            try:
                while self._conn is conn:
                    await self._clock.sleep(self._ping_interval)
                    async with self._lock:
                        await conn.fetchval("SELECT 1", timeout=self._ping_interval * 2)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._lost(exc)

    async def _lost(self, exc: BaseException) -> None:
        """The session failed: its claims and LISTEN are gone with it."""
        self._on_state(f"queue database session lost: {reason(exc, self._dsn)}")
        await self._drop()
        self._wake_all()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._claims.clear()
        self.connected.clear()
        if conn is not None:
            conn.terminate()

    def _notified(self, _conn: Any, pid: int, _channel: str, payload: object) -> None:
        if isinstance(payload, str):
            self._on_notify(payload, pid)
