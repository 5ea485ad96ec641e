"""The admin API: config reload, the dead-letter store and the alert-state store.

Every admin view needs the ingest credentials when ``server.auth`` is set,
and goes through the storage contract, so it works on any backend.
"""

from __future__ import annotations

from typing import Any, Final, get_args

from aiohttp import web

from forwarder import jsonio
from forwarder.config import ConfigError
from forwarder.obs.logs import get_logger
from forwarder.queue.contract import AlertFilter
from forwarder.timeparse import parse_duration
from forwarder.web.auth import authorize
from forwarder.web.body import read_body
from forwarder.web.errors import HTTPError, error_response
from forwarder.web.keys import BODY_TIMEOUT, CLOCK, QUEUE, REDACTOR, RELOADER, RUNTIME

_log = get_logger()

# Dead-letter ids are SQLite/PostgreSQL BIGINT row ids: 1 to 2**63 - 1.
MAX_ID = 2**63 - 1
MAX_LIMIT = 100_000
MAX_IDS = 10_000  # ids per replay or purge request
ALERT_FILTERS: Final[tuple[AlertFilter, ...]] = get_args(AlertFilter)


def _authorize(request: web.Request) -> None:
    authorize(request, request.app[RUNTIME].current.auth)


async def reload(request: web.Request) -> web.Response:
    """``POST /-/reload``: reload the config file; a bad one is refused and the old one stays."""
    _authorize(request)
    try:
        config = await request.app[RELOADER].reload()
    except ConfigError as exc:
        return error_response(400, f"config not reloaded: {exc}")
    return web.json_response({"status": "reloaded", "digest": config.digest[:12]})


async def list_dead_letters(request: web.Request) -> web.Response:
    """``GET /api/v1/dead-letters?target=T&limit=N``: newest first, without payload secrets."""
    _authorize(request)
    target = request.query.get("target") or None
    limit = _int_param(request, "limit", 100)
    items = await request.app[QUEUE].dead_letters.list(target=target, limit=limit)
    now = request.app[CLOCK].time()
    return web.json_response({"dead_letters": [d.summary(now) for d in items]})


async def list_alerts(request: web.Request) -> web.Response:
    """``GET /api/v1/alerts?status=firing|ok|flapping&target=T&limit=N``: identities' state.

    Most recently seen first, read from the store (so any replica answers
    the same); ``firing`` is any status but ok. Each entry is
    :meth:`AlertView.to_json <forwarder.state.AlertView.to_json>`: no app key.
    """
    _authorize(request)
    status = _alert_filter(request.query.get("status"))
    target = request.query.get("target") or None
    limit = _int_param(request, "limit", 100)
    views = await request.app[QUEUE].alerts.list(status=status, target=target, limit=limit)
    return web.json_response({"alerts": [v.to_json() for v in views]})


def _alert_filter(text: str | None) -> AlertFilter | None:
    """``?status=``: one of :data:`ALERT_FILTERS`, or a 400 naming them."""
    if text is None:
        return None
    for name in ALERT_FILTERS:
        if text == name:
            return name
    raise HTTPError(f"status: must be one of {', '.join(ALERT_FILTERS)}")


async def show_dead_letter(request: web.Request) -> web.Response:
    """``GET /api/v1/dead-letters/{id}``: one dead letter with its alert and BigPanda's answer."""
    _authorize(request)
    dl_id = _whole_number(request.match_info["id"], "id", MAX_ID)
    item = await request.app[QUEUE].dead_letters.get(dl_id)
    if item is None:
        return error_response(404, f"no dead letter {dl_id}")
    detail = item.detail(request.app[CLOCK].time())
    return web.json_response(request.app[REDACTOR].scrub(detail))


async def _json_object(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body (``{}`` when empty), read like an ingest body."""
    limit = request.app[RUNTIME].current.config.server.max_body_bytes
    raw = await read_body(request, limit, timeout=request.app[BODY_TIMEOUT])
    if not raw.strip():
        return {}
    try:
        doc = jsonio.loads(raw)
    except ValueError as exc:
        raise HTTPError(f"invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise HTTPError("body must be a JSON object")
    return doc


def _ids(doc: dict[str, Any]) -> list[int] | None:
    """``ids`` of a replay or purge body: at most MAX_IDS whole numbers from 1 to MAX_ID.

    The bounds keep the queries valid: SQLite integers are 64-bit, and a
    statement takes at most 32766 parameters.
    """
    ids = doc.get("ids")
    if ids is None:
        return None
    if not isinstance(ids, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and 1 <= i <= MAX_ID for i in ids
    ):
        raise HTTPError(f"ids: must be a list of whole numbers from 1 to {MAX_ID}")
    if len(ids) > MAX_IDS:
        raise HTTPError(f"ids: at most {MAX_IDS} per request")
    return list(ids)


async def replay_dead_letters(request: web.Request) -> web.Response:
    """``POST /api/v1/dead-letters/replay`` with ``{"ids": [...]}`` or ``{"all": true}``."""
    _authorize(request)
    doc = await _json_object(request)
    ids = _ids(doc)
    target = doc.get("target")
    if target is not None and not isinstance(target, str):
        raise HTTPError("target: must be a string")
    if ids is None and doc.get("all") is not True:
        raise HTTPError('give "ids": [...] or "all": true')
    moved = await request.app[QUEUE].dead_letters.replay(ids=ids, target=target)
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
        if not isinstance(older, str):
            raise HTTPError('older_than: must be a duration string such as "7d"')
        try:
            seconds = parse_duration(older)
        except ValueError as exc:
            raise HTTPError(f"older_than: {exc}") from None
    if ids is None and seconds is None:
        raise HTTPError('give "ids": [...] or "older_than": "7d"')
    purged = await request.app[QUEUE].dead_letters.purge(ids=ids, older_than=seconds)
    _log.info("dead_letters_purged", count=purged)
    return web.json_response({"purged": purged})


def _int_param(request: web.Request, name: str, default: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    return _whole_number(text, name, MAX_LIMIT)


def _whole_number(text: str, name: str, maximum: int) -> int:
    """``text`` as an integer from 1 to ``maximum``, or a 400 naming ``name``.

    Only ASCII digits: ``int()`` also takes "²"-like digits of other scripts
    (and raises on some), underscores, signs and spaces, and refuses more than
    4300 digits with an error of its own.
    """
    if not (text.isascii() and text.isdigit() and len(text) <= len(str(maximum))):
        value = None
    else:
        value = int(text)
    if value is None or not 1 <= value <= maximum:
        raise HTTPError(f"{name}: must be a whole number from 1 to {maximum}")
    return value
