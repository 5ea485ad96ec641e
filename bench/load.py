"""Load generators for the ingest scenarios: ``wrk`` when installed, else a Python client.

Each posts either one fixed body (the ``ingest`` scenarios) or a :class:`Mix`:
a storm of repeats from many alert identities with a few status changes, the
traffic alert-state deduplication is for (the ``state_ingest`` scenario).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp


@dataclass
class LoadResult:
    """Throughput and latency percentiles of one load run (``requests``: how many were answered)."""

    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int = 0
    requests: int = 0


# Kapacitor's alert-handler JSON, the shape of examples/kapacitor-alert-critical.json, with
# the parts a Mix varies. The same text is the Lua format string of wrk_load (%d, %s).
_MIX_TEMPLATE = (
    '{"id":"cpu.host-%d","message":"cpu.host-%d is %s","details":"","time":"%s",'
    '"duration":0,"level":"%s","data":{"series":[{"name":"cpu","tags":{"host":"host-%d"},'
    '"columns":["time","count"],"values":[["%s",%d]]}]},"previousLevel":"CRITICAL",'
    '"recoverable":true}'
)
_MIX_BASE = 1_767_225_600  # 2026-01-01T00:00:00Z, the first round's event time


@dataclass(frozen=True)
class Mix:
    """Request ``n`` is identity ``n % identities``'s alert of round ``n // identities``.

    Like a Kapacitor task without ``.stateChangesOnly()`` checking ``identities``
    hosts every minute: each round's event time is a minute after the last
    one's, every alert's ``count`` field differs from its previous one (an
    attribute, not compared by default), and each identity is ``WARNING`` one
    round in ``change_every`` and ``CRITICAL`` otherwise, so about 2 of every
    ``change_every`` repeats are status changes. With deduplication on, the
    first round and those changes are queued and the rest suppressed.
    """

    identities: int = 1000
    change_every: int = 20

    def body(self, n: int) -> bytes:
        """The body of request number ``n`` (from 0), as the Lua script of :func:`wrk_load`."""
        i, r = n % self.identities, n // self.identities
        level = "WARNING" if (i + r) % self.change_every == 0 else "CRITICAL"
        ts = datetime.fromtimestamp(_MIX_BASE + 60 * r, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return (_MIX_TEMPLATE % (i, i, level, ts, level, i, ts, n % 100)).encode()

    def lua(self) -> str:
        """A wrk script posting the sequence of :meth:`body` (one wrk thread, one counter).

        wrk builds one request at start-up that it does not send, so the
        posts are ``body(1)``, ``body(2)``, ...: the same storm.
        """
        return (
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f"local template = {json.dumps(_MIX_TEMPLATE)}\n"
            "local n = 0\n"
            "request = function()\n"
            f"  local i, r = n % {self.identities}, math.floor(n / {self.identities})\n"
            f'  local level = ((i + r) % {self.change_every} == 0) and "WARNING" or "CRITICAL"\n'
            f'  local ts = os.date("!%Y-%m-%dT%H:%M:%SZ", {_MIX_BASE} + 60 * r)\n'
            "  local body = string.format(template, i, i, level, ts, level, i, ts, n % 100)\n"
            "  n = n + 1\n"
            "  return wrk.format(nil, nil, nil, body)\n"
            "end\n"
        )


Body = bytes | Mix
"""What a load run posts: one body every time, or a :class:`Mix`."""


def wrk_load(url: str, body: Body, duration: float, connections: int, workdir: Path) -> LoadResult:
    """``wrk -t1 -cN -d..s --latency`` posting ``body``; one thread leaves a core to the server."""
    script = workdir / "post.lua"
    if isinstance(body, Mix):
        script.write_text(body.lua())
    else:
        script.write_text(
            'wrk.method = "POST"\n'
            f"wrk.body = {json.dumps(body.decode())}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, int(duration))}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 60,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        if m is None:
            return float("nan")
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
        return float(m.group(1)) * scale

    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    n = re.search(r"(\d+) requests in", out)
    return LoadResult(
        rps, pct("50"), pct("99"), int(m.group(1)) if m else 0, int(n.group(1)) if n else 0
    )


async def _py_load_async(url: str, body: Body, duration: float, connections: int) -> LoadResult:
    latencies: list[float] = []
    bad = 0
    sent = 0
    stop_at = time.monotonic() + duration
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal bad, sent
            while time.monotonic() < stop_at:
                data = body.body(sent) if isinstance(body, Mix) else body
                sent += 1
                t0 = time.monotonic()
                headers = {"Content-Type": "application/json"}
                async with session.post(url, data=data, headers=headers) as resp:
                    await resp.read()
                    if resp.status >= 300:
                        bad += 1
                latencies.append(time.monotonic() - t0)

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.monotonic() - started
    latencies.sort()
    return LoadResult(
        len(latencies) / elapsed,
        percentile(latencies, 50) * 1000,
        percentile(latencies, 99) * 1000,
        bad,
        len(latencies),
    )


def py_load(url: str, body: Body, duration: float, connections: int, workdir: Path) -> LoadResult:
    """A Python load generator, used where ``wrk`` is not installed (smoke runs)."""
    return asyncio.run(_py_load_async(url, body, duration, connections))


def percentile(sorted_values: list[float], pct: float) -> float:
    """The ``pct`` percentile of already sorted values (nearest rank), NaN when empty."""
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(pct / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]
