"""The alert-state store at scale on SQLite: a million identities, disk, memory, latency.

Run from the repository root (a few minutes; records nothing)::

    python -m bench.state_scale                      # 1,000,000 identities
    python -m bench.state_scale --identities 20000   # a quick look

Puts ``--identities`` distinct identities through a real :class:`SQLiteQueue`
(``synchronous: normal``, the default state policy plus ``resolve_after``, or
with ``--resolve-after 0`` the default policy alone),
``--group`` alerts a put, each with its observation, as the state stage makes
them; a sender's lease and ack drain the queue as it goes, so what remains on
disk is the state. One identity in ten is ``ok``. Then it puts repeats of a
random sample (suppressed: some cached, most read back from the file), and
reports the file's size, the process's RSS (peak and current, against the
cache's bound) and the latency of ``list``, ``counts`` (the daemon's, kept in
memory, and an admin connection's, from the partial indexes) and ``tick``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from forwarder import jsonio
from forwarder.config import QueueConfig
from forwarder.config.schema import StateConfig
from forwarder.model import Outgoing
from forwarder.queue.sqlite import SQLiteQueue
from forwarder.state import Observation

TARGET = "bigpanda"
APP_KEY = "0123456789abcdef0123456789abcdef"
RESOLVE_AFTER = 3600.0  # the default of --resolve-after
POLICY = StateConfig(resolve_after=RESOLVE_AFTER)


class SteppedClock:
    """Wall time that moves when the bench says so (the scheduler's passes need due rows)."""

    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


def alert(n: int, ts: int) -> Outgoing:
    """Identity ``n``'s alert, about the size of a mapped Kapacitor alert (~350 bytes)."""
    status = "ok" if n % 10 == 0 else "critical"
    host = f"web-{n:07d}"
    body = {
        "check": "cpu",
        "host": host,
        "status": status,
        "timestamp": ts,
        "description": f"kapacitor.cpu.{host} is {status.upper()}",
        "primary_property": "host",
        "secondary_property": "check",
        "task": "cpu_alert",
        "level": "CRITICAL" if status != "ok" else "OK",
        "usage_user": 97.5,
        "cluster": "eu-west-1",
    }
    return Outgoing(
        TARGET, APP_KEY, f"cpu\x1f{host}", jsonio.dumps(body), ts, Observation(status, "", POLICY)
    )


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process, MiB."""
    current = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            current = int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return current, peak


def on_disk(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


async def timed(fn: Callable[[], Awaitable[Any]], repeat: int = 5) -> tuple[float, Any]:
    """Median milliseconds of ``repeat`` calls, and the last result."""
    times: list[float] = []
    result: Any = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = await fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


async def run(identities: int, group: int, directory: Path, sample: int) -> None:
    clock = SteppedClock()
    path = directory / "queue.db"
    cfg = QueueConfig(path=path, max_events=10 * group, synchronous="normal")
    q = SQLiteQueue(cfg, clock=clock)
    await q.open()
    ts = int(clock.now)
    try:
        start = time.perf_counter()
        for first in range(0, identities, group):
            batch = [alert(n, ts) for n in range(first, min(first + group, identities))]
            result = await q.put(batch)
            assert result.queued == len(batch), result
            leased = await q.lease(TARGET, limit=len(batch), lease_for=60)
            await q.ack(leased.entries)
            if first and first % (group * 40) == 0:
                cur, peak = rss_mb()
                print(f"  {first:>9,} identities  rss {cur:.0f} MiB (peak {peak:.0f})", flush=True)
        first_pass = time.perf_counter() - start
        clock.now += 60
        picks = random.Random(13).sample(range(identities), min(sample, identities))
        start = time.perf_counter()
        suppressed = 0
        for i in range(0, len(picks), group):
            result = await q.put([alert(n, ts + 60) for n in picks[i : i + group]])
            suppressed += result.suppressed_total
            if i and i % (group * 10) == 0:
                cur, peak = rss_mb()
                print(f"  {i:>9,} repeats     rss {cur:.0f} MiB (peak {peak:.0f})", flush=True)
        repeat_pass = time.perf_counter() - start
        assert suppressed == len(picks), suppressed
        size = on_disk(path)
        cur, peak = rss_mb()
        print(f"\nidentities                 {identities:,} (group {group:,} a put)")
        print(f"first pass (all new)       {identities / first_pass:,.0f} alerts/s incl. lease+ack")
        print(
            f"repeats (suppressed)       {len(picks) / repeat_pass:,.0f} alerts/s ({len(picks):,})"
        )
        print(
            f"file on disk (db + wal)    {size / 1024**2:,.0f} MiB ({size / identities:.0f} B/id)"
        )
        print(f"RSS current / peak         {cur:.0f} / {peak:.0f} MiB")
        print(f"cache rows                 {len(q.cache):,} (bound {q.cache.bound:,})")
        for name, call in (
            ("list()", lambda: q.alerts.list()),
            ("list(firing)", lambda: q.alerts.list(status="firing")),
            ("list(firing, target)", lambda: q.alerts.list(status="firing", target=TARGET)),
            ("list(ok)", lambda: q.alerts.list(status="ok")),
            ("list(flapping)", lambda: q.alerts.list(status="flapping")),
            ("counts()", lambda: q.alerts.counts()),
        ):
            ms, got = await timed(call)
            shown = len(got) if isinstance(got, list) else dict(got.open)
            print(f"{name:<26} {ms:8.1f} ms  ({shown})")
        admin = SQLiteQueue(QueueConfig(path=path), admin=True)
        await admin.open()
        try:
            ms, got = await timed(lambda: admin.alerts.counts())
            print(f"{'counts() admin (indexes)':<26} {ms:8.1f} ms  ({dict(got.open)})")
            ms, got = await timed(lambda: admin.alerts.list(status="firing"))
            print(f"{'list(firing) admin':<26} {ms:8.1f} ms  ({len(got)})")
        finally:
            await admin.close()
        ms, got = await timed(lambda: q.alerts.tick(), repeat=1)
        wait = got.next_due - clock.now
        print(f"tick() nothing due         {ms:8.1f} ms  (next_due in {wait:.0f} s)")
        clock.now += POLICY.resolve_after
        ms, got = await timed(lambda: q.alerts.tick(limit=1000), repeat=5)
        print(f"tick(limit=1000) resolving {ms:8.1f} ms  ({got.resolved}, more={got.more})")
    finally:
        await q.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--identities", type=int, default=1_000_000)
    parser.add_argument("--group", type=int, default=5_000, help="alerts a put")
    parser.add_argument("--sample", type=int, default=200_000, help="repeats put afterwards")
    parser.add_argument("--dir", type=Path, default=None, help="where the queue file goes")
    parser.add_argument(
        "--resolve-after",
        type=float,
        default=RESOLVE_AFTER,
        help="seconds (0: the default policy, whose rows keep no alert and are smaller)",
    )
    args = parser.parse_args()
    global POLICY  # the policy every alert of this run is observed with
    POLICY = StateConfig(resolve_after=args.resolve_after)
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        asyncio.run(run(args.identities, args.group, args.dir, args.sample))
        return
    with tempfile.TemporaryDirectory(prefix="state-scale-") as directory:
        asyncio.run(run(args.identities, args.group, Path(directory), args.sample))


if __name__ == "__main__":
    main()
