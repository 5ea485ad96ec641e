"""InfluxDB 2.x notification rows, as an HTTP notification endpoint posts them."""

from __future__ import annotations

from typing import Any

from forwarder.ingest.errors import ParseError
from forwarder.ingest.fields import kind, opt_str, parse_time
from forwarder.model import Event, Level, Source

# InfluxDB's check levels; anything else ("unknown", or a future level) becomes
# UNKNOWN, which the default status map sends as "critical", as Kapacitor's and
# Flux's BigPanda mappings do.
_LEVELS = {"crit": Level.CRITICAL, "warn": Level.WARNING, "info": Level.INFO, "ok": Level.OK}


def parse_influxdb(body: Any) -> list[Event]:
    """Normalise one notification row; the result is always a single event."""
    if not isinstance(body, dict):
        raise ParseError(f"body must be a JSON object (one notification row), got {kind(body)}")
    if "_level" not in body:
        raise ParseError("_level: missing; not an InfluxDB notification row")
    raw_level = body["_level"]
    if not isinstance(raw_level, str):
        raise ParseError(f"_level: must be a string, got {kind(raw_level)}")
    level = _LEVELS.get(raw_level.lower(), Level.UNKNOWN)

    if body.get("_source_timestamp") is not None:
        time = parse_time(body["_source_timestamp"], "_source_timestamp")
    elif body.get("_time") is not None:
        time = parse_time(body["_time"], "_time")
    else:
        raise ParseError("_source_timestamp and _time: both missing; the row has no time")

    tags: dict[str, str] = {}
    fields: dict[str, Any] = {}
    for key, value in body.items():
        if key.startswith("_"):
            continue
        if isinstance(value, str):
            tags[key] = value
        else:
            fields[key] = value
    return [
        Event(
            source=Source.INFLUXDB,
            id=opt_str(body, "_check_name"),
            message=opt_str(body, "_message"),
            details="",
            level=level,
            time=time,
            name=opt_str(body, "_source_measurement"),
            task=opt_str(body, "_notification_rule_name"),
            tags=tags,
            fields=fields,
            raw=body,
        )
    ]
