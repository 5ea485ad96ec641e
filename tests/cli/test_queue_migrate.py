"""``forwarder queue migrate`` as a real subprocess, from a real SQLite file to a real PostgreSQL.

The SQLite queue is filled through its own backend (alerts waiting for a
retry, several targets and identities, dead letters); after the move the
PostgreSQL queue must hand out the same alerts in the same order with their
state, and the dead letters must be there with their reasons.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from forwarder import jsonio
from forwarder.config import QueueConfig
from forwarder.config.secrets import Secret
from forwarder.model import Outgoing
from forwarder.queue.postgres import PostgresQueue
from forwarder.queue.sqlite import SQLiteQueue
from tests.fakes.clock import FakeClock
from tests.pg.cluster import Cluster
from tests.pg.fixtures import run_sync


def alert(check: str, *, target: str = "bigpanda", key: str = "key-1", ts: int = 1) -> Outgoing:
    payload = jsonio.dumps({"check": check, "host": "web-1", "status": "critical", "timestamp": ts})
    return Outgoing(target, key, check.split("-")[0], payload, ts)


def fill(path: Path, clock: FakeClock) -> None:
    """A SQLite queue as a daemon leaves it: queued, retrying and dead-lettered alerts."""

    async def go() -> None:
        q = SQLiteQueue(QueueConfig(path=path, synchronous="normal"), clock=clock)
        await q.open()
        await q.put([alert("a-1", ts=1), alert("b-1", ts=1), alert("dead-1")])
        await q.put([alert("o-1", target="other", key="key-2")])
        got = await q.lease("bigpanda", limit=10, lease_for=60)
        by_check = {e.check: e for e in got.entries}
        await q.dead_letter(
            [by_check["dead"]], reason="clientError", status=400, response="bad", error="HTTP 400"
        )
        await q.retry_later([by_check["a"]], at=clock.time() + 30, error="HTTP 503")
        await q.release([by_check["b"]])
        await q.put([alert("a-2", ts=2)])  # a newer state of a, behind the retry
        await q.close()

    asyncio.run(go())


def migrate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "forwarder", "queue", "migrate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def pg_rows(dsn: str, sql: str) -> list[tuple[object, ...]]:
    async def go() -> list[tuple[object, ...]]:
        conn = await asyncpg.connect(dsn)
        try:
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    return run_sync(go)


def test_migrate_moves_alerts_and_dead_letters_with_their_state(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """Every queued alert and dead letter arrives, in order, with attempts, times and reasons."""
    path = tmp_path / "queue.db"
    clock = FakeClock()
    fill(path, clock)
    done = migrate("--from", f"sqlite:{path}", "--to", postgres_dsn)
    assert done.returncode == 0, done.stderr
    assert "moved 4 queued alerts and 1 dead letters" in done.stdout
    assert rows_in_sqlite(path) == (0, 0)

    async def check() -> None:
        q = PostgresQueue(
            QueueConfig(backend="postgres", dsn=Secret(postgres_dsn)), dsn=postgres_dsn, clock=clock
        )
        await q.open()
        stats = await q.stats()
        assert (stats.events, stats.targets["bigpanda"].dead_letters) == (3 + 1, 1)
        got = await q.lease("bigpanda", limit=10, lease_for=60)
        assert [e.check for e in got.entries] == ["b"]  # a waits for its retry, a-2 behind it
        assert got.next_due == clock.time() + 30
        clock.advance(30)
        again = await q.lease("bigpanda", limit=10, lease_for=60)
        assert [(e.check, e.attempts, e.timestamp, e.app_key) for e in again.entries] == [
            ("a", 1, 1, "key-1")
        ]
        await q.ack(again.entries)
        newer = await q.lease("bigpanda", limit=10, lease_for=60)
        assert [(e.check, e.attempts, e.timestamp) for e in newer.entries] == [("a", 0, 2)]
        other = await q.lease("other", limit=10, lease_for=60)
        assert [(e.check, e.app_key) for e in other.entries] == [("o", "key-2")]
        (d,) = await q.dead_letters.list()
        assert (d.check, d.reason, d.status, d.attempts, d.response) == (
            "dead-1", "clientError", 400, 1, "bad",
        )  # fmt: skip
        await q.close()

    asyncio.run(check())


def test_a_second_run_moves_nothing_and_a_resumed_run_nothing_twice(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """Run again on the emptied file: nothing. On the file as it was before: recognised, skipped."""
    path = tmp_path / "queue.db"
    fill(path, FakeClock())
    before = tmp_path / "before.db"
    shutil.copy(path, before)  # the file as a crash right after the commit would leave it
    assert migrate("--from", f"sqlite:{path}", "--to", postgres_dsn).returncode == 0
    again = migrate("--from", f"sqlite:{path}", "--to", postgres_dsn)
    assert again.returncode == 0, again.stderr
    assert "moved 0 queued alerts and 0 dead letters" in again.stdout
    shutil.copy(before, path)
    resumed = migrate("--from", f"sqlite:{path}", "--to", postgres_dsn)
    assert resumed.returncode == 0, resumed.stderr
    assert "moved 0 queued alerts and 0 dead letters" in resumed.stdout
    assert "5 already moved by an earlier run" in resumed.stdout
    assert pg_rows(postgres_dsn, "SELECT count(*) FROM forwarder.queue") == [(4,)]
    assert pg_rows(postgres_dsn, "SELECT count(*) FROM forwarder.dead_letters") == [(1,)]


def test_another_file_at_the_same_path_is_moved_not_taken_for_the_first(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """A queue file made anew at a path already migrated (another host's, or a new queue) has
    low ids too: its alerts are moved, never deleted as if imported before."""
    path = tmp_path / "queue.db"
    fill(path, FakeClock())
    assert migrate("--from", f"sqlite:{path}", "--to", postgres_dsn).returncode == 0
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)

    async def second_host() -> None:
        q = SQLiteQueue(QueueConfig(path=path, synchronous="normal"))
        await q.open()
        await q.put([alert("x-1"), alert("y-1"), alert("z-1")])
        await q.close()

    asyncio.run(second_host())
    done = migrate("--from", f"sqlite:{path}", "--to", postgres_dsn)
    assert done.returncode == 0, done.stderr
    assert "moved 3 queued alerts and 0 dead letters" in done.stdout
    assert pg_rows(postgres_dsn, "SELECT count(*) FROM forwarder.queue") == [(4 + 3,)]


def test_a_file_in_use_by_a_daemon_is_refused(tmp_path: Path, postgres_dsn: str) -> None:
    """While a daemon owns the file, the command refuses and moves nothing."""
    path = tmp_path / "queue.db"
    fill(path, FakeClock())

    async def go() -> subprocess.CompletedProcess[str]:
        owner = SQLiteQueue(QueueConfig(path=path))
        await owner.open()
        try:
            return await asyncio.to_thread(
                migrate, "--from", f"sqlite:{path}", "--to", postgres_dsn
            )
        finally:
            await owner.close()

    done = asyncio.run(go())
    assert done.returncode == 1
    assert "stop that daemon first" in done.stderr
    assert rows_in_sqlite(path) == (4, 1)


def test_a_wrong_password_is_one_line_without_it(tmp_path: Path, postgres_server: Cluster) -> None:
    """A refused login is one line naming the database, never the password; nothing moves."""
    path = tmp_path / "queue.db"
    fill(path, FakeClock())
    done = migrate(
        "--from", f"sqlite:{path}", "--to", postgres_server.dsn(password="S3cret-wrong-pw")
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "password authentication failed" in done.stderr
    assert "S3cret-wrong-pw" not in done.stderr + done.stdout
    assert rows_in_sqlite(path) == (4, 1)


def test_bad_arguments_are_usage_errors(tmp_path: Path) -> None:
    """A source that is not sqlite:PATH, or a missing file, is a one-line error."""
    bad = migrate("--from", "mysql:x", "--to", "postgresql://u@h/db")
    assert (bad.returncode, "--from must be sqlite:PATH" in bad.stderr) == (2, True)
    missing = migrate("--from", f"sqlite:{tmp_path / 'none.db'}", "--to", "postgresql://u@h/d")
    assert (missing.returncode, "no queue file at" in missing.stderr) == (1, True)


def rows_in_sqlite(path: Path) -> tuple[int, int]:
    """Queued alerts and dead letters left in the file, read through its backend."""

    async def go() -> tuple[int, int]:
        q = SQLiteQueue(QueueConfig(path=path), admin=True)
        await q.open()
        stats = await q.stats()
        await q.close()
        return stats.events, sum(t.dead_letters for t in stats.targets.values())

    return asyncio.run(go())


def test_to_postgres_takes_the_dsn_from_the_config(tmp_path: Path, postgres_dsn: str) -> None:
    """``--to postgres`` moves into the database ``queue.dsn`` of ``--config`` names."""
    path = tmp_path / "queue.db"
    fill(path, FakeClock())
    config = tmp_path / "forwarder.yaml"
    config.write_text(
        "queue:\n"
        "  backend: postgres\n"
        f"  dsn: {json.dumps(postgres_dsn)}\n"
        "targets:\n  bigpanda:\n    kind: log\n"
        "routes:\n  - name: default\n    target: bigpanda\n"
    )
    done = migrate("--config", str(config), "--from", f"sqlite:{path}", "--to", "postgres")
    assert done.returncode == 0, done.stderr
    assert "moved 4 queued alerts and 1 dead letters" in done.stdout
    assert pg_rows(postgres_dsn, "SELECT count(*) FROM forwarder.queue") == [(4,)]
    password = urlsplit(postgres_dsn).password
    assert password
    assert password not in done.stdout + done.stderr
