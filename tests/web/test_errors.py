"""JSON errors for every refusal: the ``json_errors`` view wrapper and the 404/405 routes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from forwarder.web.errors import HTTPError, json_errors

Client = TestClient[web.Request, web.Application]


async def _boom(request: web.Request) -> web.Response:
    raise RuntimeError("a bug in a view")


async def _refused(request: web.Request) -> web.Response:
    raise HTTPError("limit: must be a whole number", status=400)


async def _too_large(request: web.Request) -> web.Response:
    raise web.HTTPRequestEntityTooLarge(max_size=10, actual_size=20)


async def _fine(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


@pytest.fixture
async def wrapped_client() -> AsyncIterator[Client]:
    """A real server whose views are wrapped the way the forwarder wraps its admin views."""
    app = web.Application()
    app.router.add_get("/boom", json_errors(_boom))
    app.router.add_get("/refused", json_errors(_refused))
    app.router.add_get("/too-large", json_errors(_too_large))
    app.router.add_get("/fine", json_errors(_fine))
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_an_unexpected_exception_is_a_json_500_and_the_server_goes_on(
    wrapped_client: Client,
) -> None:
    """A bug answers 500 with a JSON error that points at the log, not a traceback."""
    resp = await wrapped_client.get("/boom")
    assert resp.status == 500
    assert await resp.json() == {"error": "internal error; see the forwarder's log"}
    resp = await wrapped_client.get("/fine")
    assert (resp.status, await resp.json()) == (200, {"ok": True})


async def test_a_refusal_keeps_its_status_and_message(wrapped_client: Client) -> None:
    resp = await wrapped_client.get("/refused")
    assert resp.status == 400
    assert await resp.json() == {"error": "limit: must be a whole number"}


async def test_aiohttp_http_errors_become_json(wrapped_client: Client) -> None:
    resp = await wrapped_client.get("/too-large")
    assert resp.status == 413
    assert resp.content_type == "application/json"
    assert (await resp.json())["error"]


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        pytest.param("PUT", "/-/healthy", 405, "GET,HEAD", id="put-healthy"),
        pytest.param("GET", "/-/reload", 405, "POST", id="get-reload"),
        pytest.param("DELETE", "/api/v1/dead-letters/7", 405, "GET,HEAD", id="delete-dead-letter"),
        pytest.param("GET", "/api/v1/dead-letters/replay", 405, "POST", id="get-replay"),
        pytest.param("GET", "/api/v1/dead-letters/7/extra", 404, None, id="too-deep"),
        pytest.param("POST", "/", 404, None, id="root"),
        pytest.param("POST", "/kapacitor/%0A%7B", 404, None, id="newline-in-path"),
    ],
)
async def test_every_path_and_method_of_the_app_answers_json(
    client: Client, method: str, path: str, status: int, allow: str | None
) -> None:
    """Admin and probe paths refuse wrong methods and unknown paths in JSON too."""
    resp = await client.request(method, path)
    assert resp.status == status
    assert resp.content_type == "application/json"
    assert (await resp.json())["error"]
    assert resp.headers.get("Allow") == allow
