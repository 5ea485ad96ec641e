"""Kapacitor bodies: the alert handler's JSON and the ``httpPost`` node's rows.

Both arrive on ``/kapacitor``; they are told apart by shape. An alert body has a
``level`` (and its points under ``data.series``); an ``httpPost`` body is
``{"series": [...]}`` at the top level with no ``level``.
"""

from __future__ import annotations

from typing import Any

from forwarder.config import HttpPostFields
from forwarder.ingest.errors import ParseError
from forwarder.ingest.fields import (
    as_text,
    details_json,
    kind,
    opt_str,
    parse_duration_ns,
    parse_level,
    parse_series,
    parse_time,
    point_fields,
    str_or_empty,
)
from forwarder.ingest.kapacitor_fast import alert_fast
from forwarder.model import Event, Level, Source


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
        raise ParseError(f"body must be a JSON object, got {kind(body)}")
    if "series" in body and "level" not in body:
        return parse_httppost(body, task=task or "", fields=httppost or HttpPostFields())
    return [parse_alert(body, task=task)]


def parse_alert(body: dict[str, Any], *, task: str | None = None) -> Event:
    """One Kapacitor alert-handler event (``.post()`` or a ``kind: post`` topic handler)."""
    event = alert_fast(body, task)
    return event if event is not None else _alert_checked(body, task)


def _alert_checked(body: dict[str, Any], task: str | None) -> Event:
    """:func:`parse_alert` for any body: validates every field and names the wrong one."""
    if "level" not in body:
        raise ParseError(
            "level: missing; not a Kapacitor alert (nor an httpPost body with top-level series)"
        )
    level = parse_level(body["level"], "level")
    alert_id = opt_str(body, "id")
    message = opt_str(body, "message")
    details = opt_str(body, "details")
    if "time" not in body:
        raise ParseError("time: missing")
    time = parse_time(body["time"], "time")
    duration = parse_duration_ns(body.get("duration", 0), "duration")
    previous: Level | None = None
    if body.get("previousLevel") not in (None, ""):
        previous = parse_level(body["previousLevel"], "previousLevel")
    recoverable = body.get("recoverable")
    if recoverable is not None and not isinstance(recoverable, bool):
        raise ParseError(f"recoverable: must be true or false, got {kind(recoverable)}")

    name = ""
    tags: dict[str, str] = {}
    columns: list[str] = []
    rows: list[list[Any]] = []
    data = body.get("data")
    if data is not None:
        if not isinstance(data, dict):
            raise ParseError(f"data: must be an object, got {kind(data)}")
        series = data.get("series")
        if series is not None:
            if not isinstance(series, list):
                raise ParseError(f"data.series: must be a list, got {kind(series)}")
            if series:
                name, tags, columns, rows = parse_series(series[0], "data.series[0]")

    extra = details_json(details)
    fields = point_fields(columns, rows, body["time"], time, level, extra.get("Fields"))
    return Event(
        source=Source.KAPACITOR,
        id=alert_id,
        message=message,
        details=details,
        level=level,
        time=time,
        duration=duration,
        name=name,
        task=task or str_or_empty(extra.get("TaskName")),
        group=str_or_empty(extra.get("Group")),
        tags=tags,
        fields=fields,
        previous_level=previous,
        recoverable=recoverable,
        raw=body,
    )


def parse_httppost(body: dict[str, Any], *, task: str, fields: HttpPostFields) -> list[Event]:
    """Each values row of each series of an ``httpPost`` body becomes one event.

    A body without rows (an empty batch) gives no events.
    """
    series = body["series"]
    if not isinstance(series, list):
        raise ParseError(f"series: must be a list, got {kind(series)}")
    special = {fields.level, fields.id, fields.message, fields.duration}
    events: list[Event] = []
    for si, item in enumerate(series):
        where = f"series[{si}]"
        name, tags, columns, rows = parse_series(item, where)
        group = ",".join(f"{k}={v}" for k, v in sorted(tags.items()))
        for ri, row in enumerate(rows):
            rwhere = f"{where}.values[{ri}]"
            cols = dict(zip(columns, row, strict=True))

            def lookup(key: str, cols: dict[str, Any] = cols, tags: dict[str, str] = tags) -> Any:
                return cols[key] if key in cols else tags.get(key)

            raw_level = lookup(fields.level)
            if raw_level is None:
                if fields.default_level is None:
                    raise ParseError(
                        f"{rwhere}: no {fields.level!r} column or tag; set the alert node's "
                        f".levelField({fields.level!r}) or ingest.httppost.default_level"
                    )
                level = fields.default_level
            else:
                level = parse_level(raw_level, f"{rwhere}.{fields.level}")
            if "time" not in cols:
                raise ParseError(f"{rwhere}: no time column")
            time = parse_time(cols["time"], f"{rwhere}.time")
            alert_id = lookup(fields.id)
            message = lookup(fields.message)
            duration = lookup(fields.duration)
            events.append(
                Event(
                    source=Source.HTTPPOST,
                    id=as_text(alert_id, f"{rwhere}.{fields.id}")
                    if alert_id is not None
                    else f"{name}:{group}"
                    if group
                    else name,
                    message=as_text(message, f"{rwhere}.{fields.message}")
                    if message is not None
                    else "",
                    details="",
                    level=level,
                    time=time,
                    duration=parse_duration_ns(duration, f"{rwhere}.{fields.duration}")
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
    # A batch that ``|where()`` emptied is still posted, as series without
    # ``values`` (Kapacitor's ToRow leaves out columns and values when a batch
    # has no points): no events, and not an error, which Kapacitor would log
    # every period.
    return events
