"""Helpers of the reliability suite: daemon configs, alert bodies, arrival bookkeeping, /proc.

Everything here is real: the daemon is ``forwarder run`` in a subprocess (see
:class:`tests.conftest.Daemon`), BigPanda is :class:`tests.fakes.bigpanda.FakeBigPanda` on
loopback, and process figures are read from ``/proc``.
"""

from __future__ import annotations

import asyncio
import os
import textwrap
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from tests.conftest import APP_KEY, TOKEN
from tests.fakes.bigpanda import FakeBigPanda

# Alert times ascend with the sequence number, so "sorted by timestamp inside a batch"
# and "oldest first" agree on what "older" means.
BASE_TS = 1_700_000_000


def daemon_config(
    url: str,
    *,
    queue_path: str = "queue.db",
    synchronous: str = "full",
    max_in_flight: int = 8,
    max_alerts: int = 100,
    linger: str = "50ms",
    retry_initial: str = "50ms",
    retry_max: str = "1s",
    timeout: str = "2s",
    max_body_bytes: str = "1MiB",
    lease_timeout: str = "120s",
) -> str:
    """A daemon config sending to a fake BigPanda at ``url`` (v2 alerts API, test secrets)."""
    return textwrap.dedent(
        f"""
        server:
          listen: 127.0.0.1:0
          shutdown_timeout: 2s
          max_body_bytes: {max_body_bytes}
        queue:
          path: {queue_path}
          synchronous: {synchronous}
          lease_timeout: {lease_timeout}
        batch:
          max_alerts: {max_alerts}
          linger: {linger}
        retry:
          initial: {retry_initial}
          max: {retry_max}
        targets:
          bigpanda:
            kind: alerts_v2
            url: {url}
            token: {TOKEN}
            app_key: {APP_KEY}
            rate_limit: 10000
            burst: 10000
            max_in_flight: {max_in_flight}
            timeout: {timeout}
            connect_timeout: 1s
        routes:
          - name: default
            target: bigpanda
        """
    )


DRY_RUN_CONFIG = """
server:
  listen: 127.0.0.1:0
  shutdown_timeout: 2s
queue:
  path: queue.db
  synchronous: normal
batch:
  max_alerts: 1000
  linger: 200ms
targets:
  bigpanda:
    kind: log
routes:
  - name: default
    target: bigpanda
"""


def check_name(prefix: str, seq: int) -> str:
    """The alert ID (BigPanda ``check``) of alert number ``seq`` of a run."""
    return f"{prefix}-{seq:06d}"


def seq_of(check: str) -> int:
    """The sequence number back from a ``check`` made by :func:`check_name`."""
    return int(check.rsplit("-", 1)[1])


def kapacitor_alert(prefix: str, seq: int, *, level: str = "CRITICAL") -> bytes:
    """Kapacitor's alert-handler JSON for alert number ``seq``; distinct ``check`` per seq."""
    ts = datetime.fromtimestamp(BASE_TS + seq, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    check = check_name(prefix, seq)
    return (
        f'{{"id":"{check}","message":"{check} is {level}","details":"","time":"{ts}",'
        f'"duration":0,"level":"{level}","data":{{"series":[{{"name":"cpu",'
        f'"tags":{{"host":"host-{seq % 97}"}},"columns":["time","usage"],'
        f'"values":[["{ts}",{seq % 100}]]}}]}},"previousLevel":"OK","recoverable":true}}'
    ).encode()


class Arrivals:
    """What a fake BigPanda has accepted so far, read incrementally (cheap to poll often)."""

    def __init__(self, fake: FakeBigPanda) -> None:
        self._fake = fake
        self._next = 0
        self.count: Counter[str] = Counter()
        self.first: list[str] = []  # each check once, in order of first arrival

    def update(self) -> None:
        received = self._fake.received
        for r in received[self._next :]:
            check = str(r.alert.get("check", ""))
            if check not in self.count:
                self.first.append(check)
            self.count[check] += 1
        self._next = len(received)

    @property
    def unique(self) -> int:
        return len(self.count)

    @property
    def total(self) -> int:
        return self.count.total()

    @property
    def duplicates(self) -> int:
        """Deliveries beyond the first of each alert."""
        return self.total - self.unique

    def missing(self, expected: set[str]) -> set[str]:
        self.update()
        return {c for c in expected if c not in self.count}


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str] | None = None,
) -> int | None:
    """POST ``body``; the status, or None when the daemon gave no answer (dead, reset)."""
    try:
        async with session.post(url, data=body, headers=headers) as resp:
            await resp.read()
            return resp.status
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None


async def wait_until(
    predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout}s: {what}")
        await asyncio.sleep(interval)


async def poll(
    predicate: Callable[[], Awaitable[bool]], *, timeout: float, what: str, interval: float = 0.2
) -> None:
    """Like :func:`wait_until` for a predicate that must await (an HTTP request, say)."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout}s: {what}")
        await asyncio.sleep(interval)


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` (all its threads), from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # After "pid (comm) ", field 3 (state) is fields[0]; utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid``, from /proc/<pid>/status (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")
