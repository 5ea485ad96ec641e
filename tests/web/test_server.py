"""Every error answer is JSON, including the ones aiohttp makes before the app sees a request.

The app is served through :class:`forwarder.web.server.Runner`, as ``forwarder run``
serves it, and spoken to in hand-written HTTP/1.1 bytes.
"""

from __future__ import annotations

import json

import pytest

from forwarder.web.server import error_text
from tests.conftest import example
from tests.web.conftest import Served, exchange, post_bytes

ALERT = example("kapacitor-alert-critical.json")


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        pytest.param(
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 404, id="connect"
        ),
        pytest.param(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 404, id="options-asterisk"),
        pytest.param(b"TRACE * HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="trace-asterisk"),
        pytest.param(b"GARBAGE\r\n\r\n", 400, id="not-http"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n", 400, id="control-char"),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
            400,
            id="header-too-long",
        ),
        pytest.param(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="long-line"),
        pytest.param(
            b"POST /kapacitor HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
            400,
            id="two-lengths",
        ),
        pytest.param(
            b"POST /kapacitor HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            400,
            id="bad-transfer-encoding",
        ),
        pytest.param(b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 400, id="http-version"),
    ],
)
async def test_answers_aiohttp_makes_itself_are_json(
    served: Served, raw: bytes, status: int
) -> None:
    """Requests the parser or router refuses get ``{"error": ...}``, never aiohttp's plain text."""
    client = await served()
    got, headers, body = await exchange(client, raw)
    assert got == status, body
    assert headers["content-type"].startswith("application/json"), body
    error = json.loads(body)["error"]
    assert error
    assert "\n" not in error
    resp = await client.get("/-/healthy")
    assert resp.status == 200


async def test_a_parser_error_does_not_echo_the_request_bytes(served: Served) -> None:
    """aiohttp quotes the offending line; the JSON answer keeps only what went wrong."""
    client = await served()
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\x01token\r\n\r\n"
    status, _, body = await exchange(client, raw)
    assert status == 400
    assert b"secret" not in body
    assert json.loads(body) == {"error": "Invalid header value char"}


async def test_the_asterisk_target_is_named(served: Served) -> None:
    client = await served()
    _, _, body = await exchange(client, b"TRACE * HTTP/1.1\r\nHost: x\r\n\r\n")
    assert json.loads(body) == {"error": "invalid request target '*'"}


async def test_json_answers_of_views_are_left_alone(served: Served) -> None:
    """The hook rewriting plain-text errors does not touch the app's own JSON answers."""
    client = await served()
    status, _, body = await exchange(client, post_bytes("/kapacitor", ALERT))
    assert (status, json.loads(body)) == (200, {"accepted": 1, "suppressed": 0})
    status, _, body = await exchange(client, post_bytes("/nowhere", b""))
    assert (status, json.loads(body)) == (404, {"error": "Not Found"})


@pytest.mark.parametrize(
    ("status", "message", "text"),
    [
        (400, "Invalid method encountered:\n\n  b'GARBAGE'\n     ^", "Invalid method encountered"),
        (400, None, "Bad Request"),
        (400, "", "Bad Request"),
        (500, "boom", "internal error; see the forwarder's log"),
        (504, None, "Gateway Timeout"),
        (599, None, "HTTP 599"),
    ],
)
def test_error_text_is_one_line_without_the_quoted_request(
    status: int, message: str | None, text: str
) -> None:
    assert error_text(status, message) == text
