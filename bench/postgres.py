"""The PostgreSQL scenarios: ingest ratio against the same-run ceiling, end to end, cold start.

The same measurements as the SQLite ones (:mod:`bench.scenarios`), with the
daemon on ``queue.backend: postgres``. The server is a throwaway cluster
(:mod:`tests.pg.cluster`) with ``fsync`` and ``synchronous_commit`` on, as in
production, started once per run on first use and deleted at the end; or
the server ``FORWARDER_TEST_POSTGRES_DSN`` names. Each daemon gets a fresh
database, so no run sees another's rows.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from bench.scenarios import Figures, Settings, scenario_cold_start, scenario_e2e, scenario_ingest
from tests.pg.cluster import Cluster
from tests.pg.cluster import Settings as ServerSettings

_server: Cluster | None = None
_names = itertools.count()


def server() -> Cluster:
    """The run's PostgreSQL server, started on first use."""
    global _server
    if _server is None:
        cluster = Cluster(ServerSettings(fsync=True, synchronous_commit=True))
        cluster.create()
        _server = cluster
    return _server


def stop_server() -> None:
    """Delete the run's server, if one was started."""
    global _server
    if _server is not None:
        _server.destroy()
        _server = None


def fresh_database() -> str:
    """The DSN of a new, empty database on the run's server."""
    return server().create_database(f"bench_{os.getpid()}_{next(_names)}")


def scenario_pg_ingest(s: Settings, work: Path, fig: Figures) -> None:
    """Ingest alerts/s on PostgreSQL vs. the bare aiohttp ceiling, same run (goal: ratio ≥ 0.4)."""
    scenario_ingest(s, work, fig, store=fresh_database, prefix="pg_")


def scenario_pg_e2e(s: Settings, work: Path, fig: Figures) -> None:
    """N alerts as fast as possible through a PostgreSQL queue to a fake with 20 ms latency."""
    scenario_e2e(s, work, fig, store=fresh_database, prefix="pg_")


def scenario_pg_cold_start(s: Settings, work: Path, fig: Figures) -> None:
    """Process start to ``/-/ready`` on PostgreSQL, the schema already there (a restart)."""
    dsn = fresh_database()
    scenario_cold_start(s, work, Figures(), store=lambda: dsn, prefix="pg_first_")
    scenario_cold_start(s, work, fig, store=lambda: dsn, prefix="pg_")
