"""Malformed requests log one warning line each, without a traceback, and not without end."""

from __future__ import annotations

import asyncio
import json

import structlog

from forwarder.web.protolog import PER_MINUTE, RateLimiter
from tests.fakes.clock import FakeClock
from tests.web.conftest import Served, exchange

MALFORMED = b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n"


class Ticks:
    """A hand-moved clock for the rate limiter."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_lets_n_per_window_through_then_counts_the_rest() -> None:
    ticks = Ticks()
    limiter = RateLimiter(per_window=3, window=60.0, clock=ticks)
    assert [limiter.allow("a") for _ in range(5)] == [0, 0, 0, None, None]
    assert limiter.allow("b") == 0  # each key has its own budget
    ticks.now = 59.9
    assert limiter.allow("a") is None
    ticks.now = 60.0
    assert limiter.allow("a") == 3  # the first line of the new window counts those left out
    assert limiter.allow("a") == 0


def test_rate_limiter_memory_is_bounded() -> None:
    limiter = RateLimiter(per_window=1, clock=Ticks(), max_keys=10)
    for i in range(1000):
        assert limiter.allow(str(i)) == 0
    assert len(limiter._state) <= 10


async def test_a_malformed_request_logs_one_warning_without_a_traceback(served: Served) -> None:
    client = await served()
    with structlog.testing.capture_logs() as logs:
        status, _, _ = await exchange(client, MALFORMED)
    assert status == 400
    lines = [e for e in logs if e["event"] == "bad_request"]
    assert len(lines) == 1, logs
    (line,) = lines
    assert line["log_level"] == "warning"
    assert line["client"] == "127.0.0.1"
    assert line["reason"] == "BadHttpMessage: Invalid header value char"
    assert "exc_info" not in line
    assert "exception" not in line
    # the whole event renders as one line
    assert "\n" not in json.dumps(line, default=str)


async def test_a_flood_of_malformed_requests_is_rate_limited(served: Served) -> None:
    """Past PER_MINUTE lines a minute, the rest are counted, and the count is logged later."""
    clock = FakeClock()  # standing still unless moved
    client = await served(clock=clock)
    with structlog.testing.capture_logs() as logs:
        for _ in range(PER_MINUTE + 15):
            assert (await exchange(client, MALFORMED))[0] == 400
        clock.advance(61)
        assert (await exchange(client, MALFORMED))[0] == 400
    lines = [e for e in logs if e["event"] == "bad_request"]
    assert len(lines) == PER_MINUTE + 1
    assert lines[-1]["suppressed"] == 15


async def test_a_client_leaving_mid_body_logs_no_traceback(served: Served) -> None:
    """A body cut off by the client's disconnect is not an error of the forwarder."""
    client = await served()
    server = client.server
    assert server.host is not None
    assert server.port is not None
    with structlog.testing.capture_logs() as logs:
        _, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"POST /kapacitor HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        resp = await client.get("/-/healthy")  # the server is still there afterwards
        assert resp.status == 200
    assert not [e for e in logs if e["log_level"] == "error"], logs
    assert not [e for e in logs if "exc_info" in e or "exception" in e], logs
