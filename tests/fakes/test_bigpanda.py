"""Tests of the fake BigPanda itself, over real HTTP, so the other tests can trust it."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.bigpanda import NO_ANSWER, FakeBigPanda, FaultPlan

TOKEN = "secret-token"
KEY = "app-key-1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REPO_ROOT = Path(__file__).resolve().parent.parent.parent


def alert(check: str = "cpu", **fields: Any) -> dict[str, Any]:
    """A valid alert without app_key."""
    return {"status": "critical", "host": "web-1", "check": check, **fields}


@pytest.fixture
async def fake() -> AsyncIterator[FakeBigPanda]:
    async with FakeBigPanda(token=TOKEN, app_keys={KEY}) as f:
        yield f


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def post(
    session: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str] | None = None
) -> aiohttp.ClientResponse:
    async with session.post(url, json=body, headers=AUTH if headers is None else headers) as r:
        await r.read()
        return r


async def test_valid_batch_is_accepted_and_recorded(
    fake: FakeBigPanda, session: aiohttp.ClientSession
) -> None:
    """A valid batch gets 201 and each alert is recorded with the batch app_key merged in."""
    resp = await post(session, fake.alerts_url, {"app_key": KEY, "alerts": [alert(), alert("d")]})
    assert resp.status == 201
    assert fake.checks() == ["cpu", "d"]
    assert all(r.alert["app_key"] == KEY and not r.duplicate for r in fake.received)
    assert fake.requests[0].n_alerts == 2
    assert fake.requests[0].headers["Authorization"] == AUTH["Authorization"]


async def test_exact_duplicate_gets_204(fake: FakeBigPanda, session: aiohttp.ClientSession) -> None:
    """Re-sending identical alerts gets 204; a batch with any new alert still gets 201."""
    batch = {"app_key": KEY, "alerts": [alert()]}
    assert (await post(session, fake.alerts_url, batch)).status == 201
    assert (await post(session, fake.alerts_url, batch)).status == 204
    mixed = {"app_key": KEY, "alerts": [alert(), alert("new")]}
    assert (await post(session, fake.alerts_url, mixed)).status == 201
    assert [r.duplicate for r in fake.received] == [False, True, True, False]
    assert fake.stats()["duplicates"] == 2


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        ({"app_key": KEY, "alerts": [alert()]}, {"Authorization": "Bearer wrong"}, 401),
        ({"app_key": KEY, "alerts": [alert()]}, {}, 401),
        ({"app_key": KEY, "alerts": [{"status": "critical", "check": "c"}]}, AUTH, 400),
        ({"app_key": KEY, "alerts": [alert(description="x" * 2049)]}, AUTH, 400),
        ({"app_key": KEY, "alerts": [alert(status="bad")]}, AUTH, 400),
        ({"app_key": "other", "alerts": [alert()]}, AUTH, 400),
        ({"alerts": [alert()]}, AUTH, 400),
        ([alert()], AUTH, 400),
    ],
    ids=[
        "bad-token",
        "no-token",
        "no-primary",
        "long-description",
        "bad-status",
        "unknown-app-key",
        "no-app-key",
        "not-object",
    ],
)
async def test_contract_violations_are_rejected(
    fake: FakeBigPanda,
    session: aiohttp.ClientSession,
    body: Any,
    headers: dict[str, str],
    status: int,
) -> None:
    """Each contract violation is answered with BigPanda's status and nothing is recorded."""
    assert (await post(session, fake.alerts_url, body, headers)).status == status
    assert fake.received == []


async def test_description_limit_and_content_type(
    fake: FakeBigPanda, session: aiohttp.ClientSession
) -> None:
    """A 2048-character description is fine; a non-JSON Content-Type gets 400."""
    ok = {"app_key": KEY, "alerts": [alert(description="x" * 2048)]}
    assert (await post(session, fake.alerts_url, ok)).status == 201
    headers = {**AUTH, "Content-Type": "text/plain"}
    async with session.post(fake.alerts_url, data=json.dumps(ok), headers=headers) as resp:
        assert resp.status == 400


async def test_429_carries_retry_after(fake: FakeBigPanda, session: aiohttp.ClientSession) -> None:
    """The 429 fault sends the configured Retry-After header and records nothing."""
    fake.set_faults(FaultPlan(p_429=1.0, retry_after="1"))
    resp = await post(session, fake.alerts_url, {"app_key": KEY, "alerts": [alert()]})
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "1"
    assert fake.received == []


async def test_one_bad_alert_gets_the_whole_batch_400_naming_it(
    fake: FakeBigPanda, session: aiohttp.ClientSession
) -> None:
    """A batch is all or nothing: one alert without a primary property, or one refused by
    check, gets 400 naming its index; the same alerts alone are accepted or refused alone."""
    bad = {"status": "critical", "check": "no-host"}
    resp = await post(session, fake.alerts_url, {"app_key": KEY, "alerts": [alert("a"), bad]})
    assert resp.status == 400
    fake.set_faults(FaultPlan(refuse_checks=frozenset({"refused"})))
    batch = {"app_key": KEY, "alerts": [alert("a"), alert("refused"), alert("b")]}
    async with session.post(fake.alerts_url, json=batch, headers=AUTH) as r:
        assert r.status == 400
        assert "alerts[1]" in (await r.json())["message"]
    assert fake.received == []
    one = {"app_key": KEY, "alerts": [alert("refused")]}
    assert (await post(session, fake.alerts_url, one)).status == 400
    good = {"app_key": KEY, "alerts": [alert("a"), alert("b")]}
    assert (await post(session, fake.alerts_url, good)).status == 201
    assert fake.checks() == ["a", "b"]


async def test_redirect_fault_answers_location_and_elsewhere_records(
    fake: FakeBigPanda, session: aiohttp.ClientSession
) -> None:
    """The redirect fault answers its status with ``Location`` and records no alert; a client
    that follows it lands on ``/_fake/elsewhere``, which keeps the headers it got."""
    fake.set_faults(FaultPlan(redirect_to=fake.elsewhere_url, redirect_status=301))
    batch = {"app_key": KEY, "alerts": [alert()]}
    async with session.post(
        fake.alerts_url, json=batch, headers=AUTH, allow_redirects=False
    ) as resp:
        assert resp.status == 301
        assert resp.headers["Location"] == fake.elsewhere_url
    assert fake.received == []
    assert fake.elsewhere == []
    async with session.post(fake.elsewhere_url, json=batch, headers=AUTH) as resp:
        assert resp.status == 201
    (followed,) = fake.elsewhere
    assert followed.headers["Authorization"] == AUTH["Authorization"]


async def test_bad_encoding_fault_accepts_with_an_unreadable_body(
    fake: FakeBigPanda, session: aiohttp.ClientSession
) -> None:
    """With ``bad_encoding`` the alerts are accepted and the answer is 201, but its body
    claims gzip and is not: reading it fails in a decompressing client."""
    fake.set_faults(FaultPlan(bad_encoding=True))
    async with session.post(
        fake.alerts_url, json={"app_key": KEY, "alerts": [alert()]}, headers=AUTH
    ) as resp:
        assert resp.status == 201
        assert resp.headers["Content-Encoding"] == "gzip"
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    assert fake.checks() == ["cpu"]


async def test_error_body_echoes_the_authorization_header(
    fake: FakeBigPanda, session: aiohttp.ClientSession
) -> None:
    """``error_body`` replaces error answers with its text, the request's Authorization in it."""
    fake.set_faults(FaultPlan(force_status=400, error_body="you sent {authorization}!"))
    async with session.post(
        fake.alerts_url, json={"app_key": KEY, "alerts": [alert()]}, headers=AUTH
    ) as resp:
        assert resp.status == 400
        assert await resp.text() == f"you sent Bearer {TOKEN}!"


async def test_reset_really_drops_the_connection(
    fake: FakeBigPanda, session: aiohttp.ClientSession
) -> None:
    """The reset fault closes the TCP connection without an answer; clearing it heals."""
    fake.set_faults(FaultPlan(p_reset=1.0))
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(session, fake.alerts_url, {"app_key": KEY, "alerts": [alert()]})
    assert [r.status for r in fake.requests] == [NO_ANSWER]
    fake.set_faults(FaultPlan())
    assert (
        await post(session, fake.alerts_url, {"app_key": KEY, "alerts": [alert()]})
    ).status == 201


async def test_hang_trips_client_timeout(
    fake: FakeBigPanda, session: aiohttp.ClientSession
) -> None:
    """The hang fault never answers, so only the client's timeout ends the request."""
    fake.set_faults(FaultPlan(hang=True))
    timeout = aiohttp.ClientTimeout(total=0.2)
    with pytest.raises(asyncio.TimeoutError):
        async with session.post(fake.alerts_url, json={}, headers=AUTH, timeout=timeout):
            pass
    assert [r.fault for r in fake.requests] == ["hang"]


async def test_stop_listening_refuses_and_start_listening_restores(fake: FakeBigPanda) -> None:
    """During an outage connections are refused; afterwards the same URL works again."""
    url = fake.alerts_url
    batch = {"app_key": KEY, "alerts": [alert()]}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        await fake.stop_listening()
        with pytest.raises(aiohttp.ClientConnectorError) as info:
            await post(s, url, batch)
        assert isinstance(info.value.os_error, ConnectionRefusedError)
        await fake.start_listening()
        assert fake.alerts_url == url
        assert (await post(s, url, batch)).status == 201


async def test_oim_accepts_header_token_and_app_key(
    fake: FakeBigPanda, session: aiohttp.ClientSession
) -> None:
    """OIM takes x-auth-token and x-app-key headers; the v2 API does not."""
    headers = {"x-auth-token": TOKEN, "x-app-key": KEY}
    assert (await post(session, fake.oim_url, alert(), headers)).status == 201
    assert fake.received[0].alert["app_key"] == KEY
    assert fake.received[0].path == "/oim/api/alerts"
    assert (await post(session, fake.alerts_url, alert(), headers)).status == 401


async def test_wait_for_wakes_on_request_and_times_out(
    fake: FakeBigPanda, session: aiohttp.ClientSession
) -> None:
    """wait_for returns once a request satisfies it and raises TimeoutError otherwise."""
    waiter = asyncio.create_task(fake.wait_for(lambda f: len(f.received) == 1, timeout=5))
    await post(session, fake.alerts_url, {"app_key": KEY, "alerts": [alert()]})
    await waiter
    with pytest.raises(TimeoutError, match="still false"):
        await fake.wait_for(lambda f: len(f.received) == 2, timeout=0.05)


async def test_cli_serves_stats_and_exits_on_sigterm(tmp_path: Path) -> None:
    """The standalone process prints READY, serves /_fake/stats and writes stats on SIGTERM."""
    stats_file = tmp_path / "stats.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "tests.fakes.bigpanda", "--token", TOKEN, "--stats-file", str(stats_file)),
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
    )
    assert proc.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().split()
        assert line[0] == "READY"
        async with aiohttp.ClientSession() as s:
            body = {"app_key": KEY, "alerts": [alert()]}
            assert (await post(s, line[1] + "/data/v2/alerts", body)).status == 201
            async with s.get(line[1] + "/_fake/stats?checks=1") as resp:
                stats = await resp.json()
        assert stats["accepted"] == 1
        assert stats["checks"] == ["cpu"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    assert json.loads(stats_file.read_text())["status_counts"] == {"201": 1}
