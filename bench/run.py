"""Benchmark harness: ingest ceiling ratio, end-to-end, light load, memory, cold start.

Run from the repository root::

    python -m bench.run              # full run (about 5 minutes), appends to bench/results.md
    python -m bench.run --smoke      # a few seconds, records nothing (part of the test suite)

Everything runs on 127.0.0.1 and is started and stopped by the harness: the
daemon (``forwarder run``) as a subprocess with a durable queue
(``synchronous: full``), a fake BigPanda subprocess, and the bare-aiohttp
ceiling app. Every figure is measured ``--repeat`` times (default 3) and the
median is reported, because absolute numbers on a shared 2-core machine are
noisy; judge by the same-run ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results.md"
PAYLOAD = REPO / "examples" / "kapacitor-alert-critical.json"
TOKEN = "bench-token"
APP_KEY = "bench-app-key"


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _python() -> str:
    return sys.executable


@contextmanager
def process(
    args: list[str], *, ready: str, log: Path, timeout: float = 30.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a subprocess, wait for ``ready`` on its stdout, and stop it (SIGTERM) on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=out, cwd=REPO)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise RuntimeError(f"{args[:4]} exited early; see {log}")
        if ready.encode() in line:
            break
    else:
        proc.kill()
        raise RuntimeError(f"{args[:4]} not ready in {timeout}s; see {log}")
    try:
        yield proc
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def fake_bigpanda(workdir: Path, *, latency: float = 0.0) -> Iterator[str]:
    """A fake BigPanda subprocess; yields its base URL."""
    port = free_port()
    args = [
        _python(),
        "-m",
        "tests.fakes.bigpanda",
        "--port",
        str(port),
        "--token",
        TOKEN,
        "--app-key",
        APP_KEY,
        "--latency",
        str(latency),
    ]
    with process(args, ready="READY", log=workdir / f"fake-{port}.log"):
        yield f"http://127.0.0.1:{port}"


def daemon_config(
    workdir: Path,
    port: int,
    target_url: str,
    *,
    rate_limit: float = 2.5,
    burst: int = 5,
    linger: str = "500ms",
    retry_initial: str = "1s",
) -> Path:
    """Write a daemon config: durable queue (synchronous full), one alerts_v2 target."""
    path = workdir / f"forwarder-{port}.yaml"
    path.write_text(
        f"""
server:
  listen: 127.0.0.1:{port}
  max_body_bytes: 16MiB
queue:
  path: {workdir}/queue-{port}.db
  synchronous: full
  max_events: 2000000
  max_bytes: 4GiB
batch:
  max_alerts: 100
  linger: {linger}
retry:
  initial: {retry_initial}
  max: 30s
targets:
  bigpanda:
    kind: alerts_v2
    url: {target_url}/data/v2/alerts
    token: {TOKEN}
    app_key: {APP_KEY}
    rate_limit: {rate_limit}
    burst: {burst}
    max_in_flight: 4
log:
  level: warning
"""
    )
    return path


@dataclass
class Daemon:
    """A running ``forwarder run`` subprocess."""

    proc: subprocess.Popen[bytes]
    url: str
    started: float
    ready_after: float

    def rss_mb(self) -> float:
        """Resident set size from /proc, in MiB."""
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        m = re.search(r"VmRSS:\s+(\d+) kB", text)
        return int(m.group(1)) / 1024 if m else float("nan")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError("daemon not ready in time")


@contextmanager
def daemon(config: Path, port: int, log: Path) -> Iterator[Daemon]:
    """Start the daemon, wait until ``/-/ready`` answers 200, stop it with SIGTERM."""
    with log.open("ab") as out:
        started = time.monotonic()
        proc = subprocess.Popen(
            [_python(), "-m", "forwarder", "run", "--config", str(config), "--log-format", "json"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc)
        yield Daemon(proc, url, started, time.monotonic() - started)
    finally:
        _stop(proc)


# --------------------------------------------------------------------------- load


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
        _percentile(latencies, 50) * 1000,
        _percentile(latencies, 99) * 1000,
        bad,
    )


def py_load(url: str, body: bytes, duration: float, connections: int, workdir: Path) -> LoadResult:
    """A Python load generator, used where ``wrk`` is not installed (smoke runs)."""
    return asyncio.run(_py_load_async(url, body, duration, connections))


def _percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(pct / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def alert_body(alert_id: str, *, when: str = "2026-01-01T00:00:00Z") -> bytes:
    """A real Kapacitor alert body (the shipped sample) with its own ID."""
    doc = json.loads(PAYLOAD.read_bytes())
    doc["id"] = alert_id
    doc["time"] = when
    return json.dumps(doc, separators=(",", ":")).encode()


async def post_alerts(
    url: str, ids: list[str], *, concurrency: int = 32, rate: float | None = None
) -> dict[str, float]:
    """Post one alert per id; return each id's send time (``time.monotonic()``).

    With ``rate`` the alerts are spread evenly at that many per second.
    """
    sent: dict[str, float] = {}
    queue: asyncio.Queue[str] = asyncio.Queue()
    for i in ids:
        queue.put_nowait(i)
    start = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:

        async def worker() -> None:
            while not queue.empty():
                alert_id = queue.get_nowait()
                if rate is not None:
                    due = start + int(alert_id.rsplit("-", 1)[1]) / rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                body = alert_body(alert_id)
                t0 = time.monotonic()
                async with s.post(f"{url}/kapacitor/bench", data=body) as resp:
                    await resp.read()
                    if resp.status == 200:
                        sent[alert_id] = t0

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sent


async def fetch_json(url: str) -> Any:
    """GET a JSON document."""
    async with aiohttp.ClientSession() as s, s.get(url) as resp:
        return await resp.json()


async def wait_delivered(fake_url: str, n: int, timeout: float) -> dict[str, Any]:
    """Poll the fake's stats until ``n`` unique alerts arrived (or the deadline passes)."""
    deadline = time.monotonic() + timeout
    stats: dict[str, Any] = {}
    while time.monotonic() < deadline:
        stats = await fetch_json(f"{fake_url}/_fake/stats")
        if stats["unique"] >= n:
            break
        await asyncio.sleep(0.2)
    return dict(await fetch_json(f"{fake_url}/_fake/stats?times=1"))


def latencies_ms(sent: dict[str, float], arrivals: list[list[Any]]) -> list[float]:
    """Ingest (send) to first arrival at the fake, per alert, in ms, sorted."""
    first: dict[str, float] = {}
    for check, at in arrivals:
        if check in sent and check not in first:
            first[check] = float(at)
    return sorted((first[c] - sent[c]) * 1000 for c in first)


async def scrape(url: str) -> str:
    """The daemon's /metrics text."""
    async with aiohttp.ClientSession() as s, s.get(f"{url}/metrics") as resp:
        return await resp.text()


def histogram_buckets(metrics_text: str, name: str) -> list[tuple[str, float]]:
    """``(le, cumulative count)`` pairs of a label-less histogram."""
    out = []
    for m in re.finditer(
        rf'^{name}_bucket{{le="([^"]+)"}} ([\d.e+]+)$', metrics_text, re.MULTILINE
    ):
        out.append((m.group(1), float(m.group(2))))
    return out


# --------------------------------------------------------------------------- scenarios


@dataclass
class Settings:
    """How long and how often to measure."""

    repeat: int
    duration: float
    connections: int
    e2e_alerts: int
    light_seconds: float
    light_rate: float
    memory_alerts: int
    load: Callable[[str, bytes, float, int, Path], LoadResult]
    load_tool: str


@dataclass
class Figures:
    """Every figure of one harness run."""

    values: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


def scenario_ingest(s: Settings, work: Path, fig: Figures) -> None:
    """Ingest alerts/s with the durable queue vs. the bare aiohttp ceiling, same run."""
    body = PAYLOAD.read_bytes()
    fwd: list[LoadResult] = []
    ceil: list[LoadResult] = []
    with fake_bigpanda(work) as fake:
        for rep in range(s.repeat):
            cport = free_port()
            with process(
                [_python(), "-m", "bench.ceiling", "--port", str(cport)],
                ready="READY",
                log=work / f"ceiling-{rep}.log",
            ):
                ceil.append(
                    s.load(
                        f"http://127.0.0.1:{cport}/kapacitor", body, s.duration, s.connections, work
                    )
                )
            port = free_port()
            cfg = daemon_config(work, port, fake)
            with daemon(cfg, port, work / f"ingest-{rep}.log") as d:
                # The same path as the ceiling, as the issue defines the scenario.
                fwd.append(s.load(f"{d.url}/kapacitor", body, s.duration, s.connections, work))
    med = statistics.median
    fig.values.update(
        ingest_fwd_rps=med(r.rps for r in fwd),
        ingest_fwd_p50_ms=med(r.p50_ms for r in fwd),
        ingest_fwd_p99_ms=med(r.p99_ms for r in fwd),
        ingest_ceiling_rps=med(r.rps for r in ceil),
        ingest_ceiling_p50_ms=med(r.p50_ms for r in ceil),
        ingest_ceiling_p99_ms=med(r.p99_ms for r in ceil),
        ingest_ratio=med(f.rps / c.rps for f, c in zip(fwd, ceil, strict=True)),
        ingest_non_2xx=float(sum(r.non_2xx for r in fwd)),
    )
    fig.notes["ingest_runs"] = ", ".join(
        f"{f.rps:.0f}/{c.rps:.0f}" for f, c in zip(fwd, ceil, strict=True)
    )


def scenario_e2e(s: Settings, work: Path, fig: Figures) -> None:
    """N alerts as fast as possible, delivered to a fake with 20 ms latency."""
    rates, p50s, p99s, means = [], [], [], []
    dist = ""
    for rep in range(s.repeat):
        with fake_bigpanda(work, latency=0.020) as fake:
            port = free_port()
            # The default rate limit (2.5 requests/s) protects BigPanda's quota; here
            # it is lifted to measure the forwarder's own pipeline.
            cfg = daemon_config(work, port, fake, rate_limit=1000, burst=100)
            with daemon(cfg, port, work / f"e2e-{rep}.log") as d:
                ids = [f"e2e{rep}-{i}" for i in range(s.e2e_alerts)]
                t0 = time.monotonic()
                sent = asyncio.run(post_alerts(d.url, ids))
                stats = asyncio.run(wait_delivered(fake, len(sent), timeout=300))
                arrivals = stats.get("arrivals", [])
                last = max((float(a[1]) for a in arrivals), default=t0)
                lat = latencies_ms(sent, arrivals)
                rates.append(len(lat) / max(1e-9, last - t0))
                p50s.append(_percentile(lat, 50))
                p99s.append(_percentile(lat, 99))
                text = asyncio.run(scrape(d.url))
                count = _metric(text, "forwarder_batch_size_alerts_count")
                total = _metric(text, "forwarder_batch_size_alerts_sum")
                means.append(total / count if count else float("nan"))
                buckets = histogram_buckets(text, "forwarder_batch_size_alerts")
                prev = 0.0
                parts = []
                for le, cum in buckets:
                    if cum - prev:
                        parts.append(f"≤{le}: {cum - prev:.0f}")
                    prev = cum
                dist = ", ".join(parts)
                if len(lat) < len(sent):
                    fig.notes["e2e_missing"] = f"{len(sent) - len(lat)} not delivered in time"
    med = statistics.median
    fig.values.update(
        e2e_delivered_per_s=med(rates),
        e2e_p50_ms=med(p50s),
        e2e_p99_ms=med(p99s),
        e2e_batch_mean=med(means),
    )
    fig.notes["e2e_batch_sizes"] = dist


def scenario_light(s: Settings, work: Path, fig: Figures) -> None:
    """At a light, steady rate: ingest→delivery latency with the shipped batching defaults."""
    p50s, p99s = [], []
    for rep in range(s.repeat):
        with fake_bigpanda(work) as fake:
            port = free_port()
            cfg = daemon_config(work, port, fake)  # shipped defaults: 500 ms linger, 2.5 req/s
            with daemon(cfg, port, work / f"light-{rep}.log") as d:
                n = int(s.light_rate * s.light_seconds)
                ids = [f"light{rep}-{i}" for i in range(n)]
                sent = asyncio.run(post_alerts(d.url, ids, concurrency=8, rate=s.light_rate))
                stats = asyncio.run(wait_delivered(fake, len(sent), timeout=60))
                lat = latencies_ms(sent, stats.get("arrivals", []))
                p50s.append(_percentile(lat, 50))
                p99s.append(_percentile(lat, 99))
    fig.values.update(light_p50_ms=statistics.median(p50s), light_p99_ms=statistics.median(p99s))


def _rows_body(start: int, rows: int) -> bytes:
    values = [["2026-01-01T00:00:00Z", "CRITICAL", f"mem-{start + i}", 97.5] for i in range(rows)]
    doc = {
        "series": [
            {
                "name": "cpu",
                "tags": {"host": "serverA"},
                "columns": ["time", "level", "id", "value"],
                "values": values,
            }
        ]
    }
    return json.dumps(doc, separators=(",", ":")).encode()


async def _fill(url: str, total: int, per_request: int = 500) -> int:
    accepted = 0
    async with aiohttp.ClientSession() as s:
        sem = asyncio.Semaphore(8)

        async def one(start: int) -> None:
            nonlocal accepted
            async with (
                sem,
                s.post(f"{url}/kapacitor/mem", data=_rows_body(start, per_request)) as r,
            ):
                body = await r.json()
                if r.status == 200:
                    accepted += int(body["accepted"])

        await asyncio.gather(*(one(i) for i in range(0, total, per_request)))
    return accepted


def scenario_memory(s: Settings, work: Path, fig: Figures) -> None:
    """RSS idle, and with many alerts queued while the target is down (connection refused)."""
    idle, full, peak = [], [], []
    for rep in range(s.repeat):
        port = free_port()
        down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        cfg = daemon_config(work, port, down)
        with daemon(cfg, port, work / f"memory-{rep}.log") as d:
            time.sleep(1.0)  # measurement: let start-up allocations settle
            idle.append(d.rss_mb())
            samples: list[float] = []

            async def fill_and_sample(d: Daemon = d, samples: list[float] = samples) -> int:
                task = asyncio.create_task(_fill(d.url, s.memory_alerts))
                while not task.done():
                    samples.append(d.rss_mb())
                    await asyncio.sleep(0.25)
                return await task

            accepted = asyncio.run(fill_and_sample())
            cpu0 = d.cpu_seconds()
            time.sleep(3.0)  # measurement window with the target down
            cpu_pct = (d.cpu_seconds() - cpu0) / 3.0 * 100
            full.append(d.rss_mb())
            peak.append(max([*samples, full[-1]]))
            fig.notes["memory_queued"] = f"{accepted} alerts queued, target down"
            fig.values["outage_cpu_pct"] = cpu_pct
    med = statistics.median
    fig.values.update(rss_idle_mb=med(idle), rss_queued_mb=med(full), rss_peak_mb=med(peak))


def scenario_cold_start(s: Settings, work: Path, fig: Figures) -> None:
    """Process start to the first 200 from ``/-/ready``."""
    times = []
    with fake_bigpanda(work) as fake:
        for rep in range(s.repeat):
            port = free_port()
            cfg = daemon_config(work, port, fake)
            with daemon(cfg, port, work / f"cold-{rep}.log") as d:
                times.append(d.ready_after * 1000)
    fig.values["cold_start_ms"] = statistics.median(times)


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{name} ([\d.e+-]+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


# --------------------------------------------------------------------------- report

COLUMNS = [
    ("ingest_fwd_rps", "ingest forwarder alerts/s", "{:.0f}"),
    ("ingest_fwd_p50_ms", "  p50 ms", "{:.2f}"),
    ("ingest_fwd_p99_ms", "  p99 ms", "{:.2f}"),
    ("ingest_ceiling_rps", "ingest ceiling req/s", "{:.0f}"),
    ("ingest_ceiling_p50_ms", "  p50 ms", "{:.2f}"),
    ("ingest_ceiling_p99_ms", "  p99 ms", "{:.2f}"),
    ("ingest_ratio", "ratio forwarder/ceiling", "{:.2f}"),
    ("e2e_delivered_per_s", "end-to-end delivered alerts/s", "{:.0f}"),
    ("e2e_p50_ms", "  ingest→delivery p50 ms", "{:.0f}"),
    ("e2e_p99_ms", "  ingest→delivery p99 ms", "{:.0f}"),
    ("e2e_batch_mean", "  mean batch size", "{:.1f}"),
    ("light_p50_ms", "light load ingest→delivery p50 ms", "{:.0f}"),
    ("light_p99_ms", "  p99 ms", "{:.0f}"),
    ("rss_idle_mb", "RSS idle MiB", "{:.1f}"),
    ("rss_queued_mb", "RSS with alerts queued, target down MiB", "{:.1f}"),
    ("rss_peak_mb", "  peak while filling MiB", "{:.1f}"),
    ("outage_cpu_pct", "CPU while target down %", "{:.1f}"),
    ("cold_start_ms", "cold start to /-/ready ms", "{:.0f}"),
]


def print_table(fig: Figures, s: Settings) -> None:
    """The figures as an aligned table on stdout."""
    print(f"\nforwarder benchmark (median of {s.repeat}; load tool: {s.load_tool})")
    for key, label, fmt in COLUMNS:
        if key in fig.values:
            print(f"  {label:<44} {fmt.format(fig.values[key]):>10}")
    for key, note in fig.notes.items():
        print(f"  {key}: {note}")


def append_results(fig: Figures, s: Settings, results: Path = RESULTS) -> None:
    """Append one dated row (and its notes) to ``results`` (bench/results.md)."""
    commit = (
        subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
        ).stdout.strip()
        or "unknown"
    )
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        cwd=REPO,
    ).stdout.split("\n")
    if any(line.strip() and not line.endswith("bench/results.md") for line in changed):
        commit += "+dirty"  # the measured code is not exactly that commit
    header = "| date | commit | " + " | ".join(label.strip() for _, label, _ in COLUMNS) + " |"
    if not results.exists():
        results.write_text(
            "# Benchmark results\n\nAppended by `python -m bench.run`; each figure is the median of"
            " the run's repeats. Machine: see the row's notes.\n\n"
            + header
            + "\n|"
            + "---|" * (len(COLUMNS) + 2)
            + "\n"
        )
    cells = [fmt.format(fig.values[k]) if k in fig.values else "-" for k, _, fmt in COLUMNS]
    row = f"| {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} | {commit} | " + " | ".join(cells) + " |"
    lines = results.read_text().rstrip("\n").split("\n")
    # Keep the results table contiguous: insert the row after its last row (other
    # sections of the file may hold tables of their own).
    last = next(i for i, line in enumerate(lines) if line.startswith("| date | commit |"))
    while last + 1 < len(lines) and lines[last + 1].startswith("|"):
        last += 1
    note = (
        f"<!-- {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} {commit}: repeat={s.repeat}, "
        f"load={s.load_tool}, cpus={os.cpu_count()}, "
        + "; ".join(f"{k}: {v}" for k, v in fig.notes.items())
        + " -->"
    )
    lines.insert(last + 1, row)
    lines.append(note)
    results.write_text("\n".join(lines) + "\n")


SCENARIOS: dict[str, Callable[[Settings, Path, Figures], None]] = {
    "ingest": scenario_ingest,
    "e2e": scenario_e2e,
    "light": scenario_light,
    "memory": scenario_memory,
    "cold": scenario_cold_start,
}


def smoke_settings(tool: str) -> Settings:
    """The few-second sizes of ``--smoke`` (the test suite's run of the harness)."""
    return Settings(
        repeat=1,
        duration=1.0,
        connections=8,
        e2e_alerts=300,
        light_seconds=1.0,
        light_rate=20,
        memory_alerts=2000,
        load=py_load if tool == "python" else wrk_load,
        load_tool=tool,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the selected scenarios, print the table, and record the run."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds, no record")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per ingest load run")
    parser.add_argument("--only", help="comma-separated: " + ",".join(SCENARIOS))
    parser.add_argument("--no-record", action="store_true", help="do not append to results.md")
    parser.add_argument("--load-tool", choices=["wrk", "python"], help="default: wrk if installed")
    args = parser.parse_args(argv)

    tool = args.load_tool or ("wrk" if shutil.which("wrk") else "python")
    if tool == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not installed (Debian: apt-get install wrk)")
    if args.smoke:
        s = smoke_settings(tool)
    else:
        s = Settings(
            repeat=args.repeat,
            duration=args.duration,
            connections=32,
            e2e_alerts=50_000,
            light_seconds=10.0,
            light_rate=50,
            memory_alerts=200_000,
            load=wrk_load if tool == "wrk" else py_load,
            load_tool=tool,
        )
    chosen = args.only.split(",") if args.only else list(SCENARIOS)
    fig = Figures()
    with tempfile.TemporaryDirectory(prefix="forwarder-bench-") as tmp:
        work = Path(tmp)
        for name in chosen:
            started = time.monotonic()
            print(f"running {name} ...", file=sys.stderr, flush=True)
            SCENARIOS[name](s, work, fig)
            print(f"  {name} took {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
    print_table(fig, s)
    if not args.smoke and not args.no_record:
        append_results(fig, s)
        print(f"\nrecorded in {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
