"""Pytest fixtures of a real PostgreSQL server: ``postgres_server`` and ``postgres_dsn``.

``postgres_server`` is one :class:`~tests.pg.cluster.Cluster` for the whole
session (or the server ``FORWARDER_TEST_POSTGRES_DSN`` names);
``postgres_dsn`` gives each test a database of its own on it. Without server
binaries every test that asks for them fails, saying how to install them.

A test module or conftest imports the fixture functions (their names end in
``_fixture``; pytest registers them under the short names).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from tests.pg.cluster import Cluster, ClusterError, run_sync

__all__ = ["postgres_dsn_fixture", "postgres_server_fixture", "run_sync"]

_names = itertools.count()


@pytest.fixture(scope="session", name="postgres_server")
def postgres_server_fixture() -> Iterator[Cluster]:
    """A throwaway PostgreSQL server for the session (fails, never skips, without binaries)."""
    cluster = Cluster()
    try:
        cluster.create()
    except ClusterError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield cluster
    cluster.destroy()


@pytest.fixture(name="postgres_dsn")
def postgres_dsn_fixture(postgres_server: Cluster) -> Iterator[str]:
    """The DSN of a fresh, empty database for this test."""
    name = f"forwarder_t{os.getpid()}_{next(_names)}"
    yield postgres_server.create_database(name)
    if postgres_server.external:
        postgres_server.drop_database(name)  # a throwaway cluster is deleted whole at the end


def own_cluster() -> Iterator[Cluster]:
    """A throwaway server of the calling module's own, which its tests may stop and start.

    Never the shared session server, and never ``FORWARDER_TEST_POSTGRES_DSN``'s: stopping
    a server is only for one the tests made. Used as ``yield from own_cluster()`` in a
    module-scoped fixture.
    """
    cluster = Cluster(use_env=False)
    try:
        cluster.create()
    except ClusterError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield cluster
    cluster.destroy()
