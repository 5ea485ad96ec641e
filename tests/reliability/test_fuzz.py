"""Fuzzing every endpoint of the real daemon: 2xx or a 4xx with a JSON error, never 5xx.

The daemon runs once for the module as a subprocess (dry-run, so nothing leaves it), and
each Hypothesis example is one plain HTTP request over a fresh loopback connection.
Hypothesis is derandomized and has no example database, so CI replays the same inputs.

Besides the ingest bodies: compressed bodies (gzip and deflate, intact, cut, corrupted,
mislabelled, and bombs), header values that are not UTF-8 (credentials, codings, task
names) against a daemon with ``server.auth``, and the admin API with huge integers in
paths, query strings and JSON bodies.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.conftest import Daemon, free_port, write_config
from tests.reliability.conftest import DRY_RUN_CONFIG

pytestmark = pytest.mark.reliability

EXAMPLES_PER_ENDPOINT = 700  # three endpoints: 2,100 examples per CI run
MAX_BODY = 4 * 1024 * 1024  # the fuzz daemon's server.max_body_bytes

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES_PER_ENDPOINT,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)


# --------------------------------------------------------------------------- encoding


@dataclass(frozen=True)
class Raw:
    """JSON text emitted verbatim: NaN, giant numbers, invalid UTF-8, deep nesting."""

    text: bytes


@dataclass(frozen=True)
class Obj:
    """A JSON object as key/value pairs, so a key may appear twice."""

    pairs: tuple[tuple[str, Any], ...]


def encode(value: Any) -> bytes:
    """JSON bytes of ``value``, where :class:`Raw` and :class:`Obj` may appear anywhere."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Obj | dict):
        pairs = value.pairs if isinstance(value, Obj) else tuple(value.items())
        return b"{" + b",".join(encode(k) + b":" + encode(v) for k, v in pairs) + b"}"
    if isinstance(value, list):
        return b"[" + b",".join(encode(v) for v in value) + b"]"
    # json.dumps writes NaN/Infinity literals for non-finite floats, as some senders do.
    return json.dumps(value).encode()


# --------------------------------------------------------------------------- strategies

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)

# Nesting depths around the limits that matter: Python's recursion limit (1000) and
# orjson's maximum depth (1024), plus far beyond.
depths = st.sampled_from([2, 100, 990, 1000, 1005, 1010, 1015, 1020, 1023, 1024, 1025, 5000]) | (
    st.integers(1, 5000)
)


def nested(depth: int, kind: str) -> Raw:
    if kind == "list":
        return Raw(b"[" * depth + b"1" + b"]" * depth)
    return Raw(b'{"a":' * depth + b"1" + b"}" * depth)


nasty_values = st.one_of(
    st.sampled_from(
        [Raw(b"NaN"), Raw(b"Infinity"), Raw(b"-Infinity"), Raw(b"1e400"), Raw(b"-1e400")]
    ),
    st.integers(19, 450).map(lambda n: Raw(b"1" + b"0" * n)),  # past int64, to 10**450
    st.integers(19, 450).map(lambda n: Raw(b"-1" + b"0" * n)),
    st.builds(nested, depths, st.sampled_from(["list", "object"])),
    st.builds(
        lambda n, c: c * n,  # huge strings, up to 2 MB
        st.integers(1_000, 2_000_000),
        st.sampled_from(["x", "é", "\u2603", "\U0001f525", '"', "\\"]),
    ),
    st.sampled_from(  # invalid UTF-8 inside a string
        [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80", b"\xc0\xaf"]
    ).map(lambda bad: Raw(b'"a' + bad + b'b"')),
    st.sampled_from(["\\ud800", "\\udfff", "\\u0000", "\\ud83d\\ude00"]).map(
        lambda esc: Raw(f'"{esc}"'.encode())  # lone surrogates and NUL as JSON escapes
    ),
)
any_value = st.one_of(json_values, nasty_values)


def rfc3339(dt: datetime, frac: str, zone: str) -> str:
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:"
        f"{dt.second:02d}{frac}{zone}"
    )


# Every calendar instant from year 1 to 9999, the first and last often, with any offset.
valid_times = st.builds(
    rfc3339,
    st.sampled_from([datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59)])
    | st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    st.sampled_from(["", ".5", ".123456789"]),
    st.sampled_from(["Z", "z", "+00:00", "-00:00", "+23:59", "-23:59", "+05:30"]),
)
# Almost-timestamps: out-of-range fields, ten fraction digits, bad offsets.
bad_times = st.builds(
    lambda y, mo, d, h, mi, sec, frac, zone: (
        f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{sec:02d}{frac}{zone}"
    ),
    st.integers(0, 9999),
    st.integers(0, 13),
    st.integers(0, 32),
    st.integers(0, 24),
    st.integers(0, 60),
    st.integers(0, 60),
    st.sampled_from(["", ".1234567891"]),
    st.sampled_from(["Z", "+24:00", "-00:60", "", "+5:30"]),
)
unix_ns = st.integers(-(2**64), 2**64)
valid_levels = st.sampled_from(["OK", "INFO", "WARNING", "CRITICAL", "ok", "Critical"])
levels = valid_levels | st.sampled_from(["", "BOGUS", "crit"])


def anything_or(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the right shape for a field, sometimes any value at all."""
    return st.one_of(good, any_value)


# -- well-formed documents: the starting points of the mutations

valid_series = st.fixed_dictionaries(
    {
        "name": st.text(max_size=20),
        "tags": st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=4),
        "columns": st.just(["time", "value", "other"]),
        "values": st.lists(
            st.tuples(valid_times, json_values, json_values).map(list), min_size=1, max_size=2
        ),
    }
)
valid_kapacitor = st.fixed_dictionaries(
    {
        "id": st.text(max_size=40),
        "message": st.text(max_size=80),
        "details": st.sampled_from(["", "{&#34;TaskName&#34;:&#34;t&#34;}", "plain details"]),
        "time": valid_times | st.integers(-(2**63), 2**63 - 1),
        "duration": st.integers(0, 2**63 - 1),
        "level": valid_levels,
        "data": st.fixed_dictionaries({"series": st.lists(valid_series, max_size=2)}),
        "previousLevel": valid_levels,
        "recoverable": st.booleans(),
    }
)
httppost_columns = ["time", "level", "id", "message", "duration", "v"]
valid_httppost = st.fixed_dictionaries(
    {
        "series": st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.text(max_size=10),
                    "tags": st.dictionaries(st.text(max_size=8), st.text(max_size=8)),
                    "columns": st.just(httppost_columns),
                    "values": st.lists(
                        st.tuples(
                            valid_times,
                            valid_levels,
                            st.text(max_size=20) | st.integers(),
                            st.text(max_size=40),
                            st.integers(0, 10**12),
                            json_values,
                        ).map(list),
                        min_size=1,
                        max_size=3,
                    ),
                }
            ),
            min_size=1,
            max_size=3,
        )
    }
)
valid_influxdb = st.fixed_dictionaries(
    {
        "_level": st.sampled_from(["crit", "warn", "info", "ok", "unknown", "CRIT"]),
        "_time": valid_times,
        "_check_name": st.text(max_size=40),
        "_message": st.text(max_size=80),
        "_source_measurement": st.text(max_size=20),
        "_notification_rule_name": st.text(max_size=20),
        "host": st.text(max_size=20),
        "usage": json_values,
    },
    optional={"_source_timestamp": st.integers(-(2**63), 2**63 - 1)},
)


def _mutate(draw: st.DrawFn, node: Any) -> Any:
    """Walk down to a random place in ``node`` and break it there."""
    if isinstance(node, dict) and node and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(node)))
        return {**node, key: _mutate(draw, node[key])}
    if isinstance(node, list) and node and draw(st.booleans()):
        i = draw(st.integers(0, len(node) - 1))
        return [*node[:i], _mutate(draw, node[i]), *node[i + 1 :]]
    if isinstance(node, dict) and node and draw(st.booleans()):
        gone = draw(st.sampled_from(sorted(node)))
        return {k: v for k, v in node.items() if k != gone}
    return draw(any_value | bad_times | unix_ns | levels)


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[Any]) -> Any:
    """A well-formed document with up to three places broken (often none)."""
    doc = draw(valid)
    for _ in range(draw(st.integers(0, 3))):
        doc = _mutate(draw, doc)
    return doc


def wild(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with any subset of an endpoint's keys, each of the right shape or anything."""
    return st.fixed_dictionaries({}, optional={k: anything_or(v) for k, v in fields.items()})


kapacitor_docs = st.one_of(
    mutated(valid_kapacitor),
    mutated(valid_httppost),
    wild(
        {
            "level": levels,
            "time": valid_times | bad_times | unix_ns,
            "data": st.fixed_dictionaries({"series": st.lists(valid_series)}),
            "series": st.lists(valid_series),
            "duration": st.integers() | st.floats(),
        }
    ),
)
influxdb_docs = st.one_of(
    mutated(valid_influxdb),
    wild(
        {
            "_level": levels,
            "_time": valid_times | bad_times,
            "_source_timestamp": unix_ns,
            "_check_name": st.text(),
        }
    ),
)


@st.composite
def with_duplicate_keys(draw: st.DrawFn, docs: st.SearchStrategy[Any]) -> Obj:
    """A document with some of its top-level keys repeated with other values."""
    base = draw(docs)
    if not isinstance(base, dict) or not base:
        base = {"level": base}
    extra = draw(
        st.lists(st.tuples(st.sampled_from(sorted(base)), any_value), min_size=1, max_size=3)
    )
    return Obj(tuple(base.items()) + tuple(extra))


@st.composite
def with_invalid_utf8(draw: st.DrawFn, docs: st.SearchStrategy[Any]) -> bytes:
    """A document's JSON with an invalid UTF-8 sequence spliced in somewhere."""
    text = encode(draw(docs))
    at = draw(st.integers(0, len(text)))
    bad = draw(st.sampled_from([b"\xff", b"\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\x80\x80"]))
    return text[:at] + bad + text[at:]


def bodies(docs: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Request bodies for an endpoint whose documents look like ``docs``."""
    return st.one_of(
        docs.map(encode),
        docs.map(encode),  # twice: the shaped documents get the largest share
        with_duplicate_keys(docs).map(encode),
        with_invalid_utf8(docs),
        any_value.map(encode),
        st.binary(max_size=300),
        st.builds(nested, depths, st.sampled_from(["list", "object"])).map(encode),
    )


content_types = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=latin-1",
        "text/plain",
        "multipart/form-data; boundary=x",
        "garbage",
    ]
)
# Header values as RFC 9110 allows them (VCHAR, SP, HTAB and obs-text bytes 0x80-0xFF).
# Control characters are refused by aiohttp's HTTP parser with a plain-text 400 before the
# app sees the request; test_limits pins that.
header_bytes = st.binary(min_size=1, max_size=40).filter(
    lambda b: all(c == 9 or 32 <= c <= 126 or c >= 128 for c in b) and b.strip() == b
)


@dataclass(frozen=True)
class Request:
    """One fuzz request: path (already percent-encoded), headers, body, method."""

    path: str
    headers: dict[str, str | bytes]
    body: bytes
    method: str = "POST"


# --------------------------------------------------------------------------- the daemon


def _daemon(folder: Path, server_extra: str = "") -> Iterator[Daemon]:
    """A dry-run daemon with ``server.max_body_bytes`` at MAX_BODY (plus ``server_extra``)."""
    port = free_port()
    text = DRY_RUN_CONFIG.replace("127.0.0.1:0", f"127.0.0.1:{port}").replace(
        "shutdown_timeout: 2s", f"shutdown_timeout: 2s\n  max_body_bytes: {MAX_BODY}{server_extra}"
    )
    daemon = Daemon(write_config(folder, text), port, folder / "daemon.log")
    daemon.start()
    try:
        asyncio.run(daemon.wait_ready())
        yield daemon
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def fuzz_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One dry-run daemon for the whole module (Hypothesis cannot use function fixtures)."""
    yield from _daemon(tmp_path_factory.mktemp("fuzz"))


BEARER = "fuzz-bearer-7c1d2e9f"


@pytest.fixture(scope="module")
def fuzz_auth_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """The same daemon with ``server.auth.bearer_token`` set."""
    extra = f"\n  auth:\n    bearer_token: {BEARER}"
    yield from _daemon(tmp_path_factory.mktemp("fuzz-auth"), extra)


def send(daemon: Daemon, req: Request) -> tuple[int, bytes]:
    """One request on a fresh connection; the status and body of the answer."""
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=60)
    try:
        conn.putrequest(req.method, req.path, skip_accept_encoding=True)
        for name, value in req.headers.items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(req.body)))
        conn.endheaders(req.body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def check_answer(daemon: Daemon, req: Request, *, success: str | None = "accepted") -> None:
    """200 with ``success`` (any JSON object when None), or a 4xx with a JSON ``error``.

    Anything else fails with a reproduction of the request.
    """
    status, body = send(daemon, req)
    repro = f"{req.method} {req.path[:300]} headers={req.headers!r}"
    repro += f" body[:300]={req.body[:300]!r} ({len(req.body)} bytes) -> {status} {body[:300]!r}"
    assert status == 200 or 400 <= status < 500, repro
    try:
        doc = json.loads(body)
    except ValueError:
        raise AssertionError(f"answer is not JSON: {repro}") from None
    assert isinstance(doc, dict), repro
    if status != 200:
        assert "error" in doc, repro
    elif success is not None:
        assert success in doc, repro


def assert_healthy(daemon: Daemon) -> None:
    assert daemon.proc is not None
    assert daemon.proc.poll() is None, daemon.log()[-3000:]
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=30)
    try:
        conn.request("GET", "/-/healthy")
        assert conn.getresponse().status == 200
    finally:
        conn.close()


# --------------------------------------------------------------------------- the tests

DEEP = b"[" * 5000 + b"]" * 5000
GIANT = b'{"level":"OK","time":"2024-01-01T00:00:00Z","duration":1' + b"0" * 400 + b"}"
DUPLICATED = b'{"level":"OK","level":7,"time":"2024-01-01T00:00:00Z","time":null}'
NAN = b'{"level":"OK","time":"2024-01-01T00:00:00Z","duration":NaN}'
BAD_UTF8 = b'{"level":"OK","time":"2024-01-01T00:00:00Z","message":"\xff\xfe"}'


def test_kapacitor_endpoint_never_answers_5xx(fuzz_daemon: Daemon) -> None:
    """``POST /kapacitor`` answers any body and task header with 200 or a JSON 4xx, never 5xx."""
    ran = 0

    @FUZZ_SETTINGS
    @given(
        body=bodies(kapacitor_docs),
        content_type=content_types,
        task=st.none() | header_bytes,
    )
    @example(body=DEEP, content_type=None, task=None)
    @example(body=GIANT, content_type=None, task=None)
    @example(body=DUPLICATED, content_type=None, task=None)
    @example(body=NAN, content_type=None, task=None)
    @example(body=BAD_UTF8, content_type=None, task=None)
    def run(body: bytes, content_type: str | None, task: bytes | None) -> None:
        nonlocal ran
        ran += 1
        headers: dict[str, str | bytes] = {}
        if content_type is not None:
            headers["Content-Type"] = content_type
        if task is not None:
            headers["X-Kapacitor-Task"] = task
        check_answer(fuzz_daemon, Request("/kapacitor", headers, body))

    run()
    print(f"fuzz: /kapacitor {ran} examples")
    assert ran >= EXAMPLES_PER_ENDPOINT
    assert_healthy(fuzz_daemon)


def test_kapacitor_task_endpoint_never_answers_5xx(fuzz_daemon: Daemon) -> None:
    """``POST /kapacitor/{task}`` answers any task path, query and body with 200 or a JSON 4xx."""
    ran = 0

    @FUZZ_SETTINGS
    @given(
        body=bodies(kapacitor_docs),
        task=st.binary(min_size=1, max_size=60),
        query_task=st.none() | st.binary(max_size=40),
    )
    @example(body=DEEP, task=b"t", query_task=None)
    @example(body=GIANT, task=b"\xed\xa0\x80", query_task=b"\xff")
    def run(body: bytes, task: bytes, query_task: bytes | None) -> None:
        nonlocal ran
        ran += 1
        path = "/kapacitor/" + quote_from_bytes(task, safe="")
        if query_task is not None:
            path += "?task=" + quote_from_bytes(query_task, safe="")
        check_answer(fuzz_daemon, Request(path, {}, body))

    run()
    print(f"fuzz: /kapacitor/{{task}} {ran} examples")
    assert ran >= EXAMPLES_PER_ENDPOINT
    assert_healthy(fuzz_daemon)


def test_influxdb_endpoint_never_answers_5xx(fuzz_daemon: Daemon) -> None:
    """``POST /influxdb`` answers any body with 200 or a JSON 4xx, never a 5xx."""
    ran = 0

    @FUZZ_SETTINGS
    @given(body=bodies(influxdb_docs), content_type=content_types)
    @example(body=DEEP, content_type=None)
    @example(
        body=b'{"_level":"crit","_time":"2024-01-01T00:00:00Z","x":1' + b"0" * 400 + b"}",
        content_type=None,
    )
    def run(body: bytes, content_type: str | None) -> None:
        nonlocal ran
        ran += 1
        headers: dict[str, str | bytes] = {}
        if content_type is not None:
            headers["Content-Type"] = content_type
        check_answer(fuzz_daemon, Request("/influxdb", headers, body))

    run()
    print(f"fuzz: /influxdb {ran} examples")
    assert ran >= EXAMPLES_PER_ENDPOINT
    assert_healthy(fuzz_daemon)


def test_known_edge_cases_never_get_5xx(fuzz_daemon: Daemon) -> None:
    """Inputs the fuzzer found once stay answered with 200 or a JSON 4xx, whatever it draws next."""
    alert = '{{"level":"OK","time":"{t}","data":{{"series":[{{"columns":["time","v"],'
    alert += '"values":[["{t}",{v}]]}}]}}}}'
    ok_time = "2024-01-01T00:00:00Z"
    deep = "[" * 1010 + "]" * 1010
    cases: dict[str, Request] = {
        "year 9999 with a negative offset": Request(
            "/kapacitor/edge", {}, alert.format(t="9999-12-31T23:59:59-23:59", v=1).encode()
        ),
        "year 1 with a positive offset": Request(
            "/influxdb", {}, b'{"_level":"crit","_time":"0001-01-01T00:00:00+23:59"}'
        ),
        "field nested 1010 deep": Request(
            "/kapacitor/edge", {}, alert.format(t=ok_time, v=deep).encode()
        ),
        "InfluxDB field nested 1010 deep": Request(
            "/influxdb", {}, f'{{"_level":"crit","_time":"{ok_time}","x":{deep}}}'.encode()
        ),
        "level nested 1000 deep": Request(
            "/kapacitor", {}, b'{"level":' + b"[" * 1000 + b"]" * 1000 + b"}"
        ),
        "task header that is not UTF-8": Request(
            "/kapacitor",
            {"X-Kapacitor-Task": b"\xff"},
            alert.format(t=ok_time, v=1).encode(),
        ),
    }
    failures = []
    for name, req in cases.items():
        status, answer = send(fuzz_daemon, req)
        if not (200 <= status < 500):
            failures.append(f"{name}: {status} {answer[:200]!r}")
    assert not failures, "\n".join(failures)
    assert_healthy(fuzz_daemon)


# --------------------------------------------------------------------------- compressed bodies


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-15)
    return c.compress(data) + c.flush()


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,
    "deflate-raw": _raw_deflate,
}
# What the Content-Encoding header says: mostly the truth, sometimes not.
CODING_HEADERS = [
    "gzip",
    "deflate",
    "identity",
    "br",
    "zstd",
    "compress",
    "gzip, br",
    "deflate, gzip",
    "gzip, identity",
    "GZip",
    "",
    ",",
    "x-gzip",
]


@st.composite
def compressed_request(draw: st.DrawFn, path: str, docs: st.SearchStrategy[Any]) -> Request:
    """A body compressed, then perhaps cut, corrupted or extended, under some Content-Encoding."""
    plain = draw(docs.map(encode) | bodies(docs))
    kind = draw(st.sampled_from(sorted(COMPRESSORS)))
    data = COMPRESSORS[kind](plain)
    damage = draw(st.sampled_from(["none", "none", "cut", "flip", "append", "plain"]))
    if damage == "cut" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "flip" and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    elif damage == "append":
        data += draw(st.binary(min_size=1, max_size=40))
    elif damage == "plain":
        data = plain
    truthful = "deflate" if kind == "deflate-raw" else kind
    header: str | bytes = draw(
        st.sampled_from([truthful, truthful, truthful, *CODING_HEADERS]) | header_bytes
    )
    return Request(path, {"Content-Encoding": header}, data)


# 64 MiB of zeros: about 64 KiB gzipped, 16 times the fuzz daemon's body limit inflated.
BOMB = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)
DEFLATE_BOMB = zlib.compress(b"\0" * (64 * 1024 * 1024), 9)


def test_compressed_bodies_never_answer_5xx(fuzz_daemon: Daemon) -> None:
    """Compressed ingest and admin bodies, intact or broken, get 200 or a JSON 4xx."""
    ran = 0
    admin = st.fixed_dictionaries(
        {}, optional={"ids": st.lists(st.integers()), "all": st.booleans(), "older_than": st.text()}
    )

    @FUZZ_SETTINGS
    @given(
        req=st.one_of(
            compressed_request("/kapacitor", kapacitor_docs),
            compressed_request("/influxdb", influxdb_docs),
            compressed_request("/api/v1/dead-letters/purge", admin),
            compressed_request("/api/v1/dead-letters/replay", admin),
        )
    )
    @example(req=Request("/kapacitor", {"Content-Encoding": "gzip"}, BOMB))
    @example(
        req=Request("/influxdb", {"Content-Encoding": "deflate"}, zlib.compress(b"\0" * 10**8))
    )
    @example(req=Request("/api/v1/dead-letters/purge", {"Content-Encoding": "gzip"}, BOMB))
    @example(req=Request("/kapacitor", {"Content-Encoding": "gzip"}, b'{"level":"OK"}'))
    @example(req=Request("/kapacitor", {"Content-Encoding": "br"}, b'{"level":"OK"}'))
    def run(req: Request) -> None:
        nonlocal ran
        ran += 1
        check_answer(fuzz_daemon, req, success=None)

    run()
    print(f"fuzz: compressed bodies {ran} examples")
    assert ran >= EXAMPLES_PER_ENDPOINT
    assert_healthy(fuzz_daemon)


# --------------------------------------------------------------------------- headers


PROTECTED = [
    ("POST", "/kapacitor"),
    ("POST", "/kapacitor/task"),
    ("POST", "/influxdb"),
    ("POST", "/-/reload"),
    ("GET", "/api/v1/dead-letters"),
    ("GET", "/api/v1/dead-letters/1"),
    ("POST", "/api/v1/dead-letters/replay"),
    ("POST", "/api/v1/dead-letters/purge"),
]
# Bytes a header value may carry, with a bias towards invalid UTF-8 sequences.
utf8_breakers = st.sampled_from(
    [b"\xff", b"\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80"]
)
non_utf8_values = st.builds(
    lambda prefix, bad, suffix: (prefix + bad + suffix).strip() or b"x",
    st.sampled_from([b"", b"Bearer ", b"Basic ", b"bearer ", BEARER.encode()]),
    utf8_breakers,
    st.sampled_from([b"", BEARER.encode(), b"==", b" x"]),
)


def test_headers_that_are_not_utf8_never_answer_5xx(fuzz_auth_daemon: Daemon) -> None:
    """Invalid UTF-8 in credentials, codings, content types or task names: a JSON 4xx."""
    ran = 0

    @FUZZ_SETTINGS
    @given(
        endpoint=st.sampled_from(PROTECTED),
        authorization=st.none() | non_utf8_values | header_bytes,
        encoding=st.none() | non_utf8_values | header_bytes,
        content_type=st.none() | header_bytes,
        task=st.none() | non_utf8_values | header_bytes,
    )
    @example(
        endpoint=("GET", "/api/v1/dead-letters"),
        authorization=b"Bearer \xff",
        encoding=None,
        content_type=None,
        task=None,
    )
    def run(
        endpoint: tuple[str, str],
        authorization: bytes | None,
        encoding: bytes | None,
        content_type: bytes | None,
        task: bytes | None,
    ) -> None:
        nonlocal ran
        ran += 1
        method, path = endpoint
        headers: dict[str, str | bytes] = {}
        for name, value in (
            ("Authorization", authorization),
            ("Content-Encoding", encoding),
            ("Content-Type", content_type),
            ("X-Kapacitor-Task", task),
        ):
            if value is not None:
                headers[name] = value
        req = Request(path, headers, b'{"level":"OK"}', method=method)
        status, body = send(fuzz_auth_daemon, req)
        repro = f"{method} {path} headers={headers!r} -> {status} {body[:300]!r}"
        # No value drawn here is the right token, so every one is refused.
        assert status == 401, repro
        assert "error" in json.loads(body), repro

    run()
    print(f"fuzz: non-UTF-8 headers {ran} examples")
    assert ran >= EXAMPLES_PER_ENDPOINT
    assert_healthy(fuzz_auth_daemon)


# --------------------------------------------------------------------------- the admin API


huge_numbers = st.one_of(
    st.integers(),
    st.integers(2**63 - 3, 2**63 + 3),
    st.integers(-(2**63) - 3, -(2**63) + 3),
    st.integers(19, 4000).map(lambda n: 10**n),  # str() refuses past 4300 digits
)
number_texts = st.one_of(
    huge_numbers.map(str),
    st.integers(4000, 6000).map(lambda n: "9" * n),  # around int()'s 4300-digit limit
    st.sampled_from(["\u00b2", "\u0663", "1_000", "+7", " 7", "7 ", "0x10", "1e3", "", "-0"]),
    st.text(max_size=12),
)


def _quoted(text: str) -> str:
    return quote_from_bytes(text.encode("utf-8", "surrogatepass"), safe="")


admin_requests = st.one_of(
    st.builds(
        lambda seg: Request("/api/v1/dead-letters/" + _quoted(seg), {}, b"", method="GET"),
        number_texts.filter(bool),
    ),
    st.builds(
        lambda seg: Request(
            "/api/v1/dead-letters/" + quote_from_bytes(seg, safe=""), {}, b"", "GET"
        ),
        st.binary(min_size=1, max_size=30),
    ),
    st.builds(
        lambda limit, target: Request(
            "/api/v1/dead-letters?limit="
            + _quoted(limit)
            + ("" if target is None else "&target=" + quote_from_bytes(target, safe="")),
            {},
            b"",
            method="GET",
        ),
        number_texts,
        st.none() | st.binary(max_size=30),
    ),
    st.builds(
        lambda action, doc: Request(f"/api/v1/dead-letters/{action}", {}, encode(doc)),
        st.sampled_from(["replay", "purge"]),
        st.fixed_dictionaries(
            {},
            optional={
                "ids": st.lists(huge_numbers, max_size=5) | any_value,
                "all": st.booleans() | any_value,
                "older_than": number_texts.map(lambda t: t + "d") | number_texts | any_value,
                "target": st.text(max_size=10) | any_value,
            },
        ),
    ),
)


def test_admin_api_never_answers_5xx(fuzz_daemon: Daemon) -> None:
    """Ids, limits and JSON bodies of any size and script: a 2xx or a JSON 4xx."""
    ran = 0

    @FUZZ_SETTINGS
    @given(req=admin_requests)
    @example(req=Request("/api/v1/dead-letters/9223372036854775808", {}, b"", method="GET"))
    @example(req=Request("/api/v1/dead-letters?limit=%C2%B2", {}, b"", method="GET"))
    @example(req=Request("/api/v1/dead-letters?limit=" + "9" * 5000, {}, b"", method="GET"))
    @example(
        req=Request(
            "/api/v1/dead-letters/purge",
            {},
            json.dumps({"ids": list(range(1, 40_000))}).encode(),
        )
    )
    def run(req: Request) -> None:
        nonlocal ran
        ran += 1
        check_answer(fuzz_daemon, req, success=None)

    run()
    print(f"fuzz: admin API {ran} examples")
    assert ran >= EXAMPLES_PER_ENDPOINT
    assert_healthy(fuzz_daemon)


def test_the_fuzzed_daemon_logged_no_traceback(fuzz_daemon: Daemon) -> None:
    """Whatever the fuzzing sent (run last in this module), the log holds no traceback.

    A request aiohttp's parser refuses is one warning line, not an error with a traceback.
    """
    conn = http.client.HTTPConnection("127.0.0.1", fuzz_daemon.port, timeout=30)
    try:
        conn.connect()
        assert conn.sock is not None
        conn.sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n")
        assert conn.sock.recv(4096).startswith(b"HTTP/1.")
    finally:
        conn.close()
    assert_healthy(fuzz_daemon)
    log = fuzz_daemon.log()
    assert '"bad_request"' in log
    assert "Traceback" not in log, log[max(0, log.find("Traceback") - 500) :][:3000]
