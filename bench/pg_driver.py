"""asyncpg vs. psycopg 3 on the queue's three hot operations, on one throwaway server.

Run from the repository root (psycopg is not a dependency; install it to compare)::

    pip install 'psycopg[binary]'
    python -m bench.pg_driver [--seconds 3]

Each figure is one connection working as fast as it can for ``--seconds``,
with ``fsync`` and ``synchronous_commit`` on:

* single: one-row ``INSERT`` and its commit, per second (a lone ingest);
* group: rows per second in 500-row multi-row inserts, one transaction each
  (a group commit under load);
* lease: ``SELECT … FOR UPDATE SKIP LOCKED LIMIT 100`` plus the ``UPDATE`` of
  those rows, in one transaction, per second.

The driver was chosen by these figures; see bench/results.md.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from tests.pg.cluster import Cluster, Settings

TABLE = """
CREATE TABLE q (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, target text NOT NULL,
                payload bytea NOT NULL, lease_until double precision NOT NULL DEFAULT 0);
CREATE INDEX q_target ON q (target, id);
"""
PAYLOAD = b'{"check":"cpu","host":"web-1","status":"critical","description":"' + b"x" * 300 + b'"}'
GROUP = 500
LEASE_SQL = (
    "UPDATE q SET lease_until = {now} WHERE id IN (SELECT id FROM q WHERE target = 'b'"
    " AND lease_until < {now} ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED)"
)


async def rate(seconds: float, op: Callable[[], Awaitable[int]]) -> float:
    """Units per second that ``op`` (returning units done) achieves in ``seconds``."""
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        done += await op()
    return done / (time.perf_counter() - started)


async def with_asyncpg(dsn: str, seconds: float) -> dict[str, float]:
    conn = await asyncpg.connect(dsn)
    await conn.execute("TRUNCATE q")
    rows = [("b", PAYLOAD)] * GROUP
    counter = iter(range(10**9))

    async def single() -> int:
        await conn.execute("INSERT INTO q (target, payload) VALUES ($1, $2)", "b", PAYLOAD)
        return 1

    async def group() -> int:
        async with conn.transaction():
            await conn.executemany("INSERT INTO q (target, payload) VALUES ($1, $2)", rows)
        return GROUP

    async def lease() -> int:
        async with conn.transaction():
            await conn.execute(LEASE_SQL.format(now=next(counter)))
        return 1

    out = {
        "single": await rate(seconds, single),
        "group": await rate(seconds, group),
        "lease": await rate(seconds, lease),
    }
    await conn.close()
    return out


async def with_psycopg(dsn: str, seconds: float) -> dict[str, float] | None:
    try:
        import psycopg
    except ImportError:
        return None
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    await conn.execute("TRUNCATE q")
    rows = [("b", PAYLOAD)] * GROUP
    counter = iter(range(10**9))

    async def single() -> int:
        await conn.execute("INSERT INTO q (target, payload) VALUES (%s, %s)", ("b", PAYLOAD))
        return 1

    async def group() -> int:
        async with conn.transaction(), conn.cursor() as cur:
            await cur.executemany("INSERT INTO q (target, payload) VALUES (%s, %s)", rows)
        return GROUP

    async def lease() -> int:
        async with conn.transaction():
            await conn.execute(LEASE_SQL.format(now=next(counter)))
        return 1

    out = {
        "single": await rate(seconds, single),
        "group": await rate(seconds, group),
        "lease": await rate(seconds, lease),
    }
    await conn.close()
    return out


async def measure(dsn: str, seconds: float) -> dict[str, dict[str, float] | None]:
    setup: Any = await asyncpg.connect(dsn)
    await setup.execute(TABLE)
    await setup.close()
    return {
        "asyncpg": await with_asyncpg(dsn, seconds),
        "psycopg": await with_psycopg(dsn, seconds),
    }


def main(argv: list[str] | None = None) -> int:
    """Start a server, measure both drivers, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per figure and driver")
    args = parser.parse_args(argv)
    cluster = Cluster(Settings(fsync=True, synchronous_commit=True))
    cluster.create()
    try:
        dsn = cluster.create_database("driver_bench")
        results = asyncio.run(measure(dsn, args.seconds))
    finally:
        cluster.destroy()
    print(f"{'driver':<10} {'single rows/s':>14} {'group rows/s':>14} {'leases/s':>10}")
    for name, figs in results.items():
        if figs is None:
            print(f"{name:<10} (not installed)")
            continue
        print(f"{name:<10} {figs['single']:>14.0f} {figs['group']:>14.0f} {figs['lease']:>10.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
