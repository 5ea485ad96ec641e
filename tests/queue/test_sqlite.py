"""What only the SQLite backend does (forwarder.queue.sqlite): group commit, the lock file,
SQLite's limits, a full disk, rows written by another process, files of earlier releases, and
files it must refuse as they are (a stray WAL, another database, damaged, another user's).

The contract itself is proven for SQLite by ``test_contract.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import pytest

from forwarder.config import QueueConfig
from forwarder.model import Identity
from forwarder.queue import QueueFull, QueueLocked, QueueUnavailable
from forwarder.queue.contract import PutResult
from forwarder.queue.errors import QueueOpenError
from forwarder.queue.putting import Pending
from forwarder.queue.sqlite import SQLiteQueue
from forwarder.queue.sqlite.files import APPLICATION_ID
from tests.fakes.clock import FakeClock
from tests.queue.conftest import TARGET, checks, dead_letter_all, item, lease

BIG = 64 * 1024  # payloads this large need fresh pages, so a full database refuses them
RELEASE_0_1_0 = Path(__file__).parent / "data" / "queue-0.1.0.db"


class CountingQueue(SQLiteQueue):
    """The real queue, recording how many alerts each commit transaction carried."""

    def __init__(self, cfg: QueueConfig, *, clock: FakeClock) -> None:
        super().__init__(cfg, clock=clock)
        self.commits: list[int] = []

    def _insert(self, batch: Sequence[Pending]) -> list[PutResult]:
        results = super()._insert(batch)
        self.commits.append(sum(len(p.items) for p in batch))
        return results


def rows(path: Path, table: str = "queue") -> int:
    """Count rows with a separate connection, as another process would see them."""
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


Factory = Callable[..., Awaitable[SQLiteQueue]]


@pytest.fixture
async def sqlite_queue(tmp_path: Path) -> AsyncIterator[Factory]:
    """Open real SQLite queues on ``tmp_path/queue.db``; closed at teardown."""
    opened: list[SQLiteQueue] = []
    clock = FakeClock()

    async def factory(
        *, max_events: int = 1_000_000, cls: type[SQLiteQueue] = SQLiteQueue, admin: bool = False
    ) -> SQLiteQueue:
        cfg = QueueConfig(path=tmp_path / "queue.db", max_events=max_events, synchronous="normal")
        q = CountingQueue(cfg, clock=clock) if cls is CountingQueue else cls(cfg, admin=admin)
        await q.open()
        opened.append(q)
        return q

    yield factory
    for q in reversed(opened):
        if q.is_open:
            await q.close()


# --------------------------------------------------------------------------- group commit


async def test_concurrent_puts_share_transactions(sqlite_queue: Factory, tmp_path: Path) -> None:
    """200 concurrent ingests are committed in far fewer than 200 transactions, and all land."""
    q = await sqlite_queue(cls=CountingQueue)
    assert isinstance(q, CountingQueue)
    await asyncio.gather(*(q.put([item(f"c{i}")]) for i in range(200)))
    assert sum(q.commits) == 200
    assert max(q.commits) > 1
    assert len(q.commits) < 200
    assert rows(tmp_path / "queue.db") == 200


async def test_a_lone_put_commits_at_once(sqlite_queue: Factory) -> None:
    """An idle queue commits a single alert in its own transaction, without waiting for company."""
    q = await sqlite_queue(cls=CountingQueue)
    assert isinstance(q, CountingQueue)
    await q.put([item("alone")])
    assert q.commits == [1]


async def test_puts_arriving_during_a_commit_form_the_next_group(sqlite_queue: Factory) -> None:
    """Alerts put while a commit is on disk are gathered into the following transaction."""
    q = await sqlite_queue(cls=CountingQueue)
    assert isinstance(q, CountingQueue)
    first = asyncio.ensure_future(q.put([item("first")]))
    await asyncio.sleep(0)  # the commit of "first" has gone to the queue thread
    rest = [asyncio.ensure_future(q.put([item(f"c{i}")])) for i in range(50)]
    await asyncio.gather(first, *rest)
    assert sum(q.commits) == 51
    assert len(q.commits) < 51


async def test_a_commit_larger_than_sqlites_variable_limit_is_split_but_atomic(
    sqlite_queue: Factory, tmp_path: Path
) -> None:
    """Old SQLite builds allow 999 bound values; a big group commit still lands whole and exact."""
    q = await sqlite_queue(cls=CountingQueue)
    assert isinstance(q, CountingQueue)

    def lower_limit() -> None:
        q.conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)

    await q.run(lower_limit)
    batch = [item(f"c{i}", ts=2000 + i, size=i % 7) for i in range(450)]
    await q.put(batch)
    assert q.commits == [450]  # one transaction, in three statements of up to 199 rows
    with sqlite3.connect(tmp_path / "queue.db") as conn:
        got = conn.execute(
            "SELECT target, app_key, identity, payload, size, ts, created = next_attempt"
            " FROM queue ORDER BY id"
        ).fetchall()
    assert got == [
        (i.target, i.app_key, i.identity, i.payload, len(i.payload), i.timestamp, 1) for i in batch
    ]
    stats = await q.stats()
    assert (stats.events, stats.bytes) == (450, sum(len(i.payload) for i in batch))


# --------------------------------------------------------------------------- ownership


async def test_a_second_owner_is_locked_out(sqlite_queue: Factory, tmp_path: Path) -> None:
    """Only one forwarder may own a queue file; a second gets QueueLocked until the first closes."""
    q = await sqlite_queue()
    other = SQLiteQueue(QueueConfig(path=tmp_path / "queue.db"))
    with pytest.raises(QueueLocked, match=r"in use by another forwarder"):
        await other.open()
    assert not other.is_open
    await q.close()
    await other.open()
    await other.close()


async def test_the_owner_releases_a_dead_owners_leases_at_once(sqlite_queue: Factory) -> None:
    """Holding the lock proves the old leases' owner is dead: they are free without waiting."""
    q = await sqlite_queue()
    await q.put([item("a"), item("b")])
    assert len((await lease(q, lease_for=3600)).entries) == 2
    await q.close()  # the hour-long lease is still on disk, as after kill -9
    q2 = await sqlite_queue()
    assert checks((await lease(q2)).entries) == ["a", "b"]


async def test_an_admin_connection_takes_no_lock_and_leaves_leases_alone(
    sqlite_queue: Factory,
) -> None:
    """``forwarder dlq`` beside a running daemon neither waits for the lock nor frees its leases."""
    q = await sqlite_queue()
    await q.put([item("a"), item("b")])
    leased = (await lease(q, lease_for=3600)).entries
    admin = await sqlite_queue(admin=True)
    assert (await admin.stats()).events == 2
    assert (await lease(q)).entries == []  # still leased
    await q.ack(leased)


async def test_an_admin_connection_needs_an_existing_file(tmp_path: Path) -> None:
    """The dead-letter commands never create a queue where there was none."""
    admin = SQLiteQueue(QueueConfig(path=tmp_path / "none.db"), admin=True)
    with pytest.raises(FileNotFoundError):
        await admin.open()
    assert not (tmp_path / "none.db").exists()


# --------------------------------------------------------------------------- a full disk


async def fill_disk(q: SQLiteQueue) -> None:
    """Make the database refuse to grow, as a full disk does (SQLite answers SQLITE_FULL)."""

    def cap() -> None:
        q.conn.execute("VACUUM")  # no free pages left to reuse
        pages = q.conn.execute("PRAGMA page_count").fetchone()[0]
        q.conn.execute(f"PRAGMA max_page_count={pages}")

    await q.run(cap)


async def free_disk(q: SQLiteQueue) -> None:
    await q.run(lambda: q.conn.execute("PRAGMA max_page_count=1073741823"))


async def test_a_full_disk_makes_put_unavailable(sqlite_queue: Factory, tmp_path: Path) -> None:
    """A put the disk refuses raises QueueUnavailable naming the cause, and queues nothing."""
    q = await sqlite_queue()
    await q.put([item("before", size=BIG)])
    await fill_disk(q)
    results = await asyncio.gather(
        *(q.put([item(f"c{i}", size=BIG)]) for i in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, QueueUnavailable) for r in results), results
    assert "database or disk is full" in str(results[0])
    assert q.last_error is not None
    assert "database or disk is full" in q.last_error
    assert rows(tmp_path / "queue.db") == 1
    assert (await q.stats()).events == 1
    await free_disk(q)
    await q.put([item("after", size=BIG)])
    assert q.last_error is None
    assert rows(tmp_path / "queue.db") == 2


async def test_a_failed_dead_letter_move_leaves_the_alert_queued(
    sqlite_queue: Factory, tmp_path: Path
) -> None:
    """If the dead-letter insert fails the delete is rolled back too: the alert is never lost.

    (The row moves in place, so a full database still takes a dead letter of the same size;
    an answer larger than the room the move frees makes the insert fail.)
    """
    q = await sqlite_queue()
    await q.put([item("a", size=BIG)])
    entries = (await lease(q)).entries
    await fill_disk(q)
    answer = "r" * (4 * BIG)
    with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
        await q.dead_letter(entries, reason="clientError", status=400, response=answer, error="e")
    assert (rows(tmp_path / "queue.db"), rows(tmp_path / "queue.db", "dead_letters")) == (1, 0)
    assert (await q.stats()).events == 1
    await q.dead_letter(entries, reason="clientError", status=400, response="bad", error="e")
    assert rows(tmp_path / "queue.db", "dead_letters") == 1


# --------------------------------------------------------------------------- other writers


async def replay_from_another_process(path: Path) -> int:
    """Replay every dead letter over an admin connection, as ``forwarder dlq replay`` does."""
    admin = SQLiteQueue(QueueConfig(path=path), admin=True)
    await admin.open()
    try:
        return await admin.dead_letters.replay()
    finally:
        await admin.close()


async def test_rows_replayed_by_another_process_count_against_capacity(
    sqlite_queue: Factory, tmp_path: Path
) -> None:
    """The next commit notices rows another process added, so ``max_events`` still holds."""
    q = await sqlite_queue(max_events=3)
    await q.put([item("a"), item("b")])
    await dead_letter_all(q)
    assert await replay_from_another_process(tmp_path / "queue.db") == 2
    await q.put([item("c")])
    assert (await q.stats()).events == 3
    with pytest.raises(QueueFull):
        await q.put([item("d")])
    assert rows(tmp_path / "queue.db") == 3


async def test_stats_see_rows_replayed_by_another_process_without_a_write(
    sqlite_queue: Factory, tmp_path: Path
) -> None:
    """A scrape reports alerts the CLI re-queued even when nothing was ingested or leased since."""
    q = await sqlite_queue()
    await q.put([item("a"), item("b"), item("c")])
    await dead_letter_all(q)
    assert (await q.stats()).events == 0
    await replay_from_another_process(tmp_path / "queue.db")
    stats = await q.stats()
    assert (stats.targets[TARGET].events, stats.targets[TARGET].dead_letters) == (3, 0)


# --------------------------------------------------------------------------- upgrades


async def test_a_queue_written_by_release_0_1_0_opens_and_leases_in_order(tmp_path: Path) -> None:
    """A file from before the storage contract keeps every alert, dead letter and state order."""
    path = tmp_path / "queue.db"
    shutil.copyfile(RELEASE_0_1_0, path)
    q = SQLiteQueue(QueueConfig(path=path, synchronous="normal"))
    await q.open()
    try:
        stats = await q.stats()
        assert (stats.events, stats.targets[TARGET].dead_letters) == (3, 1)
        (dead,) = await q.dead_letters.list()
        assert (dead.check, dead.reason, dead.status) == ("disk:web-2", "clientError", 400)
        first = (await lease(q)).entries
        # The older state of cpu:web-1 and mem:web-3, oldest first, app key kept; the newer
        # state of cpu:web-1 waits for the next batch (one state per identity a batch).
        assert [(e.check, e.timestamp) for e in first] == [
            ("cpu:web-1", 1_699_999_990),
            ("mem:web-3", 1_699_999_992),
        ]
        assert {e.app_key for e in first} == {"release-0.1.0-app-key"}
        assert Identity.from_key(first[0].identity) == Identity("cpu:web-1", ("web-1", "", "", ""))
        await q.ack(first)
        second = (await lease(q)).entries
        assert [(e.check, e.timestamp) for e in second] == [("cpu:web-1", 1_699_999_995)]
        await q.ack(second)
        assert (await q.stats()).events == 0
    finally:
        await q.close()


# --------------------------------------------------------------------------- opening what is there


def digest(*paths: Path) -> list[str | None]:
    """A hash of each file (None if absent): proof that opening changed nothing."""
    return [hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None for p in paths]


async def queue_with(path: Path, checks_: Sequence[str]) -> None:
    """A closed queue at ``path`` holding one alert per check."""
    q = SQLiteQueue(QueueConfig(path=path, synchronous="normal"))
    await q.open()
    await q.put([item(c) for c in checks_])
    await q.close()


async def open_error(path: Path, *, admin: bool = False) -> str:
    """The one-line QueueOpenError that opening ``path`` raises."""
    q = SQLiteQueue(QueueConfig(path=path), admin=admin)
    with pytest.raises(QueueOpenError) as caught:
        await q.open()
    assert not q.is_open
    message = str(caught.value)
    assert "\n" not in message
    return message


def crash_leaving_wal(path: Path, script: str) -> None:
    """Run ``script`` (a coroutine body using ``q``, an open queue on ``path``), then die like
    ``kill -9``: no close, so the WAL and its -shm stay behind."""
    code = (
        "import asyncio, json, os, sys\n"
        "from forwarder.config import QueueConfig\n"
        "from forwarder.model import Outgoing\n"
        "from forwarder.queue.sqlite import SQLiteQueue\n"
        "def alert(check, size=0):\n"
        "    body = {'check': check, 'host': 'web-1', 'status': 'critical',\n"
        "            'description': 'x' * size}\n"
        "    return Outgoing('bigpanda', 'app-key-1', check, json.dumps(body).encode(), 1000)\n"
        "async def main():\n"
        "    q = SQLiteQueue(QueueConfig(path=sys.argv[1], synchronous='normal'))\n"
        "    await q.open()\n"
        + textwrap.indent(textwrap.dedent(script).strip(), "    ")
        + "\n    os._exit(0)\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert Path(f"{path}-wal").stat().st_size > 0


def foreign_wal(directory: Path) -> Path:
    """Another application's WAL-mode database, left with committed, uncheckpointed frames."""
    directory.mkdir()
    other = directory / "other.db"
    code = textwrap.dedent(
        """
        import os, sqlite3, sys
        c = sqlite3.connect(sys.argv[1], isolation_level=None)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA wal_autocheckpoint=0")
        c.execute("CREATE TABLE notes (body TEXT)")
        for i in range(20):
            c.execute("INSERT INTO notes VALUES (?)", ("note %d" % i,))
        os._exit(0)
        """
    )
    subprocess.run([sys.executable, "-c", code, str(other)], check=True, timeout=60)
    return Path(f"{other}-wal")


def move_aside(wal: Path) -> None:
    """What the error tells the user to do with a stray WAL."""
    wal.rename(f"{wal}.stray")


async def alerts_in(path: Path) -> list[str]:
    q = SQLiteQueue(QueueConfig(path=path, synchronous="normal"))
    await q.open()
    try:
        return checks((await lease(q, limit=10_000)).entries)
    finally:
        await q.close()


async def test_a_foreign_wal_is_refused_and_the_queue_survives(tmp_path: Path) -> None:
    """Issue 11: another database's WAL beside queue.db is never replayed over the queue."""
    path = tmp_path / "queue.db"
    await queue_with(path, ["a", "b", "c"])
    wal = Path(f"{path}-wal")
    shutil.copyfile(foreign_wal(tmp_path / "elsewhere"), wal)
    before = digest(path, wal)
    message = await open_error(path)
    assert f"{wal} does not belong to the queue {path}" in message
    assert f"mv {wal} {wal}.stray" in message
    assert digest(path, wal) == before  # neither replayed nor checkpointed
    move_aside(wal)
    assert await alerts_in(path) == ["a", "b", "c"]


async def test_a_wal_of_another_queue_is_refused(tmp_path: Path) -> None:
    """A forwarder queue's WAL beside a different queue file (a copied directory) is refused."""
    mine, theirs = tmp_path / "mine" / "queue.db", tmp_path / "theirs" / "queue.db"
    await queue_with(mine, ["mine"])
    theirs.parent.mkdir()
    crash_leaving_wal(theirs, "await q.put([alert('theirs', 3000) for _ in range(50)])")
    shutil.copyfile(f"{theirs}-wal", f"{mine}-wal")
    message = await open_error(mine)
    assert "does not belong" in message
    move_aside(Path(f"{mine}-wal"))
    assert await alerts_in(mine) == ["mine"]


async def test_a_queue_killed_across_checkpoints_reopens_with_every_alert(tmp_path: Path) -> None:
    """Our own WAL after ``kill -9`` (several WAL generations in) is recognised and replayed."""
    path = tmp_path / "queue.db"
    await queue_with(path, ["first"])
    # 12 MiB of alerts: the queue checkpoints and starts new WAL generations on the way.
    crash_leaving_wal(
        path,
        """
        for i in range(60):
            await q.put([alert(f"c{i:02d}-{j}", 2000) for j in range(100)])
        await q.lease("bigpanda", limit=10, lease_for=3600)
        """,
    )
    got = await alerts_in(path)
    assert len(got) == 6001
    assert got[:2] == ["first", "c00-0"]


async def test_a_wal_left_beside_a_restored_backup_is_refused(tmp_path: Path) -> None:
    """Restoring queue.db from a backup but leaving the live WAL would mix two points in time."""
    path = tmp_path / "queue.db"
    await queue_with(path, ["old"])
    backup = path.read_bytes()
    crash_leaving_wal(
        path,
        """
        for i in range(30):
            await q.put([alert(f"c{i:02d}-{j}", 2000) for j in range(100)])
        """,
    )
    path.write_bytes(backup)
    assert "or this one before a restore" in await open_error(path)


async def test_an_admin_replay_beside_the_owner_keeps_the_wal_recognisable(
    tmp_path: Path,
) -> None:
    """``dlq replay`` writes into the owner's WAL generation; after ``kill -9`` all is replayed."""
    path = tmp_path / "queue.db"
    crash_leaving_wal(
        path,
        """
        await q.put([alert(f"a{j}") for j in range(20)])
        leased = await q.lease("bigpanda", limit=5, lease_for=60)
        await q.dead_letter(
            leased.entries, reason="clientError", status=400, response=None, error=None
        )
        admin = SQLiteQueue(QueueConfig(path=sys.argv[1]), admin=True)
        await admin.open()
        assert await admin.dead_letters.replay() == 5
        await admin.close()
        for i in range(20):
            await q.put([alert(f"b{i:02d}-{j}", 2000) for j in range(100)])
        """,
    )
    assert len(await alerts_in(path)) == 2020


async def test_an_unmarked_database_is_refused_untouched(tmp_path: Path) -> None:
    """A non-empty SQLite file without the queue's tables gets no tables and no changes."""
    path = tmp_path / "queue.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('keep me')")
    conn.close()
    before = digest(path)
    message = await open_error(path)
    assert message.startswith(f"queue file {path} is a SQLite database without the queue's")
    assert digest(path) == before


async def test_another_applications_database_is_refused(tmp_path: Path) -> None:
    """A file marked by another application (its application_id) is not opened at all."""
    path = tmp_path / "queue.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA application_id=1234")
        conn.execute("CREATE TABLE notes (body TEXT)")
    conn.close()
    before = digest(path)
    assert "is not a forwarder queue (application id 0x4d2)" in await open_error(path)
    assert digest(path) == before


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"SQLite format 3\x00" + b"\x10\x00", "truncated to 18 bytes"),
        (bytes(range(256)) * 32, "not a SQLite database"),
    ],
)
async def test_a_damaged_file_is_refused_and_kept(tmp_path: Path, content: bytes, why: str) -> None:
    """Garbage or a truncated header: one line naming the file and the fix; the file stays."""
    path = tmp_path / "queue.db"
    path.write_bytes(content)
    message = await open_error(path)
    assert message.startswith(f"queue file {path} is damaged ({why}): restore it from a backup")
    assert path.read_bytes() == content


async def test_a_queue_cut_short_is_refused_and_kept(tmp_path: Path) -> None:
    """A queue file truncated mid-page (a bad copy) is refused, not rebuilt."""
    path = tmp_path / "queue.db"
    await queue_with(path, ["a"])
    content = path.read_bytes()[:5000]
    path.write_bytes(content)
    assert "is damaged (truncated" in await open_error(path)
    assert path.read_bytes() == content


async def test_a_directory_in_place_of_the_queue_file(tmp_path: Path) -> None:
    """queue.path naming a directory says so and suggests a file inside it."""
    path = tmp_path / "queue.db"
    path.mkdir()
    message = await open_error(path)
    assert message == (
        f"queue file {path} is a directory: set queue.path to a file inside it,"
        f" e.g. {path / 'queue.db'}"
    )


def _open_as_nobody(path: Path) -> str:
    """Open the queue in a forked child running as ``nobody``; the error it got, or ''."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: another user, the same code
        os.close(read)
        message = ""
        try:
            os.setgid(65534)
            os.setuid(65534)
            asyncio.run(SQLiteQueue(QueueConfig(path=path)).open())
        except QueueOpenError as exc:
            message = str(exc)
        except BaseException as exc:  # a traceback is what the test is about: report it
            message = f"UNEXPECTED {exc!r}"
        os.write(write, message.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    return out


def test_a_queue_owned_by_another_user_is_one_line_with_owner_and_fix() -> None:
    """Issue 10 §3: a queue.db of another user in a writable folder: owner, user and chown."""
    if os.geteuid() != 0:
        pytest.fail(
            "needs root: the test opens the queue as another user (nobody); run the suite as"
            " root, as .ci/run does",
            pytrace=False,
        )
    directory = Path(tempfile.mkdtemp(prefix="forwarder-owner-"))
    try:
        directory.chmod(0o777)
        path = directory / "queue.db"
        asyncio.run(queue_with(path, ["a"]))
        message = _open_as_nobody(path)
        assert message == (
            f"queue file {path} is not writable by nobody (owner root, -rw-r--r--): run"
            f" forwarder as root, or give it to this user (chown nobody {path})"
        ), message
    finally:
        shutil.rmtree(directory)


async def test_the_lock_error_names_the_other_daemons_pid(
    sqlite_queue: Factory, tmp_path: Path
) -> None:
    """Issue 10 §3: the second daemon is told which process holds the queue."""
    await sqlite_queue()
    other = SQLiteQueue(QueueConfig(path=tmp_path / "queue.db"))
    with pytest.raises(QueueLocked) as caught:
        await other.open()
    assert str(caught.value) == (
        f"queue {tmp_path / 'queue.db'} is in use by another forwarder (pid {os.getpid()};"
        f" lock {tmp_path / 'queue.db.lock'})"
    )


async def test_a_new_queue_is_marked_and_an_old_one_adopted(tmp_path: Path) -> None:
    """New files carry the queue's application_id and a stamp; 0.1.0 files get them."""
    new, old = tmp_path / "new.db", tmp_path / "old.db"
    shutil.copyfile(RELEASE_0_1_0, old)
    for path in (new, old):
        q = SQLiteQueue(QueueConfig(path=path, synchronous="normal"))
        await q.open()
        await q.close()
        with sqlite3.connect(path) as conn:
            marks = [
                conn.execute(f"PRAGMA {p}").fetchone()[0]
                for p in ("application_id", "user_version")
            ]
        conn.close()
        assert marks[0] == APPLICATION_ID == 0x46575101  # "FWQ", schema 1
        assert marks[1] != 0


def test_a_queue_directory_another_user_cannot_write_is_one_line() -> None:
    """SQLite makes the file, its -wal and -shm in the directory: it must be writable too."""
    if os.geteuid() != 0:
        pytest.fail(
            "needs root: the test opens the queue as another user (nobody); run the suite as"
            " root, as .ci/run does",
            pytrace=False,
        )
    directory = Path(tempfile.mkdtemp(prefix="forwarder-dir-"))
    try:
        directory.chmod(0o755)
        path = directory / "queue.db"
        message = _open_as_nobody(path)
        assert message == (
            f"queue directory {directory} is not writable by nobody (owner root, drwxr-xr-x):"
            f" run forwarder as root, or give it to this user (chown nobody {directory})"
        ), message
        assert not path.exists()
    finally:
        shutil.rmtree(directory)
