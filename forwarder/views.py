"""Request handlers. Each reads the request, calls the pipeline or the queue, answers JSON."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from forwarder import deadletters, jsonio
from forwarder.config import ConfigError
from forwarder.ingest.errors import IngestError
from forwarder.logs import get_logger, redactor
from forwarder.middleware import PUBLIC_PATHS, error_response
from forwarder.queue import QueueFull, QueueUnavailable
from forwarder.state import DELIVERER, METRICS, QUEUE, RELOADER, RUNTIME
from forwarder.timeparse import parse_duration

_log = get_logger()


def _authorize(request: web.Request) -> None:
    """Refuse with 401 unless the request carries valid credentials (when auth is on)."""
    if request.path in PUBLIC_PATHS:
        return
    auth = request.app[RUNTIME].current.auth
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


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, refusing with 413 as soon as it exceeds ``limit`` bytes.

    A declared length over the limit is refused before reading anything; a
    chunked body is refused as soon as what arrived passes the limit.
    """
    length = request.content_length
    if length is not None:
        if length > limit:
            raise _too_large(limit)
        if length == 0:
            return b""
        stream = request.content
        if stream.is_eof():
            # Alert bodies usually arrive in the same packet as the headers:
            # take them without another trip through the event loop.
            data = stream.read_nowait(-1)
            if len(data) == length:
                return data
            raise IngestError(f"body ended after {len(data)} of {length} bytes", reason="bad_json")
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


async def _ingest(request: web.Request, source: str, task: str | None) -> web.Response:
    started = time.perf_counter()
    runtime = request.app[RUNTIME].current
    metrics = request.app[METRICS]
    try:
        _authorize(request)
        body = await _read_body(request, runtime.config.server.max_body_bytes)
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
        pipeline = runtime.pipeline
        try:
            processed = pipeline.map_events(pipeline.parse(source, doc, task=task))
        except RecursionError:  # defence in depth: orjson already caps nesting at 1024
            raise IngestError("body nested too deeply", reason="bad_json") from None
        try:
            await request.app[QUEUE].put(processed.items)
        except QueueFull as exc:
            raise _unavailable(exc, "queue_full", exc.retry_after) from None
        except QueueUnavailable as exc:
            raise _unavailable(exc, "queue_unavailable", exc.retry_after) from None
    except IngestError as exc:
        metrics.events_rejected.labels(source, exc.reason).inc()
        _log.info(
            "ingest_rejected",
            source=source,
            status=exc.status,
            reason=exc.reason,
            error=exc.message[:300],
        )
        return error_response(exc.status, exc.message, headers=exc.headers)
    n = len(processed.events)
    received, duration = metrics.ingest_series(source)
    received.inc(n)
    if processed.truncations:
        metrics.attribute_truncations.inc(processed.truncations)
        _log.info("attributes_truncated", count=processed.truncations, source=source)
    duration.observe(time.perf_counter() - started)
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
    return _accepted(n)


def _unavailable(exc: Exception, reason: Any, retry_after: int) -> IngestError:
    return IngestError(
        f"{exc}; retry later",
        reason=reason,
        status=503,
        headers={"Retry-After": str(retry_after)},
    )


async def ingest_kapacitor(request: web.Request) -> web.Response:
    """``POST /kapacitor[/{task}]``: Kapacitor alert-handler JSON or ``httpPost`` rows."""
    task = (
        request.match_info.get("task")
        or request.query.get("task")
        or request.headers.get("X-Kapacitor-Task")
        or None
    )
    return await _ingest(request, "kapacitor", task)


async def ingest_influxdb(request: web.Request) -> web.Response:
    """``POST /influxdb``: one InfluxDB 2.x notification row."""
    return await _ingest(request, "influxdb", None)


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
