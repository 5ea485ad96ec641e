"""The ingest views: body → pipeline → durable commit → 200.

This is the hot path of an alert storm. Everything that can run without
waiting is plain function calls; the handler is the only coroutine between
aiohttp and the queue's commit future.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from forwarder import jsonio
from forwarder.ingest.errors import ParseError
from forwarder.model import Identity
from forwarder.obs.logs import debug_enabled, get_logger
from forwarder.obs.metrics import Metrics, RejectReason
from forwarder.pipeline import Pipeline, StageError, Work
from forwarder.queue import QueueFull, QueueUnavailable
from forwarder.queue.contract import PutResult
from forwarder.web.auth import authorize
from forwarder.web.body import body_if_complete, read_body
from forwarder.web.errors import HTTPError, exception_response, send_and_close
from forwarder.web.hints import wrong_endpoint
from forwarder.web.keys import (
    BODY_TIMEOUT,
    METRICS,
    QUEUE,
    REDACTOR,
    REJECT_LOG_LIMITER,
    RUNTIME,
)

_log = get_logger()


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_JSON = {"Content-Type": "application/json"}

# The success answers by (queued, suppressed), built once each: during a storm
# of repeats the same few pairs come back on every request.
_ANSWERS: dict[tuple[int, int], bytes] = {}


def _accepted(put: PutResult, dead_lettered: int = 0) -> web.Response:
    """The 200 answer: ``{"accepted": N, "suppressed": M}``, plus ``"dead_lettered": K``.

    ``accepted`` counts the alerts queued for delivery, ``suppressed`` those
    the alert state held back (acknowledged all the same), ``dead_lettered``
    those refused at mapping time (added only when there are some).
    """
    n = put.queued
    m = put.suppressed_total if put.suppressed else 0
    if dead_lettered:
        text = b'{"accepted": %d, "suppressed": %d, "dead_lettered": %d}' % (n, m, dead_lettered)
        return web.Response(body=text, headers=_JSON)
    key = (n, m)
    body = _ANSWERS.get(key)
    if body is None:
        body = b'{"accepted": %d, "suppressed": %d}' % key
        if len(_ANSWERS) < 1024:
            _ANSWERS[key] = body
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


def _rejected(
    request: web.Request,
    metrics: Metrics,
    source: str,
    exc: HTTPError,
    task: str | None,
    body: bytes | None,
) -> web.Response:
    """Count a refusal, log it as a warning the sender's owner can trace, and answer it.

    The line names the client, path, task and reason; a body of the other
    source's shape adds which endpoint to post it to (to the answer as well).
    Lines are rate-limited per source and reason, so a flood of bad requests
    cannot flood the log; the next line counts those left out.
    """
    metrics.events_rejected.labels(source, exc.reason).inc()
    if exc.reason in ("bad_shape", "bad_json") and exc.status == 400:
        hint = wrong_endpoint(source, body)
        if hint is not None:
            exc.message = f"{exc.message} ({hint})"
    dropped = request.app[REJECT_LOG_LIMITER].allow(f"{source}:{exc.reason}")
    if dropped is not None:
        fields: dict[str, object] = {}
        if dropped:
            fields["suppressed"] = dropped
        _log.warning(
            "ingest_rejected",
            source=source,
            client=request.remote,
            path=request.path,
            task=task,
            status=exc.status,
            reason=exc.reason,
            error=request.app[REDACTOR].cut(exc.message, 300),
            **fields,
        )
    return exc.response()


def _refused(request: web.Request, metrics: Metrics, source: str, processed: Work) -> None:
    """Count the alerts refused at mapping time and log a warning per route and reason.

    They are already in the dead-letter store (committed with the rest of the
    request); the line names the route and the fix. Lines are rate-limited
    per route and reason like rejected requests, with a count of those left out.
    """
    limiter = request.app[REJECT_LOG_LIMITER]
    for r in processed.refused:
        metrics.alerts_refused.labels(r.item.target, r.reason).inc()
        dropped = limiter.allow(f"refused:{r.item.target}:{r.reason}:{r.hint[:80]}")
        if dropped is None:
            continue
        fields: dict[str, object] = {"suppressed": dropped} if dropped else {}
        _log.warning(
            "alert_refused",
            source=source,
            target=r.item.target,
            reason=r.reason,
            alert_id=Identity.from_key(r.item.identity).check,
            hint=r.hint,
            dead_lettered=True,
            **fields,
        )


def _accounted(
    metrics: Metrics, source: str, processed: Work, put: PutResult, started: float
) -> None:
    """Metrics and the debug log line of an accepted request."""
    if put.suppressed:
        metrics.count_suppressed(put.suppressed)
    if processed.truncations:
        metrics.attribute_truncations.inc(processed.truncations)
        _log.info("attributes_truncated", count=processed.truncations, source=source)
    # Alerts accepted, queued or suppressed: the refused ones are counted in
    # forwarder_alerts_refused_total, the suppressed ones also in
    # forwarder_alerts_suppressed_total.
    metrics.ingest.record(source, len(processed.items), time.perf_counter() - started)
    if processed.events and debug_enabled():  # one event per request, ids included
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
            queued=put.queued,
            suppressed=put.suppressed_total,
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
        body: bytes | None = None
        try:
            # Credentials first: an unauthenticated body is never read or inflated.
            authorize(request, runtime.auth)
            limit = runtime.config.server.max_body_bytes
            body = body_if_complete(request, limit)
            if body is None:
                body = await read_body(request, limit, timeout=app[BODY_TIMEOUT])
            processed = _process(runtime.pipeline, source, body, task_of(request))
            refused = processed.refused
            try:
                if refused:  # into the dead-letter store, in the same commit
                    put = await app[QUEUE].put(
                        processed.items, [(r.item, r.reason) for r in refused]
                    )
                else:
                    put = await app[QUEUE].put(processed.items)
            except QueueFull as exc:
                raise _unavailable(exc, "queue_full", exc.retry_after) from None
            except QueueUnavailable as exc:
                raise _unavailable(exc, "queue_unavailable", exc.retry_after) from None
        except HTTPError as exc:
            resp = _rejected(request, metrics, source, exc, _task_or_none(task_of, request), body)
            if exc.close:
                await send_and_close(request, resp)
            return resp
        except Exception as exc:  # a bug still answers JSON (and is logged)
            return exception_response(request, exc)
        _accounted(metrics, source, processed, put, started)
        if refused:
            _refused(request, metrics, source, processed)
            return _accepted(put, len(refused))
        return _accepted(put)

    handler.__name__ = handler.__qualname__ = f"ingest_{source}"
    handler.__doc__ = doc
    return handler


def _task_or_none(task_of: Callable[[web.Request], str | None], request: web.Request) -> str | None:
    """The task name given outside the body, for a log line (never raises)."""
    try:
        return task_of(request)
    except Exception:  # a query string aiohttp cannot decode: the line goes out without it
        return None


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
