"""Request handlers. Each reads the request, calls the pipeline or the queue, answers JSON."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from forwarder import deadletters, jsonio
from forwarder.config import ConfigError
from forwarder.ingest.errors import IngestError
from forwarder.logs import get_logger, redactor
from forwarder.metrics import Metrics
from forwarder.middleware import PUBLIC_PATHS, Authenticator, error_response, exception_response
from forwarder.pipeline import Pipeline, Processed
from forwarder.queue import QueueFull, QueueUnavailable
from forwarder.state import DELIVERER, METRICS, QUEUE, RELOADER, RUNTIME
from forwarder.timeparse import parse_duration

_log = get_logger()


def _authorize(request: web.Request, auth: Authenticator | None = None) -> None:
    """Refuse with 401 unless the request carries valid credentials (when auth is on).

    ``auth`` is the current runtime's, when the caller has it at hand.
    """
    if auth is None:
        auth = request.app[RUNTIME].current.auth
    if auth.cfg is None or request.path in PUBLIC_PATHS:
        return
    if not auth.allowed(request.headers.get("Authorization")):
        raise IngestError(
            "missing or wrong credentials (see server.auth in the config)",
            reason="unauthorized",
            status=401,
            headers={"WWW-Authenticate": auth.challenge()},
        )


def _too_large(limit: int) -> IngestError:
    return IngestError(
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
        raise IngestError(f"body ended after {len(data)} of {length} bytes", reason="bad_json")
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
            raise IngestError(
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


def _process(pipeline: Pipeline, source: str, body: bytes, task: str | None) -> Processed:
    """Decode, parse, route and map one request body (everything but the commit)."""
    if not body.strip():
        raise IngestError("empty body; expected a JSON object", reason="bad_json")
    try:
        doc = jsonio.loads(body)
    except ValueError as exc:
        raise IngestError(f"invalid JSON: {exc}", reason="bad_json") from None
    if task is not None and not _is_utf8(task):
        # aiohttp decodes header bytes with surrogateescape; such a name
        # cannot be sent on as JSON.
        raise IngestError("task name (path, ?task= or X-Kapacitor-Task) is not valid UTF-8")
    try:
        return pipeline.map_events(pipeline.parse(source, doc, task=task))
    except RecursionError:  # defence in depth: orjson already caps nesting at 1024
        raise IngestError("body nested too deeply", reason="bad_json") from None


def _rejected(metrics: Metrics, source: str, exc: IngestError) -> web.Response:
    metrics.events_rejected.labels(source, exc.reason).inc()
    _log.info(
        "ingest_rejected",
        source=source,
        status=exc.status,
        reason=exc.reason,
        error=exc.message[:300],
    )
    return error_response(exc.status, exc.message, headers=exc.headers)


def _accounted(metrics: Metrics, source: str, processed: Processed, started: float) -> None:
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
            _authorize(request, runtime.auth)
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
        except IngestError as exc:
            return _rejected(metrics, source, exc)
        except Exception as exc:  # a bug still answers JSON (and is logged)
            return exception_response(request, exc)
        _accounted(metrics, source, processed, started)
        return _accepted(len(processed.events))

    handler.__name__ = handler.__qualname__ = f"ingest_{source}"
    handler.__doc__ = doc
    return handler


def _unavailable(exc: Exception, reason: Any, retry_after: int) -> IngestError:
    return IngestError(
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


def method_not_allowed(allowed: list[str]) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A view answering 405 with ``Allow``, for the other methods of a known path."""
    allow = ",".join(allowed)

    async def handler(request: web.Request) -> web.Response:
        return error_response(405, "Method Not Allowed", headers={"Allow": allow})

    return handler


async def not_found(request: web.Request) -> web.Response:
    """Any path the forwarder does not serve."""
    return error_response(404, "Not Found")


async def healthy(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "healthy"})


async def ready(request: web.Request) -> web.Response:
    """Readiness: the queue is open and writable, and no target is refusing our credentials."""
    queue = request.app[QUEUE]
    deliverer = request.app[DELIVERER]
    problems: list[str] = []
    if not queue.is_open:
        problems.append("queue is not open")
    elif queue.last_error:
        problems.append(queue.last_error)
    for name, health in deliverer.health().items():
        if health.auth_failed:
            problems.append(
                f"target {name}: BigPanda refused the credentials ({health.last_error})"
            )
    body: dict[str, Any] = {"targets": deliverer.describe()}
    if problems:
        body.update(status="not ready", error="; ".join(problems))
        return web.json_response(body, status=503)
    body["status"] = "ready"
    return web.json_response(body)


async def reload(request: web.Request) -> web.Response:
    """``POST /-/reload``: reload the config file; a bad one is refused and the old one stays."""
    _authorize(request)
    try:
        config = await request.app[RELOADER].reload()
    except ConfigError as exc:
        return error_response(400, f"config not reloaded: {exc}")
    return web.json_response({"status": "reloaded", "digest": config.digest[:12]})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition, with the queue gauges read fresh from disk."""
    m = request.app[METRICS]
    queue = request.app[QUEUE]
    if queue.is_open:
        stats = await queue.stats()
        _, size, _ = queue.sizes()
        m.queue_bytes.set(size)
        for target in set(stats) | set(request.app[RUNTIME].current.config.targets):
            s = stats.get(target)
            m.queue_events.labels(target).set(s.events if s else 0)
            m.queue_oldest_age.labels(target).set(s.oldest_age if s else 0)
            m.dead_letters.labels(target).set(s.dead_letters if s else 0)
    body = generate_latest(m.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def list_dead_letters(request: web.Request) -> web.Response:
    """``GET /api/v1/dead-letters?target=T&limit=N``: newest first, without payload secrets."""
    _authorize(request)
    target = request.query.get("target") or None
    limit = _int_param(request, "limit", 100)
    items = await request.app[QUEUE].call(deadletters.list_dead_letters, target=target, limit=limit)
    now = time.time()
    return web.json_response({"dead_letters": [d.summary(now) for d in items]})


async def show_dead_letter(request: web.Request) -> web.Response:
    """``GET /api/v1/dead-letters/{id}``: one dead letter with its alert and BigPanda's answer."""
    _authorize(request)
    try:
        dl_id = int(request.match_info["id"])
    except ValueError:
        return error_response(400, "id: must be a whole number")
    item = await request.app[QUEUE].call(deadletters.get_dead_letter, dl_id)
    if item is None:
        return error_response(404, f"no dead letter {dl_id}")
    return web.json_response(redactor.scrub(item.detail()))


async def _json_object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        doc = jsonio.loads(raw)
    except ValueError as exc:
        raise IngestError(f"invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise IngestError("body must be a JSON object")
    return doc


def _ids(doc: dict[str, Any]) -> list[int] | None:
    ids = doc.get("ids")
    if ids is None:
        return None
    if not isinstance(ids, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in ids
    ):
        raise IngestError("ids: must be a list of whole numbers")
    return list(ids)


async def replay_dead_letters(request: web.Request) -> web.Response:
    """``POST /api/v1/dead-letters/replay`` with ``{"ids": [...]}`` or ``{"all": true}``."""
    _authorize(request)
    doc = await _json_object(request)
    ids = _ids(doc)
    target = doc.get("target")
    if target is not None and not isinstance(target, str):
        raise IngestError("target: must be a string")
    if ids is None and doc.get("all") is not True:
        raise IngestError('give "ids": [...] or "all": true')
    moved = await request.app[QUEUE].replay_dead_letters(ids=ids, target=target)
    _log.info("dead_letters_replayed", count=moved, target=target)
    return web.json_response({"replayed": moved})


async def purge_dead_letters(request: web.Request) -> web.Response:
    """``POST /api/v1/dead-letters/purge`` with ``{"ids": [...]}`` or ``{"older_than": "7d"}``."""
    _authorize(request)
    doc = await _json_object(request)
    ids = _ids(doc)
    older = doc.get("older_than")
    seconds: float | None = None
    if older is not None:
        try:
            seconds = parse_duration(str(older))
        except ValueError as exc:
            raise IngestError(f"older_than: {exc}") from None
    if ids is None and seconds is None:
        raise IngestError('give "ids": [...] or "older_than": "7d"')
    purged = await request.app[QUEUE].call(deadletters.purge, ids=ids, older_than=seconds)
    _log.info("dead_letters_purged", count=purged)
    return web.json_response({"purged": purged})


def _int_param(request: web.Request, name: str, default: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= 100_000:
        raise IngestError(f"{name}: must be a whole number from 1 to 100000")
    return int(text)
