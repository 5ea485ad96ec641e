"""The fast path for Kapacitor alert bodies, fenced off from the checked parser.

During an alert storm every ingest request parses an alert, so this module
accepts exactly the shape Kapacitor sends, with ``type(x) is`` checks and no
helper calls, and returns None for anything else. The checked parser in
:mod:`forwarder.ingest.kapacitor` then takes over: it accepts the same alerts
and says precisely what is wrong with the others.

The two must agree. ``tests/ingest/test_kapacitor_fast.py`` holds them to the
same result with a property test over mutated real alerts; change both or
neither.
"""

from __future__ import annotations

from typing import Any

from forwarder.ingest.fields import KAPACITOR_LEVELS, details_json, point_fields, str_or_empty
from forwarder.model import Event, Level, Source
from forwarder.timeparse import parse_rfc3339

_MAX_NS = 2**63


def alert_fast(body: dict[str, Any], task: str | None) -> Event | None:
    """The alert exactly as Kapacitor sends it, or None for anything else.

    Every ingest request of an alert storm takes this path, so it checks
    types with ``type(x) is`` and no helper calls. Whatever it does not
    recognise (a lower-case level, a missing field, a wrong type) goes to
    :func:`_alert_checked`, which accepts the same alerts and says precisely
    what is wrong with the others; a test holds the two to the same result.
    """
    get = body.get
    raw_level = get("level")
    level = KAPACITOR_LEVELS.get(raw_level) if type(raw_level) is str else None
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
    if type(duration) is not int or not -_MAX_NS <= duration < _MAX_NS:
        return None
    previous_raw = get("previousLevel")
    previous: Level | None = None
    if previous_raw is not None and previous_raw != "":
        previous = KAPACITOR_LEVELS.get(previous_raw) if type(previous_raw) is str else None
        if previous is None:
            return None
    recoverable = get("recoverable")
    if recoverable is not None and type(recoverable) is not bool:
        return None
    name = ""
    tags: dict[str, str] = {}
    fields: dict[str, Any] = {}
    columns: Any = []
    rows: Any = []
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
    try:
        time = parse_rfc3339(when)
    except ValueError:
        return None
    extra = details_json(details) if details else {}
    known = extra.get("Fields")
    if type(known) is dict:  # Kapacitor's default details: the triggering point's own fields
        fields = known
    elif len(rows) == 1:  # a stream point, or a batch of one
        fields = {c: v for c, v in zip(columns, rows[0], strict=True) if c != "time"}
    elif rows:  # a batch: the triggering row, without tags outside the group
        fields = point_fields(columns, rows, when, time, level, None)
    return Event(
        Source.KAPACITOR,
        alert_id,
        message,
        details,
        level,
        time,
        duration,
        name,
        task or str_or_empty(extra.get("TaskName")),
        str_or_empty(extra.get("Group")),
        tags,
        fields,
        previous,
        recoverable,
        body,
    )
