"""Ingest and admin authentication (``server.auth``): bearer token or HTTP basic.

Everything runs against the real app on a loopback port; the config is a real
file so that ``POST /-/reload`` has something to reload.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import BASE_CONFIG, example, write_config
from tests.web.conftest import Served, exchange

Client = TestClient[web.Request, web.Application]

BEARER = "ingest-bearer-0b7e51c2f4"
USER = "kapacitor"
PASSWORD = "basic-pass-93ad1e6b27"
ALERT = example("kapacitor-alert-critical.json")


def basic(user: str, password: str) -> str:
    """An ``Authorization`` value for HTTP basic auth."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def auth_config(auth_block: str) -> str:
    """The dry-run base config with ``server.auth`` set to ``auth_block`` (YAML lines)."""
    return BASE_CONFIG.replace(
        "  shutdown_timeout: 2s\n", "  shutdown_timeout: 2s\n  auth:\n" + auth_block, 1
    )


BEARER_ONLY = auth_config(f"    bearer_token: {BEARER}\n")
BASIC_ONLY = auth_config(f"    basic:\n      username: {USER}\n      password: {PASSWORD}\n")
BOTH = auth_config(
    f"    bearer_token: {BEARER}\n    basic:\n      username: {USER}\n      password: {PASSWORD}\n"
)

AppFactory = Callable[[str], Awaitable[Client]]


@pytest.fixture
def app_from_file(make_client: Callable[..., Awaitable[Client]]) -> AppFactory:
    """Serve the real app built from a config *file* (so reload works)."""

    async def factory(text: str) -> Client:
        return await make_client(text, from_file=True)

    return factory


async def rejected_unauthorized(client: Client, source: str = "kapacitor") -> float:
    """The value of ``forwarder_events_rejected_total{source, reason="unauthorized"}``."""
    resp = await client.get("/metrics")
    for family in text_string_to_metric_families(await resp.text()):
        for s in family.samples:
            if s.name == "forwarder_events_rejected_total" and s.labels == {
                "source": source,
                "reason": "unauthorized",
            }:
                return float(s.value)
    raise AssertionError("no forwarder_events_rejected_total{reason=unauthorized}")


async def test_bearer_token_is_accepted(app_from_file: AppFactory) -> None:
    """An ingest request with the configured bearer token is accepted (200)."""
    client = await app_from_file(BEARER_ONLY)
    resp = await client.post(
        "/kapacitor", data=ALERT, headers={"Authorization": f"Bearer {BEARER}"}
    )
    assert resp.status == 200
    assert await resp.json() == {"accepted": 1, "suppressed": 0}
    assert await rejected_unauthorized(client) == 0


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer wrong-token",
        f"Bearer {BEARER}x",
        f"bearer {BEARER[:-1]}",
        BEARER,
        f"Token {BEARER}",
        basic(USER, BEARER),
    ],
    ids=["missing", "wrong", "longer", "shorter", "no-scheme", "other-scheme", "basic-instead"],
)
async def test_bearer_refusal_is_401_json_with_challenge_and_metric(
    app_from_file: AppFactory, header: str | None
) -> None:
    """Without the exact bearer token, ingest answers 401 with a JSON error and a Bearer
    challenge, queues nothing, and counts ``reason="unauthorized"``."""
    client = await app_from_file(BEARER_ONLY)
    headers = {"Authorization": header} if header is not None else {}
    resp = await client.post("/kapacitor", data=ALERT, headers=headers)
    assert resp.status == 401
    assert resp.content_type == "application/json"
    assert "credentials" in (await resp.json())["error"]
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="forwarder"'
    assert await rejected_unauthorized(client) == 1


async def test_basic_auth_is_accepted(app_from_file: AppFactory) -> None:
    """An ingest request with the configured basic credentials is accepted (200)."""
    client = await app_from_file(BASIC_ONLY)
    resp = await client.post(
        "/influxdb",
        data=example("influxdb-notification-crit.json"),
        headers={"Authorization": basic(USER, PASSWORD)},
    )
    assert resp.status == 200
    assert await rejected_unauthorized(client, "influxdb") == 0


@pytest.mark.parametrize(
    "header",
    [
        None,
        basic(USER, "wrong"),
        basic("someone", PASSWORD),
        basic(USER, PASSWORD + "x"),
        "Basic " + base64.b64encode(f"{USER}{PASSWORD}".encode()).decode(),
        "Basic not-base64!!",
        f"Bearer {PASSWORD}",
    ],
    ids=["missing", "wrong-pass", "wrong-user", "longer-pass", "no-colon", "garbage", "bearer"],
)
async def test_basic_refusal_is_401_with_basic_challenge(
    app_from_file: AppFactory, header: str | None
) -> None:
    """Wrong or malformed basic credentials (or another scheme) get 401 with a Basic challenge."""
    client = await app_from_file(BASIC_ONLY)
    headers = {"Authorization": header} if header is not None else {}
    resp = await client.post(
        "/influxdb", data=example("influxdb-notification-crit.json"), headers=headers
    )
    assert resp.status == 401
    assert "error" in await resp.json()
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="forwarder"'
    assert await rejected_unauthorized(client, "influxdb") == 1


async def test_either_form_is_accepted_when_both_are_configured(app_from_file: AppFactory) -> None:
    """With a bearer token and basic credentials configured, each one alone is enough."""
    client = await app_from_file(BOTH)
    for header in (f"Bearer {BEARER}", basic(USER, PASSWORD)):
        resp = await client.post("/kapacitor", data=ALERT, headers={"Authorization": header})
        assert resp.status == 200, header
    resp = await client.post("/kapacitor", data=ALERT, headers={"Authorization": "Bearer nope"})
    assert resp.status == 401


async def test_admin_api_requires_the_same_credentials(app_from_file: AppFactory) -> None:
    """The dead-letter API and ``POST /-/reload`` refuse requests without credentials, with
    the same JSON 401 and challenge, and serve them with credentials."""
    client = await app_from_file(BEARER_ONLY)
    admin = [
        ("GET", "/api/v1/dead-letters"),
        ("GET", "/api/v1/dead-letters/1"),
        ("POST", "/api/v1/dead-letters/replay"),
        ("POST", "/api/v1/dead-letters/purge"),
        ("POST", "/-/reload"),
    ]
    for method, path in admin:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            resp = await client.request(method, path, headers=headers)
            assert resp.status == 401, (method, path, headers)
            assert "error" in await resp.json()
            assert resp.headers["WWW-Authenticate"] == 'Bearer realm="forwarder"'

    good = {"Authorization": f"Bearer {BEARER}"}
    resp = await client.get("/api/v1/dead-letters", headers=good)
    assert resp.status == 200
    assert await resp.json() == {"dead_letters": []}
    resp = await client.get("/api/v1/dead-letters/1", headers=good)
    assert resp.status == 404
    resp = await client.post("/api/v1/dead-letters/replay", json={"all": True}, headers=good)
    assert resp.status == 200
    assert await resp.json() == {"replayed": 0}
    resp = await client.post("/api/v1/dead-letters/purge", json={"ids": [1]}, headers=good)
    assert resp.status == 200
    resp = await client.post("/-/reload", headers=good)
    assert resp.status == 200
    assert (await resp.json())["status"] == "reloaded"


async def test_probes_and_metrics_are_open(app_from_file: AppFactory) -> None:
    """``/-/healthy``, ``/-/ready`` and ``/metrics`` answer without credentials (kubelet and
    Prometheus do not send any)."""
    client = await app_from_file(BOTH)
    for path in ("/-/healthy", "/-/ready", "/metrics"):
        resp = await client.get(path)
        assert resp.status == 200, path


async def test_without_server_auth_everything_is_open(app_from_file: AppFactory) -> None:
    """With no ``server.auth``, ingest and the admin API need no credentials."""
    client = await app_from_file(BASE_CONFIG)
    resp = await client.post("/kapacitor", data=ALERT)
    assert resp.status == 200
    resp = await client.get("/api/v1/dead-letters")
    assert resp.status == 200


async def test_reload_swaps_the_credentials(app_from_file: AppFactory, tmp_path: Path) -> None:
    """After a reload with a new bearer token, the new token is accepted and the old one
    refused, at once and without a restart."""
    client = await app_from_file(BEARER_ONLY)
    new_token = "rotated-bearer-6c1f"
    write_config(tmp_path, auth_config(f"    bearer_token: {new_token}\n"))
    resp = await client.post("/-/reload", headers={"Authorization": f"Bearer {BEARER}"})
    assert resp.status == 200
    old = await client.post("/kapacitor", data=ALERT, headers={"Authorization": f"Bearer {BEARER}"})
    assert old.status == 401
    new = await client.post(
        "/kapacitor", data=ALERT, headers={"Authorization": f"Bearer {new_token}"}
    )
    assert new.status == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/kapacitor"),
        ("POST", "/kapacitor/task"),
        ("POST", "/influxdb"),
        ("POST", "/-/reload"),
        ("GET", "/api/v1/dead-letters"),
        ("GET", "/api/v1/dead-letters/1"),
        ("POST", "/api/v1/dead-letters/replay"),
        ("POST", "/api/v1/dead-letters/purge"),
    ],
)
@pytest.mark.parametrize(
    "value",
    [
        b"Bearer \xff\xfe",
        b"Bearer " + BEARER.encode() + b"\xff",
        b"Basic \xff",
        b"\xff " + BEARER.encode(),
        b"Bearer \xed\xa0\x80",  # an encoded lone surrogate
    ],
)
async def test_credentials_that_are_not_utf8_are_a_json_401(
    served: Served, method: str, path: str, value: bytes
) -> None:
    """Non-UTF-8 bytes in ``Authorization`` are wrong credentials (401), not a 500."""
    client = await served(BOTH)
    raw = (
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
        + b"Authorization: "
        + value
        + b"\r\nContent-Length: 2\r\n\r\n{}"
    )
    status, headers, body = await exchange(client, raw)
    assert status == 401, body
    assert headers["content-type"].startswith("application/json")
    assert "credentials" in json.loads(body)["error"]
