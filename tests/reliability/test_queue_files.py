"""Queue files the daemon cannot use as they are: one line from ``forwarder run``, files untouched.

Issue 10 §3 and issue 11: a stray WAL, another application's database, a damaged file. The
daemon is the real ``forwarder run`` subprocess; the files are real SQLite files.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Daemon, write_config
from tests.reliability.conftest import DRY_RUN_CONFIG

pytestmark = pytest.mark.reliability


def foreign_database_with_wal(path: Path) -> None:
    """Another application's WAL-mode database at ``path``, its WAL left uncheckpointed."""
    code = textwrap.dedent(
        """
        import os, sqlite3, sys
        c = sqlite3.connect(sys.argv[1], isolation_level=None)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA wal_autocheckpoint=0")
        c.execute("CREATE TABLE notes (body TEXT)")
        c.execute("INSERT INTO notes VALUES ('hello')")
        os._exit(0)
        """
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=60)


def digest(paths: list[Path]) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


async def run_once(config: Path) -> tuple[int, str]:
    """``forwarder run`` that is expected to stop at the queue: its exit code and output.

    Killed after 60 s (a daemon that started despite the file would serve forever).
    """

    def run() -> tuple[int, str]:
        try:
            done = subprocess.run(
                [sys.executable, "-m", "forwarder", "run", "--config", str(config)],
                capture_output=True,
                cwd=config.parent,
                timeout=60,
            )
        except subprocess.TimeoutExpired:
            return -1, "forwarder run started on this file and kept serving"
        return done.returncode, (done.stdout + done.stderr).decode()

    return await asyncio.to_thread(run)


async def test_a_stray_wal_stops_run_with_one_line_and_changes_nothing(
    tmp_path: Path, daemon_factory: Callable[[str], Daemon]
) -> None:
    """A daemon made the queue and stopped; a foreign WAL appears; the next start refuses it."""
    daemon = daemon_factory(DRY_RUN_CONFIG)
    daemon.start()
    await daemon.wait_ready()
    assert daemon.terminate() == 0, daemon.log()
    queue = tmp_path / "queue.db"
    other = tmp_path / "other" / "notes.db"
    other.parent.mkdir()
    foreign_database_with_wal(other)
    wal = Path(f"{queue}-wal")
    shutil.copyfile(f"{other}-wal", wal)
    before = digest([queue, wal])
    code, out = await run_once(daemon.config_path)
    lines = [line for line in out.splitlines() if line.strip()]
    assert code == 1, out
    assert len(lines) == 1, out
    assert f"{wal} does not belong to the queue {queue}" in lines[0]
    assert digest([queue, wal]) == before


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\x00" * 4096, "is damaged (not a SQLite database)"),
        (b"SQLite format 3\x00\x10\x00", "is damaged (truncated to 18 bytes)"),
    ],
)
async def test_a_damaged_queue_file_stops_run_with_one_line(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    """A garbage or truncated queue.db: one line naming it and the fix; the file is kept."""
    config = write_config(tmp_path, DRY_RUN_CONFIG)
    queue = tmp_path / "queue.db"
    queue.write_bytes(content)
    code, out = await run_once(config)
    lines = [line for line in out.splitlines() if line.strip()]
    assert code == 1, out
    assert len(lines) == 1, out
    assert f"queue file {queue} {expected}" in lines[0]
    assert "never deletes or overwrites a queue file" in lines[0]
    assert queue.read_bytes() == content
