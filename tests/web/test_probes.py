"""Health probes (``/-/healthy``, ``/-/ready``) and systemd's notify protocol."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from forwarder.cli import sdnotify
from tests.conftest import APP_KEY, TOKEN, Daemon, example, target_config
from tests.fakes.bigpanda import FakeBigPanda, FaultPlan

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]
ALERT = example("kapacitor-alert-critical.json")


async def ready_until(client: Client, status: int, timeout: float = 10.0) -> dict[str, Any]:
    """Poll ``/-/ready`` until it answers ``status``; return its JSON body."""
    deadline = time.monotonic() + timeout
    while True:
        resp = await client.get("/-/ready")
        body: dict[str, Any] = await resp.json()
        if resp.status == status:
            return body
        assert time.monotonic() < deadline, f"/-/ready stayed {resp.status}: {body}"
        await asyncio.sleep(0.02)  # poll interval


async def test_healthy_answers_200(client: Client) -> None:
    """``/-/healthy`` answers 200 with a JSON status while the process runs."""
    resp = await client.get("/-/healthy")
    assert resp.status == 200
    assert await resp.json() == {"status": "healthy"}


async def test_ready_answers_200_with_target_states(
    make_client: ClientFactory, fake_bigpanda: FakeBigPanda
) -> None:
    """``/-/ready`` answers 200 when the queue is open and no target is in auth failure."""
    client = await make_client(target_config(fake_bigpanda.alerts_url))
    resp = await client.get("/-/ready")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ready"
    assert body["targets"]["bigpanda"]["auth_failed"] is False


@pytest.mark.parametrize("refusal", [401, 403])
async def test_ready_is_503_during_auth_failure_and_recovers_after_a_delivery(
    make_client: ClientFactory, fake_bigpanda: FakeBigPanda, refusal: int
) -> None:
    """When BigPanda refuses the credentials, ``/-/ready`` answers 503 with a JSON reason
    naming the target (``/-/healthy`` stays 200); after the next successful delivery it is
    200 again."""
    fake = fake_bigpanda
    client = await make_client(target_config(fake.alerts_url))
    fake.set_faults(FaultPlan(reject_auth=refusal))
    assert (await client.post("/kapacitor", data=ALERT)).status == 200

    body = await ready_until(client, 503)
    assert body["status"] == "not ready"
    assert "target bigpanda" in body["error"]
    assert f"HTTP {refusal}" in body["error"]
    assert body["targets"]["bigpanda"]["auth_failed"] is True
    assert TOKEN not in json.dumps(body)
    assert APP_KEY not in json.dumps(body)
    assert (await client.get("/-/healthy")).status == 200

    fake.set_faults(FaultPlan())
    second = json.loads(ALERT)
    second["id"] = "after-the-fix"
    assert (await client.post("/kapacitor", json=second)).status == 200
    await fake.wait_for(lambda f: f.checks() == ["after-the-fix"], timeout=10)
    body = await ready_until(client, 200)
    assert body["targets"]["bigpanda"] == {
        "up": True,
        "auth_failed": False,
        "redirected": False,
        "rate_limited": False,
        "last_error": None,
    }


async def test_ready_names_a_failure_class_not_the_exception_text(
    make_client: ClientFactory, fake_bigpanda: FakeBigPanda
) -> None:
    """When BigPanda does not answer, ``/-/ready`` (no auth) says "no answer (timeout)" for
    the target: the forwarder's words, not the HTTP client's exception text (which can quote
    the target URL with its query, e.g. an OIM ``?access_token=``)."""
    fake = fake_bigpanda
    fake.set_faults(FaultPlan(hang=True))
    url = fake.alerts_url + "?access_token=query-secret-31d0"
    client = await make_client(target_config(url, timeout="200ms"))
    assert (await client.post("/kapacitor", data=ALERT)).status == 200
    deadline = time.monotonic() + 10
    while True:
        body = await (await client.get("/-/ready")).json()
        if not body["targets"]["bigpanda"]["up"]:
            break
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.02)  # poll interval
    assert body["targets"]["bigpanda"]["last_error"] == "no answer (timeout)"
    assert "query-secret-31d0" not in json.dumps(body)
    assert TOKEN not in json.dumps(body)
    fake.set_faults(FaultPlan())


@pytest.mark.parametrize(
    ("accept", "content_type", "ending"),
    [
        ("", "text/plain; version=0.0.4", ""),
        (
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
            "application/openmetrics-text; version=1.0.0",
            "# EOF\n",
        ),
    ],
    ids=["classic", "openmetrics"],
)
async def test_metrics_speak_openmetrics_when_asked(
    client: Client, accept: str, content_type: str, ending: str
) -> None:
    """``/metrics`` answers the OpenMetrics format when the scraper's Accept asks for it (as
    Prometheus does), the classic text format otherwise; both carry ``process_*``."""
    resp = await client.get("/metrics", headers={"Accept": accept} if accept else {})
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith(content_type)
    text = await resp.text()
    assert text.endswith(ending)
    assert "process_start_time_seconds" in text


# --------------------------------------------------------------------------- sd_notify


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A bound AF_UNIX datagram socket in the abstract namespace, and its NOTIFY_SOCKET."""
    name = f"forwarder-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.setblocking(False)
    try:
        yield sock, "@" + name
    finally:
        sock.close()


async def next_message(sock: socket.socket, timeout: float = 20.0) -> str:
    """The next datagram on ``sock``, waited for with a deadline."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        data = await loop.sock_recv(sock, 4096)
    return data.decode()


def test_notify_without_notify_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside systemd (no ``NOTIFY_SOCKET``), ``notify`` sends nothing and returns False."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False


def test_notify_to_a_missing_socket_returns_false(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``NOTIFY_SOCKET`` nobody listens on is reported as False, never raised."""
    monkeypatch.setenv("NOTIFY_SOCKET", f"@forwarder-test-nobody-{uuid.uuid4().hex}")
    assert sdnotify.notify("READY=1") is False


async def test_notify_sends_the_state_as_one_datagram(
    notify_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``notify`` sends the state text as one datagram to an abstract-namespace socket."""
    sock, address = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    assert sdnotify.notify("STATUS=hello") is True
    assert await next_message(sock, 5) == "STATUS=hello"


async def test_daemon_notifies_ready_reloading_and_stopping(
    daemon_factory: Callable[[str], Daemon],
    fake_bigpanda: FakeBigPanda,
    notify_socket: tuple[socket.socket, str],
) -> None:
    """Under ``Type=notify``, the daemon sends READY=1 once it listens, RELOADING=1 then
    READY=1 around a SIGHUP reload, and STOPPING=1 on SIGTERM before exiting 0."""
    sock, address = notify_socket
    daemon = daemon_factory(target_config(fake_bigpanda.alerts_url))
    daemon.start(env={"NOTIFY_SOCKET": address})

    assert await next_message(sock) == "READY=1"
    # READY=1 promises a listening socket: one request, no polling, must be answered.
    async with aiohttp.ClientSession() as session, session.get(f"{daemon.url}/-/ready") as resp:
        assert resp.status == 200

    assert daemon.proc is not None
    os.kill(daemon.proc.pid, signal.SIGHUP)
    reloading = await next_message(sock)
    assert reloading.startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert int(reloading.split("MONOTONIC_USEC=")[1]) > 0
    assert await next_message(sock) == "READY=1"

    daemon.proc.send_signal(signal.SIGTERM)
    assert await next_message(sock) == "STOPPING=1"
    assert await asyncio.to_thread(daemon.proc.wait, 20) == 0
