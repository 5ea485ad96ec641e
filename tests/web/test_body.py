"""Request bodies: content codings, the inflated-size limit, and the body-read deadline.

Everything runs against the real app on a loopback port, served as the daemon
serves it; bodies are written by hand so the wire bytes are exactly the test's.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from collections.abc import AsyncIterator, Callable

import pytest

from forwarder.web.body import INFLATE_STEP, _inflate
from forwarder.web.errors import HTTPError
from tests.conftest import BASE_CONFIG, example
from tests.web.conftest import Served, exchange, post_bytes

ALERT = example("kapacitor-alert-critical.json")
INFLUX = example("influxdb-notification-crit.json")
LIMIT = 4096
SMALL = BASE_CONFIG.replace("server:\n", f"server:\n  max_body_bytes: {LIMIT}\n")
BEARER = "body-test-bearer-1f2e3d"
AUTH = SMALL.replace("server:\n", f"server:\n  auth:\n    bearer_token: {BEARER}\n")


def raw_deflate(data: bytes) -> bytes:
    """A deflate stream without the zlib header, as some senders write "deflate"."""
    c = zlib.compressobj(wbits=-15)
    return c.compress(data) + c.flush()


def padded(size: int) -> bytes:
    """The sample alert padded with JSON whitespace to exactly ``size`` bytes."""
    return ALERT + b" " * (size - len(ALERT))


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        pytest.param("gzip", gzip.compress, id="gzip"),
        pytest.param("x-gzip", gzip.compress, id="x-gzip"),
        pytest.param("GZIP", gzip.compress, id="case-insensitive"),
        pytest.param("deflate", zlib.compress, id="deflate-zlib"),
        pytest.param("deflate", raw_deflate, id="deflate-raw"),
        pytest.param("identity", lambda b: b, id="identity"),
        pytest.param("gzip, identity", gzip.compress, id="gzip-and-identity"),
        pytest.param(
            "gzip", lambda b: gzip.compress(b[:100]) + gzip.compress(b[100:]), id="gzip-two-members"
        ),
    ],
)
@pytest.mark.parametrize("path", ["/kapacitor", "/influxdb"])
async def test_compressed_bodies_are_accepted(
    served: Served, coding: str, encode: Callable[[bytes], bytes], path: str
) -> None:
    """gzip and deflate (zlib or raw) bodies are inflated and accepted like plain ones."""
    client = await served(SMALL)
    plain = ALERT if path == "/kapacitor" else INFLUX
    raw = post_bytes(path, encode(plain), {"Content-Encoding": coding})
    status, _, body = await exchange(client, raw)
    assert (status, json.loads(body)) == (200, {"accepted": 1, "suppressed": 0})


async def test_inflated_size_is_bounded_by_max_body_bytes(served: Served) -> None:
    """A body inflating to exactly the limit is accepted; one byte more is a JSON 413."""
    client = await served(SMALL)
    at = post_bytes("/kapacitor", gzip.compress(padded(LIMIT)), {"Content-Encoding": "gzip"})
    status, _, body = await exchange(client, at)
    assert status == 200, body
    over = post_bytes("/kapacitor", gzip.compress(padded(LIMIT + 1)), {"Content-Encoding": "gzip"})
    status, headers, body = await exchange(client, over)
    assert status == 413
    assert headers["content-type"].startswith("application/json")
    assert "max_body_bytes" in json.loads(body)["error"]


async def test_a_zip_bomb_is_refused_and_the_server_keeps_answering(served: Served) -> None:
    """64 MiB of zeros gzipped to ~64 KiB is refused with 413 after inflating past the limit."""
    client = await served(BASE_CONFIG.replace("server:\n", "server:\n  max_body_bytes: 80KiB\n"))
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 80 * 1024
    status, _, body = await exchange(
        client, post_bytes("/kapacitor", bomb, {"Content-Encoding": "gzip"})
    )
    assert status == 413
    assert "max_body_bytes" in json.loads(body)["error"]
    resp = await client.get("/-/healthy")
    assert resp.status == 200


async def test_inflating_yields_to_other_clients() -> None:
    """Inflating a large body gives the event loop back between bounded steps."""
    size = 16 * INFLATE_STEP
    data = gzip.compress(b"a" * size)
    ticks = 0
    done = asyncio.Event()

    async def other_client() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    async def chunks() -> AsyncIterator[bytes]:
        yield data

    other = asyncio.create_task(other_client())
    await asyncio.sleep(0)
    before = ticks
    out = await _inflate(chunks(), "gzip", size)
    done.set()
    await other
    assert len(out) == size
    assert ticks - before >= 15


async def test_inflating_stops_at_the_limit_without_inflating_the_rest() -> None:
    """The 413 comes as soon as the limit is passed, not after inflating everything."""
    steps = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal steps
        for _ in range(1000):  # 1000 x 1 MiB of zeros, about 1 MiB compressed
            steps += 1
            yield gzip.compress(b"\0" * (1024 * 1024))

    with pytest.raises(HTTPError) as refused:
        await _inflate(chunks(), "gzip", 2 * 1024 * 1024)
    assert refused.value.status == 413
    assert steps <= 3


@pytest.mark.parametrize(
    ("coding", "body", "said"),
    [
        pytest.param("gzip", ALERT, "not valid gzip", id="plain-json-claiming-gzip"),
        pytest.param("deflate", ALERT, "not valid deflate", id="plain-json-claiming-deflate"),
        pytest.param("gzip", gzip.compress(ALERT)[:-12], "ended early", id="truncated-gzip"),
        pytest.param("deflate", zlib.compress(ALERT) + b"junk", "data follows", id="deflate-junk"),
        pytest.param("gzip", gzip.compress(ALERT) + b"junk", "not valid gzip", id="gzip-junk"),
        pytest.param("gzip", b"", "ended early", id="empty-gzip"),
    ],
)
@pytest.mark.parametrize("path", ["/kapacitor", "/influxdb"])
async def test_a_body_that_is_not_its_coding_is_a_json_400(
    served: Served, coding: str, body: bytes, said: str, path: str
) -> None:
    """A body whose bytes are not the declared coding is refused with 400, not a 500."""
    client = await served(SMALL)
    status, headers, answer = await exchange(
        client, post_bytes(path, body, {"Content-Encoding": coding})
    )
    assert status == 400, answer
    assert headers["content-type"].startswith("application/json")
    assert said in json.loads(answer)["error"]
    resp = await client.get("/metrics")
    text = await resp.text()
    source = path.strip("/")
    assert f'forwarder_events_rejected_total{{reason="bad_encoding",source="{source}"}} 1.0' in text


@pytest.mark.parametrize("coding", ["br", "zstd", "compress", "gzip, br", "deflate, gzip", "\xff"])
async def test_an_unsupported_coding_is_a_json_415_naming_the_accepted_ones(
    served: Served, coding: str
) -> None:
    """Codings other than gzip and deflate (or stacked ones) get 415 with Accept-Encoding."""
    client = await served(SMALL)
    raw = post_bytes("/kapacitor", ALERT, {"Content-Encoding": coding.encode("latin-1")})
    status, headers, answer = await exchange(client, raw)
    assert status == 415
    assert headers["accept-encoding"] == "gzip, deflate"
    assert "gzip, deflate" in json.loads(answer)["error"]


async def test_credentials_are_checked_before_the_body_is_read(served: Served) -> None:
    """Without credentials the 401 comes while the body is still unsent: it is never inflated."""
    client = await served(AUTH)
    bomb = gzip.compress(b"\0" * (8 * 1024 * 1024))
    head = post_bytes("/kapacitor", bomb, {"Content-Encoding": "gzip"})[: -len(bomb)]
    # Headers and the first kilobyte only; the rest would never come.
    status, _, answer = await exchange(client, head + bomb[:1024])
    assert status == 401
    assert json.loads(answer)["error"]
    resp = await client.get("/-/healthy")
    assert resp.status == 200


async def test_the_admin_api_reads_compressed_bodies_too(served: Served) -> None:
    """``POST /api/v1/dead-letters/purge`` takes gzip, refuses bad gzip (400) and br (415)."""
    client = await served(SMALL)
    doc = json.dumps({"older_than": "7d"}).encode()
    path = "/api/v1/dead-letters/purge"
    status, _, body = await exchange(
        client, post_bytes(path, gzip.compress(doc), {"Content-Encoding": "gzip"})
    )
    assert (status, json.loads(body)) == (200, {"purged": 0})
    status, _, body = await exchange(client, post_bytes(path, doc, {"Content-Encoding": "gzip"}))
    assert status == 400
    assert "not valid gzip" in json.loads(body)["error"]
    status, _, body = await exchange(client, post_bytes(path, doc, {"Content-Encoding": "br"}))
    assert status == 415
    bomb = gzip.compress(b" " * (LIMIT + 1))
    status, _, body = await exchange(client, post_bytes(path, bomb, {"Content-Encoding": "gzip"}))
    assert status == 413


async def read_to_end(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    return await reader.read()


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(
            b"POST /kapacitor HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"".join(b"1000\r\n" + b" " * 4096 + b"\r\n" for _ in range(50))
            + b"zz\r\n\r\n",
            id="malformed-final-chunk-size",
        ),
        pytest.param(
            b"POST /kapacitor HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{",
            id="body-never-finished",
        ),
        pytest.param(
            b"POST /kapacitor HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
            b"Content-Length: 1000\r\n\r\n\x1f\x8b",
            id="gzip-body-never-finished",
        ),
        pytest.param(
            b"POST /api/v1/dead-letters/purge HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
            id="admin-body-never-finished",
        ),
    ],
)
async def test_a_body_that_never_completes_gets_408_and_the_connection_closes(
    served: Served, request_bytes: bytes
) -> None:
    """Past the body-read deadline the client gets a JSON 408 and the server closes the socket."""
    client = await served(BASE_CONFIG, body_read_timeout=0.3)
    server = client.server
    assert server.host is not None
    assert server.port is not None
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(request_bytes)
        await writer.drain()
        # The server answers, then closes: reading to EOF ends (aiohttp lingers up
        # to 10 s for the rest of the body before it closes).
        answer = await asyncio.wait_for(read_to_end(reader), timeout=30)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"408", answer[:300]
    assert b"connection: close" in head.lower()
    assert "did not arrive within 0.3 s" in json.loads(body)["error"]
    resp = await client.get("/-/healthy")
    assert resp.status == 200


@pytest.mark.parametrize("encode", [zlib.compress, raw_deflate], ids=["zlib", "raw"])
@pytest.mark.parametrize("first", [1, 2, 5])
async def test_deflate_is_recognised_however_the_body_is_split(
    encode: Callable[[bytes], bytes], first: int
) -> None:
    """zlib-wrapped or raw deflate is told apart by its first two bytes, even when the
    first piece of the body to arrive holds only one of them."""
    data = encode(ALERT)

    async def pieces() -> AsyncIterator[bytes]:
        yield data[:first]
        yield data[first:]

    assert await _inflate(pieces(), "deflate", 1 << 20) == ALERT
