"""Load generators for the ingest scenarios: ``wrk`` when installed, else a Python client."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp


@dataclass
class LoadResult:
    """Throughput and latency percentiles of one load run."""

    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int = 0


def wrk_load(url: str, body: bytes, duration: float, connections: int, workdir: Path) -> LoadResult:
    """``wrk -t1 -cN -d..s --latency`` posting ``body``; one thread leaves a core to the server."""
    script = workdir / "post.lua"
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
    return LoadResult(rps, pct("50"), pct("99"), int(m.group(1)) if m else 0)


async def _py_load_async(url: str, body: bytes, duration: float, connections: int) -> LoadResult:
    latencies: list[float] = []
    bad = 0
    stop_at = time.monotonic() + duration
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal bad
            while time.monotonic() < stop_at:
                t0 = time.monotonic()
                async with session.post(url, data=body) as resp:
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
    )


def py_load(url: str, body: bytes, duration: float, connections: int, workdir: Path) -> LoadResult:
    """A Python load generator, used where ``wrk`` is not installed (smoke runs)."""
    return asyncio.run(_py_load_async(url, body, duration, connections))


def percentile(sorted_values: list[float], pct: float) -> float:
    """The ``pct`` percentile of already sorted values (nearest rank), NaN when empty."""
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(pct / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]
