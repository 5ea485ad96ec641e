"""The delivery engine end to end: the real app, a real SQLite queue, a fake BigPanda on loopback.

These tests prove the sender's promises (faults, permanent errors, full
queue, ordering, 413, slow fake, OIM). The app runs on the shared fake clock
(``tests/conftest.py``), so backoffs, ``Retry-After`` and linger take a
fraction of their length, and timing assertions read that clock. They
wait for outcomes with ``FakeBigPanda.wait_for`` or a polling deadline, never
a fixed sleep.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from forwarder.web.keys import QUEUE
from tests.conftest import APP_KEY, TOKEN, example, forwarder_cli, target_config, write_config
from tests.fakes.bigpanda import OIM_PATH, FakeBigPanda, FaultPlan
from tests.fakes.clock import FakeClock

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]

T0 = 1_700_000_000  # alert times: Unix seconds, one per state in the ordering tests


def config_text(
    url: str,
    *,
    queue: dict[str, Any] | None = None,
    batch: dict[str, Any] | None = None,
    retry: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
    **target: Any,
) -> str:
    """``target_config`` with keys added to or replaced in its queue, batch and retry sections.

    ``state`` becomes the config's ``state`` section: ``{"repeat_interval": 0}``
    sends every repeat, for tests that post one alert's state several times.
    """
    doc = yaml.safe_load(target_config(url, **target))
    for section, extra in (("queue", queue), ("batch", batch), ("retry", retry)):
        doc[section].update(extra or {})
    if state is not None:
        doc["state"] = state
    return yaml.safe_dump(doc, sort_keys=False)


def iso(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def kapacitor_alert(
    check: str, *, t: int = T0, level: str = "CRITICAL", host: str = "web-1"
) -> bytes:
    """A real Kapacitor alert-handler body (``examples/``) with its id, time, level and host set."""
    body = json.loads(example("kapacitor-alert-critical.json"))
    body.update(id=check, time=iso(t), level=level, message=f"{check} is {level} at {t}")
    series = body["data"]["series"][0]
    series["tags"]["host"] = host
    series["values"][0][0] = iso(t)
    return json.dumps(body).encode()


def httppost_rows(checks: list[str], times: list[int]) -> bytes:
    """A Kapacitor ``httpPost`` body: one row per alert, all committed by one ingest request."""
    rows = [[iso(t), c, "CRITICAL", i] for i, (c, t) in enumerate(zip(checks, times, strict=True))]
    return json.dumps(
        {
            "series": [
                {
                    "name": "cpu",
                    "tags": {"host": "web-1"},
                    "columns": ["time", "id", "level", "value"],
                    "values": rows,
                }
            ]
        }
    ).encode()


async def post(client: Client, body: bytes, path: str = "/kapacitor") -> tuple[int, Any, str]:
    """POST a body; return the status, the decoded JSON answer and the ``Retry-After`` header."""
    async with client.post(path, data=body, headers={"Content-Type": "application/json"}) as r:
        return r.status, await r.json(), r.headers.get("Retry-After", "")


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``check`` until it holds, failing with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        await asyncio.sleep(interval)


async def dead_letters(client: Client) -> list[dict[str, Any]]:
    """The admin API's dead-letter listing."""
    async with client.get("/api/v1/dead-letters") as r:
        assert r.status == 200
        doc = await r.json()
    items: list[dict[str, Any]] = doc["dead_letters"]
    return items


async def wait_dead_letters(
    client: Client, count: int, timeout: float = 15.0
) -> list[dict[str, Any]]:
    """Wait until the store holds ``count`` dead letters and return them."""
    found: list[dict[str, Any]] = []

    async def enough() -> bool:
        nonlocal found
        found = await dead_letters(client)
        return len(found) >= count

    await eventually(enough, timeout=timeout, what=f"{count} dead letter(s)")
    return found


async def queued(client: Client) -> int:
    """Alerts committed and not yet delivered or dead-lettered."""
    return (await client.app[QUEUE].stats()).events


async def wait_queue_empty(client: Client, timeout: float = 15.0) -> None:
    async def empty() -> bool:
        return await queued(client) == 0

    await eventually(empty, timeout=timeout, what="an empty queue")


def first_copies(fake: FakeBigPanda) -> list[str]:
    """Each distinct check in the order its first copy arrived."""
    seen: set[str] = set()
    out: list[str] = []
    for check in fake.checks():
        if check not in seen:
            seen.add(check)
            out.append(check)
    return out


# --------------------------------------------------------------------------- 1. faults


async def test_every_alert_survives_503s_429s_resets_and_latency(
    make_client: ClientFactory, fake_bigpanda: FakeBigPanda
) -> None:
    """10,000 alerts through 20% 503, 10% 429 (Retry-After: 1), 5% resets and 50 ms all arrive."""
    fake = fake_bigpanda
    fake.set_faults(FaultPlan(p_503=0.2, p_429=0.1, retry_after="1", p_reset=0.05, latency=0.05))
    client = await make_client(
        config_text(
            fake.alerts_url,
            batch={"max_alerts": 100, "linger": "200ms"},
            retry={"initial": "50ms", "max": "1s"},
            rate_limit=1000,
            burst=1000,
            max_in_flight=8,
        )
    )
    n = 10_000
    bodies = [kapacitor_alert(f"alert-{i}", host=f"host-{i % 50}") for i in range(n)]
    started = time.monotonic()
    gate = asyncio.Semaphore(64)

    async def send(body: bytes) -> int:
        async with gate:
            status, _, _ = await post(client, body)
            return status

    statuses = await asyncio.gather(*(send(b) for b in bodies))
    ingested = time.monotonic() - started
    assert statuses == [200] * n

    want = {f"alert-{i}" for i in range(n)}
    await fake.wait_for(lambda f: want <= set(f.checks()), timeout=120)
    delivered = time.monotonic() - started
    await wait_queue_empty(client)

    received = fake.checks()
    duplicates = len(received) - len(set(received))
    stats = fake.stats()
    print(
        f"\nfaults: {n} alerts ingested in {ingested:.1f}s, all delivered after {delivered:.1f}s;"
        f" received {len(received)} (duplicates {duplicates}, exact duplicates"
        f" {stats['duplicates']}); {stats['requests']} requests {stats['status_counts']}"
    )
    assert set(received) == want


# --------------------------------------------------------------------------- 2. permanent errors


@dataclass(frozen=True)
class Refusal:
    """A permanent refusal by BigPanda and what it must leave behind."""

    faults: FaultPlan
    check: str
    reason: str
    status: int
    answer: str  # a piece of BigPanda's answer, kept in the dead letter
    replay: str  # "api" (POST /api/v1/dead-letters/replay) or "cli" (forwarder dlq replay)
    unready: bool  # the target is held and /-/ready answers 503 until a delivery


REFUSALS = [
    Refusal(FaultPlan(reject_auth=401), "auth-1", "authError", 401, "bad token", "api", True),
    Refusal(FaultPlan(force_status=400), "bad-1", "clientError", 400, "forced", "cli", False),
]


@pytest.mark.parametrize("case", REFUSALS, ids=lambda c: str(c.status))
async def test_a_refused_alert_is_dead_lettered_listed_and_replayed(
    make_client: ClientFactory,
    fake_bigpanda: FakeBigPanda,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    case: Refusal,
) -> None:
    """A 401 or a 400 dead-letters the alert with its reason, status and the first KiB of
    BigPanda's answer; ``dlq list`` shows it; a replay (admin API or ``dlq replay --all``,
    picked up by the daemon's idle poll) delivers it. A 401 also fails /-/ready naming the
    target, with no secret in the answer or the log, until a delivery succeeds."""
    fake = fake_bigpanda
    text = config_text(fake.alerts_url)
    config_path = write_config(tmp_path, text)
    client = await make_client(text)
    fake.set_faults(case.faults)

    status, _, _ = await post(client, kapacitor_alert(case.check))
    assert status == 200
    (dl,) = await wait_dead_letters(client, 1)
    assert {k: dl[k] for k in ("target", "reason", "status", "attempts", "check")} == {
        "target": "bigpanda",
        "reason": case.reason,
        "status": case.status,
        "attempts": 1,
        "check": case.check,
    }
    async with client.get(f"/api/v1/dead-letters/{dl['id']}") as r:
        detail = await r.json()
    assert case.answer in detail["response"]
    assert detail["alert"]["check"] == case.check
    assert await queued(client) == 0

    async with client.get("/-/ready") as r:
        assert r.status == (503 if case.unready else 200)
        ready = await r.json()
    assert ready["targets"]["bigpanda"]["auth_failed"] is case.unready
    assert TOKEN not in json.dumps(ready)
    if case.unready:
        assert "bigpanda" in ready["error"]
        assert str(case.status) in ready["error"]
        logged = capfd.readouterr().out
        (auth_line,) = [ln for ln in logged.splitlines() if "target_auth_failed" in ln]
        assert "bigpanda" in auth_line
        assert TOKEN not in logged

    code, out = await forwarder_cli(config_path, "dlq", "list")
    assert code == 0, out
    (line,) = [ln for ln in out.splitlines() if case.check in ln]
    assert str(dl["id"]) in line.split()
    assert case.reason in line.split()
    assert str(case.status) in line.split()

    fake.set_faults(FaultPlan())
    if case.replay == "api":
        async with client.post("/api/v1/dead-letters/replay", json={"all": True}) as r:
            assert r.status == 200
            assert await r.json() == {"replayed": 1}
    else:
        code, out = await forwarder_cli(config_path, "dlq", "replay", "--all")
        assert code == 0, out
        assert "replayed 1" in out
    await fake.wait_for(lambda f: case.check in f.checks(), timeout=10)
    assert await dead_letters(client) == []
    await wait_queue_empty(client)
    stats = await client.app[QUEUE].stats()
    assert (stats.events, stats.bytes) == (0, 0)  # counted on lease, so never negative

    async def ready_again() -> bool:
        async with client.get("/-/ready") as r:
            return r.status == 200

    await eventually(ready_again, timeout=5, what="/-/ready answering 200 after a delivery")


# --------------------------------------------------------------------------- 3. full queue


async def test_a_full_queue_answers_503_and_loses_nothing_accepted(
    make_client: ClientFactory, fake_bigpanda: FakeBigPanda
) -> None:
    """With BigPanda down, ingest answers 503 + Retry-After once full; every 200 is delivered."""
    fake = fake_bigpanda
    registry = CollectorRegistry()
    client = await make_client(
        config_text(fake.alerts_url, queue={"max_events": 50}), registry=registry
    )
    await fake.stop_listening()

    accepted: list[str] = []
    answer: tuple[int, Any, str] = (0, None, "")
    for i in range(60):
        answer = await post(client, kapacitor_alert(f"full-{i}"))
        if answer[0] != 200:
            break
        accepted.append(f"full-{i}")
    status, doc, retry_after = answer
    assert len(accepted) == 50
    assert status == 503
    assert int(retry_after) > 0
    assert "queue full" in doc["error"]
    assert "queue.max_events=50" in doc["error"]
    rejected = registry.get_sample_value(
        "forwarder_events_rejected_total", {"source": "kapacitor", "reason": "queue_full"}
    )
    assert rejected == 1.0

    await fake.start_listening()
    await fake.wait_for(lambda f: set(accepted) <= set(f.checks()), timeout=20)
    await wait_queue_empty(client)
    assert set(fake.checks()) == set(accepted)
    status, _, _ = await post(client, kapacitor_alert("after-full"))
    assert status == 200
    await fake.wait_for(lambda f: "after-full" in f.checks(), timeout=10)


# --------------------------------------------------------------------------- 4. ordering


async def test_states_of_one_alert_arrive_in_order_despite_faults(
    make_client: ClientFactory, fake_bigpanda: FakeBigPanda
) -> None:
    """States of one alert posted in order reach BigPanda in order through 503s and resets."""
    fake = fake_bigpanda
    fake.set_faults(FaultPlan(p_503=0.3, p_reset=0.1, latency_jitter=0.02))
    client = await make_client(
        config_text(
            fake.alerts_url,
            batch={"max_alerts": 10, "linger": "5ms"},
            retry={"initial": "10ms", "max": "100ms"},
            max_in_flight=8,
        )
    )
    n = 150
    for i in range(n):
        level = "CRITICAL" if i % 2 == 0 else "OK"
        status, _, _ = await post(client, kapacitor_alert("flappy", t=T0 + i, level=level))
        assert status == 200
        # Other alerts in between, so batches mix identities and run in parallel.
        status, _, _ = await post(client, kapacitor_alert(f"other-{i}", t=T0 + i))
        assert status == 200

    def flappy_times(f: FakeBigPanda) -> list[int]:
        return [int(r.alert["timestamp"]) for r in f.received if r.alert["check"] == "flappy"]

    await fake.wait_for(lambda f: len(set(flappy_times(f))) == n, timeout=60)
    first: list[int] = []
    for t in flappy_times(fake):
        if t not in first:
            first.append(t)
    assert first == [T0 + i for i in range(n)]
    statuses = [r.alert["status"] for r in fake.received if r.alert["check"] == "flappy"]
    assert statuses[:2] == ["critical", "ok"]
    failures = sum(1 for r in fake.requests if r.status != 201)
    print(f"\nordering: {n} states in order through {failures} failed requests")
    assert failures > 0


# --------------------------------------------------------------------------- 5. 413


async def test_413_splits_the_batch_until_it_fits(
    make_client: ClientFactory, fake_bigpanda: FakeBigPanda
) -> None:
    """A batch answered 413 is halved until each part fits, and every alert is delivered."""
    fake = fake_bigpanda
    fake.set_faults(FaultPlan(max_alerts_per_request=10))
    client = await make_client(config_text(fake.alerts_url, batch={"max_alerts": 100}))
    checks = [f"split-{i}" for i in range(95)]
    status, doc, _ = await post(client, httppost_rows(checks, [T0 + i for i in range(95)]))
    assert (status, doc) == (200, {"accepted": 95, "suppressed": 0})

    await fake.wait_for(lambda f: set(checks) <= set(f.checks()), timeout=15)
    assert fake.requests[0].status == 413
    assert fake.requests[0].n_alerts == 95
    assert all(r.n_alerts <= 10 for r in fake.requests if r.status == 201)
    assert sorted(fake.checks()) == sorted(checks)  # each exactly once
    await wait_queue_empty(client)
    assert await dead_letters(client) == []


async def test_a_single_alert_still_too_large_is_dead_lettered(
    make_client: ClientFactory, fake_bigpanda: FakeBigPanda
) -> None:
    """One alert that still gets 413 cannot be split further: it is dead-lettered as too_large."""
    fake = fake_bigpanda
    fake.set_faults(FaultPlan(force_status=413))
    client = await make_client(config_text(fake.alerts_url))
    status, _, _ = await post(client, kapacitor_alert("huge"))
    assert status == 200
    (dl,) = await wait_dead_letters(client, 1)
    assert (dl["reason"], dl["status"], dl["check"]) == ("too_large", 413, "huge")
    assert await queued(client) == 0


# --------------------------------------------------------------------------- 6. slow fake


async def test_a_hanging_bigpanda_does_not_block_ingest(
    make_client: ClientFactory, fake_bigpanda: FakeBigPanda
) -> None:
    """While BigPanda never answers, ingest still answers 200; requests time out and are retried."""
    fake = fake_bigpanda
    fake.set_faults(FaultPlan(hang=True))
    registry = CollectorRegistry()
    client = await make_client(
        config_text(fake.alerts_url, retry={"initial": "50ms", "max": "200ms"}, timeout="300ms"),
        registry=registry,
    )
    status, _, _ = await post(client, kapacitor_alert("slow-0"))
    assert status == 200
    await fake.wait_for(lambda f: any(r.fault == "hang" for r in f.requests), timeout=10)

    # BigPanda is hanging on a request right now; the ingest does not wait for it.
    results = await asyncio.gather(
        *(post(client, kapacitor_alert(f"slow-{i}")) for i in range(1, 20))
    )
    assert [s for s, _, _ in results] == [200] * 19

    def timeouts() -> float:
        value = registry.get_sample_value(
            "forwarder_delivery_failures_total", {"target": "bigpanda", "reason": "timeout"}
        )
        return value or 0.0

    async def retried_after_timeouts() -> bool:
        hung = sum(r.fault == "hang" for r in fake.requests)
        return timeouts() >= 3 and hung > timeouts()

    await eventually(retried_after_timeouts, timeout=10, what="timed-out requests sent again")
    assert fake.checks() == []

    fake.set_faults(FaultPlan())
    want = {f"slow-{i}" for i in range(20)}
    await fake.wait_for(lambda f: want <= set(f.checks()), timeout=15)
    await wait_queue_empty(client)


# --------------------------------------------------------------------------- 7. OIM


async def test_oim_target_sends_token_and_app_key_in_headers(
    make_client: ClientFactory, fake_bigpanda: FakeBigPanda
) -> None:
    """An OIM target with x-auth-token and x-app-key puts both in headers, not Authorization."""
    fake = fake_bigpanda
    client = await make_client(
        config_text(fake.oim_url, kind="oim", token_in="x-auth-token", app_key_in="header")
    )
    status, _, _ = await post(client, kapacitor_alert("oim-1"))
    assert status == 200
    await fake.wait_for(lambda f: "oim-1" in f.checks(), timeout=10)
    (req,) = [r for r in fake.requests if r.status == 201]
    headers = {k.lower(): v for k, v in req.headers.items()}
    assert req.path == OIM_PATH
    assert headers["x-auth-token"] == TOKEN
    assert headers["x-app-key"] == APP_KEY
    assert "authorization" not in headers
    assert headers["content-type"] == "application/json"
    assert fake.received[0].alert["app_key"] == APP_KEY
    assert fake.received[0].path == OIM_PATH


# --------------------------------------------------------------------------- smaller promises


async def test_a_batch_is_sorted_by_timestamp(
    make_client: ClientFactory, fake_bigpanda: FakeBigPanda
) -> None:
    """Alerts inside one request are in ascending ``timestamp`` order, whatever their arrival."""
    fake = fake_bigpanda
    client = await make_client(config_text(fake.alerts_url))
    checks = [f"sorted-{i}" for i in range(10)]
    times = [T0 + 100 - 7 * i for i in range(10)]  # newest first
    status, _, _ = await post(client, httppost_rows(checks, times))
    assert status == 200
    await fake.wait_for(lambda f: len(f.received) == 10, timeout=10)
    assert len(fake.requests) == 1
    got = [int(r.alert["timestamp"]) for r in fake.received]
    assert got == sorted(times)
    headers = {k.lower(): v for k, v in fake.requests[0].headers.items()}
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert all(r.alert["app_key"] == APP_KEY for r in fake.received)


async def test_a_204_duplicate_counts_as_delivered(
    make_client: ClientFactory, fake_bigpanda: FakeBigPanda
) -> None:
    """BigPanda's 204 for a duplicate is a delivery: acknowledged, counted, never dead-lettered."""
    fake = fake_bigpanda
    registry = CollectorRegistry()
    # Deduplication off: the second post is the repeat BigPanda itself answers 204.
    client = await make_client(
        config_text(fake.alerts_url, state={"repeat_interval": 0}), registry=registry
    )
    body = kapacitor_alert("dup")
    assert (await post(client, body))[0] == 200
    await fake.wait_for(lambda f: len(f.received) == 1, timeout=10)
    assert (await post(client, body))[0] == 200
    await fake.wait_for(lambda f: any(r.status == 204 for r in f.requests), timeout=10)
    await wait_queue_empty(client)
    assert await dead_letters(client) == []
    delivered = registry.get_sample_value(
        "forwarder_alerts_delivered_total", {"target": "bigpanda"}
    )
    assert delivered == 2.0
    assert [r.status for r in fake.requests] == [201, 204]


async def test_an_alert_older_than_max_age_is_dead_lettered_as_expired(
    make_client: ClientFactory, fake_bigpanda: FakeBigPanda
) -> None:
    """An alert still failing after ``retry.max_age`` stops being retried and is dead-lettered."""
    fake = fake_bigpanda
    fake.set_faults(FaultPlan(force_status=503))
    client = await make_client(
        config_text(fake.alerts_url, retry={"initial": "50ms", "max": "200ms", "max_age": "1s"})
    )
    assert (await post(client, kapacitor_alert("stale")))[0] == 200
    (dl,) = await wait_dead_letters(client, 1)
    assert (dl["reason"], dl["status"], dl["check"]) == ("expired", 503, "stale")
    assert dl["attempts"] > 1
    assert await queued(client) == 0


@dataclass
class Answered:
    """One request to :class:`ScriptedBigPanda`: its answer, its alerts and when it came."""

    status: int
    alerts: list[dict[str, Any]]
    at: float  # the forwarder's clock, monotonic


class ScriptedBigPanda:
    """A loopback server answering a fixed script of statuses (then 201), recording each request."""

    def __init__(
        self, script: list[int], clock: FakeClock, headers: dict[str, str] | None = None
    ) -> None:
        self.script = list(script)
        self.clock = clock
        self.headers = headers or {}  # sent with every scripted (non-201) answer
        self.log: list[Answered] = []
        self.changed = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/data/v2/alerts", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/data/v2/alerts"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def handle(self, request: web.Request) -> web.Response:
        alerts: list[dict[str, Any]] = (await request.json())["alerts"]
        status = self.script.pop(0) if self.script else 201
        self.log.append(Answered(status, alerts, self.clock.monotonic()))
        self.changed.set()
        headers = self.headers if status != 201 else {}
        return web.json_response({"status": status}, status=status, headers=headers)

    def delivered(self) -> list[dict[str, Any]]:
        """Alerts of the requests answered 201, in arrival order."""
        return [a for r in self.log if r.status == 201 for a in r.alerts]

    async def wait_delivered(self, count: int, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while len(self.delivered()) < count:
                self.changed.clear()
                await self.changed.wait()


ScriptedFactory = Callable[..., Awaitable[ScriptedBigPanda]]


@pytest.fixture
async def scripted(clock: FakeClock) -> AsyncIterator[ScriptedFactory]:
    """Start :class:`ScriptedBigPanda` servers; all are stopped at teardown."""
    servers: list[ScriptedBigPanda] = []

    async def factory(script: list[int], headers: dict[str, str] | None = None) -> ScriptedBigPanda:
        server = ScriptedBigPanda(script, clock, headers)
        await server.start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        await server.stop()


async def test_states_of_one_alert_go_one_per_batch_in_order(
    make_client: ClientFactory, scripted: ScriptedFactory
) -> None:
    """Each batch carries one state of an alert, so a failed older state holds the newer ones
    back, and a batch sent again can never bring an older state after a newer one."""
    server = await scripted([503])  # the first state fails once
    # Four states of one alert, all the same status: deduplication off so each is queued.
    cfg = config_text(
        server.url, retry={"initial": "50ms", "max": "100ms"}, state={"repeat_interval": 0}
    )
    client = await make_client(cfg)
    times = [T0 + i for i in range(4)]
    status, _, _ = await post(client, httppost_rows(["X"] * 4, times))
    assert status == 200
    await server.wait_delivered(4, timeout=10)
    assert [len(r.alerts) for r in server.log] == [1] * 5
    delivered = [int(a["timestamp"]) for a in server.delivered()]
    assert delivered == times


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_retry_after_holds_the_target_back(
    make_client: ClientFactory, scripted: ScriptedFactory, clock: FakeClock, form: str
) -> None:
    """A 429's Retry-After (seconds or HTTP date, under ``retry.max``) delays the next
    request at least that long."""
    if form == "seconds":
        retry_after, at_least = "1", 1.0
    else:
        # An HTTP date has whole seconds: round up, so the date is at least two
        # seconds ahead when sent and well over one when the daemon reads it.
        now = datetime.fromtimestamp(clock.time(), UTC)
        ahead = now.replace(microsecond=0) + timedelta(seconds=3)
        retry_after = format_datetime(ahead, usegmt=True)
        at_least = 1.0
    server = await scripted([429], {"Retry-After": retry_after})
    client = await make_client(config_text(server.url, retry={"initial": "10ms", "max": "5s"}))
    assert (await post(client, kapacitor_alert("limited")))[0] == 200
    await server.wait_delivered(1, timeout=10)
    first, second = server.log
    assert (first.status, second.status) == (429, 201)
    assert second.at - first.at >= at_least


# --------------------------------------------------------------------------- delivery edge cases


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """One sample's value (0 when the series does not exist)."""
    return registry.get_sample_value(name, labels) or 0.0


async def ready(client: Client) -> tuple[int, dict[str, Any]]:
    async with client.get("/-/ready") as r:
        doc: dict[str, Any] = await r.json()
        return r.status, doc


async def test_a_2xx_whose_body_cannot_be_read_is_delivered_once(
    make_client: ClientFactory, fake_bigpanda: FakeBigPanda, capfd: pytest.CaptureFixture[str]
) -> None:
    """A 201 whose body claims gzip and is not: the status line decides, so the batch is
    acknowledged once (not resent), counted delivered, and the unreadable body only logged."""
    fake = fake_bigpanda
    fake.set_faults(FaultPlan(bad_encoding=True))
    registry = CollectorRegistry()
    client = await make_client(config_text(fake.alerts_url), registry=registry)
    checks = [f"gz-{i}" for i in range(20)]
    status, _, _ = await post(client, httppost_rows(checks, [T0 + i for i in range(20)]))
    assert status == 200
    await fake.wait_for(lambda f: set(checks) <= set(f.checks()), timeout=10)
    await wait_queue_empty(client)
    assert metric(registry, "forwarder_alerts_delivered_total", target="bigpanda") == 20
    assert len(fake.requests) == 1
    assert sorted(fake.checks()) == sorted(checks)
    assert await dead_letters(client) == []
    (line,) = [ln for ln in capfd.readouterr().out.splitlines() if "response_body_unreadable" in ln]
    assert "201" in line


@pytest.mark.parametrize("redirect", [301, 302, 307, 308])
async def test_a_redirect_is_not_followed_holds_the_target_and_dead_letters_nothing(
    make_client: ClientFactory, fake_bigpanda: FakeBigPanda, redirect: int
) -> None:
    """A 3xx is never followed (the token goes nowhere else); the target is held and unready
    with "the target URL redirects to <Location>", the Location's credentials masked; the
    alert stays queued, not dead-lettered, and is delivered once the target answers again."""
    fake = fake_bigpanda
    location = f"{fake.elsewhere_url}?access_token=leaked-9f8e7d"
    fake.set_faults(FaultPlan(redirect_to=location, redirect_status=redirect))
    registry = CollectorRegistry()
    client = await make_client(config_text(fake.alerts_url), registry=registry)
    assert (await post(client, kapacitor_alert("moved")))[0] == 200

    async def unready() -> bool:
        return (await ready(client))[0] == 503

    await eventually(unready, timeout=10, what="/-/ready answering 503 for the redirect")
    await fake.wait_for(lambda f: len(f.requests) >= 2, timeout=10)  # held, tried again
    _, doc = await ready(client)
    assert "target bigpanda: the target URL redirects to " in doc["error"]
    assert f"{fake.elsewhere_url}?access_token=***" in doc["error"]
    assert "leaked-9f8e7d" not in json.dumps(doc)
    assert doc["targets"]["bigpanda"]["redirected"] is True
    assert fake.elsewhere == []
    assert await dead_letters(client) == []
    assert await queued(client) == 1
    assert (
        metric(registry, "forwarder_delivery_failures_total", target="bigpanda", reason="redirect")
        >= 1
    )

    fake.set_faults(FaultPlan())
    await fake.wait_for(lambda f: f.checks() == ["moved"], timeout=10)
    await wait_queue_empty(client)
    assert await dead_letters(client) == []
    assert fake.elsewhere == []

    async def ready_again() -> bool:
        return (await ready(client))[0] == 200

    await eventually(ready_again, timeout=5, what="/-/ready answering 200 after a delivery")


async def test_a_huge_retry_after_is_capped_at_retry_max_and_shown(
    make_client: ClientFactory, scripted: ScriptedFactory
) -> None:
    """A 429 with ``Retry-After: 86400`` holds the target for ``retry.max`` (20 s here), not
    a day; meanwhile /-/ready stays 200 with a rate-limit warning and
    ``forwarder_target_rate_limited`` is 1, and both clear after the delivery."""
    server = await scripted([429], {"Retry-After": "86400"})
    registry = CollectorRegistry()
    client = await make_client(
        config_text(server.url, retry={"initial": "10ms", "max": "20s"}), registry=registry
    )
    assert (await post(client, kapacitor_alert("throttled")))[0] == 200

    async def noted() -> bool:
        _, doc = await ready(client)
        return bool(doc.get("warnings"))

    await eventually(noted, timeout=10, what="a rate-limit warning in /-/ready")
    status, doc = await ready(client)
    assert status == 200
    assert doc["status"] == "ready"
    assert doc["targets"]["bigpanda"]["rate_limited"] is True
    (warning,) = doc["warnings"]
    assert warning.startswith("target bigpanda: rate-limited by BigPanda (429)")
    assert "20 s" in warning
    assert metric(registry, "forwarder_target_rate_limited", target="bigpanda") == 1

    await server.wait_delivered(1, timeout=10)
    first, second = server.log
    assert (first.status, second.status) == (429, 201)
    assert 20.0 <= second.at - first.at < 30.0
    await wait_queue_empty(client)
    status, doc = await ready(client)
    assert (status, doc["targets"]["bigpanda"]["rate_limited"]) == (200, False)
    assert "warnings" not in doc
    assert metric(registry, "forwarder_target_rate_limited", target="bigpanda") == 0


async def test_a_400_for_a_batch_dead_letters_only_the_refused_alerts(
    make_client: ClientFactory, fake_bigpanda: FakeBigPanda
) -> None:
    """When BigPanda refuses a batch with 400 for some of its alerts, the batch is halved
    until the refused alerts are alone: they are dead-lettered (400, clientError) and every
    other alert is delivered exactly once."""
    fake = fake_bigpanda
    refused = {"bis-3", "bis-7"}
    fake.set_faults(FaultPlan(refuse_checks=frozenset(refused)))
    client = await make_client(config_text(fake.alerts_url))
    checks = [f"bis-{i}" for i in range(10)]
    status, doc, _ = await post(client, httppost_rows(checks, [T0 + i for i in range(10)]))
    assert (status, doc) == (200, {"accepted": 10, "suppressed": 0})

    found = await wait_dead_letters(client, 2)
    await wait_queue_empty(client)
    assert sorted(d["check"] for d in found) == sorted(refused)
    assert {(d["reason"], d["status"]) for d in found} == {("clientError", 400)}
    assert sorted(fake.checks()) == sorted(set(checks) - refused)  # each exactly once
    assert fake.requests[0].status == 400
    assert fake.requests[0].n_alerts == 10


async def test_upstream_text_is_masked_before_it_is_cut(
    make_client: ClientFactory, fake_bigpanda: FakeBigPanda
) -> None:
    """A BigPanda answer echoing the bearer token across the 200-character error limit and
    the 1 KiB response limit leaves no part of the token in the dead letter as stored."""
    fake = fake_bigpanda
    echo = "{authorization}"  # becomes "Bearer <token>" (7 + len(TOKEN) characters)
    # The first token starts 3 characters before 200 of the kept error's body; the second
    # 9 characters before 1024 of the body.
    first = "a" * (197 - 7)
    gap = "b" * (1024 - 9 - 7 - (len(first) + 7 + len(TOKEN)))
    fake.set_faults(FaultPlan(force_status=400, error_body=first + echo + gap + echo + "c" * 50))
    client = await make_client(config_text(fake.alerts_url))
    assert (await post(client, kapacitor_alert("echo")))[0] == 200
    await wait_dead_letters(client, 1)
    (stored,) = await client.app[QUEUE].dead_letters.list()
    assert stored.response is not None
    assert stored.last_error is not None
    for text in (stored.response, stored.last_error):
        assert TOKEN[:5] not in text, text
        assert "Bearer ***" in text
    assert stored.response.startswith(first + "Bearer ***" + gap)
    assert stored.last_error.startswith("HTTP 400: " + first + "Bearer ***")


async def test_ready_shows_no_upstream_text(
    make_client: ClientFactory, fake_bigpanda: FakeBigPanda
) -> None:
    """While BigPanda answers 503 with a body echoing the token, /-/ready (unauthenticated)
    says only ``HTTP 503`` for the target: neither the token nor BigPanda's words."""
    fake = fake_bigpanda
    fake.set_faults(FaultPlan(force_status=503, error_body="upstream says: {authorization}"))
    client = await make_client(config_text(fake.alerts_url))
    assert (await post(client, kapacitor_alert("down")))[0] == 200

    async def down() -> bool:
        return not (await ready(client))[1]["targets"]["bigpanda"]["up"]

    await eventually(down, timeout=10, what="the target marked down")
    _, doc = await ready(client)
    assert doc["targets"]["bigpanda"]["last_error"] == "HTTP 503"
    text = json.dumps(doc)
    assert TOKEN not in text
    assert "upstream says" not in text
