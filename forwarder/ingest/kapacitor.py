"""Kapacitor bodies: the alert handler's JSON and the ``httpPost`` node's rows.

Both arrive on ``/kapacitor``; they are told apart by shape. An alert body has a
``level`` (and its points under ``data.series``); an ``httpPost`` body is
``{"series": [...]}`` at the top level with no ``level``.
"""

from __future__ import annotations

import html
import re
from datetime import datetime
from typing import Any

from forwarder import jsonio
from forwarder.config import HttpPostFields
from forwarder.ingest.errors import IngestError
from forwarder.model import Event, Level, Source
from forwarder.timeparse import from_unix_ns, parse_rfc3339

_LEVELS = {"OK": Level.OK, "INFO": Level.INFO, "WARNING": Level.WARNING, "CRITICAL": Level.CRITICAL}


def parse_kapacitor(
    body: Any,
    *,
    task: str | None = None,
    httppost: HttpPostFields | None = None,
) -> list[Event]:
    """Normalise a decoded ``/kapacitor`` body into events.

    ``task`` is the task name found outside the body (path, query, header); for
    alert bodies without one, the ``TaskName`` inside Kapacitor's default
    ``details`` is used. ``httppost`` names the columns of ``httpPost`` rows; its
    ``default_level`` applies to rows with no level column or tag (without it
    such a row is refused).
    """
    if not isinstance(body, dict):
        raise IngestError(f"body must be a JSON object, got {_kind(body)}")
    if "series" in body and "level" not in body:
        return parse_httppost(body, task=task or "", fields=httppost or HttpPostFields())
    return [parse_alert(body, task=task)]


def parse_alert(body: dict[str, Any], *, task: str | None = None) -> Event:
    """One Kapacitor alert-handler event (``.post()`` or a ``kind: post`` topic handler)."""
    event = _alert_fast(body, task)
    return event if event is not None else _alert_checked(body, task)


_MAX_NS = 2**63


def _alert_fast(body: dict[str, Any], task: str | None) -> Event | None:
    """The alert exactly as Kapacitor sends it, or None for anything else.

    Every ingest request of an alert storm takes this path, so it checks
    types with ``type(x) is`` and no helper calls. Whatever it does not
    recognise (a lower-case level, a missing field, a wrong type) goes to
    :func:`_alert_checked`, which accepts the same alerts and says precisely
    what is wrong with the others; a test holds the two to the same result.
    """
    get = body.get
    raw_level = get("level")
    level = _LEVELS.get(raw_level) if type(raw_level) is str else None
    alert_id = get("id")
    message = get("message")
    details = get("details")
    when = get("time")
    if (
        level is None
        or type(alert_id) is not str
        or type(message) is not str
        or type(details) is not str
        or type(when) is not str
    ):
        return None
    duration = get("duration", 0)
    if type(duration) is not int or not -_MAX_NS <= duration <= _MAX_NS:
        return None
    previous_raw = get("previousLevel")
    previous: Level | None = None
    if previous_raw is not None and previous_raw != "":
        previous = _LEVELS.get(previous_raw) if type(previous_raw) is str else None
        if previous is None:
            return None
    recoverable = get("recoverable")
    if recoverable is not None and type(recoverable) is not bool:
        return None
    name = ""
    tags: dict[str, str] = {}
    fields: dict[str, Any] = {}
    data = get("data")
    if data is not None:
        if type(data) is not dict:
            return None
        series = data.get("series")
        if series is not None:
            if type(series) is not list:
                return None
            if series:
                item = series[0]
                if type(item) is not dict:
                    return None
                name = item.get("name", "")
                raw_tags = item.get("tags")
                if raw_tags is None:  # Kapacitor leaves out empty tags
                    raw_tags = {}
                columns = item.get("columns")
                rows = item.get("values")
                if (
                    type(name) is not str
                    or type(raw_tags) is not dict
                    or type(columns) is not list
                    or type(rows) is not list
                ):
                    return None
                for v in raw_tags.values():
                    if type(v) is not str:
                        return None
                tags = raw_tags
                for c in columns:
                    if type(c) is not str:
                        return None
                width = len(columns)
                for row in rows:
                    if type(row) is not list or len(row) != width:
                        return None
                if rows:
                    fields = {c: v for c, v in zip(columns, rows[0], strict=True) if c != "time"}
    try:
        time = parse_rfc3339(when)
    except ValueError:
        return None
    extra = _details_json(details) if details else {}
    return Event(
        Source.KAPACITOR,
        alert_id,
        message,
        details,
        level,
        time,
        duration,
        name,
        task or _str_or_empty(extra.get("TaskName")),
        _str_or_empty(extra.get("Group")),
        tags,
        fields,
        previous,
        recoverable,
        body,
    )


def _alert_checked(body: dict[str, Any], task: str | None) -> Event:
    """:func:`parse_alert` for any body: validates every field and names the wrong one."""
    if "level" not in body:
        raise IngestError(
            "level: missing; not a Kapacitor alert (nor an httpPost body with top-level series)"
        )
    level = _level(body["level"], "level")
    alert_id = _opt_str(body, "id")
    message = _opt_str(body, "message")
    details = _opt_str(body, "details")
    if "time" not in body:
        raise IngestError("time: missing")
    time = _time(body["time"], "time")
    duration = _duration(body.get("duration", 0), "duration")
    previous: Level | None = None
    if body.get("previousLevel") not in (None, ""):
        previous = _level(body["previousLevel"], "previousLevel")
    recoverable = body.get("recoverable")
    if recoverable is not None and not isinstance(recoverable, bool):
        raise IngestError(f"recoverable: must be true or false, got {_kind(recoverable)}")

    name = ""
    tags: dict[str, str] = {}
    fields: dict[str, Any] = {}
    data = body.get("data")
    if data is not None:
        if not isinstance(data, dict):
            raise IngestError(f"data: must be an object, got {_kind(data)}")
        series = data.get("series")
        if series is not None:
            if not isinstance(series, list):
                raise IngestError(f"data.series: must be a list, got {_kind(series)}")
            if series:
                name, tags, columns, rows = _series(series[0], "data.series[0]")
                if rows:
                    fields = {c: v for c, v in zip(columns, rows[0], strict=True) if c != "time"}

    extra = _details_json(details)
    return Event(
        source=Source.KAPACITOR,
        id=alert_id,
        message=message,
        details=details,
        level=level,
        time=time,
        duration=duration,
        name=name,
        task=task or _str_or_empty(extra.get("TaskName")),
        group=_str_or_empty(extra.get("Group")),
        tags=tags,
        fields=fields,
        previous_level=previous,
        recoverable=recoverable,
        raw=body,
    )


def parse_httppost(body: dict[str, Any], *, task: str, fields: HttpPostFields) -> list[Event]:
    """Each values row of each series of an ``httpPost`` body becomes one event."""
    series = body["series"]
    if not isinstance(series, list):
        raise IngestError(f"series: must be a list, got {_kind(series)}")
    special = {fields.level, fields.id, fields.message, fields.duration}
    events: list[Event] = []
    for si, item in enumerate(series):
        where = f"series[{si}]"
        name, tags, columns, rows = _series(item, where)
        group = ",".join(f"{k}={v}" for k, v in sorted(tags.items()))
        for ri, row in enumerate(rows):
            rwhere = f"{where}.values[{ri}]"
            cols = dict(zip(columns, row, strict=True))

            def lookup(key: str, cols: dict[str, Any] = cols, tags: dict[str, str] = tags) -> Any:
                return cols[key] if key in cols else tags.get(key)

            raw_level = lookup(fields.level)
            if raw_level is None:
                if fields.default_level is None:
                    raise IngestError(
                        f"{rwhere}: no {fields.level!r} column or tag; set the alert node's "
                        f".levelField({fields.level!r}) or ingest.httppost.default_level"
                    )
                level = fields.default_level
            else:
                level = _level(raw_level, f"{rwhere}.{fields.level}")
            if "time" not in cols:
                raise IngestError(f"{rwhere}: no time column")
            time = _time(cols["time"], f"{rwhere}.time")
            alert_id = lookup(fields.id)
            message = lookup(fields.message)
            duration = lookup(fields.duration)
            events.append(
                Event(
                    source=Source.HTTPPOST,
                    id=_as_text(alert_id, f"{rwhere}.{fields.id}")
                    if alert_id is not None
                    else f"{name}:{group}"
                    if group
                    else name,
                    message=_as_text(message, f"{rwhere}.{fields.message}")
                    if message is not None
                    else "",
                    details="",
                    level=level,
                    time=time,
                    duration=_duration(duration, f"{rwhere}.{fields.duration}")
                    if duration is not None
                    else 0,
                    name=name,
                    task=task,
                    group=group,
                    tags={k: v for k, v in tags.items() if k not in special},
                    fields={k: v for k, v in cols.items() if k != "time" and k not in special},
                    raw={"name": name, "tags": tags, **cols},
                )
            )
    if not events:
        raise IngestError("series: no rows (values) to turn into alerts")
    return events


# --------------------------------------------------------------------------- helpers


def _series(item: Any, where: str) -> tuple[str, dict[str, str], list[str], list[list[Any]]]:
    if not isinstance(item, dict):
        raise IngestError(f"{where}: must be an object, got {_kind(item)}")
    name = item.get("name", "")
    if not isinstance(name, str):
        raise IngestError(f"{where}.name: must be a string, got {_kind(name)}")
    tags = item.get("tags")
    if tags is None:  # absent or null; a wrong falsy value ([] tags, {} rows) is an error
        tags = {}
    if not isinstance(tags, dict):
        raise IngestError(f"{where}.tags: must be an object, got {_kind(tags)}")
    for k, v in tags.items():
        if not isinstance(v, str):
            raise IngestError(f"{where}.tags.{k}: must be a string, got {_kind(v)}")
    columns = item.get("columns")
    if columns is None:
        columns = []
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise IngestError(f"{where}.columns: must be a list of strings")
    rows = item.get("values")
    if rows is None:
        rows = []
    if not isinstance(rows, list):
        raise IngestError(f"{where}.values: must be a list of rows, got {_kind(rows)}")
    for ri, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(columns):
            raise IngestError(
                f"{where}.values[{ri}]: must be a list of {len(columns)} values, one per column"
            )
    return name, tags, columns, rows


def _level(value: Any, where: str) -> Level:
    if isinstance(value, str):
        level = _LEVELS.get(value.upper())
        if level is not None:
            return level
    shown = repr(value[:64]) if isinstance(value, str) else _kind(value)
    raise IngestError(f"{where}: unknown level {shown} (want OK, INFO, WARNING or CRITICAL)")


def _time(value: Any, where: str) -> datetime:
    try:
        if isinstance(value, str):
            return parse_rfc3339(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return from_unix_ns(value)
    except ValueError as exc:
        raise IngestError(f"{where}: {exc}") from None
    raise IngestError(f"{where}: must be an RFC 3339 timestamp, got {_kind(value)}")


def _duration(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise IngestError(f"{where}: must be a number of nanoseconds, got {_kind(value)}")
    if value != value or abs(value) > 2**63:  # NaN or beyond int64
        raise IngestError(f"{where}: out of range")
    return int(value)


def _opt_str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise IngestError(f"{key}: must be a string, got {_kind(value)}")
    return value


def _as_text(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return jsonio.dumps_str(value)
    raise IngestError(f"{where}: must be a string or number, got {_kind(value)}")


def _str_or_empty(value: Any) -> str:
    return value if isinstance(value, str) else ""


_TASKNAME = re.compile(r'"TaskName"\s*:\s*"((?:[^"\\]|\\.)*)"')


def _details_json(details: str) -> dict[str, Any]:
    """Kapacitor's default ``details`` is the event as HTML-escaped JSON; read it if so."""
    if not details or "TaskName" not in details:
        return {}
    text = html.unescape(details).strip()
    if not text.startswith("{"):
        return {}
    try:
        parsed = jsonio.loads(text.encode())
    except ValueError:
        m = _TASKNAME.search(text)
        return {"TaskName": m.group(1)} if m else {}
    return parsed if isinstance(parsed, dict) else {}


def _kind(value: Any) -> str:
    return jsonio.kind_of(value)
