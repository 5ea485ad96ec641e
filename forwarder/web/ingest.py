"""The ingest views: body → pipeline → durable commit → 200.

This is the hot path of an alert storm. Everything that can run without
waiting is plain function calls; the handler is the only coroutine between
aiohttp and the queue's commit future.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from forwarder import jsonio
from forwarder.ingest.errors import ParseError
from forwarder.obs.logs import get_logger
from forwarder.obs.metrics import Metrics, RejectReason
from forwarder.pipeline import Pipeline, StageError, Work
from forwarder.queue import QueueFull, QueueUnavailable
from forwarder.web.auth import authorize
from forwarder.web.errors import HTTPError, error_response, exception_response
from forwarder.web.keys import METRICS, QUEUE, RUNTIME

_log = get_logger()


def _too_large(limit: int) -> HTTPError:
    return HTTPError(
        f"body larger than server.max_body_bytes ({limit} bytes)", reason="too_large", status=413
    )


def _body_if_complete(request: web.Request, limit: int) -> bytes | None:
    """The whole body if it has already arrived, without a trip through the event loop.

    Alert bodies usually arrive in the same packet as the headers. None means
    "read it with :func:`_read_body`"; a declared length over ``limit`` is
    refused with 413 before anything is read.
    """
    length = request.content_length
    if length is None:
        return None
    if length > limit:
        raise _too_large(limit)
    if length == 0:
        return b""
    stream = request.content
    if not stream.is_eof():
        return None
    data = stream.read_nowait(-1)
    if len(data) != length:
        raise HTTPError(f"body ended after {len(data)} of {length} bytes", reason="bad_json")
    return data


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, refusing with 413 as soon as it exceeds ``limit`` bytes.

    A chunked body is refused as soon as what arrived passes the limit.
    """
    length = request.content_length
    if length is not None:
        if length > limit:
            raise _too_large(limit)
        try:
            return await request.content.readexactly(length)
        except asyncio.IncompleteReadError as exc:
            raise HTTPError(
                f"body ended after {len(exc.partial)} of {length} bytes", reason="bad_json"
            ) from None
    buf = bytearray()
    async for chunk in request.content.iter_any():
        buf += chunk
        if len(buf) > limit:
            raise _too_large(limit)
    return bytes(buf)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# The success answer for N accepted events, built once per N.
_ACCEPTED: dict[int, bytes] = {}


_JSON = {"Content-Type": "application/json"}


def _accepted(n: int) -> web.Response:
    body = _ACCEPTED.get(n)
    if body is None:
        body = b'{"accepted": %d}' % n
        if len(_ACCEPTED) < 1024:
            _ACCEPTED[n] = body
    return web.Response(body=body, headers=_JSON)


def _kapacitor_task(request: web.Request) -> str | None:
    """The task name given outside the body: path, then ``?task=``, then the header."""
    return (
        request.match_info.get("task")
        # Most requests have no query string; skip building the query mapping then.
        or (request.query.get("task") if request.query_string else None)
        or request.headers.get("X-Kapacitor-Task")
        or None
    )


def _no_task(request: web.Request) -> None:
    return None


def _process(pipeline: Pipeline, source: str, body: bytes, task: str | None) -> Work:
    """Decode, parse, route and map one request body (everything but the commit)."""
    if not body.strip():
        raise HTTPError("empty body; expected a JSON object", reason="bad_json")
    try:
        doc = jsonio.loads(body)
    except ValueError as exc:
        raise HTTPError(f"invalid JSON: {exc}", reason="bad_json") from None
    if task is not None and not _is_utf8(task):
        # aiohttp decodes header bytes with surrogateescape; such a name
        # cannot be sent on as JSON.
        raise HTTPError("task name (path, ?task= or X-Kapacitor-Task) is not valid UTF-8")
    try:
        return pipeline.process(source, doc, task=task)
    except (ParseError, StageError) as exc:
        raise HTTPError.from_input(exc) from None
    except RecursionError:  # defence in depth: orjson already caps nesting at 1024
        raise HTTPError("body nested too deeply", reason="bad_json") from None


def _rejected(metrics: Metrics, source: str, exc: HTTPError) -> web.Response:
    metrics.events_rejected.labels(source, exc.reason).inc()
    _log.info(
        "ingest_rejected",
        source=source,
        status=exc.status,
        reason=exc.reason,
        error=exc.message[:300],
    )
    return error_response(exc.status, exc.message, headers=exc.headers)


def _accounted(metrics: Metrics, source: str, processed: Work, started: float) -> None:
    """Metrics and the debug log line of an accepted request."""
    if processed.truncations:
        metrics.attribute_truncations.inc(processed.truncations)
        _log.info("attributes_truncated", count=processed.truncations, source=source)
    metrics.ingest.record(source, len(processed.events), time.perf_counter() - started)
    if _log.is_enabled_for(10):  # DEBUG: one event per request, ids included
        targets = sorted({i.target for i in processed.items})
        _log.debug(
            "ingested",
            source=source,
            alert_id=processed.events[0].id,
            alert_ids=[e.id for e in processed.events],
            task=processed.events[0].task,
            target=targets[0] if len(targets) == 1 else targets,
            attempt=0,
            status=200,
        )


def _ingest_handler(
    source: str, task_of: Callable[[web.Request], str | None], doc: str
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The handler of one ingest endpoint.

    Everything that can run without waiting is plain function calls; the
    handler itself is the only coroutine between aiohttp and the queue's
    commit future, because every coroutine level is paid twice per request
    (suspending for the commit, and resuming after it).
    """

    async def handler(request: web.Request) -> web.Response:
        started = time.perf_counter()
        app = request.app
        runtime = app[RUNTIME].current
        metrics = app[METRICS]
        try:
            authorize(request, runtime.auth)
            limit = runtime.config.server.max_body_bytes
            body = _body_if_complete(request, limit)
            if body is None:
                body = await _read_body(request, limit)
            processed = _process(runtime.pipeline, source, body, task_of(request))
            try:
                await app[QUEUE].put(processed.items)
            except QueueFull as exc:
                raise _unavailable(exc, "queue_full", exc.retry_after) from None
            except QueueUnavailable as exc:
                raise _unavailable(exc, "queue_unavailable", exc.retry_after) from None
        except HTTPError as exc:
            return _rejected(metrics, source, exc)
        except Exception as exc:  # a bug still answers JSON (and is logged)
            return exception_response(request, exc)
        _accounted(metrics, source, processed, started)
        return _accepted(len(processed.events))

    handler.__name__ = handler.__qualname__ = f"ingest_{source}"
    handler.__doc__ = doc
    return handler


def _unavailable(exc: Exception, reason: RejectReason, retry_after: int) -> HTTPError:
    return HTTPError(
        f"{exc}; retry later",
        reason=reason,
        status=503,
        headers={"Retry-After": str(retry_after)},
    )


ingest_kapacitor = _ingest_handler(
    "kapacitor",
    _kapacitor_task,
    "``POST /kapacitor[/{task}]``: Kapacitor alert-handler JSON or ``httpPost`` rows.",
)
ingest_influxdb = _ingest_handler(
    "influxdb", _no_task, "``POST /influxdb``: one InfluxDB 2.x notification row."
)
