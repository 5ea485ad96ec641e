"""The benchmark harness's parts: subprocesses, the daemon, the fake BigPanda, alerts, metrics.

Everything runs on 127.0.0.1 and is started and stopped here: the daemon
(``forwarder run``) as a subprocess with a durable queue, a fake BigPanda
subprocess. The scenarios (:mod:`bench.scenarios`, :mod:`bench.postgres`)
combine them; :mod:`bench.run` is the command.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


def python() -> str:
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
        python(),
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
    queue_dsn: str | None = None,
    state: str = "",
) -> Path:
    """Write a daemon config: durable queue, one alerts_v2 target.

    The queue is a SQLite file with ``synchronous: full``, or with
    ``queue_dsn`` the PostgreSQL database it names (whose server decides
    durability: the bench's runs with ``synchronous_commit=on``). ``state``
    is the body of the ``state`` section, one ``key: value`` a line (empty:
    the defaults, deduplication on).
    """
    path = workdir / f"forwarder-{port}.yaml"
    if queue_dsn is None:
        store = f"  path: {workdir}/queue-{port}.db\n  synchronous: full"
    else:
        store = f"  backend: postgres\n  dsn: {json.dumps(queue_dsn)}"
    path.write_text(
        f"""
server:
  listen: 127.0.0.1:{port}
  max_body_bytes: 16MiB
queue:
{store}
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
        + ("state:\n" + "".join(f"  {line}\n" for line in state.splitlines()) if state else "")
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
def daemon(config: Path, port: int, log: Path, *, tree: Path = REPO) -> Iterator[Daemon]:
    """Start the daemon, wait until ``/-/ready`` answers 200, stop it with SIGTERM.

    ``tree`` is the source tree it runs from (``python -m forwarder`` in that
    directory imports its ``forwarder`` package first): another checkout, for A/B runs.
    """
    with log.open("ab") as out:
        started = time.monotonic()
        proc = subprocess.Popen(
            [python(), "-m", "forwarder", "run", "--config", str(config), "--log-format", "json"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tree,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc)
        yield Daemon(proc, url, started, time.monotonic() - started)
    finally:
        _stop(proc)


# --------------------------------------------------------------------------- alerts and metrics


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


def metric(text: str, name: str) -> float:
    """The value of a label-less metric in /metrics text (0 when absent)."""
    m = re.search(rf"^{name} ([\d.e+-]+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


def labelled_sum(text: str, name: str) -> float:
    """The sum of a metric over all its label sets in /metrics text (0 when absent)."""
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{")
    )
