"""Telling a sender it posted to the wrong endpoint.

A Kapacitor alert posted to ``/influxdb``, or an InfluxDB notification row
posted to ``/kapacitor``, fails with a shape error that names a missing field;
the fix is a different URL, so the refusal says which.
"""

from __future__ import annotations

from typing import Any

from forwarder import jsonio

# Columns InfluxDB 2.x's notification endpoint always writes into the row it
# posts (the monitor package's _check_*, _level, _notification_* columns).
_INFLUX_KEYS = frozenset(
    {"_check_id", "_check_name", "_level", "_notification_rule_id", "_notification_rule_name"}
)
# Top-level keys of Kapacitor's alert-handler JSON (alert.Data) and of the
# httpPost node's body ({"series": [...]}) .
_KAPACITOR_KEYS = frozenset({"previousLevel", "recoverable", "details", "data"})


def wrong_endpoint(source: str, body: bytes | None) -> str | None:
    """A sentence naming the right endpoint when ``body`` is the other source's shape."""
    if not body:
        return None
    try:
        doc = jsonio.loads(body)
    except ValueError:
        return None
    if source == "kapacitor" and _looks_influx(doc):
        return "this looks like an InfluxDB notification row; post it to /influxdb"
    if source == "influxdb" and _looks_kapacitor(doc):
        return "this looks like a Kapacitor alert or httpPost body; post it to /kapacitor"
    return None


def _looks_influx(doc: Any) -> bool:
    if not isinstance(doc, dict) or "level" in doc:
        return False
    return "_level" in doc or len(_INFLUX_KEYS & doc.keys()) >= 2


def _looks_kapacitor(doc: Any) -> bool:
    if not isinstance(doc, dict) or "_level" in doc:
        return False
    if "level" in doc and _KAPACITOR_KEYS & doc.keys():
        return True
    series = doc.get("series")
    return isinstance(series, list) and bool(series) and isinstance(series[0], dict)
