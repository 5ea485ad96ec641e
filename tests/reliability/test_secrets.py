"""Secrets stay secret: across a faulty run, no token or app key shows in any operator output."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import deque
from collections.abc import Callable

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


async def test_no_secret_in_logs_metrics_or_dead_letters(
    fake_bigpanda: FakeBigPanda, daemon_factory: Callable[[str], Daemon]
) -> None:
    """No token or app key appears in the debug log, /metrics, /-/ready or dead-letter views."""
    fake_bigpanda.set_faults(FAULTS)
    config = daemon_config(fake_bigpanda.alerts_url, max_in_flight=4).replace(
        "  shutdown_timeout: 2s\n",
        f"  shutdown_timeout: 2s\n  access_log: true\n  auth:\n    bearer_token: {INGEST_TOKEN}\n",
    )
    daemon = daemon_factory(config)
    daemon.start("--log-level", "debug")
    await daemon.wait_ready()
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

    cli = [sys.executable, "-m", "forwarder", "dlq"]
    conf = ["--config", str(daemon.config_path)]
    commands = [["list", *conf], ["list", "--json", *conf]]
    commands += [["show", str(item["id"]), *conf] for item in listing[:5]]
    for args in commands:
        proc = await asyncio.create_subprocess_exec(
            *cli, *args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        async with asyncio.timeout(60):
            out, _ = await proc.communicate()
        assert proc.returncode == 0, out
        views["forwarder dlq " + " ".join(args[:2])] = out.decode(errors="replace")
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
