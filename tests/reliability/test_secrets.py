"""Secrets stay secret: across a faulty run, no token or app key shows in any operator output."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from tests.conftest import APP_KEY, TOKEN, Daemon
from tests.fakes.bigpanda import FakeBigPanda, FaultPlan
from tests.reliability.conftest import daemon_config, kapacitor_alert, poll, post, wait_until

pytestmark = pytest.mark.reliability

N_ALERTS = 2_000
INGEST_TOKEN = "ingest-token-9c7e1f0a3b"
SECRETS = {"BigPanda token": TOKEN, "app key": APP_KEY, "ingest token": INGEST_TOKEN}
FAULTS = FaultPlan(p_503=0.2, p_429=0.1, retry_after="1", p_reset=0.05, latency_jitter=0.05)


def three_more(seen: int) -> Callable[[FakeBigPanda], bool]:
    """A ``wait_for`` predicate: three more requests than ``seen`` have reached the fake."""
    return lambda fake: len(fake.requests) >= seen + 3


def queued(metrics_text: str) -> float:
    """``forwarder_queue_events`` summed over targets."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith("forwarder_queue_events{")
    )


async def started(
    daemon_factory: Callable[[str], Daemon], url: str, *, access_log: bool = False, **options: Any
) -> Daemon:
    """A daemon sending to ``url``, its ingest behind :data:`INGEST_TOKEN`, logging at debug."""
    server = "  shutdown_timeout: 2s\n" + ("  access_log: true\n" if access_log else "")
    config = daemon_config(url, **options).replace(
        "  shutdown_timeout: 2s\n",
        f"{server}  auth:\n    bearer_token: {INGEST_TOKEN}\n",
    )
    daemon = daemon_factory(config)
    daemon.start("--log-level", "debug")
    await daemon.wait_ready()
    return daemon


async def dlq_views(daemon: Daemon, commands: list[list[str]]) -> dict[str, str]:
    """The output of ``forwarder dlq ARGS`` for each command, keyed by its first two words."""
    views: dict[str, str] = {}
    for args in commands:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "forwarder", "dlq", *args),
            *("--config", str(daemon.config_path)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        async with asyncio.timeout(60):
            out, _ = await proc.communicate()
        assert proc.returncode == 0, out
        views["forwarder dlq " + " ".join(args[:2])] = out.decode(errors="replace")
    return views


async def test_no_secret_in_logs_metrics_or_dead_letters(
    fake_bigpanda: FakeBigPanda, daemon_factory: Callable[[str], Daemon]
) -> None:
    """No token or app key appears in the debug log, /metrics, /-/ready or dead-letter views."""
    fake_bigpanda.set_faults(FAULTS)
    daemon = await started(
        daemon_factory, fake_bigpanda.alerts_url, access_log=True, max_in_flight=4
    )
    auth = {"Authorization": f"Bearer {INGEST_TOKEN}"}
    pending = deque(range(N_ALERTS))
    acked = 0

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal acked
        while pending:
            seq = pending.popleft()
            status = await post(
                session, f"{daemon.url}/kapacitor/secrets", kapacitor_alert("secrets", seq)
            )
            if status == 200:
                acked += 1
            else:
                pending.append(seq)

    async def misbehave() -> None:
        """A spell of 400s (dead letters), then one of 401s (auth failure), then faults again."""
        await wait_until(lambda: acked >= N_ALERTS // 4, timeout=120, what="a quarter ingested")
        for plan in (FaultPlan(force_status=400), FaultPlan(reject_auth=401)):
            fake_bigpanda.set_faults(plan)
            await fake_bigpanda.wait_for(three_more(len(fake_bigpanda.requests)), timeout=60)
        fake_bigpanda.set_faults(FAULTS)

    async with aiohttp.ClientSession(headers=auth) as session:
        async with asyncio.timeout(240):
            await asyncio.gather(misbehave(), *(client(session) for _ in range(8)))

        async def queue_empty() -> bool:
            async with session.get(f"{daemon.url}/metrics") as resp:
                return queued(await resp.text()) == 0

        await poll(queue_empty, timeout=180, what="the queue drained (delivered or dead-lettered)")

        views: dict[str, str] = {}
        for path in ("/metrics", "/-/ready", "/api/v1/dead-letters?limit=100000"):
            async with session.get(daemon.url + path) as resp:
                views[path] = await resp.text()
        async with session.get(f"{daemon.url}/api/v1/dead-letters?limit=100000") as resp:
            listing = (await resp.json())["dead_letters"]
        for item in listing[:20]:
            path = f"/api/v1/dead-letters/{item['id']}"
            async with session.get(daemon.url + path) as resp:
                assert resp.status == 200
                views[path] = await resp.text()

    commands = [["list"], ["list", "--json"], *(["show", str(i["id"])] for i in listing[:5])]
    views.update(await dlq_views(daemon, commands))
    views["daemon log"] = daemon.log()

    # The run was real: the secrets were in use and there is something to look at.
    assert fake_bigpanda.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert listing, "no dead letters were made; the 400 spell did not happen"
    assert '"event": "delivered"' in views["daemon log"]
    print(
        f"secrets: {acked} acknowledged, {len(listing)} dead letters, log"
        f" {len(views['daemon log'])} bytes, {len(views)} views checked"
    )
    leaks = [
        f"{secret_name} in {view}"
        for view, text in views.items()
        for secret_name, secret in SECRETS.items()
        if secret in text
    ]
    assert not leaks, leaks


URL_SECRET = "url-secret-6b2d90e1c4"
# Any 8 characters of a secret found in a view is a leak, whatever was cut around them.
PARTIAL = 8


def requests_reach(n: int) -> Callable[[FakeBigPanda], bool]:
    """A ``wait_for`` predicate: the fake has seen ``n`` requests in all."""
    return lambda fake: len(fake.requests) >= n


def echoing(status: int, edge: int) -> FaultPlan:
    """BigPanda answering ``status`` with its body echoing the Authorization header so that
    the token starts 10 characters before ``edge`` (the 200-character error limit or the
    1 KiB response limit): a cut there, unmasked, would keep 10 characters of it."""
    start = edge - 10 - len("Bearer ")
    return FaultPlan(force_status=status, error_body="e" * start + "{authorization} trailing")


async def test_echoed_and_url_credentials_stay_out_of_every_view(
    fake_bigpanda: FakeBigPanda, daemon_factory: Callable[[str], Daemon]
) -> None:
    """BigPanda answers that echo the bearer token across the 200-character and 1 KiB cuts,
    a redirect to a URL with ``?access_token=``, and timeouts against a target URL carrying
    ``?access_token=``: no 8 characters of either secret reach the log, ``/-/ready`` (no
    auth), ``/metrics``, the dead-letter API or ``forwarder dlq``."""
    fake = fake_bigpanda
    url = f"{fake.alerts_url}?access_token={URL_SECRET}"
    daemon = await started(daemon_factory, url, retry_max="300ms", timeout="300ms")
    auth = {"Authorization": f"Bearer {INGEST_TOKEN}"}
    views: dict[str, str] = {}
    # Each fault with how many requests to wait for, and what /-/ready shows meanwhile.
    plans = {
        "503 echo at 200": (echoing(503, 200), 3, '"up": false'),
        "400 echo at 1024": (echoing(400, 1024), 1, ""),
        "redirect": (
            FaultPlan(redirect_to=f"{fake.elsewhere_url}?access_token={URL_SECRET}"),
            1,
            "redirects to",
        ),
        "hang": (FaultPlan(hang=True), 3, "timeout"),
    }
    async with aiohttp.ClientSession(headers=auth) as session:

        async def dead_letters_exist() -> bool:
            async with session.get(f"{daemon.url}/api/v1/dead-letters") as resp:
                return bool((await resp.json())["dead_letters"])

        async def ready_text() -> str:
            async with session.get(f"{daemon.url}/-/ready") as resp:
                return await resp.text()

        for seq, (name, (plan, requests, shows)) in enumerate(plans.items()):
            fake.set_faults(plan)
            want = len(fake.requests) + requests
            status = await post(session, f"{daemon.url}/kapacitor", kapacitor_alert("echo", seq))
            assert status == 200
            await fake.wait_for(requests_reach(want), timeout=30)
            # The sender settles the answer after the fake has logged it; give it a moment.
            for _ in range(50):
                views[f"/-/ready during {name}"] = text = await ready_text()
                if shows in text.replace('":false', '": false'):
                    break
                await asyncio.sleep(0.05)  # poll interval
            if name.startswith("400"):
                # A 400 for a batch of two is bisected: the halves, sent after the first
                # answer, must still meet the 400 spell to end in the dead-letter store.
                await poll(dead_letters_exist, timeout=30, what="a dead letter of the 400 spell")
        fake.set_faults(FaultPlan())

        async def queue_empty() -> bool:
            async with session.get(f"{daemon.url}/metrics") as resp:
                return queued(await resp.text()) == 0

        await poll(queue_empty, timeout=60, what="the queue drained after the faults")
        for path in ("/metrics", "/-/ready", "/api/v1/dead-letters"):
            async with session.get(daemon.url + path) as resp:
                views[path] = await resp.text()
        async with session.get(f"{daemon.url}/api/v1/dead-letters") as resp:
            listing = (await resp.json())["dead_letters"]
        for item in listing:
            async with session.get(f"{daemon.url}/api/v1/dead-letters/{item['id']}") as resp:
                views[f"dead letter {item['id']}"] = await resp.text()
    views.update(await dlq_views(daemon, [["list"], *(["show", str(i["id"])] for i in listing)]))
    assert daemon.terminate() == 0
    views["daemon log"] = daemon.log()

    leaks = [
        f"{secret_name} in {view}"
        for view, text in views.items()
        for secret_name, secret in (("token", TOKEN), ("URL secret", URL_SECRET))
        if any(secret[i : i + PARTIAL] in text for i in range(len(secret) - PARTIAL + 1))
    ]
    assert not leaks, leaks
    # The faults happened: dead letters from the 400 spell (the alert of the 503 spell was
    # still being retried then), the redirect shown and not followed.
    assert listing
    assert {d["status"] for d in listing} == {400}
    assert "the target URL redirects to" in views["/-/ready during redirect"]
    assert fake.elsewhere == []
