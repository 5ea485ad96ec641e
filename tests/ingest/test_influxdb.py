"""InfluxDB 2.x notification rows, parsed purely into the event model."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from forwarder.ingest import ParseError, parse_influxdb
from forwarder.model import Level, Source
from tests.conftest import example


def row(**changes: Any) -> dict[str, Any]:
    """The InfluxDB sample row with keys replaced (``None`` deletes one)."""
    doc = json.loads(example("influxdb-notification-crit.json"))
    assert isinstance(doc, dict)
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def test_sample_row_normalises_every_field() -> None:
    """The sample notification becomes one event with the issue's column mapping."""
    body = row()
    [event] = parse_influxdb(body)
    assert event.source is Source.INFLUXDB
    assert event.id == "High CPU User Usage"  # _check_name
    assert event.message == "High CPU User Usage: rsavage.prod is crit"  # _message
    assert event.level is Level.CRITICAL  # _level crit
    assert event.time == datetime(2019, 9, 6, 19, 16, 15, tzinfo=UTC)  # _source_timestamp
    assert event.name == "cpu"  # _source_measurement
    assert event.task == "HTTP Notification"  # _notification_rule_name
    assert event.details == ""
    assert event.tags == {"cpu": "cpu-total", "host": "rsavage.prod"}
    assert event.fields == {"usage_user": 91.12278069517379}
    assert event.raw == body


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        pytest.param("crit", Level.CRITICAL, id="crit"),
        pytest.param("warn", Level.WARNING, id="warn"),
        pytest.param("info", Level.INFO, id="info"),
        pytest.param("ok", Level.OK, id="ok"),
        pytest.param("unknown", Level.UNKNOWN, id="unknown"),
        pytest.param("", Level.UNKNOWN, id="empty"),
        pytest.param("fatal", Level.UNKNOWN, id="future-level"),
        pytest.param("critical", Level.UNKNOWN, id="kapacitor-spelling-is-not-influx"),
    ],
)
def test_level_map(level: str, expected: Level) -> None:
    """crit/warn/info/ok map to CRITICAL/WARNING/INFO/OK and anything else to UNKNOWN."""
    [event] = parse_influxdb(row(_level=level))
    assert event.level is expected


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param({}, datetime(2019, 9, 6, 19, 16, 15, tzinfo=UTC), id="source-timestamp"),
        pytest.param(
            {"_source_timestamp": None},
            datetime(2019, 9, 6, 19, 16, 20, 609629, tzinfo=UTC),
            id="falls-back-to-_time",
        ),
        pytest.param(
            {"_source_timestamp": None, "_time": 1567797380000000000},
            datetime(2019, 9, 6, 19, 16, 20, tzinfo=UTC),
            id="_time-as-nanoseconds",
        ),
        pytest.param(
            {"_source_timestamp": -1_000_000_000},
            datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC),
            id="pre-1970",
        ),
    ],
)
def test_time_is_source_timestamp_then_time(changes: dict[str, Any], expected: datetime) -> None:
    """_source_timestamp (ns) is the event time; without it, _time is used."""
    [event] = parse_influxdb(row(**changes))
    assert event.time == expected


def test_null_source_timestamp_falls_back_to_time() -> None:
    """A null _source_timestamp counts as missing, so _time is used."""
    body = row()
    body["_source_timestamp"] = None
    [event] = parse_influxdb(body)
    assert event.time == datetime(2019, 9, 6, 19, 16, 20, 609629, tzinfo=UTC)


def test_columns_split_into_tags_and_fields_by_type() -> None:
    """String columns not starting with _ are tags; every other non-_ column is a field."""
    body = row(
        region="eu",
        up=True,
        count=3,
        ratio=0.5,
        labels=["a"],
        nested={"k": 1},
        _private="hidden",
        _another=7,
    )
    [event] = parse_influxdb(body)
    assert event.tags == {"cpu": "cpu-total", "host": "rsavage.prod", "region": "eu"}
    assert event.fields == {
        "usage_user": 91.12278069517379,
        "up": True,
        "count": 3,
        "ratio": 0.5,
        "labels": ["a"],
        "nested": {"k": 1},
    }


def test_minimal_row_has_empty_texts() -> None:
    """A row with only _level and a time parses; the missing texts are empty."""
    [event] = parse_influxdb({"_level": "ok", "_time": "2019-09-06T19:16:20Z"})
    assert (event.id, event.message, event.name, event.task) == ("", "", "", "")
    assert event.tags == {}
    assert event.fields == {}


BAD_ROWS: list[Any] = [
    pytest.param(
        [row()], "body must be a JSON object (one notification row), got a list", id="list"
    ),
    pytest.param(
        "crit", "body must be a JSON object (one notification row), got a string", id="str"
    ),
    pytest.param(row(_level=None), "_level: missing", id="missing-level"),
    pytest.param(row(_level=2), "_level: must be a string, got a number", id="numeric-level"),
    pytest.param(
        row(_source_timestamp=None, _time=None),
        "_source_timestamp and _time: both missing",
        id="missing-times",
    ),
    pytest.param(
        row(_source_timestamp="soon"),
        "_source_timestamp: not an RFC 3339 timestamp",
        id="bad-source-timestamp",
    ),
    pytest.param(
        row(_source_timestamp=1.5e18),
        "_source_timestamp: must be an RFC 3339 timestamp, got a number",
        id="float-source-timestamp",
    ),
    pytest.param(
        row(_source_timestamp=2**64),
        "_source_timestamp: timestamp out of range",
        id="source-timestamp-beyond-int64",
    ),
    pytest.param(
        row(_source_timestamp=None, _time="2019-09-06"),
        "_time: not an RFC 3339 timestamp",
        id="bad-time",
    ),
    pytest.param(row(_check_name=5), "_check_name: must be a string, got a number", id="id"),
    pytest.param(row(_message=["m"]), "_message: must be a string, got a list", id="message"),
    pytest.param(
        row(_source_measurement={}), "_source_measurement: must be a string", id="measurement"
    ),
    pytest.param(
        row(_notification_rule_name=True),
        "_notification_rule_name: must be a string, got a boolean",
        id="rule-name",
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD_ROWS)
def test_bad_row_is_refused_saying_where(body: Any, message: str) -> None:
    """A wrongly shaped notification raises a ParseError whose message names the column."""
    with pytest.raises(ParseError) as info:
        parse_influxdb(body)
    assert info.value.message.startswith(message)
