"""Slow and oversized requests: they are refused or tolerated, and never starve other clients.

The limits in force are those of the real daemon (``forwarder run``): the body limit is
``server.max_body_bytes``, on the wire and once inflated (gzip, deflate); a body must arrive
within ``forwarder.web.body.BODY_READ_TIMEOUT`` (30 s) of its headers, or the answer is
408 and the connection is closed (``tests/web/test_body.py`` drives that deadline short);
the request line, header lines and header count are aiohttp's parser limits (8190 bytes,
8190 bytes, 128 headers); an idle connection is closed by aiohttp's keep-alive timer
(``keepalive_timeout``), which also bounds a connection that never finishes its headers.
There is no separate header-read timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import time
from collections.abc import Callable

import aiohttp
import pytest

from tests.conftest import Daemon
from tests.reliability.conftest import DRY_RUN_CONFIG, kapacitor_alert

pytestmark = pytest.mark.reliability

MAX_BODY = 65_536
SLOW_CONNECTIONS = 200
SLOW_SECONDS = 4.0  # how long the slow clients drip bytes while a normal client works
NORMAL_REQUESTS = 30
LIMITS_CONFIG = DRY_RUN_CONFIG.replace(
    "shutdown_timeout: 2s", f"shutdown_timeout: 2s\n  max_body_bytes: {MAX_BODY}"
)


async def start(daemon_factory: Callable[[str], Daemon]) -> Daemon:
    daemon = daemon_factory(LIMITS_CONFIG)
    daemon.start()
    await daemon.wait_ready()
    return daemon


async def exchange(port: int, raw: bytes, *, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send ``raw`` on a new connection; return the answer's status and body."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            with contextlib.suppress(ConnectionError):
                writer.write(raw)
                await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            return status, await reader.readexactly(length)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def request(path: str, body: bytes = b"", *, headers: bytes = b"", chunked: bool = False) -> bytes:
    """A raw HTTP/1.1 POST; chunked bodies go as 4 KiB chunks."""
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n".encode() + headers
    if not chunked:
        return head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    chunks = [body[i : i + 4096] for i in range(0, len(body), 4096)]
    encoded = b"".join(f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in chunks)
    return head + b"Transfer-Encoding: chunked\r\n\r\n" + encoded + b"0\r\n\r\n"


async def assert_healthy(daemon: Daemon) -> None:
    assert daemon.proc is not None
    assert daemon.proc.poll() is None, daemon.log()[-3000:]
    async with aiohttp.ClientSession() as s, s.get(f"{daemon.url}/-/healthy") as resp:
        assert resp.status == 200


def padded_alert(size: int) -> bytes:
    """A valid Kapacitor alert padded with JSON whitespace to exactly ``size`` bytes."""
    body = kapacitor_alert("limits", 1)
    return body + b" " * (size - len(body))


async def test_slow_clients_do_not_starve_a_normal_client(
    daemon_factory: Callable[[str], Daemon],
) -> None:
    """200 connections dripping headers or bodies byte by byte do not stop others getting 200."""
    daemon = await start(daemon_factory)
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for i in range(SLOW_CONNECTIONS):
        reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
        if i % 2:  # slowloris: a request line and headers that never end
            writer.write(b"POST /kapacitor HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        else:  # slow body: complete headers, then a body that trickles in
            writer.write(
                b"POST /kapacitor HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n{"
            )
        conns.append((reader, writer))

    async def drip() -> None:
        while True:
            for _, writer in conns:
                if not writer.is_closing():
                    writer.write(b"a")
            await asyncio.sleep(0.25)

    dripping = asyncio.create_task(drip())
    statuses: list[int] = []
    started = time.monotonic()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            while len(statuses) < NORMAL_REQUESTS or time.monotonic() - started < SLOW_SECONDS:
                async with session.post(
                    f"{daemon.url}/kapacitor", data=kapacitor_alert("limits", len(statuses))
                ) as resp:
                    statuses.append(resp.status)
                await asyncio.sleep(0.1)  # a steady trickle, not a load test
        elapsed = time.monotonic() - started
        closed = sum(reader.at_eof() or writer.is_closing() for reader, writer in conns)
    finally:
        dripping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await dripping
        for _, writer in conns:
            writer.close()
    print(
        f"limits: {len(statuses)} normal requests answered {sorted(set(statuses))} in"
        f" {elapsed:.1f}s beside {SLOW_CONNECTIONS} slow connections;"
        f" the server closed {closed} of them meanwhile"
    )
    assert statuses == [200] * len(statuses)
    await assert_healthy(daemon)


async def test_oversized_bodies_get_413(daemon_factory: Callable[[str], Daemon]) -> None:
    """A body over server.max_body_bytes gets a JSON 413, by Content-Length or chunked."""
    daemon = await start(daemon_factory)
    at_limit = padded_alert(MAX_BODY)
    over = padded_alert(MAX_BODY + 1)
    for chunked in (False, True):
        status, body = await exchange(daemon.port, request("/kapacitor", at_limit, chunked=chunked))
        assert status == 200, body
        status, body = await exchange(daemon.port, request("/kapacitor", over, chunked=chunked))
        assert status == 413, body
        assert "max_body_bytes" in json.loads(body)["error"]
    # A compressed body is bounded once inflated: a zip bomb (64 MiB of zeros, about
    # 64 KiB gzipped) is refused as soon as the inflated size passes the limit.
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)
    for chunked in (False, True):
        raw = request("/kapacitor", bomb, headers=b"Content-Encoding: gzip\r\n", chunked=chunked)
        status, body = await exchange(daemon.port, raw)
        assert status == 413, body
        assert "max_body_bytes" in json.loads(body)["error"]
    # A Content-Length far beyond the limit is refused before any body is sent.
    status, body = await exchange(
        daemon.port,
        b"POST /influxdb HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10000000000\r\n\r\n",
    )
    assert status == 413, body
    await assert_healthy(daemon)


async def test_huge_or_malformed_headers_get_4xx(daemon_factory: Callable[[str], Daemon]) -> None:
    """A request line or header past aiohttp's 8190-byte limits, or too many headers, gets 4xx."""
    daemon = await start(daemon_factory)
    alert = kapacitor_alert("limits", 2)
    cases = {
        "header line of 9000 bytes": request(
            "/kapacitor", alert, headers=b"X-Big: " + b"a" * 9000 + b"\r\n"
        ),
        "request line of 9000 bytes": request("/kapacitor/" + "t" * 9000, alert),
        "200 headers": request(
            "/kapacitor", alert, headers=b"".join(b"X-H%d: v\r\n" % i for i in range(200))
        ),
        "control character in a header": request(
            "/kapacitor", alert, headers=b"X-Kapacitor-Task: a\x01b\r\n"
        ),
    }
    answers = {name: await exchange(daemon.port, raw) for name, raw in cases.items()}
    print("limits: " + "; ".join(f"{n} -> {s} {b[:60]!r}" for n, (s, b) in answers.items()))
    for name, (status, body) in answers.items():
        assert 400 <= status < 500, f"{name}: {status} {body[:200]!r}"
        # aiohttp's parser answers these itself; the daemon's runner makes them JSON.
        assert json.loads(body)["error"], f"{name}: {body[:200]!r}"
    # Just under the limits the same request is served.
    ok = request("/kapacitor", alert, headers=b"X-Big: " + b"a" * 8000 + b"\r\n")
    assert (await exchange(daemon.port, ok))[0] == 200
    await assert_healthy(daemon)
