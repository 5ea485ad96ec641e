"""Config reload: SIGHUP in a real daemon process, and ``POST /-/reload``.

A good new config is swapped in whole (the hash gauge changes, new mappings
apply); a bad one is refused with the error logged and the old one keeps
running; alerts already queued are not touched by a reload.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from forwarder.obs.logs import Redactor
from tests.conftest import (
    APP_KEY,
    TOKEN,
    ClientFactory,
    Daemon,
    example,
    target_config,
)
from tests.fakes.bigpanda import FakeBigPanda, FaultPlan

Client = TestClient[web.Request, web.Application]


def config_with(url: str, env: str, *, rate_limit: int = 1000, extra: str = "") -> str:
    """The fake-target config with a global attribute ``env`` and the given rate limit."""
    text = target_config(url).replace("    rate_limit: 1000\n", f"    rate_limit: {rate_limit}\n")
    return text + f"mapping:\n  attributes:\n    env: '{env}'\n" + extra


def alert(alert_id: str) -> bytes:
    """A Kapacitor alert with its own id."""
    doc: dict[str, Any] = json.loads(example("kapacitor-alert-critical.json"))
    doc["id"] = alert_id
    return json.dumps(doc).encode()


def file_hash(path: Path) -> float:
    """What ``forwarder_config_hash`` must read for the config file at ``path``."""
    return float(int(hashlib.sha256(path.read_bytes()).hexdigest()[:12], 16))


def env_of(fake: FakeBigPanda, check: str) -> str:
    """The ``env`` attribute of the alert the fake accepted with ``check``."""
    return str(next(r.alert for r in fake.received if r.alert.get("check") == check).get("env"))


def delivered(*checks: str) -> Callable[[FakeBigPanda], bool]:
    """A ``wait_for`` predicate: every one of ``checks`` has arrived."""

    def predicate(fake: FakeBigPanda) -> bool:
        return set(checks) <= set(fake.checks())

    return predicate


class Running:
    """A started daemon with an HTTP session to it."""

    def __init__(self, daemon: Daemon, session: aiohttp.ClientSession) -> None:
        self.daemon = daemon
        self.session = session

    async def metrics(self) -> dict[str, float]:
        """Unlabelled gauges and per-target queue depth, by sample name."""
        async with self.session.get(f"{self.daemon.url}/metrics") as resp:
            text = await resp.text()
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if not s.labels or s.labels == {"target": "bigpanda"}:
                    out[s.name] = s.value
        return out

    async def metrics_until(
        self, done: Callable[[dict[str, float]], bool], timeout: float = 20.0
    ) -> dict[str, float]:
        """Scrape until ``done`` holds, with a deadline."""
        deadline = time.monotonic() + timeout
        while True:
            m = await self.metrics()
            if done(m):
                return m
            assert time.monotonic() < deadline, f"metrics never settled: {m}\n{self.daemon.log()}"
            await asyncio.sleep(0.05)  # poll interval

    async def log_until(
        self, event: str, count: int, timeout: float = 20.0
    ) -> list[dict[str, Any]]:
        """Poll the daemon's JSON log until ``event`` appeared ``count`` times."""
        deadline = time.monotonic() + timeout
        while True:
            found = [
                doc
                for line in self.daemon.log().splitlines()
                if line.startswith("{") and (doc := json.loads(line)).get("event") == event
            ]
            if len(found) >= count:
                return found
            assert time.monotonic() < deadline, f"no {count}x {event}:\n{self.daemon.log()}"
            await asyncio.sleep(0.05)  # poll interval

    async def ingest(self, body: bytes) -> None:
        async with self.session.post(f"{self.daemon.url}/kapacitor", data=body) as resp:
            assert resp.status == 200, await resp.text()

    def rewrite(self, text: str) -> Path:
        """Replace the config file (keeping the daemon's port) and return its path."""
        path = self.daemon.config_path
        path.write_text(text.replace("127.0.0.1:0", f"127.0.0.1:{self.daemon.port}"))
        return path

    def hup(self) -> None:
        assert self.daemon.proc is not None
        os.kill(self.daemon.proc.pid, signal.SIGHUP)


@pytest.fixture
async def run_daemon(
    daemon_factory: Callable[[str], Daemon],
) -> AsyncIterator[Callable[[str], Awaitable[Running]]]:
    """Start a daemon on config text and wait until it is ready."""
    sessions: list[aiohttp.ClientSession] = []

    async def start(text: str) -> Running:
        daemon = daemon_factory(text)
        daemon.start()
        await daemon.wait_ready()
        session = aiohttp.ClientSession()
        sessions.append(session)
        return Running(daemon, session)

    yield start
    for s in sessions:
        await s.close()


async def test_sighup_applies_a_good_config(
    run_daemon: Callable[[str], Awaitable[Running]], fake_bigpanda: FakeBigPanda
) -> None:
    """On SIGHUP a valid new config replaces the old one: the hash gauge follows the file,
    the reload is marked successful, and new alerts use the new mapping."""
    fake = fake_bigpanda
    run = await run_daemon(config_with(fake.alerts_url, "one"))
    path = run.daemon.config_path
    before = await run.metrics()
    assert before["forwarder_config_hash"] == file_hash(path)
    assert before["forwarder_config_last_reload_successful"] == 1
    await run.ingest(alert("before"))
    await fake.wait_for(delivered("before"), timeout=10)
    assert env_of(fake, "before") == "one"

    run.rewrite(config_with(fake.alerts_url, "two", rate_limit=500))
    run.hup()
    after = await run.metrics_until(lambda m: m["forwarder_config_hash"] == file_hash(path))
    assert after["forwarder_config_hash"] != before["forwarder_config_hash"]
    assert after["forwarder_config_last_reload_successful"] == 1
    assert (
        after["forwarder_config_last_reload_success_timestamp_seconds"]
        >= before["forwarder_config_last_reload_success_timestamp_seconds"]
    )
    reloaded = await run.log_until("config_reloaded", 1)
    assert reloaded[0]["digest"] == hashlib.sha256(path.read_bytes()).hexdigest()[:12]

    await run.ingest(alert("after"))
    await fake.wait_for(delivered("after"), timeout=10)
    assert env_of(fake, "after") == "two"
    assert run.daemon.terminate() == 0


BAD_CHANGES = [
    (
        lambda t: t.replace("  shutdown_timeout: 2s\n", "  shutdown_timeout: 2s\n  bogus: 1\n"),
        "server.bogus: unknown key",
    ),
    (lambda t: t + "targets: [\n", "invalid YAML"),
    (lambda t: t.replace("env: 'one'", "env: '{{ oops'"), "template syntax error"),
    (lambda t: t.replace("path: queue.db", "path: other.db"), "queue.path"),
    (
        lambda t: t.replace("  path: queue.db\n  synchronous: normal\n", "").replace(
            "queue:\n", "queue:\n  backend: postgres\n  dsn: postgresql://f:pw@db/q\n"
        ),
        "queue.backend: changing the queue backend needs a restart",
    ),
    # Jinja folds constants while compiling: this fails with ValueError, not a syntax error.
    (lambda t: t.replace("env: 'one'", "env: '{{ (10 ** 100000) | string }}'"), "mapping"),
    # A value the OS refuses rather than a check (no such user's home): still one line.
    (
        lambda t: t.replace("path: queue.db", "path: '~nouser-forwarder-test/queue.db'"),
        "cannot use this config",
    ),
]
BAD_IDS = [
    "unknown-key",
    "yaml-syntax",
    "template-syntax",
    "restart-only-key",
    "backend-switch",
    "template-compile",
    "os-refuses-a-value",
]


@pytest.mark.parametrize(("change", "logged"), BAD_CHANGES, ids=BAD_IDS)
async def test_sighup_refuses_a_bad_config_and_keeps_the_old_one(
    run_daemon: Callable[[str], Awaitable[Running]],
    fake_bigpanda: FakeBigPanda,
    change: Callable[[str], str],
    logged: str,
) -> None:
    """On SIGHUP with a broken file, the error is logged, the reload gauge drops to 0, the
    hash stays, and alerts keep flowing with the old mapping; fixing the file recovers."""
    fake = fake_bigpanda
    good = config_with(fake.alerts_url, "one")
    run = await run_daemon(good)
    path = run.daemon.config_path
    old_hash = file_hash(path)

    bad = change(path.read_text())
    assert bad != path.read_text()
    path.write_text(bad)
    run.hup()
    failed = await run.log_until("config_reload_failed", 1)
    assert logged in failed[0]["error"]
    assert failed[0]["level"] == "error"
    m = await run.metrics_until(lambda m: m["forwarder_config_last_reload_successful"] == 0)
    assert m["forwarder_config_hash"] == old_hash

    await run.ingest(alert("still-old"))
    await fake.wait_for(delivered("still-old"), timeout=10)
    assert env_of(fake, "still-old") == "one"
    assert run.daemon.proc is not None
    assert run.daemon.proc.poll() is None

    run.rewrite(config_with(fake.alerts_url, "fixed"))
    run.hup()
    await run.metrics_until(
        lambda m: (
            m["forwarder_config_last_reload_successful"] == 1
            and m["forwarder_config_hash"] == file_hash(path)
        )
    )
    await run.ingest(alert("fixed"))
    await fake.wait_for(delivered("fixed"), timeout=10)
    assert env_of(fake, "fixed") == "fixed"
    assert run.daemon.terminate() == 0


async def test_queued_alerts_survive_a_reload(
    run_daemon: Callable[[str], Awaitable[Running]], fake_bigpanda: FakeBigPanda
) -> None:
    """Alerts queued while BigPanda is down stay queued across a SIGHUP reload and are all
    delivered, as they were mapped at ingest, once it is back."""
    fake = fake_bigpanda
    # Down as in an outage answering 503; closing the port instead could lose it to
    # another process before it is reopened.
    fake.set_faults(FaultPlan(force_status=503))
    run = await run_daemon(config_with(fake.alerts_url, "one"))
    checks = [f"queued-{i}" for i in range(3)]
    for check in checks:
        await run.ingest(alert(check))
    await run.metrics_until(lambda m: m["forwarder_queue_events"] == 3)

    path = run.rewrite(config_with(fake.alerts_url, "two"))
    run.hup()
    m = await run.metrics_until(lambda m: m["forwarder_config_hash"] == file_hash(path))
    assert m["forwarder_queue_events"] == 3

    fake.set_faults(FaultPlan())
    await fake.wait_for(delivered(*checks), timeout=20)
    assert {env_of(fake, c) for c in checks} == {"one"}
    await run.metrics_until(lambda m: m["forwarder_queue_events"] == 0)
    assert run.daemon.terminate() == 0


# --------------------------------------------------------------------------- POST /-/reload


@pytest.fixture
def file_app(
    make_client: ClientFactory, tmp_path: Path
) -> Callable[[str], Awaitable[tuple[Client, Path]]]:
    """The real app built from a config file (so it can reload), served on loopback."""

    async def factory(text: str) -> tuple[Client, Path]:
        client = await make_client(text, from_file=True)
        return client, tmp_path / "forwarder.yaml"

    return factory


async def gauge(client: Client, name: str) -> float:
    """An unlabelled gauge's value from ``/metrics``."""
    resp = await client.get("/metrics")
    for family in text_string_to_metric_families(await resp.text()):
        for s in family.samples:
            if s.name == name and not s.labels:
                return float(s.value)
    raise AssertionError(f"no {name}")


async def test_post_reload_applies_a_good_config(
    file_app: Callable[[str], Awaitable[tuple[Client, Path]]], fake_bigpanda: FakeBigPanda
) -> None:
    """``POST /-/reload`` with a valid file answers 200 with the new digest and applies it."""
    fake = fake_bigpanda
    client, path = await file_app(config_with(fake.alerts_url, "one"))
    path.write_text(config_with(fake.alerts_url, "two"))
    resp = await client.post("/-/reload")
    assert resp.status == 200
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert await resp.json() == {"status": "reloaded", "digest": digest[:12]}
    assert await gauge(client, "forwarder_config_hash") == int(digest[:12], 16)
    assert await gauge(client, "forwarder_config_last_reload_successful") == 1

    assert (await client.post("/kapacitor", data=alert("via-post"))).status == 200
    await fake.wait_for(delivered("via-post"), timeout=10)
    assert env_of(fake, "via-post") == "two"


@pytest.mark.parametrize(("change", "error"), BAD_CHANGES, ids=BAD_IDS)
async def test_post_reload_refuses_a_bad_config_with_400_json(
    file_app: Callable[[str], Awaitable[tuple[Client, Path]]],
    fake_bigpanda: FakeBigPanda,
    change: Callable[[str], str],
    error: str,
) -> None:
    """``POST /-/reload`` with a bad file (or one changing a restart-only key) answers 400
    with a JSON error naming the problem; the reload gauge is 0 and the old config works."""
    fake = fake_bigpanda
    client, path = await file_app(config_with(fake.alerts_url, "one"))
    old_hash = await gauge(client, "forwarder_config_hash")
    path.write_text(change(path.read_text()))

    resp = await client.post("/-/reload")
    assert resp.status == 400
    body = await resp.json()
    assert body["error"].startswith("config not reloaded: ")
    assert error in body["error"]
    assert "\n" not in body["error"]
    assert await gauge(client, "forwarder_config_last_reload_successful") == 0
    assert await gauge(client, "forwarder_config_hash") == old_hash

    assert (await client.post("/kapacitor", data=alert("old-still"))).status == 200
    await fake.wait_for(delivered("old-still"), timeout=10)
    assert env_of(fake, "old-still") == "one"


async def test_reload_that_adds_credentials_leaves_dry_run(
    run_daemon: Callable[[str], Awaitable[Running]], fake_bigpanda: FakeBigPanda
) -> None:
    """A daemon started without BigPanda credentials logs alerts (dry-run); after a reload
    that adds them it sends to BigPanda, and the log says which mode each batch took."""
    fake = fake_bigpanda
    with_creds = config_with(fake.alerts_url, "one")
    without = with_creds.replace(f"    token: {TOKEN}\n", "").replace(
        f"    app_key: {APP_KEY}\n", ""
    )
    assert "token:" not in without
    run = await run_daemon(without)
    await run.ingest(alert("while-dry"))
    dry = await run.log_until("dry_run_batch", 1)
    assert dry[0]["alerts"][0]["check"] == "while-dry"
    logged = (await run.log_until("dry_run_logged", 1))[0]
    assert (logged["alert_ids"], logged["kept"]) == (["while-dry"], False)

    run.rewrite(with_creds)
    run.hup()
    await run.log_until("config_reloaded", 1)
    await run.ingest(alert("after-creds"))
    await fake.wait_for(delivered("after-creds"), timeout=10)
    assert "while-dry" not in fake.checks()  # logged in dry-run, never sent
    sent = await run.log_until("delivered", 1)
    assert [e["alert_id"] for e in sent] == ["after-creds"]
    assert run.daemon.terminate() == 0


# --------------------------------------------------------------------------- new secrets

NEW_TOKEN = "new-token-SECRET-4f7a9c"


def with_misplaced_new_token(text: str) -> str:
    """A new token, also pasted into app_key_in by mistake: the error would quote it."""
    return text.replace(f"token: {TOKEN}", f"token: {NEW_TOKEN}").replace(
        "    rate_limit:", f"    app_key_in: {NEW_TOKEN}\n    rate_limit:", 1
    )


async def test_post_reload_error_never_shows_the_new_token(
    make_client: ClientFactory, tmp_path: Path, fake_bigpanda: FakeBigPanda
) -> None:
    """A refused reload masks the new file's token in its answer, and the redactor knows the
    token from then on (it was registered before the file was validated)."""
    redactor = Redactor()
    client = await make_client(
        config_with(fake_bigpanda.alerts_url, "one"), from_file=True, redactor=redactor
    )
    path = tmp_path / "forwarder.yaml"
    path.write_text(with_misplaced_new_token(path.read_text()))
    assert NEW_TOKEN in path.read_text()

    resp = await client.post("/-/reload")
    assert resp.status == 400
    body = await resp.json()
    assert body["error"] == (
        "config not reloaded: targets.bigpanda.app_key_in: must be one of body, header, got '***'"
    )
    assert redactor.scrub(f"echo {NEW_TOKEN}") == "echo ***"
    assert redactor.scrub(f"echo {TOKEN}") == "echo ***"  # the running config's, still in use


async def test_sighup_error_log_never_shows_the_new_token(
    run_daemon: Callable[[str], Awaitable[Running]], fake_bigpanda: FakeBigPanda
) -> None:
    """On SIGHUP with a file that quotes its new token in an error, the daemon's log never
    contains the token, and the old config keeps running."""
    run = await run_daemon(config_with(fake_bigpanda.alerts_url, "one"))
    path = run.daemon.config_path
    path.write_text(with_misplaced_new_token(path.read_text()))
    run.hup()
    failed = await run.log_until("config_reload_failed", 1)
    assert "app_key_in: must be one of body, header, got '***'" in failed[0]["error"]
    assert NEW_TOKEN not in run.daemon.log()
    await run.ingest(alert("after-bad-reload"))
    await fake_bigpanda.wait_for(delivered("after-bad-reload"), timeout=10)
    assert run.daemon.terminate() == 0
