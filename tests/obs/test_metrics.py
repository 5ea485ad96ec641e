"""``GET /metrics`` after a scripted run: every series the issue lists, with its exact value.

The run uses the real app on a loopback port, a real SQLite queue and the fake
BigPanda: alerts from both sources are ingested and delivered, one request is
refused for each reject reason, one batch is retried after a 503, and one is
dead-lettered after a 400.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import textwrap
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from forwarder.obs.metrics import REFUSE_REASONS, Metrics
from forwarder.queue.contract import AlertCounts
from tests.conftest import APP_KEY, TOKEN, example, target_config
from tests.fakes.bigpanda import FakeBigPanda, FaultPlan

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]

INGEST_TOKEN = "ingest-bearer-7d41c0e9aa"
AUTH = {"Authorization": f"Bearer {INGEST_TOKEN}", "Content-Type": "application/json"}
TARGET = {"target": "bigpanda"}


def scripted_config(url: str, *, max_events: int = 2) -> str:
    """The fake-target config plus ingest auth, a small body limit, a tiny queue and a
    route whose template fails (for ``/kapacitor/broken``)."""
    text = target_config(url)
    text = text.replace(
        "  shutdown_timeout: 2s\n",
        "  shutdown_timeout: 2s\n"
        "  max_body_bytes: 8192\n"
        f"  auth:\n    bearer_token: {INGEST_TOKEN}\n",
        1,
    )
    text = text.replace(
        "  synchronous: normal\n", f"  synchronous: normal\n  max_events: {max_events}\n", 1
    )
    return text.replace(
        "routes:\n",
        "routes:\n"
        "  - name: broken\n"
        "    target: bigpanda\n"
        "    match:\n"
        "      task: broken\n"
        "    mapping:\n"
        "      attributes:\n"
        "        oops: '{{ tags.no_such_tag }}'\n",
        1,
    )


def kapacitor_alert(alert_id: str, host: str) -> bytes:
    """A Kapacitor alert-handler body with its own id and host."""
    doc: dict[str, Any] = json.loads(example("kapacitor-alert-critical.json"))
    doc["id"] = alert_id
    doc["data"]["series"][0]["tags"]["host"] = host
    return json.dumps(doc).encode()


def httppost_rows(*rows: tuple[str, str]) -> bytes:
    """A Kapacitor ``httpPost`` body with one series (and one event) per (id, host)."""
    series = [
        {
            "name": "cpu",
            "tags": {"host": host},
            "columns": ["time", "value", "level", "id"],
            "values": [["1971-01-01T00:00:00Z", 97.1, "CRITICAL", alert_id]],
        }
        for alert_id, host in rows
    ]
    return json.dumps({"series": series}).encode()


def influxdb_row(check_name: str, host: str, **extra: Any) -> bytes:
    """An InfluxDB notification row with its own check name and host."""
    doc: dict[str, Any] = json.loads(example("influxdb-notification-crit.json"))
    doc.update(_check_name=check_name, host=host, **extra)
    return json.dumps(doc).encode()


def received(n: int) -> Callable[[FakeBigPanda], bool]:
    """A ``wait_for`` predicate: the fake has accepted ``n`` alerts."""

    def predicate(fake: FakeBigPanda) -> bool:
        return len(fake.received) == n

    return predicate


def parse_series(text: str) -> Series:
    """Every sample of an exposition, keyed by (sample name, labels)."""
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(series: Series, name: str, **labels: str) -> float:
    """One sample's value; fails naming the series if it is absent."""
    key = (name, frozenset(labels.items()))
    assert key in series, f"no series {name}{labels}"
    return series[key]


async def scrape(client: Client) -> tuple[str, Series]:
    """``GET /metrics``: the text and its parsed samples."""
    resp = await client.get("/metrics")
    assert resp.status == 200
    text = await resp.text()
    return text, parse_series(text)


async def scrape_until(
    client: Client, done: Callable[[Series], bool], timeout: float = 10.0
) -> tuple[str, Series]:
    """Scrape until ``done(series)`` holds, with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        text, series = await scrape(client)
        if done(series):
            return text, series
        assert time.monotonic() < deadline, f"metrics never settled:\n{text}"
        await asyncio.sleep(0.02)  # poll interval, not a wait for the outcome


async def ingest(client: Client, path: str, body: bytes, status: int = 200) -> dict[str, Any]:
    """POST ``body`` with valid credentials and check the answer's status."""
    resp = await client.post(path, data=body, headers=AUTH)
    doc: dict[str, Any] = await resp.json()
    assert resp.status == status, doc
    return doc


async def test_metrics_after_a_scripted_run_have_exact_values(
    make_client: ClientFactory, fake_bigpanda: FakeBigPanda
) -> None:
    """After ingest, rejects of every reason, deliveries, one retry and one dead letter,
    each series the issue lists has exactly the value the run implies."""
    fake = fake_bigpanda
    text_config = scripted_config(fake.alerts_url)
    started = time.time()
    client = await make_client(text_config)

    # One refused request per reason; none of them queues anything.
    resp = await client.post("/kapacitor", data=b"{not json", headers=AUTH)
    assert resp.status == 400
    resp = await client.post("/kapacitor", data=b'{"no": "alert"}', headers=AUTH)
    assert resp.status == 400
    resp = await client.post("/influxdb", data=b'{"host": "a"}', headers=AUTH)
    assert resp.status == 400
    resp = await client.post("/kapacitor", data=b" " * 9000, headers=AUTH)
    assert resp.status == 413
    resp = await client.post("/kapacitor", data=kapacitor_alert("k-noauth", "h0"))
    assert resp.status == 401
    resp = await client.post(
        "/kapacitor", data=httppost_rows(("q1", "h1"), ("q2", "h2"), ("q3", "h3")), headers=AUTH
    )
    assert resp.status == 503  # three alerts never fit a queue of two
    assert "Retry-After" in resp.headers
    resp = await client.post("/kapacitor/broken", data=kapacitor_alert("k-tpl", "h4"), headers=AUTH)
    assert resp.status == 400
    assert "no_such_tag" in (await resp.json())["error"]

    # Five alerts delivered one by one (the queue holds two at most).
    bodies = [
        ("/kapacitor", kapacitor_alert("k1", "web-1")),
        ("/kapacitor", httppost_rows(("k2", "web-2"))),
        ("/kapacitor", kapacitor_alert("k3", "web-3")),
        ("/influxdb", influxdb_row("i1", "db-1")),
        ("/influxdb", influxdb_row("i2", "db-2", note="x" * 600)),  # cut to 512 characters
    ]
    for n, (path, body) in enumerate(bodies, start=1):
        await ingest(client, path, body)
        await fake.wait_for(received(n), timeout=10)

    # A retry: the fake answers 503 once, then accepts.
    fake.set_faults(FaultPlan(p_503=1.0))
    await ingest(client, "/kapacitor", kapacitor_alert("k-retry", "web-4"))
    await fake.wait_for(lambda f: any(r.status == 503 for r in f.requests), timeout=10)
    fake.set_faults(FaultPlan())
    await fake.wait_for(received(6), timeout=10)

    # A dead letter: the fake answers 400.
    fake.set_faults(FaultPlan(force_status=400))
    await ingest(client, "/kapacitor", kapacitor_alert("k-dead", "web-5"))
    await fake.wait_for(lambda f: any(r.status == 400 for r in f.requests), timeout=10)
    fake.set_faults(FaultPlan())

    text, series = await scrape_until(
        client,
        lambda s: (
            s.get(("forwarder_dead_letters", frozenset(TARGET.items()))) == 1
            and s.get(("forwarder_queue_events", frozenset(TARGET.items()))) == 0
            and s.get(("forwarder_alerts_delivered_total", frozenset(TARGET.items()))) == 6
        ),
    )

    def v(name: str, **labels: str) -> float:
        return value(series, name, **labels)

    # Ingest.
    assert v("forwarder_events_received_total", source="kapacitor") == 5
    assert v("forwarder_events_received_total", source="influxdb") == 2
    expected_rejects = {
        ("kapacitor", "bad_json"): 1,
        ("kapacitor", "bad_shape"): 1,
        ("kapacitor", "too_large"): 1,
        ("kapacitor", "unauthorized"): 1,
        ("kapacitor", "queue_full"): 1,
        ("kapacitor", "template_error"): 1,
        ("influxdb", "bad_shape"): 1,
    }
    for source in ("kapacitor", "influxdb"):
        for reason in (
            "bad_json",
            "bad_shape",
            "too_large",
            "unauthorized",
            "queue_full",
            "template_error",
        ):
            got = v("forwarder_events_rejected_total", source=source, reason=reason)
            assert got == expected_rejects.get((source, reason), 0), (source, reason)
    assert v("forwarder_ingest_duration_seconds_count", source="kapacitor") == 5
    assert v("forwarder_ingest_duration_seconds_count", source="influxdb") == 2

    # Queue: drained, one dead letter kept.
    assert v("forwarder_queue_events", **TARGET) == 0
    assert v("forwarder_queue_bytes") == 0
    assert v("forwarder_queue_oldest_age_seconds", **TARGET) == 0

    # Delivery: 6 acknowledged requests, one 503, one 400; one alert per request.
    assert v("forwarder_alerts_delivered_total", **TARGET) == 6
    assert v("forwarder_requests_total", code="201", **TARGET) == 6
    assert v("forwarder_requests_total", code="503", **TARGET) == 1
    assert v("forwarder_requests_total", code="400", **TARGET) == 1
    codes = {dict(labels)["code"] for name, labels in series if name == "forwarder_requests_total"}
    assert codes == {"201", "503", "400"}
    failures = {"serverError": 1, "clientError": 1}
    for reason in (
        "clientError",
        "serverError",
        "rateLimited",
        "authError",
        "timeout",
        "connection",
    ):
        got = v("forwarder_delivery_failures_total", reason=reason, **TARGET)
        assert got == failures.get(reason, 0), reason
    assert v("forwarder_retries_total", **TARGET) == 1
    assert v("forwarder_dead_letters", **TARGET) == 1
    assert v("forwarder_dead_lettered_total", reason="clientError", **TARGET) == 1
    assert v("forwarder_batch_size_alerts_count") == 8
    assert v("forwarder_batch_size_alerts_sum") == 8
    assert v("forwarder_batch_size_alerts_bucket", le="1.0") == 8
    assert v("forwarder_delivery_latency_seconds_count", **TARGET) == 6
    assert v("forwarder_request_duration_seconds_count", **TARGET) == 8
    assert v("forwarder_target_up", **TARGET) == 1

    # Mapping: the 600-character field was cut once.
    assert v("forwarder_attribute_truncations_total") == 1

    # Config and build.
    digest = hashlib.sha256(textwrap.dedent(text_config).encode()).hexdigest()
    assert v("forwarder_config_last_reload_successful") == 1
    assert started <= v("forwarder_config_last_reload_success_timestamp_seconds") <= time.time()
    assert v("forwarder_config_hash") == int(digest[:12], 16)
    assert v("forwarder_build_info", version="0.1.0") == 1

    # Label values are names, never credentials or URLs.
    for secret in (TOKEN, APP_KEY, INGEST_TOKEN, fake.url, fake.alerts_url):
        assert secret not in text
    for _, labels in series:
        for _, label_value in labels:
            assert "://" not in label_value
            assert all(s not in label_value for s in (TOKEN, APP_KEY, INGEST_TOKEN))


async def test_queue_full_while_the_target_is_down_refuses_with_503_and_loses_nothing(
    make_client: ClientFactory, fake_bigpanda: FakeBigPanda
) -> None:
    """With BigPanda down (answering 503) and the queue at ``queue.max_events``, ingest answers 503
    with ``Retry-After``, counts ``queue_full``, and the queued alerts are sent once it is back."""
    fake = fake_bigpanda
    # Down as in an outage answering 503; closing the port instead could lose it to
    # another process before it is reopened.
    fake.set_faults(FaultPlan(force_status=503))
    client = await make_client(scripted_config(fake.alerts_url, max_events=2))
    await ingest(client, "/kapacitor", kapacitor_alert("k1", "web-1"))
    await ingest(client, "/influxdb", influxdb_row("i1", "db-1"))

    resp = await client.post("/kapacitor", data=kapacitor_alert("k2", "web-2"), headers=AUTH)
    assert resp.status == 503
    assert resp.headers["Retry-After"].isdigit()
    assert "queue full" in (await resp.json())["error"]
    _, series = await scrape(client)
    assert value(series, "forwarder_queue_events", **TARGET) == 2
    assert value(series, "forwarder_queue_bytes") > 0
    assert value(series, "forwarder_events_rejected_total", source="kapacitor", reason="queue_full")

    fake.set_faults(FaultPlan())
    await fake.wait_for(lambda f: sorted(f.checks()) == ["i1", "k1"], 15)
    _, series = await scrape_until(
        client, lambda s: s.get(("forwarder_queue_events", frozenset(TARGET.items()))) == 0
    )
    assert value(series, "forwarder_alerts_delivered_total", **TARGET) == 2
    assert (
        value(series, "forwarder_events_rejected_total", source="kapacitor", reason="queue_full")
        == 1
    )
    assert value(series, "forwarder_dead_letters", **TARGET) == 0


def test_process_metrics_are_on_the_injected_registry() -> None:
    """The standard ``process_*`` series (memory, CPU, open fds, start time) and
    ``python_info`` are exposed by the registry the forwarder was given, so a scrape of
    ``/metrics`` has them; two instances on two registries do not collide."""
    first, second = CollectorRegistry(), CollectorRegistry()
    Metrics(first)
    Metrics(second)
    series = parse_series(generate_latest(first).decode())
    names = {name for name, _ in series}
    for name in (
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "python_info",
    ):
        assert name in names, name
    assert value(series, "process_open_fds") > 0
    assert 0 < value(series, "process_start_time_seconds") <= time.time()
    assert "process_open_fds" in generate_latest(second).decode()


def test_new_delivery_series_start_at_zero_for_each_target() -> None:
    """A target's refused, logged, rate-limited and alert-state series exist at zero from
    the start, with one ``forwarder_alerts_refused_total`` per refusal reason and one
    ``forwarder_alerts_suppressed_total`` per suppression reason."""
    registry = CollectorRegistry()
    Metrics(registry).init_target("bigpanda")
    series = parse_series(generate_latest(registry).decode())
    for reason in REFUSE_REASONS:
        assert value(series, "forwarder_alerts_refused_total", reason=reason, **TARGET) == 0
    assert set(REFUSE_REASONS) >= {"no_primary_property", "invalid_status", "no_app_key"}
    assert value(series, "forwarder_alerts_logged_total", **TARGET) == 0
    assert value(series, "forwarder_target_rate_limited", **TARGET) == 0
    assert value(series, "forwarder_delivery_failures_total", reason="redirect", **TARGET) == 0
    for why in ("duplicate", "flapping"):
        assert value(series, "forwarder_alerts_suppressed_total", reason=why, **TARGET) == 0
    assert value(series, "forwarder_alerts_auto_resolved_total", **TARGET) == 0
    assert value(series, "forwarder_alerts_flap_released_total", **TARGET) == 0


async def test_alert_gauges_show_configured_targets_and_any_the_store_counts() -> None:
    """``forwarder_alerts_open`` and ``_flapping`` show every configured target (0 when it has
    none) and also a target only the store knows (its route was removed), so no identity
    the store keeps is hidden."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)

    async def read() -> AlertCounts:
        return AlertCounts(open={"gone": 2, "bigpanda": 1}, flapping={"gone": 1})

    before = parse_series(generate_latest(registry).decode())
    assert not any(name.startswith("forwarder_alerts_open") for name, _ in before)
    await metrics.alerts.refresh(read, ["bigpanda", "quiet"])
    series = parse_series(generate_latest(registry).decode())
    for target, opened, flapping in (("bigpanda", 1, 0), ("quiet", 0, 0), ("gone", 2, 1)):
        assert value(series, "forwarder_alerts_open", target=target) == opened
        assert value(series, "forwarder_alerts_flapping", target=target) == flapping
