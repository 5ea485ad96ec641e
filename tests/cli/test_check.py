"""``forwarder check-config``: the queue backend in the summary, and ``--connect``.

Each test runs the real CLI in a subprocess on a real file, as an operator would.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from forwarder.config import dsn_passwords, load_config, mask_dsn
from forwarder.queue import create_queue
from tests.cli.support import forwarder
from tests.pg.cluster import Cluster
from tests.pg.fixtures import run_sync

LOG_TARGET = "targets:\n  bigpanda:\n    kind: log\n"


def check_config(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m forwarder check-config --config CONFIG ARGS`` with an empty environment."""
    return forwarder("check-config", "--config", str(config), *args, cwd=config.parent)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "forwarder.yaml"
    path.write_text(text)
    return path


def test_summary_names_the_sqlite_backend(tmp_path: Path) -> None:
    """The queue line says which backend and where (the file)."""
    result = check_config(write(tmp_path, "queue:\n  path: q.db\n" + LOG_TARGET))
    assert result.returncode == 0, result.stderr
    assert f"  queue:   {tmp_path / 'q.db'} (backend=sqlite, synchronous=full," in result.stdout
    assert (
        "  target:  bigpanda (log) writes alerts to the log, needs no credentials" in result.stdout
    )
    assert "DRY-RUN" not in result.stdout


def test_summary_names_the_postgres_backend_without_its_password(tmp_path: Path) -> None:
    """With postgres the queue line shows the DSN with its password masked, and nothing
    printed anywhere contains the password."""
    text = (
        "queue:\n  backend: postgres\n"
        "  dsn: postgresql://fwd:pg-pass-SECRET@db.example:5432/forwarder\n" + LOG_TARGET
    )
    result = check_config(write(tmp_path, text))
    assert result.returncode == 0, result.stderr
    assert (
        "  queue:   postgresql://fwd:***@db.example:5432/forwarder (backend=postgres,"
        in result.stdout
    )
    assert "SECRET" not in result.stdout + result.stderr


def test_connect_reports_an_existing_sqlite_queue(tmp_path: Path) -> None:
    """--connect opens the queue file (beside any daemon, taking nothing over) and reports."""
    path = write(tmp_path, "queue:\n  path: q.db\n  synchronous: normal\n" + LOG_TARGET)

    async def create() -> None:
        queue = create_queue(load_config(path, env={}).queue)
        await queue.open()
        await queue.close()

    asyncio.run(create())
    result = check_config(path, "--connect")
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("  connect: OK, sqlite queue opened (0 queued, 0 dead letters)\n")


def test_connect_to_a_queue_not_created_yet(tmp_path: Path) -> None:
    """Before the first run there is no file: --connect says so, creates nothing, exits 0."""
    path = write(tmp_path, "queue:\n  path: q.db\n" + LOG_TARGET)
    result = check_config(path, "--connect")
    assert result.returncode == 0, result.stderr
    assert f"  connect: no queue at {tmp_path / 'q.db'} yet" in result.stdout
    assert not (tmp_path / "q.db").exists()


def test_connect_failure_is_one_line(tmp_path: Path) -> None:
    """A file that is not a queue: exit 1 and one stderr line naming it, no traceback."""
    path = write(tmp_path, "queue:\n  path: q.db\n" + LOG_TARGET)
    (tmp_path / "q.db").write_bytes(b"this is not a database at all\n" * 100)
    result = check_config(path, "--connect")
    assert result.returncode == 1, result.stdout
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("forwarder: error: ")
    assert "q.db" in result.stderr
    assert "Traceback" not in result.stderr


def postgres_config(tmp_path: Path, dsn: str) -> Path:
    return write(tmp_path, f"queue:\n  backend: postgres\n  dsn: {dsn}\n" + LOG_TARGET)


def test_connect_to_postgres_before_and_after_the_first_run(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """--connect reaches the database: before the first run it says the queue is not there
    yet (and creates nothing); once a daemon created it, it reports it opened. The password
    is never printed."""
    path = postgres_config(tmp_path, postgres_dsn)
    before = check_config(path, "--connect")
    assert before.returncode == 0, before.stderr
    assert f"  connect: no queue at {mask_dsn(postgres_dsn)} yet" in before.stdout

    async def create() -> None:
        queue = create_queue(load_config(path, env={}).queue)
        await queue.open()
        await queue.close()

    run_sync(create)
    after = check_config(path, "--connect")
    assert after.returncode == 0, after.stderr
    assert after.stdout.endswith(
        "  connect: OK, postgres queue opened (0 queued, 0 dead letters)\n"
    )
    for password in dsn_passwords(postgres_dsn):
        assert password not in before.stdout + after.stdout + after.stderr


def test_connect_with_a_wrong_password_is_one_line_without_it(
    tmp_path: Path, postgres_dsn: str, postgres_server: Cluster
) -> None:
    """A wrong database password: exit 1, one error line, and neither password in it."""
    wrong = "wrong-pw-SECRET-31"
    dsn = postgres_server.dsn(urlsplit(postgres_dsn).path.lstrip("/"), password=wrong)
    result = check_config(postgres_config(tmp_path, dsn), "--connect")
    assert result.returncode == 1, result.stdout
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("forwarder: error: ")
    for password in (wrong, *dsn_passwords(postgres_dsn)):
        assert password not in result.stdout + result.stderr
