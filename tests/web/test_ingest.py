"""The ingest endpoints of the real app, on loopback, fed the real sample payload files.

Every success is exactly 200 ``{"accepted": N, "suppressed": M}``; every refusal is a 4xx with
``{"error": "<what and where>"}``; nothing a client sends gives a 500, and the
server keeps answering afterwards.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from forwarder.web.protolog import PER_MINUTE
from tests.conftest import BASE_CONFIG, example, target_config
from tests.fakes.bigpanda import FakeBigPanda
from tests.web.conftest import exchange

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]

CRITICAL = example("kapacitor-alert-critical.json")
MINIMAL = example("kapacitor-alert-minimal.json")
HTTPPOST = example("kapacitor-httppost-row.json")
INFLUX = example("influxdb-notification-crit.json")

HTTPPOST_CONFIG = BASE_CONFIG + "ingest:\n  httppost:\n    default_level: CRITICAL\n"
SMALL_LIMIT_CONFIG = BASE_CONFIG.replace("server:\n", "server:\n  max_body_bytes: 1KiB\n")


def with_changes(raw: bytes, **changes: Any) -> bytes:
    """A sample body with top-level keys replaced (``None`` deletes one)."""
    doc = json.loads(raw)
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return json.dumps(doc).encode()


async def post(
    client: Client, path: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """POST raw bytes; return the status and the decoded JSON answer."""
    resp = await client.post(path, data=body, headers=headers)
    status = resp.status
    assert resp.content_type == "application/json", await resp.text()
    return status, await resp.json()


async def assert_still_serving(client: Client) -> None:
    """The server still accepts a good event after whatever came before.

    Accepted means queued, or suppressed as a repeat when the test posted it before.
    """
    status, body = await post(client, "/kapacitor", CRITICAL)
    assert status == 200
    assert body in ({"accepted": 1, "suppressed": 0}, {"accepted": 0, "suppressed": 1})


# --------------------------------------------------------------------------- success


@pytest.mark.parametrize(
    ("path", "payload", "answer"),
    [
        pytest.param(
            "/kapacitor", CRITICAL, {"accepted": 1, "suppressed": 0}, id="kapacitor-critical"
        ),
        # No host tag, so no primary property: BigPanda would refuse it, so it goes
        # straight to the dead-letter store and the answer says so (issue 10, part 2).
        pytest.param(
            "/kapacitor",
            MINIMAL,
            {"accepted": 0, "suppressed": 0, "dead_lettered": 1},
            id="kapacitor-minimal",
        ),
        pytest.param(
            "/kapacitor/cpu_alert",
            CRITICAL,
            {"accepted": 1, "suppressed": 0},
            id="kapacitor-with-task",
        ),
        pytest.param("/kapacitor", HTTPPOST, {"accepted": 1, "suppressed": 0}, id="httppost-row"),
        pytest.param("/influxdb", INFLUX, {"accepted": 1, "suppressed": 0}, id="influxdb"),
    ],
)
@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("application/json", id="json"),
        pytest.param("text/plain", id="text-plain"),
        pytest.param("application/x-www-form-urlencoded", id="form"),
    ],
)
async def test_each_sample_is_accepted_with_exactly_200(
    make_client: ClientFactory,
    path: str,
    payload: bytes,
    answer: dict[str, int],
    content_type: str,
) -> None:
    """Each real sample gets exactly 200 {"accepted": N, "suppressed": 0}, whatever the
    Content-Type says."""
    client = await make_client(HTTPPOST_CONFIG)
    status, body = await post(client, path, payload, {"Content-Type": content_type})
    assert status == 200
    assert body == answer


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        pytest.param("/kapacitor", CRITICAL, id="kapacitor"),
        pytest.param("/kapacitor/cpu_alert", CRITICAL, id="kapacitor-task"),
        pytest.param("/kapacitor", HTTPPOST, id="httppost"),
        pytest.param("/influxdb", INFLUX, id="influxdb"),
    ],
)
async def test_body_without_content_type_is_accepted(
    make_client: ClientFactory, path: str, payload: bytes
) -> None:
    """A request with no Content-Type header at all (Kapacitor with an alert template) is 200."""
    client = await make_client(HTTPPOST_CONFIG)
    request = (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + payload
    status, _, body = await exchange(client, request)
    assert status == 200
    assert json.loads(body) == {"accepted": 1, "suppressed": 0}


async def test_httppost_batch_counts_every_row(client: Client) -> None:
    """An httpPost body with several rows is accepted as that many events."""
    body = {
        "series": [
            {
                "name": "cpu",
                "tags": {"host": "a"},
                "columns": ["time", "level", "value"],
                "values": [
                    ["1971-01-01T00:00:00Z", "CRITICAL", 1],
                    ["1971-01-01T00:00:01Z", "OK", 2],
                ],
            },
            {
                "name": "mem",
                "tags": {"host": "b"},
                "columns": ["time", "level"],
                "values": [["1971-01-01T00:00:02Z", "WARNING"]],
            },
        ]
    }
    status, answer = await post(client, "/kapacitor", json.dumps(body).encode())
    assert (status, answer) == (200, {"accepted": 3, "suppressed": 0})


# --------------------------------------------------------------------------- task name


DEFAULT_DETAILS = "{&#34;Name&#34;:&#34;cpu&#34;,&#34;TaskName&#34;:&#34;from_details&#34;}"


@pytest.fixture
async def delivering_client(make_client: ClientFactory, fake_bigpanda: FakeBigPanda) -> Client:
    """The real app sending to the fake BigPanda, so the alert's task can be read there."""
    return await make_client(target_config(fake_bigpanda.alerts_url))


@pytest.mark.parametrize(
    ("path", "query", "header", "details", "task"),
    [
        pytest.param("/kapacitor/from_path", "from_query", "from_header", True, "from_path"),
        pytest.param("/kapacitor", "from_query", "from_header", True, "from_query"),
        pytest.param("/kapacitor", None, "from_header", True, "from_header"),
        pytest.param("/kapacitor", None, None, True, "from_details"),
        pytest.param("/kapacitor", None, None, False, ""),
    ],
    ids=["path", "query", "header", "details", "none"],
)
async def test_task_name_precedence(
    delivering_client: Client,
    fake_bigpanda: FakeBigPanda,
    path: str,
    query: str | None,
    header: str | None,
    details: bool,
    task: str,
) -> None:
    """Task name: path segment, then ?task=, then X-Kapacitor-Task, then TaskName in details."""
    body = with_changes(CRITICAL, details=DEFAULT_DETAILS if details else "")
    headers = {"X-Kapacitor-Task": header} if header else {}
    params = {"task": query} if query else {}
    resp = await delivering_client.post(path, data=body, headers=headers, params=params)
    assert resp.status == 200
    await fake_bigpanda.wait_for(lambda f: len(f.received) >= 1, timeout=10)
    assert fake_bigpanda.received[0].alert["task"] == f"{task}:cpu"


# --------------------------------------------------------------------------- 400s


def series_body(**series: Any) -> bytes:
    """The critical alert sample with ``data.series[0]`` replaced."""
    base = {"name": "cpu", "tags": {"host": "a"}, "columns": ["time", "v"]}
    return with_changes(CRITICAL, data={"series": [{**base, **series}]})


def influx_body(**changes: Any) -> bytes:
    """The InfluxDB sample with columns replaced (``None`` deletes one)."""
    return with_changes(INFLUX, **changes)


NESTED = b"[" * 2000 + b"]" * 2000

BAD_REQUESTS: list[Any] = [
    # Not JSON at all.
    pytest.param("/kapacitor", b"{not json", "invalid JSON", id="kap-invalid-json"),
    pytest.param("/influxdb", b"{not json", "invalid JSON", id="influx-invalid-json"),
    pytest.param("/kapacitor", b"", "empty body", id="kap-empty"),
    pytest.param("/influxdb", b"  \n ", "empty body", id="influx-blank"),
    pytest.param("/kapacitor/t", b'{"level": NaN}', "invalid JSON", id="nan"),
    pytest.param("/kapacitor", b'{"duration": Infinity}', "invalid JSON", id="infinity"),
    pytest.param("/influxdb", b'{"x": -Infinity}', "invalid JSON", id="minus-infinity"),
    pytest.param("/kapacitor", b'{"id": "\xff\xfe"}', "invalid JSON", id="invalid-utf8"),
    pytest.param("/influxdb", NESTED, "invalid JSON", id="deep-nesting"),
    pytest.param("/kapacitor", b"{} trailing", "invalid JSON", id="trailing-garbage"),
    # JSON, wrong shape.
    pytest.param("/kapacitor", b"[]", "body must be a JSON object, got a list", id="kap-list"),
    pytest.param("/kapacitor", b'"text"', "body must be a JSON object", id="kap-string"),
    pytest.param("/kapacitor", b"null", "body must be a JSON object, got null", id="kap-null"),
    pytest.param("/influxdb", b"[1]", "body must be a JSON object", id="influx-list"),
    pytest.param("/influxdb", b"42", "body must be a JSON object", id="influx-number"),
    pytest.param("/kapacitor", b"{}", "level: missing", id="kap-empty-object"),
    pytest.param(
        "/kapacitor", with_changes(CRITICAL, level=None), "level: missing", id="missing-level"
    ),
    pytest.param(
        "/kapacitor",
        with_changes(CRITICAL, level="SEVERE"),
        "level: unknown level 'SEVERE'",
        id="unknown-level",
    ),
    pytest.param(
        "/kapacitor",
        with_changes(CRITICAL, time="yesterday"),
        "time: not an RFC 3339 timestamp",
        id="bad-time",
    ),
    pytest.param(
        "/kapacitor", with_changes(CRITICAL, time=None), "time: missing", id="missing-time"
    ),
    pytest.param(
        "/kapacitor",
        with_changes(CRITICAL, id=42),
        "id: must be a string, got a number",
        id="id-as-number",
    ),
    pytest.param(
        "/kapacitor",
        with_changes(CRITICAL, duration="5s"),
        "duration: must be a number of nanoseconds",
        id="duration-as-string",
    ),
    pytest.param(
        "/kapacitor",
        series_body(tags={"port": 80}, values=[["1971-01-01T00:00:00Z", 1]]),
        "data.series[0].tags.port: must be a string, got a number",
        id="tag-not-string",
    ),
    pytest.param(
        "/kapacitor",
        series_body(values=[["1971-01-01T00:00:00Z"]]),
        "data.series[0].values[0]: must be a list of 2 values, one per column",
        id="row-length-mismatch",
    ),
    pytest.param(
        "/kapacitor",
        b'{"series": [{"name": "cpu", "tags": {"host": "a"}, "columns": ["time", "value"],'
        b' "values": [["1971-01-01T00:00:00Z", 97.1]]}]}',
        "series[0].values[0]: no 'level' column or tag",
        id="httppost-row-without-level",
    ),
    pytest.param(
        "/kapacitor",
        b'{"series": [{"name": "cpu", "columns": ["time", "level"],'
        b' "values": [["1971-01-01T00:00:00Z", "LOUD"]]}]}',
        "series[0].values[0].level: unknown level 'LOUD'",
        id="httppost-unknown-level",
    ),
    pytest.param(
        "/influxdb", influx_body(_level=None), "_level: missing", id="influx-missing-level"
    ),
    pytest.param(
        "/influxdb",
        influx_body(_level=3),
        "_level: must be a string, got a number",
        id="influx-level-number",
    ),
    pytest.param(
        "/influxdb",
        influx_body(_source_timestamp=None, _time=None),
        "_source_timestamp and _time: both missing",
        id="influx-missing-times",
    ),
    pytest.param(
        "/influxdb",
        influx_body(_source_timestamp="later"),
        "_source_timestamp: not an RFC 3339 timestamp",
        id="influx-bad-time",
    ),
    pytest.param(
        "/influxdb",
        influx_body(_check_name=7),
        "_check_name: must be a string, got a number",
        id="influx-id-as-number",
    ),
]


@pytest.mark.parametrize(("path", "payload", "error"), BAD_REQUESTS)
async def test_bad_input_is_400_saying_what_and_where(
    client: Client, path: str, payload: bytes, error: str
) -> None:
    """Bad JSON or a wrong shape is 400 with an error naming it; the server goes on serving."""
    status, body = await post(client, path, payload)
    assert status == 400
    assert set(body) == {"error"}
    assert isinstance(body["error"], str)
    assert body["error"].startswith(error), body["error"]
    await assert_still_serving(client)


async def test_template_error_is_400_and_counted(make_client: ClientFactory) -> None:
    """A template failing for one event is 400 with the key path, counted as template_error."""
    registry = CollectorRegistry()
    config = BASE_CONFIG.replace(
        "routes:", "mapping:\n  attributes:\n    owner: '{{ tags.host }}'\nroutes:"
    )
    client = await make_client(config, registry=registry)
    # The minimal sample has no tags, so {{ tags.host }} is undefined for it only.
    status, body = await post(client, "/kapacitor", MINIMAL)
    assert status == 400
    assert body["error"].startswith("mapping.attributes.owner: template error")
    assert "host" in body["error"]
    labels = {"source": "kapacitor", "reason": "template_error"}
    assert registry.get_sample_value("forwarder_events_rejected_total", labels) == 1.0
    # Other events are not affected.
    await assert_still_serving(client)


@pytest.mark.parametrize(
    ("path", "payload", "status", "reason"),
    [
        pytest.param("/kapacitor", b"{oops", 400, "bad_json", id="invalid-json"),
        pytest.param("/influxdb", b"", 400, "bad_json", id="empty"),
        pytest.param("/kapacitor", b"[]", 400, "bad_shape", id="wrong-shape"),
        pytest.param("/influxdb", b'{"_level": "crit"}', 400, "bad_shape", id="no-time"),
        pytest.param("/kapacitor", b"{" + b" " * 2048 + b"}", 413, "too_large", id="too-large"),
    ],
)
async def test_each_refusal_is_counted_with_its_reason(
    make_client: ClientFactory, path: str, payload: bytes, status: int, reason: str
) -> None:
    """Each refusal is counted in forwarder_events_rejected_total under its source and reason."""
    registry = CollectorRegistry()
    client = await make_client(SMALL_LIMIT_CONFIG, registry=registry)
    resp = await client.post(path, data=payload)
    assert resp.status == status
    await resp.read()
    labels = {"source": path.strip("/"), "reason": reason}
    assert registry.get_sample_value("forwarder_events_rejected_total", labels) == 1.0


async def test_sandbox_escape_is_400_without_internals(make_client: ClientFactory) -> None:
    """A template reaching for __class__ refuses the event; the answer leaks no internals."""
    config = BASE_CONFIG.replace(
        "routes:", 'mapping:\n  host: "{{ tags.__class__.__mro__ }}"\nroutes:'
    )
    client = await make_client(config)
    status, body = await post(client, "/kapacitor", CRITICAL)
    assert status == 400
    assert body["error"].startswith("mapping.host: template not allowed")
    assert "<class" not in body["error"]


async def test_httppost_error_in_a_later_row_refuses_the_whole_body(
    client: Client,
) -> None:
    """One bad row refuses the request (400), so Kapacitor never half-delivers a batch."""
    body = (
        b'{"series": [{"name": "cpu", "columns": ["time", "level"], "values": '
        b'[["1971-01-01T00:00:00Z", "OK"], ["1971-01-01T00:00:01Z", "NOPE"]]}]}'
    )
    status, answer = await post(client, "/kapacitor", body)
    assert status == 400
    assert answer["error"].startswith("series[0].values[1].level: unknown level")


# --------------------------------------------------------------------------- 413


def big_body() -> bytes:
    """A valid alert body over 1 KiB."""
    return with_changes(CRITICAL, message="x" * 2048)


@pytest.mark.parametrize("path", ["/kapacitor", "/kapacitor/t", "/influxdb"])
async def test_body_over_the_limit_with_content_length_is_413(
    make_client: ClientFactory, path: str
) -> None:
    """A body over server.max_body_bytes, announced by Content-Length, is 413 JSON."""
    client = await make_client(SMALL_LIMIT_CONFIG)
    status, body = await post(client, path, big_body())
    assert status == 413
    assert "server.max_body_bytes" in body["error"]
    assert "1024" in body["error"]
    await assert_still_serving(client)


@pytest.mark.parametrize("path", ["/kapacitor", "/influxdb"])
async def test_chunked_body_over_the_limit_is_413(make_client: ClientFactory, path: str) -> None:
    """A chunked body (no Content-Length) is cut off and refused with 413 once over the limit."""
    client = await make_client(SMALL_LIMIT_CONFIG)
    payload = big_body()

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(payload), 256):
            yield payload[i : i + 256]

    resp = await client.post(path, data=chunks())
    assert resp.status == 413
    assert resp.request_info.headers.get("Transfer-Encoding") == "chunked"
    body = await resp.json()
    assert "server.max_body_bytes" in body["error"]
    await assert_still_serving(client)


async def test_body_at_the_limit_is_accepted(make_client: ClientFactory) -> None:
    """A body of exactly server.max_body_bytes is within the limit."""
    client = await make_client(SMALL_LIMIT_CONFIG)
    base = with_changes(CRITICAL, message="")
    padded = with_changes(CRITICAL, message="y" * (1024 - len(base)))
    assert len(padded) == 1024
    status, body = await post(client, "/kapacitor", padded)
    assert (status, body) == (200, {"accepted": 1, "suppressed": 0})


async def test_chunked_body_within_the_limit_is_accepted(make_client: ClientFactory) -> None:
    """A chunked body under the limit is read whole and accepted."""
    client = await make_client(SMALL_LIMIT_CONFIG)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(CRITICAL), 64):
            yield CRITICAL[i : i + 64]

    resp = await client.post("/kapacitor", data=chunks())
    assert resp.status == 200
    assert await resp.json() == {"accepted": 1, "suppressed": 0}


# --------------------------------------------------------------------------- routing errors


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        pytest.param("POST", "/kapacitr", 404, id="typo-path"),
        pytest.param("POST", "/kapacitor/a/b", 404, id="too-deep"),
        pytest.param("GET", "/nothing-here", 404, id="get-unknown"),
        pytest.param("POST", "/influxdb/extra", 404, id="influx-extra"),
        pytest.param("GET", "/kapacitor", 405, id="get-kapacitor"),
        pytest.param("GET", "/kapacitor/cpu", 405, id="get-kapacitor-task"),
        pytest.param("PUT", "/kapacitor", 405, id="put-kapacitor"),
        pytest.param("GET", "/influxdb", 405, id="get-influxdb"),
        pytest.param("DELETE", "/influxdb", 405, id="delete-influxdb"),
    ],
)
async def test_unknown_paths_and_methods_answer_json(
    client: Client, method: str, path: str, status: int
) -> None:
    """An unknown path is 404 and a wrong method 405, both as JSON with an error string."""
    resp = await client.request(method, path, data=CRITICAL)
    assert resp.status == status
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert isinstance(body["error"], str)
    assert body["error"]
    if status == 405:
        assert resp.headers["Allow"] == "POST"
    await assert_still_serving(client)


async def test_nothing_a_client_sends_stops_the_server(client: Client) -> None:
    """After a run of bad requests of every kind, good requests are still accepted."""
    for _, payload, _ in (p.values for p in BAD_REQUESTS):
        resp = await client.post("/kapacitor", data=payload)
        assert 400 <= resp.status < 500
        await resp.read()
    status, body = await post(client, "/influxdb", INFLUX)
    assert (status, body) == (200, {"accepted": 1, "suppressed": 0})
    await assert_still_serving(client)


# --------------------------------------------------------------------------- trailing slash


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        pytest.param("/kapacitor/", CRITICAL, id="kapacitor"),
        pytest.param("/influxdb/", INFLUX, id="influxdb"),
    ],
)
async def test_a_trailing_slash_is_the_same_endpoint(
    delivering_client: Client, fake_bigpanda: FakeBigPanda, path: str, payload: bytes
) -> None:
    """``POST /kapacitor/`` is ``POST /kapacitor`` (no task from the path), not a 404."""
    status, body = await post(delivering_client, path, payload)
    assert (status, body) == (200, {"accepted": 1, "suppressed": 0})
    resp = await delivering_client.get(path)
    assert resp.status == 405


async def test_a_trailing_slash_after_the_task_names_the_task(
    delivering_client: Client, fake_bigpanda: FakeBigPanda
) -> None:
    """``POST /kapacitor/cpu_alert/`` is task ``cpu_alert``, as without the slash."""
    status, body = await post(delivering_client, "/kapacitor/cpu_alert/", CRITICAL)
    assert (status, body) == (200, {"accepted": 1, "suppressed": 0})
    await fake_bigpanda.wait_for(lambda f: len(f.received) == 1, timeout=10)
    assert str(fake_bigpanda.received[0].alert["task"]).startswith("cpu_alert:")


# --------------------------------------------------------------------------- rejection logs


async def test_a_rejection_is_a_warning_naming_client_path_task_and_reason(client: Client) -> None:
    with structlog.testing.capture_logs() as logs:
        status, _ = await post(
            client, "/kapacitor/disk_alert", with_changes(CRITICAL, level="BOGUS")
        )
    assert status == 400
    (line,) = [e for e in logs if e["event"] == "ingest_rejected"]
    assert line["log_level"] == "warning"
    assert line["client"] == "127.0.0.1"
    assert line["path"] == "/kapacitor/disk_alert"
    assert line["task"] == "disk_alert"
    assert line["reason"] == "bad_shape"
    assert line["source"] == "kapacitor"
    assert line["error"].startswith("level:")


@pytest.mark.parametrize(
    ("path", "payload", "hint"),
    [
        pytest.param(
            "/kapacitor",
            INFLUX,
            "this looks like an InfluxDB notification row; post it to /influxdb",
            id="influx-row-to-kapacitor",
        ),
        pytest.param(
            "/influxdb",
            CRITICAL,
            "this looks like a Kapacitor alert or httpPost body; post it to /kapacitor",
            id="kapacitor-alert-to-influxdb",
        ),
        pytest.param(
            "/influxdb",
            HTTPPOST,
            "this looks like a Kapacitor alert or httpPost body; post it to /kapacitor",
            id="httppost-rows-to-influxdb",
        ),
    ],
)
async def test_a_body_for_the_other_endpoint_says_which_to_use(
    client: Client, path: str, payload: bytes, hint: str
) -> None:
    """The 400 and the warning both name the endpoint the body belongs to."""
    with structlog.testing.capture_logs() as logs:
        status, body = await post(client, path, payload)
    assert status == 400
    assert body["error"].endswith(f"({hint})")
    (line,) = [e for e in logs if e["event"] == "ingest_rejected"]
    assert hint in line["error"]


async def test_rejection_warnings_are_rate_limited(client: Client) -> None:
    """A flood of bad requests does not flood the log: at most PER_MINUTE lines per reason."""
    with structlog.testing.capture_logs() as logs:
        for _ in range(PER_MINUTE + 5):
            status, _ = await post(client, "/kapacitor", b"{")
            assert status == 400
    lines = [e for e in logs if e["event"] == "ingest_rejected"]
    assert len(lines) == PER_MINUTE


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(
            b'{"series": [{"name": "cpu", "tags": {"host": "a"}}]}', id="series-no-values"
        ),
        pytest.param(b'{"series": []}', id="no-series"),
    ],
)
async def test_an_empty_httppost_batch_is_200_with_nothing_accepted(
    client: Client, payload: bytes
) -> None:
    """A batch whose ``|where()`` filtered out every point is not an error (issue 10, part 1)."""
    status, body = await post(client, "/kapacitor", payload)
    assert (status, body) == (200, {"accepted": 0, "suppressed": 0})


async def test_alert_bigpanda_would_refuse_is_dead_lettered_and_the_rest_accepted(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    """An httpPost batch with one row lacking a primary property: 200, the good row queued,
    the bad one in the dead-letter store with its reason, counted and logged with the fix."""
    registry = CollectorRegistry()
    client = await make_client(BASE_CONFIG, registry=registry)
    body = json.dumps(
        {
            "series": [
                {
                    "name": "cpu",
                    "tags": {"host": "a"},
                    "columns": ["time", "level", "value"],
                    "values": [["1971-01-01T00:00:00Z", "CRITICAL", 1]],
                },
                {
                    "name": "cpu",
                    "columns": ["time", "level", "value"],
                    "values": [["1971-01-01T00:00:00Z", "CRITICAL", 2]],
                },
            ]
        }
    ).encode()
    with structlog.testing.capture_logs() as logs:
        status, answer = await post(client, "/kapacitor/cpu_alert", body)
    assert (status, answer) == (200, {"accepted": 1, "suppressed": 0, "dead_lettered": 1})
    received = {"source": "kapacitor"}
    # Received counts what was queued; the refused one is counted below, not twice.
    assert registry.get_sample_value("forwarder_events_received_total", received) == 1.0
    labels = {"target": "bigpanda", "reason": "no_primary_property"}
    assert registry.get_sample_value("forwarder_alerts_refused_total", labels) == 1.0
    [line] = [entry for entry in logs if entry["event"] == "alert_refused"]
    assert line["log_level"] == "warning"
    assert line["reason"] == "no_primary_property"
    assert "route 'default'" in line["hint"]
    assert "mapping.host" in line["hint"]
    with sqlite3.connect(tmp_path / "queue.db") as conn:
        [(reason,)] = conn.execute("SELECT reason FROM dead_letters").fetchall()
        [(queued,)] = conn.execute("SELECT COUNT(*) FROM queue").fetchall()
    assert reason == "no_primary_property"
    assert queued == 1


async def test_empty_httppost_batch_is_accepted_with_zero(client: Client) -> None:
    """A batch |where() emptied (series without values) is 200 with nothing accepted, not a 400."""
    body = b'{"series":[{"name":"cpu","tags":{"host":"a"}}]}'
    assert await post(client, "/kapacitor", body) == (200, {"accepted": 0, "suppressed": 0})


# --------------------------------------------------------------------------- alert state

FLAP_CONFIG = BASE_CONFIG + "state:\n  flap:\n    transitions: 2\n    window: 10m\n    hold: 5m\n"


def suppressed(registry: CollectorRegistry, reason: str) -> float | None:
    """``forwarder_alerts_suppressed_total`` of the test target for ``reason``."""
    labels = {"target": "bigpanda", "reason": reason}
    return registry.get_sample_value("forwarder_alerts_suppressed_total", labels)


async def test_a_repeat_is_acknowledged_as_suppressed_and_counted(
    make_client: ClientFactory,
) -> None:
    """The same alert again is 200 with ``suppressed: 1`` and nothing queued; a status change
    goes out at once; each suppressed alert is counted with reason ``duplicate``."""
    registry = CollectorRegistry()
    client = await make_client(BASE_CONFIG, registry=registry)
    assert await post(client, "/kapacitor", CRITICAL) == (200, {"accepted": 1, "suppressed": 0})
    for _ in range(3):
        assert await post(client, "/kapacitor", CRITICAL) == (
            200,
            {"accepted": 0, "suppressed": 1},
        )
    recovered = with_changes(CRITICAL, level="OK")
    assert await post(client, "/kapacitor", recovered) == (200, {"accepted": 1, "suppressed": 0})
    # Received counts every accepted alert, queued or suppressed.
    assert (
        registry.get_sample_value("forwarder_events_received_total", {"source": "kapacitor"}) == 5
    )
    assert suppressed(registry, "duplicate") == 3
    assert suppressed(registry, "flapping") == 0


async def test_a_batch_answers_queued_suppressed_and_dead_lettered_apart(
    make_client: ClientFactory,
) -> None:
    """One httpPost body with a new row, a repeat and a row BigPanda would refuse:
    each is counted in its own field of the answer."""
    client = await make_client(BASE_CONFIG)
    row = {
        "name": "cpu",
        "tags": {"host": "a"},
        "columns": ["time", "level", "value"],
        "values": [["1971-01-01T00:00:00Z", "CRITICAL", 1]],
    }
    status, answer = await post(client, "/kapacitor/cpu", json.dumps({"series": [row]}).encode())
    assert (status, answer) == (200, {"accepted": 1, "suppressed": 0})
    no_host = {**row, "tags": {}}
    other = {**row, "tags": {"host": "b"}}
    body = json.dumps({"series": [row, no_host, other]}).encode()
    status, answer = await post(client, "/kapacitor/cpu", body)
    assert (status, answer) == (200, {"accepted": 1, "suppressed": 1, "dead_lettered": 1})


async def test_changes_held_while_flapping_are_counted_as_flapping(
    make_client: ClientFactory,
) -> None:
    """With ``flap.transitions: 2``, the third change in the window is sent (flapping) and
    the next one is held: 200 ``suppressed: 1``, counted with reason ``flapping``."""
    registry = CollectorRegistry()
    client = await make_client(FLAP_CONFIG, registry=registry)
    ok = with_changes(CRITICAL, level="OK")
    for body in (CRITICAL, ok, CRITICAL, ok):  # the fourth is the third change: sent
        assert await post(client, "/kapacitor", body) == (200, {"accepted": 1, "suppressed": 0})
    assert await post(client, "/kapacitor", CRITICAL) == (200, {"accepted": 0, "suppressed": 1})
    assert suppressed(registry, "flapping") == 1
    assert suppressed(registry, "duplicate") == 0


async def test_repeat_interval_zero_queues_every_repeat(make_client: ClientFactory) -> None:
    """``state.repeat_interval: 0`` turns deduplication off: every repeat is queued."""
    client = await make_client(BASE_CONFIG + "state:\n  repeat_interval: 0\n")
    for _ in range(3):
        assert await post(client, "/kapacitor", CRITICAL) == (
            200,
            {"accepted": 1, "suppressed": 0},
        )
