"""A full disk: the ingest refuses with 503 and a JSON error, never 200, and recovers by itself;
delivery drains a full queue, also after ``kill -9`` on a full disk (issue 11).

The real path mounts a small tmpfs for the queue (we run as root in CI) and fills it with a
file, or with the queue itself. Where mounting is not permitted, the 503 story is told at the
database layer: SQLite's ``PRAGMA max_page_count`` on the daemon's own connection makes every
write that needs a new page fail with SQLITE_FULL ("database or disk is full"), exactly what a
full disk returns. The drain stories need a real file system (free space, the ballast file) and
are skipped there, saying so.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from forwarder import jsonio
from forwarder.config import QueueConfig
from forwarder.model import Outgoing, identity_key
from forwarder.queue import QueueFull
from forwarder.queue.sqlite import SQLiteQueue
from forwarder.web.keys import QUEUE
from tests.conftest import Daemon
from tests.fakes.bigpanda import FakeBigPanda
from tests.reliability.conftest import (
    Arrivals,
    check_name,
    daemon_config,
    kapacitor_alert,
)

pytestmark = pytest.mark.reliability

TMPFS_SIZE = "8m"
MAX_POSTS_UNTIL_FULL = 3_000
PREFIX = "disk"

Client = TestClient[web.Request, web.Application]


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path | None]:
    """A fresh tmpfs of ``size`` mounted at ``where``, or None where mounting is refused."""
    where.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        yield None
        return
    if done.returncode != 0:
        yield None
        return
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path | None]:
    """A fresh tmpfs of TMPFS_SIZE mounted in tmp_path, or None where mounting is refused."""
    with tmpfs(tmp_path / "tmpfs", TMPFS_SIZE) as mnt:
        yield mnt


def fill_disk(path: Path) -> int:
    """Write ``path`` until the file system has no byte left; return the bytes written."""
    written = 0
    with path.open("wb", buffering=0) as f:
        for chunk in (1 << 20, 1 << 16, 4096, 512, 1):
            block = b"\0" * chunk
            try:
                while True:
                    written += f.write(block) or 0
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return written


class Scenario:
    """Posting alerts to one ingest URL and keeping score of the answers."""

    def __init__(self, session: aiohttp.ClientSession | Client, base_url: str) -> None:
        self.session = session
        self.base_url = base_url
        self.seq = 0
        self.acked: set[str] = set()
        self.refusals: list[tuple[int, dict[str, Any], str | None]] = []

    async def post_one(self) -> int:
        """Post the next alert; remember it if acknowledged, the answer if refused."""
        seq, self.seq = self.seq, self.seq + 1
        async with self.session.post(
            f"{self.base_url}/kapacitor/disk", data=kapacitor_alert(PREFIX, seq)
        ) as resp:
            body = await resp.json(content_type=None)
            assert resp.status in (200, 503), f"alert {seq}: {resp.status} {body}"
            if resp.status == 200:
                self.acked.add(check_name(PREFIX, seq))
            else:
                self.refusals.append((resp.status, body, resp.headers.get("Retry-After")))
            return resp.status

    async def ready(self) -> tuple[int, dict[str, Any]]:
        async with self.session.get(f"{self.base_url}/-/ready") as resp:
            return resp.status, await resp.json()

    async def until_refused(self) -> int:
        """Post until the first 503; return how many were acknowledged on the way."""
        before = len(self.acked)
        for _ in range(MAX_POSTS_UNTIL_FULL):
            if await self.post_one() == 503:
                return len(self.acked) - before
        raise AssertionError(f"no 503 after {MAX_POSTS_UNTIL_FULL} alerts on a full disk")

    def check_refusal(self) -> None:
        status, body, retry_after = self.refusals[-1]
        assert status == 503
        assert "error" in body, body
        assert "full" in body["error"], body  # "queue write failed: database or disk is full"
        assert retry_after is not None
        assert retry_after.isdigit(), retry_after

    async def recover(self) -> None:
        """Once space is back: an alert is acknowledged again, then readiness returns."""
        await wait_until_async(
            self.post_one, 200, what="an alert acknowledged after space came back"
        )
        for _ in range(50):
            assert await self.post_one() == 200
        status, body = await self.ready()
        assert status == 200, body


async def wait_until_async(
    attempt: Callable[[], Awaitable[int]], want: int, *, what: str, tries: int = 200
) -> None:
    """Call ``attempt`` until it returns ``want``, a bounded number of times."""
    got: list[int] = []
    for _ in range(tries):
        got.append(await attempt())
        if got[-1] == want:
            return
    raise AssertionError(f"{what}: never {want} in {tries} tries (got {sorted(set(got))})")


async def _all_delivered(fake: FakeBigPanda, acked: set[str]) -> None:
    arrivals = Arrivals(fake)
    await fake.wait_for(lambda _: not arrivals.missing(acked), timeout=60)


async def full_disk_story(
    run: Scenario,
    fake: FakeBigPanda,
    fill: Callable[[], Awaitable[None]],
    free: Callable[[], Awaitable[None]],
) -> int:
    """Healthy, then full (503s), then space back (200s); return the alerts let in after fill."""
    for _ in range(20):
        assert await run.post_one() == 200
    await _all_delivered(fake, run.acked)
    # BigPanda goes away too, so no delivery frees space in the database meanwhile: the only
    # writes are the ingest's, and what the disk refuses stays refused.
    await fake.stop_listening()
    await fill()
    got_in = await run.until_refused()
    run.check_refusal()
    status, body = await run.ready()
    assert status == 503, body
    assert "full" in body["error"], body
    for _ in range(5):
        assert await run.post_one() == 503, "a write was acknowledged on a full disk"

    await free()
    await run.recover()
    await fake.start_listening()
    await _all_delivered(fake, run.acked)
    return got_in


# A lease whose release failed on the full disk expires after this, not after 120 s.
LEASE_TIMEOUT = "2s"


async def _database_layer_scenario(
    make_client: Callable[..., Awaitable[Client]], fake: FakeBigPanda
) -> str:
    """The story on the real app in-process, with SQLite itself refusing new pages."""
    client = await make_client(daemon_config(fake.alerts_url, lease_timeout=LEASE_TIMEOUT))
    queue = client.app[QUEUE]
    run = Scenario(client, "")
    pages = 0

    assert isinstance(queue, SQLiteQueue)

    def cap_pages() -> int:
        count = int(queue.conn.execute("PRAGMA page_count").fetchone()[0])
        queue.conn.execute(f"PRAGMA max_page_count={count}")
        return count

    async def fill() -> None:
        nonlocal pages
        pages = await queue.run(cap_pages)

    async def free() -> None:
        await queue.run(lambda: queue.conn.execute("PRAGMA max_page_count=1073741823"))

    got_in = await full_disk_story(run, fake, fill, free)
    return (
        f"database layer (max_page_count={pages}): {got_in} more acknowledged before the first"
        f" 503; {len(run.refusals)} refused; {len(run.acked)} acknowledged, all delivered"
    )


async def test_full_disk_answers_503_and_recovers(
    small_tmpfs: Path | None,
    fake_bigpanda: FakeBigPanda,
    daemon_factory: Callable[[str], Daemon],
    make_client: Callable[..., Awaitable[Client]],
) -> None:
    """On a full disk the daemon answers 503 with a JSON error (never 200); freed space heals it."""
    if small_tmpfs is None:
        print("disk: mount not permitted; ran the database-layer path instead")
        print("disk: " + await _database_layer_scenario(make_client, fake_bigpanda))
        return
    filler = small_tmpfs / "filler"
    filled = 0

    async def fill() -> None:
        nonlocal filled
        filled = fill_disk(filler)

    async def free() -> None:
        filler.unlink()

    daemon = daemon_factory(
        daemon_config(
            fake_bigpanda.alerts_url,
            queue_path=str(small_tmpfs / "queue.db"),
            lease_timeout=LEASE_TIMEOUT,
        )
    )
    daemon.start()
    try:
        await daemon.wait_ready()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            run = Scenario(session, daemon.url)
            got_in = await full_disk_story(run, fake_bigpanda, fill, free)
        assert daemon.proc is not None
        assert daemon.proc.poll() is None, daemon.log()
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            assert daemon.terminate() == 0, daemon.log()
    print(
        f"disk: real tmpfs ({TMPFS_SIZE}, filler {filled} bytes): {got_in} more acknowledged"
        f" before the first 503; {len(run.refusals)} refused; {len(run.acked)} acknowledged,"
        f" all delivered; first refusal {run.refusals[0][1]}"
    )


async def test_full_database_answers_503_and_recovers(
    fake_bigpanda: FakeBigPanda, make_client: Callable[..., Awaitable[Client]]
) -> None:
    """When SQLite reports the database full, ingest answers 503 (never 200) and later recovers."""
    print("disk: " + await _database_layer_scenario(make_client, fake_bigpanda))


# --------------------------------------------------------------------------- draining a full disk

DRAIN_TMPFS = "32m"
BIG_TAG = "t" * 500  # BigPanda keeps attributes up to 512 characters


def big_alert(seq: int) -> bytes:
    """A Kapacitor alert of about 8 KB (a long message, a dozen long tags): fills disks fast."""
    check = check_name(PREFIX, seq)
    tags = ",".join(f'"tag{i}":"{BIG_TAG}{i}"' for i in range(12))
    return (
        f'{{"id":"{check}","message":"{check} {"m" * 1900}","details":"",'
        f'"time":"2023-11-14T22:13:20Z","duration":0,"level":"CRITICAL","data":{{"series":'
        f'[{{"name":"cpu","tags":{{"host":"h{seq % 7}",{tags}}},"columns":["time","v"],'
        f'"values":[["2023-11-14T22:13:20Z",1]]}}]}}}}'
    ).encode()


class Filler:
    """Posts big alerts to a daemon, keeping the acknowledged ones."""

    def __init__(self, session: aiohttp.ClientSession, daemon: Daemon) -> None:
        self.session = session
        self.daemon = daemon
        self.seq = 0
        self.acked: set[str] = set()
        self.last_refusal: dict[str, Any] = {}

    async def post(self) -> int:
        seq, self.seq = self.seq, self.seq + 1
        async with self.session.post(
            f"{self.daemon.url}/kapacitor/disk", data=big_alert(seq)
        ) as resp:
            body = await resp.json(content_type=None)
            assert resp.status in (200, 503), f"alert {seq}: {resp.status} {body}"
            if resp.status == 200:
                self.acked.add(check_name(PREFIX, seq))
            else:
                self.last_refusal = body
            return resp.status

    async def until_refused(self, limit: int = 20_000) -> None:
        for _ in range(limit):
            if await self.post() == 503:
                return
        raise AssertionError(f"no 503 after {limit} alerts")


async def wait_listening(daemon: Daemon, timeout: float = 30.0) -> None:
    """Poll ``/-/healthy`` (readiness may rightly be 503 on a full disk) with a deadline."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            assert daemon.proc is not None
            if daemon.proc.poll() is not None:
                raise AssertionError(
                    f"daemon exited with {daemon.proc.returncode}:\n{daemon.log()}"
                )
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{daemon.url}/-/healthy") as resp:
                    if resp.status == 200:
                        return
            await wait_a_moment()
    raise AssertionError(f"daemon not listening after {timeout}s:\n{daemon.log()}")


async def wait_a_moment() -> None:
    import asyncio

    await asyncio.sleep(0.05)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


async def test_the_queue_never_takes_its_disks_last_bytes_and_drains_after_kill_9(
    tmp_path: Path,
    fake_bigpanda: FakeBigPanda,
    daemon_factory: Callable[[str], Daemon],
) -> None:
    """Issue 11: BigPanda down, queue.max_bytes beyond the volume: the queue fills its own disk.

    The ingest answers 503 while a reserve is still free, so delivery has room; after
    ``kill -9`` in that state the daemon starts, and every acknowledged alert is delivered.
    """
    with tmpfs(tmp_path / "vol", DRAIN_TMPFS) as vol:
        if vol is None:
            pytest.fail(
                "mount -t tmpfs was refused: the drain needs a real small file system; run the"
                " suite as root (or with CAP_SYS_ADMIN), as .ci/run does",
                pytrace=False,
            )
        config = daemon_config(
            fake_bigpanda.alerts_url, queue_path=str(vol / "queue.db"), lease_timeout="2s"
        ).replace("lease_timeout: 2s", "lease_timeout: 2s\n  max_bytes: 1GiB")
        daemon = daemon_factory(config)
        daemon.start()
        await daemon.wait_ready()
        assert (vol / "queue.db.ballast").exists()
        await fake_bigpanda.stop_listening()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
            run = Filler(session, daemon)
            await run.until_refused()
            assert run.last_refusal["error"].startswith("queue disk is full"), run.last_refusal
            assert len(run.acked) > 1000
            assert free_bytes(vol) > 1024**2, "the queue took the last bytes of its disk"
            daemon.kill()
            daemon.start()
            await wait_listening(daemon)
            await fake_bigpanda.start_listening()
            await _all_delivered(fake_bigpanda, run.acked)
            # Drained: the ingest takes alerts again.
            await wait_until_async(run.post, 200, what="an alert acknowledged after the drain")
        assert daemon.terminate() == 0, daemon.log()
    print(f"disk: queue filled {DRAIN_TMPFS}: {len(run.acked)} acknowledged, all delivered")


async def test_a_disk_filled_by_another_file_drains_after_kill_9(
    tmp_path: Path,
    fake_bigpanda: FakeBigPanda,
    daemon_factory: Callable[[str], Daemon],
) -> None:
    """Something else takes every last byte while alerts are queued; the daemon is killed.

    It starts on the full disk (no traceback from clearing leases), gives back its ballast,
    and delivers every acknowledged alert once BigPanda is back.
    """
    with tmpfs(tmp_path / "vol", DRAIN_TMPFS) as vol:
        if vol is None:
            pytest.fail(
                "mount -t tmpfs was refused: the drain needs a real small file system; run the"
                " suite as root (or with CAP_SYS_ADMIN), as .ci/run does",
                pytrace=False,
            )
        daemon = daemon_factory(
            daemon_config(
                fake_bigpanda.alerts_url, queue_path=str(vol / "queue.db"), lease_timeout="2s"
            )
        )
        daemon.start()
        await daemon.wait_ready()
        await fake_bigpanda.stop_listening()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
            run = Filler(session, daemon)
            for _ in range(1500):
                assert await run.post() == 200
            fill_disk(vol / "someone-elses-file")  # until ENOSPC: not a byte left
            daemon.kill()
            daemon.start()
            await wait_listening(daemon)
            await fake_bigpanda.start_listening()
            await _all_delivered(fake_bigpanda, run.acked)
        assert not (vol / "queue.db.ballast").exists()  # given back to let delivery write
        assert "Traceback" not in daemon.log()
        assert daemon.terminate() == 0, daemon.log()
    print(f"disk: filled by another file: {len(run.acked)} acknowledged, all delivered")


async def test_a_queue_shut_down_cleanly_opens_on_a_full_disk_by_giving_its_ballast_back(
    tmp_path: Path,
) -> None:
    """Another file took every byte while the daemon was stopped: opening needs room for the
    WAL, so the queue gives its ballast back, opens, and its alerts can be delivered."""
    with tmpfs(tmp_path / "vol", "8m") as vol:
        if vol is None:
            pytest.fail("mount -t tmpfs was refused; run the suite as root", pytrace=False)
        cfg = QueueConfig(path=vol / "queue.db", synchronous="normal")
        first = SQLiteQueue(cfg, reserve_bytes=1 << 20, ballast_bytes=1 << 20)
        await first.open()
        await first.put([queued_alert("full-1"), queued_alert("full-2")])
        await first.close()
        assert (vol / "queue.db.ballast").exists()
        fill_disk(vol / "filler")
        second = SQLiteQueue(cfg, reserve_bytes=1 << 20, ballast_bytes=1 << 20)
        await second.open()
        try:
            assert not (vol / "queue.db.ballast").exists()
            got = await second.lease("bigpanda", limit=10, lease_for=60)
            assert sorted(e.check for e in got.entries) == ["full-1", "full-2"]
            await second.ack(got.entries)
            assert (await second.stats()).events == 0
        finally:
            await second.close()


def queued_alert(check: str) -> Outgoing:
    payload = jsonio.dumps({"check": check, "host": "h", "status": "critical", "timestamp": 1})
    return Outgoing("bigpanda", "key", identity_key({"check": check, "host": "h"}), payload, 1)


async def test_alerts_refused_at_ingest_respect_the_free_space_reserve(tmp_path: Path) -> None:
    """Dead letters take disk too: below the reserve a put of refused alerts only is refused
    like any other, so a bad mapping in a storm cannot eat the room the queue drains with."""
    with tmpfs(tmp_path / "vol", "8m") as vol:
        if vol is None:
            pytest.fail("mount -t tmpfs was refused; run the suite as root", pytrace=False)
        with (vol / "filler").open("wb") as f:  # leave less than the reserve free
            f.write(b"\0" * (free_bytes(vol) - (512 << 10)))
        cfg = QueueConfig(path=vol / "queue.db", synchronous="normal")
        q = SQLiteQueue(cfg, reserve_bytes=1 << 20, ballast_bytes=0)
        await q.open()  # measures the disk
        try:
            with pytest.raises(QueueFull, match="queue disk is full"):
                await q.put([], [(queued_alert("bad-1"), "no_primary_property")])
            assert await q.dead_letters.list() == []
        finally:
            await q.close()
