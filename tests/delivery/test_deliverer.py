"""The deliverer: dry-run says what it does, names what to set, and keeps nothing.

The real app runs on the shared fake clock with a BigPanda target that has no
credentials, so it starts in dry-run. Log events are read with structlog's own
capture (``structlog.testing.capture_logs``), which replaces the renderer, not
the code under test.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from forwarder.delivery.deliverer import dry_run_hint
from forwarder.web.keys import QUEUE
from tests.conftest import APP_KEY, TOKEN, example, make_config, target_config

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]


def without_credentials(url: str) -> str:
    """A BigPanda target config with the token and app key left out."""
    text = target_config(url)
    return text.replace(f"    token: {TOKEN}\n", "").replace(f"    app_key: {APP_KEY}\n", "")


def events(logs: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    return [e for e in logs if e["event"] == name]


async def test_dry_run_logs_the_batch_keeps_nothing_and_never_says_delivered(
    make_client: ClientFactory,
) -> None:
    """Without credentials: a start-up warning says batches are written to the log and not
    kept, naming the empty keys; a batch is logged (``dry_run_batch``), acknowledged as
    ``dry_run_logged`` and counted in ``forwarder_alerts_logged_total``, never as
    ``delivered`` with a status, and no HTTP request is counted."""
    registry = CollectorRegistry()
    with structlog.testing.capture_logs() as logs:
        client = await make_client(
            without_credentials("https://bigpanda.invalid/data/v2/alerts"), registry=registry
        )
        async with client.post("/kapacitor", data=example("kapacitor-alert-critical.json")) as r:
            assert r.status == 200
        await _until_queue_empty(client)

    (start,) = events(logs, "dry_run")
    assert start["log_level"] == "warning"
    assert "written to this log" in start["message"]
    assert "nothing is kept to send later" in start["message"]
    assert (
        start["hint"] == "to send to BigPanda, set targets.bigpanda.token, targets.bigpanda.app_key"
    )
    assert start["unconfigured_targets"] == ["bigpanda"]

    (batch,) = events(logs, "dry_run_batch")
    (logged,) = events(logs, "dry_run_logged")
    assert logged["count"] == 1
    assert logged["alert_ids"] == [batch["alerts"][0]["check"]]
    assert logged["kept"] is False
    assert events(logs, "delivered") == []
    assert "201" not in json.dumps(logged)

    def value(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    assert value("forwarder_alerts_logged_total", target="bigpanda") == 1
    assert value("forwarder_alerts_delivered_total", target="bigpanda") == 0
    assert value("forwarder_request_duration_seconds_count", target="bigpanda") == 0
    assert not any(
        s.labels.get("code")
        for m in registry.collect()
        if m.name == "forwarder_requests"
        for s in m.samples
    )


async def _until_queue_empty(client: Client) -> None:
    """Wait (bounded) until the dry-run sender has taken the alert off the queue."""
    deadline = time.monotonic() + 10
    while (await client.app[QUEUE].stats()).events:
        assert time.monotonic() < deadline, "the dry-run batch was never taken off the queue"
        await asyncio.sleep(0.02)  # poll interval


def test_hint_names_the_empty_keys_and_the_variables_they_came_from(tmp_path: Path) -> None:
    """The hint lists the keys empty in this config, target by target, each with the
    environment variable it was read from when it was; log targets need nothing."""
    text = without_credentials("https://a.invalid/x").replace(
        "routes:\n",
        "  second:\n    kind: oim\n    url: https://b.invalid/y\n"
        "    token: ${SECOND_TOKEN:-}\n    app_key: ${SECOND_KEY:-}\n"
        "  logs:\n    kind: log\nroutes:\n"
        "  - name: second\n    target: second\n    match:\n      task: two\n"
        "  - name: logs\n    target: logs\n    match:\n      task: three\n",
    )
    config = make_config(tmp_path, text, env={"SECOND_TOKEN": ""})
    assert dry_run_hint(config) == (
        "to send to BigPanda, set targets.bigpanda.token, targets.bigpanda.app_key,"
        " targets.second.token (from ${SECOND_TOKEN}), targets.second.app_key (from ${SECOND_KEY})"
    )


def test_hint_for_a_forced_dry_run_with_credentials(tmp_path: Path) -> None:
    """With every credential set, dry-run can only be ``--dry-run``: the hint says so."""
    config = make_config(tmp_path, target_config("https://a.invalid/x"))
    assert dry_run_hint(config) == "started with --dry-run; start without it to send to BigPanda"
