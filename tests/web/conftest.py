"""Fixtures of the web tests: the real app served the way ``forwarder run`` serves it.

:func:`served` builds the app from config text and serves it on loopback
through :class:`forwarder.web.server.Runner`, so aiohttp's own error answers
(parser errors) are the forwarder's JSON ones, as in the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from forwarder.web.app import create_app
from forwarder.web.server import Runner
from tests.conftest import BASE_CONFIG, make_config
from tests.fakes.clock import FakeClock

Client = TestClient[web.Request, web.Application]
Served = Callable[..., Awaitable[Client]]


class RunnerTestServer(TestServer):
    """aiohttp's test server, on the daemon's runner."""

    async def _make_runner(self, **kwargs: Any) -> web.BaseRunner:
        return Runner(self.app, **kwargs)


@pytest.fixture
async def served(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Served]:
    """Serve the real app, built from config text, as the daemon does; yields a factory."""
    clients: list[Client] = []

    async def factory(text: str = BASE_CONFIG, **app_options: Any) -> Client:
        app_options.setdefault("clock", clock)
        app_options.setdefault("registry", CollectorRegistry())
        app = create_app(make_config(tmp_path, text), **app_options)
        client: Client = TestClient(RunnerTestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield factory
    for c in reversed(clients):
        await c.close()


async def exchange(
    client: Client, raw: bytes, *, timeout: float = 10.0
) -> tuple[int, dict[str, str], bytes]:
    """Send hand-written HTTP/1.1 bytes on a new connection; the answer's status, headers, body.

    The connection is read to its end when the answer says ``Connection: close``.
    """
    server = client.server
    assert server.host is not None
    assert server.port is not None
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            with contextlib.suppress(ConnectionError):
                writer.write(raw)
                await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers: dict[str, str] = {}
            for line in lines[1:]:
                if ":" in line:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            return status, headers, body
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def post_bytes(path: str, body: bytes, headers: dict[str, str | bytes] | None = None) -> bytes:
    """A raw HTTP/1.1 POST with a Content-Length; header values may be any bytes."""
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n".encode()
    for name, value in (headers or {}).items():
        raw = value if isinstance(value, bytes) else value.encode()
        head += name.encode() + b": " + raw + b"\r\n"
    return head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
