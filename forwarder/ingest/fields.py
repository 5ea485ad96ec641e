"""Field helpers the ingest parsers share: type checks that name the wrong field."""

from __future__ import annotations

import html
import re
from datetime import datetime
from typing import Any

from forwarder import jsonio
from forwarder.ingest.errors import ParseError
from forwarder.model import Level
from forwarder.timeparse import from_unix_ns, parse_rfc3339

# Kapacitor's level names (alert.Level's String()).
KAPACITOR_LEVELS = {
    "OK": Level.OK,
    "INFO": Level.INFO,
    "WARNING": Level.WARNING,
    "CRITICAL": Level.CRITICAL,
}


def parse_series(item: Any, where: str) -> tuple[str, dict[str, str], list[str], list[list[Any]]]:
    """A series object's name, tags, columns and rows, each checked."""
    if not isinstance(item, dict):
        raise ParseError(f"{where}: must be an object, got {kind(item)}")
    name = item.get("name", "")
    if not isinstance(name, str):
        raise ParseError(f"{where}.name: must be a string, got {kind(name)}")
    tags = item.get("tags")
    if tags is None:  # absent or null; a wrong falsy value ([] tags, {} rows) is an error
        tags = {}
    if not isinstance(tags, dict):
        raise ParseError(f"{where}.tags: must be an object, got {kind(tags)}")
    for k, v in tags.items():
        if not isinstance(v, str):
            raise ParseError(f"{where}.tags.{k}: must be a string, got {kind(v)}")
    columns = item.get("columns")
    if columns is None:
        columns = []
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise ParseError(f"{where}.columns: must be a list of strings")
    rows = item.get("values")
    if rows is None:
        rows = []
    if not isinstance(rows, list):
        raise ParseError(f"{where}.values: must be a list of rows, got {kind(rows)}")
    for ri, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(columns):
            raise ParseError(
                f"{where}.values[{ri}]: must be a list of {len(columns)} values, one per column"
            )
    return name, tags, columns, rows


def point_fields(
    columns: list[str],
    rows: list[list[Any]],
    when: Any,
    time: datetime,
    level: Level,
    known: Any,
) -> dict[str, Any]:
    """The fields of the point that triggered an alert, as Kapacitor's handler has them.

    Kapacitor's alert node gives its handlers the fields of the triggering
    point only (``alert.go``: ``highestPoint.Fields()`` for a batch), while
    ``data.series[0]`` holds every point of a batch, with the point tags
    that are not group tags as extra columns (``edge/messages.go``,
    ``ToRow``). So, in this order:

    * ``known``, the ``Fields`` of Kapacitor's default details (the JSON of
      the very event), is the exact answer when it is an object;
    * a single row is the point itself;
    * in a batch, the triggering row is the first whose time is the alert's
      time, and the first row when none is or when the level is OK (an OK
      batch alert carries the batch's time, and every one of its points is OK,
      so Kapacitor's highest point is the first). A column that is a string
      (or null) in every row is a tag outside the group and left out, as is a
      null, which is a column that point does not have.
    """
    if type(known) is dict:
        return known
    if not rows:
        return {}
    if len(rows) == 1:
        return {c: v for c, v in zip(columns, rows[0], strict=True) if c != "time"}
    row = rows[_trigger_index(columns, rows, when, time, level)]
    fields: dict[str, Any] = {}
    for i, column in enumerate(columns):
        value = row[i]
        if column == "time" or value is None:
            continue
        if type(value) is str and all(type(r[i]) is str or r[i] is None for r in rows):
            continue  # a point tag outside the group (tags are always strings)
        fields[column] = value
    return fields


def _trigger_index(
    columns: list[str], rows: list[list[Any]], when: Any, time: datetime, level: Level
) -> int:
    """Which row of a batch triggered the alert (see :func:`point_fields`)."""
    if level is Level.OK or "time" not in columns:
        return 0
    ti = columns.index("time")
    kind_of_when = type(when)
    for i, row in enumerate(rows):  # the same text: no parsing needed
        value = row[ti]
        if type(value) is kind_of_when and value == when:
            return i
    for i, row in enumerate(rows):  # the same instant, spelled differently
        value = row[ti]
        if type(value) is str or type(value) is int:
            try:
                if parse_time(value, "") == time:
                    return i
            except ParseError:
                continue
    return 0


def parse_level(value: Any, where: str) -> Level:
    """A Kapacitor level name, in any case."""
    if isinstance(value, str):
        level = KAPACITOR_LEVELS.get(value.upper())
        if level is not None:
            return level
    shown = repr(value[:64]) if isinstance(value, str) else kind(value)
    raise ParseError(f"{where}: unknown level {shown} (want OK, INFO, WARNING or CRITICAL)")


def parse_time(value: Any, where: str) -> datetime:
    """RFC 3339 text or Unix nanoseconds, as aware UTC."""
    try:
        if isinstance(value, str):
            return parse_rfc3339(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return from_unix_ns(value)
    except ValueError as exc:
        raise ParseError(f"{where}: {exc}") from None
    raise ParseError(f"{where}: must be an RFC 3339 timestamp, got {kind(value)}")


def parse_duration_ns(value: Any, where: str) -> int:
    """A duration in nanoseconds within int64."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParseError(f"{where}: must be a number of nanoseconds, got {kind(value)}")
    if value != value or not -(2**63) <= value <= 2**63 - 1:  # NaN or beyond int64
        raise ParseError(f"{where}: out of range")
    return int(value)


def opt_str(body: dict[str, Any], key: str) -> str:
    """``body[key]`` as a string, ``""`` when absent or null."""
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ParseError(f"{key}: must be a string, got {kind(value)}")
    return value


def as_text(value: Any, where: str) -> str:
    """A string, or a number or boolean as its JSON text (as Go's encoding/json writes it)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return jsonio.go_text(value)
    raise ParseError(f"{where}: must be a string or number, got {kind(value)}")


def str_or_empty(value: Any) -> str:
    """``value`` if it is a string, else ``""``."""
    return value if isinstance(value, str) else ""


_TASKNAME = re.compile(r'"TaskName"\s*:\s*"((?:[^"\\]|\\.)*)"')


def details_json(details: str) -> dict[str, Any]:
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


def kind(value: Any) -> str:
    """How an error names a JSON value's type."""
    return jsonio.kind_of(value)
