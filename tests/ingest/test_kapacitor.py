"""Kapacitor bodies: the alert handler's JSON and the ``httpPost`` node's rows, parsed purely."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from forwarder.config import HttpPostFields
from forwarder.ingest import ParseError, kapacitor, parse_kapacitor
from forwarder.model import Level, Source
from tests.conftest import example

# Kapacitor's default ``details``: the alert's template data as JSON, HTML-escaped
# by Go's html/template (quotes become &#34;).
DEFAULT_DETAILS = (
    "{&#34;Name&#34;:&#34;cpu&#34;,&#34;TaskName&#34;:&#34;cpu_alert&#34;,"
    "&#34;Group&#34;:&#34;host=serverA&#34;,&#34;Tags&#34;:{&#34;host&#34;:&#34;serverA&#34;},"
    "&#34;ID&#34;:&#34;kapacitor.cpu.serverA&#34;,&#34;Fields&#34;:{&#34;count&#34;:10},"
    "&#34;Level&#34;:&#34;CRITICAL&#34;,&#34;Time&#34;:&#34;1971-01-01T00:00:10Z&#34;,"
    "&#34;Duration&#34;:0,&#34;Message&#34;:&#34;kapacitor.cpu.serverA is CRITICAL&#34;}"
)


def sample(name: str) -> dict[str, Any]:
    """A sample payload from ``examples/`` as a fresh dict."""
    doc = json.loads(example(name))
    assert isinstance(doc, dict)
    return doc


def alert(**changes: Any) -> dict[str, Any]:
    """The critical alert sample with top-level keys replaced (``None`` deletes one)."""
    body = sample("kapacitor-alert-critical.json")
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def with_series(*series: Any, **changes: Any) -> dict[str, Any]:
    """The critical alert sample with ``data.series`` replaced (items of any shape)."""
    return alert(data={"series": list(series)}, **changes)


def httppost(*series: dict[str, Any]) -> dict[str, Any]:
    """An ``httpPost`` node body."""
    return {"series": list(series)}


T0 = "1971-01-01T00:00:00Z"


# --------------------------------------------------------------------------- alert bodies


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param(
            "kapacitor-alert-critical.json",
            {
                "source": Source.KAPACITOR,
                "id": "kapacitor.cpu.serverA",
                "message": "kapacitor.cpu.serverA is CRITICAL",
                "details": "",
                "level": Level.CRITICAL,
                "time": datetime(1971, 1, 1, 0, 0, 10, tzinfo=UTC),
                "duration": 0,
                "name": "cpu",
                "task": "",
                "tags": {"host": "serverA"},
                "fields": {"count": 10},
                "previous_level": Level.OK,
                "recoverable": True,
            },
            id="critical-every-field",
        ),
        pytest.param(
            "kapacitor-alert-minimal.json",
            # A series without tags gives empty tags; non-JSON details are kept as they are.
            {
                "id": "id",
                "message": "message",
                "details": "details",
                "name": "alert",
                "tags": {},
                "fields": {"value": 1},
                "time": datetime(1970, 1, 1, tzinfo=UTC),
            },
            id="minimal",
        ),
    ],
)
def test_sample_alert_normalises_to_one_event(name: str, expected: dict[str, Any]) -> None:
    """Each alert sample becomes one event carrying its fields, the body kept as ``raw``."""
    body = sample(name)
    [event] = parse_kapacitor(body)
    assert {key: getattr(event, key) for key in expected} == expected
    assert event.raw == body


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("OK", Level.OK),
        ("INFO", Level.INFO),
        ("WARNING", Level.WARNING),
        ("CRITICAL", Level.CRITICAL),
    ],
)
def test_each_kapacitor_level_is_recognised(level: str, expected: Level) -> None:
    """Each of Kapacitor's four levels becomes the same event level."""
    [event] = parse_kapacitor(alert(level=level, previousLevel=level))
    assert event.level is expected
    assert event.previous_level is expected


@pytest.mark.parametrize(
    ("explicit", "details", "expected"),
    [
        pytest.param("from_path", DEFAULT_DETAILS, "from_path", id="explicit-beats-details"),
        pytest.param(None, DEFAULT_DETAILS, "cpu_alert", id="details-taskname"),
        pytest.param(
            None,
            "{&#34;TaskName&#34;:&#34;cut_short&#34;,&#34;Fields&#34;:{",
            "cut_short",
            id="taskname-in-broken-json",
        ),
        pytest.param(None, '{"TaskName":"plain_json"}', "plain_json", id="unescaped-json"),
        pytest.param(None, "TaskName is cpu_alert", "", id="taskname-word-not-json"),
        pytest.param(None, "", "", id="no-details"),
        pytest.param("", DEFAULT_DETAILS, "cpu_alert", id="empty-explicit-falls-through"),
    ],
)
def test_task_name_comes_from_caller_then_details(
    explicit: str | None, details: str, expected: str
) -> None:
    """The task given from outside the body wins; otherwise the TaskName in the details."""
    [event] = parse_kapacitor(alert(details=details), task=explicit)
    assert event.task == expected


def test_default_details_also_give_the_group() -> None:
    """The Group inside Kapacitor's default details becomes the event group."""
    [event] = parse_kapacitor(alert(details=DEFAULT_DETAILS))
    assert event.group == "host=serverA"
    assert event.details == DEFAULT_DETAILS


def test_tags_and_fields_come_from_the_first_series_and_its_row() -> None:
    """Tags are series[0].tags; fields are series[0]'s row without time (strings kept)."""
    body = with_series(
        {
            "name": "disk",
            "tags": {"host": "a", "path": "/"},
            "columns": ["time", "used", "mode", "ok"],
            "values": [[T0, 91.5, "rw", True]],
        },
        {"name": "other", "tags": {"host": "b"}, "columns": ["time", "x"], "values": [[T0, 2]]},
    )
    [event] = parse_kapacitor(body)
    assert event.name == "disk"
    assert event.tags == {"host": "a", "path": "/"}
    assert event.fields == {"used": 91.5, "mode": "rw", "ok": True}


# --------------------------------------------------------------------------- batch alerts
#
# How Kapacitor builds a batch alert (alert.go, BufferedBatch; edge/messages.go, ToRow):
# the alert's time is the time of the point with the highest level (the first such
# point), or the batch's time when the level is OK; the handler's fields are that
# point's fields; data.series[0] holds every point, its columns being "time", then the
# first point's fields and its tags that are not group tags, sorted; a point without a
# column has null there.

T1, T2 = "1971-01-01T00:00:01Z", "1971-01-01T00:00:02Z"


def batch_alert(
    points: list[tuple[str, dict[str, Any], dict[str, str]]],
    *,
    group: dict[str, str],
    time: str,
    level: str = "CRITICAL",
    details: str = "",
) -> dict[str, Any]:
    """An alert body as Kapacitor posts it for a batch of ``(time, fields, tags)`` points."""
    first_fields, first_tags = points[0][1], points[0][2]
    columns = ["time", *sorted([*first_fields, *(t for t in first_tags if t not in group)])]
    rows = [
        [when, *(fields.get(c, tags.get(c)) for c in columns[1:])] for when, fields, tags in points
    ]
    series = {"name": "cpu", "tags": group, "columns": columns, "values": rows}
    return alert(data={"series": [series]}, time=time, level=level, details=details)


# Three points of group host=a from cpu0, cpu1, cpu2 (the query grouped by host and cpu,
# the task by host only): the cpu tag is a column.
POINTS = [
    (T0, {"usage": 10.0, "state": "idle"}, {"host": "a", "cpu": "cpu0"}),
    (T1, {"usage": 95.5, "state": "busy"}, {"host": "a", "cpu": "cpu1"}),
    (T2, {"usage": 20.0, "state": "idle"}, {"host": "a", "cpu": "cpu2"}),
]


@pytest.mark.parametrize(
    ("time", "level", "usage"),
    [
        pytest.param(T1, "CRITICAL", 95.5, id="triggering-row"),
        pytest.param("1971-01-01T02:00:01+02:00", "CRITICAL", 95.5, id="same-instant-offset"),
        pytest.param("1971-01-01T00:00:01.000000000Z", "WARNING", 95.5, id="same-instant-nanos"),
        pytest.param("1971-01-01T00:00:09Z", "CRITICAL", 10.0, id="no-match-first-row"),
        pytest.param(T2, "OK", 10.0, id="ok-is-the-first-row"),
    ],
)
def test_batch_alert_fields_come_from_the_triggering_row(
    time: str, level: str, usage: float
) -> None:
    """A batch alert takes the row whose time is the alert's; else, and for OK, the first row."""
    body = batch_alert(POINTS, group={"host": "a"}, time=time, level=level)
    for event in (parse_kapacitor(body)[0], kapacitor._alert_checked(body, None)):
        assert event.fields == {"usage": usage}
        assert event.tags == {"host": "a"}


def test_batch_tags_outside_the_group_are_not_fields() -> None:
    """A point tag outside the group (a string column in every row) is not a field.

    Without Kapacitor's default details nothing tells a string field from such a tag,
    so string columns of a batch are left out; the row stays readable as ``raw``.
    """
    [event] = parse_kapacitor(batch_alert(POINTS, group={"host": "a"}, time=T1))
    assert "cpu" not in event.fields
    assert "state" not in event.fields
    assert event.raw["data"]["series"][0]["columns"] == ["time", "cpu", "state", "usage"]


def test_batch_null_in_the_triggering_row_is_left_out() -> None:
    """A column the triggering point does not have (null there) is not a field of it."""
    points = [
        (T0, {"usage": 1.0, "temp": 40}, {"host": "a"}),
        (T1, {"usage": 99.0}, {"host": "a"}),
    ]
    [event] = parse_kapacitor(batch_alert(points, group={"host": "a"}, time=T1))
    assert event.fields == {"usage": 99.0}


def test_default_details_give_the_exact_fields() -> None:
    """Kapacitor's default details carry the triggering point's fields: those are used.

    That also keeps its string fields, which the rows alone cannot tell from tags.
    """
    details = (
        "{&#34;Name&#34;:&#34;cpu&#34;,&#34;TaskName&#34;:&#34;batch_cpu&#34;,"
        "&#34;Group&#34;:&#34;host=a&#34;,&#34;Tags&#34;:{&#34;host&#34;:&#34;a&#34;},"
        "&#34;Fields&#34;:{&#34;state&#34;:&#34;busy&#34;,&#34;usage&#34;:95.5}}"
    )
    body = batch_alert(POINTS, group={"host": "a"}, time=T1, details=details)
    [event] = parse_kapacitor(body)
    assert event.fields == {"state": "busy", "usage": 95.5}
    assert event.task == "batch_cpu"


def test_single_row_keeps_every_column() -> None:
    """One row (a stream point) is the point itself: string columns are its fields."""
    points = [(T1, {"usage": 95.5, "state": "busy"}, {"host": "a"})]
    [event] = parse_kapacitor(batch_alert(points, group={"host": "a"}, time=T1))
    assert event.fields == {"state": "busy", "usage": 95.5}


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(None, id="no-data"),
        pytest.param({}, id="no-series"),
        pytest.param({"series": []}, id="empty-series"),
        pytest.param({"series": [{"name": "cpu", "columns": ["time"]}]}, id="no-rows"),
    ],
)
def test_alert_without_points_has_no_tags_or_fields(data: dict[str, Any] | None) -> None:
    """An alert whose data has no series or no rows still parses, with empty tags and fields."""
    body = alert(data=data)
    [event] = parse_kapacitor(body)
    assert event.tags == {}
    assert event.fields == {}


@pytest.mark.parametrize(
    ("changes", "check"),
    [
        pytest.param({"id": None, "message": None, "details": None}, ("", "", ""), id="absent"),
        pytest.param({"previousLevel": ""}, None, id="empty-previous-level"),
        pytest.param({"previousLevel": None}, None, id="no-previous-level"),
        pytest.param({"recoverable": None}, None, id="no-recoverable"),
        pytest.param({"duration": None}, None, id="no-duration"),
    ],
)
def test_optional_alert_keys_may_be_missing(
    changes: dict[str, Any], check: tuple[str, str, str] | None
) -> None:
    """id, message, details, duration, previousLevel and recoverable are optional."""
    [event] = parse_kapacitor(alert(**changes))
    if check is not None:
        assert (event.id, event.message, event.details) == check
    if "previousLevel" in changes:
        assert event.previous_level is None
    if "recoverable" in changes:
        assert event.recoverable is None
    if "duration" in changes:
        assert event.duration == 0


def test_duration_is_kept_in_nanoseconds() -> None:
    """``duration`` is Kapacitor's integer nanoseconds, kept as is."""
    [event] = parse_kapacitor(alert(duration=90_000_000_000))
    assert event.duration == 90_000_000_000


def test_time_with_offset_and_nanoseconds_is_utc() -> None:
    """An RFC3339Nano time with an offset becomes the UTC instant."""
    [event] = parse_kapacitor(alert(time="1971-01-01T02:00:10.123456789+02:00"))
    assert event.time == datetime(1971, 1, 1, 0, 0, 10, 123456, tzinfo=UTC)


# --------------------------------------------------------------------------- httpPost rows


@pytest.mark.parametrize(
    "default_level",
    [pytest.param(None, id="shipped-config"), pytest.param(Level.OK, id="default-level-unused")],
)
def test_httppost_sample_is_one_event(default_level: Level | None) -> None:
    """The httpPost sample (a row with a level column) is one event, whatever the default level."""
    [event] = parse_kapacitor(
        sample("kapacitor-httppost-row.json"),
        task="cpu_alert",
        httppost=HttpPostFields(default_level=default_level),
    )
    assert event.source is Source.HTTPPOST
    assert event.level is Level.CRITICAL
    assert event.name == "cpu"
    assert event.task == "cpu_alert"
    assert event.tags == {"host": "serverA", "type": "idle"}
    assert event.fields == {"value": 97.1}
    assert event.time == datetime(1971, 1, 1, tzinfo=UTC)
    assert event.message == ""
    assert event.details == ""


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"series": [{"name": "cpu", "tags": {"host": "a"}}]}, id="where-emptied"),
        pytest.param({"series": [{"name": "cpu", "columns": ["time"]}]}, id="columns-no-values"),
        pytest.param({"series": [{"name": "cpu", "values": []}]}, id="empty-values"),
        pytest.param({"series": []}, id="no-series"),
    ],
)
def test_httppost_empty_batch_is_no_events(body: dict[str, Any]) -> None:
    """A batch ``|where()`` emptied is posted without values: no events, and no error."""
    assert parse_kapacitor(body) == []


def test_httppost_each_row_of_each_series_is_one_event() -> None:
    """Every values row of every series becomes its own event, in order."""
    body = httppost(
        {
            "name": "cpu",
            "tags": {"host": "a"},
            "columns": ["time", "level", "value"],
            "values": [[T0, "CRITICAL", 1], ["1971-01-01T00:00:01Z", "OK", 2]],
        },
        {
            "name": "mem",
            "tags": {"host": "b"},
            "columns": ["time", "level", "value"],
            "values": [["1971-01-01T00:00:02Z", "WARNING", 3]],
        },
    )
    events = parse_kapacitor(body)
    assert [(e.name, e.tags["host"], e.level, e.fields["value"]) for e in events] == [
        ("cpu", "a", Level.CRITICAL, 1),
        ("cpu", "a", Level.OK, 2),
        ("mem", "b", Level.WARNING, 3),
    ]
    assert [e.time.second for e in events] == [0, 1, 2]


@pytest.mark.parametrize(
    ("columns", "row", "tags"),
    [
        pytest.param(
            ["time", "level", "id", "message", "duration", "value"],
            [T0, "WARNING", "cpu:a", "cpu high", 5_000_000_000, 9.5],
            {"host": "a"},
            id="columns",
        ),
        pytest.param(
            ["time", "value"],
            [T0, 9.5],
            {
                "host": "a",
                "level": "WARNING",
                "id": "cpu:a",
                "message": "cpu high",
            },
            id="tags",
        ),
    ],
)
def test_httppost_alert_fields_come_from_columns_or_tags(
    columns: list[str], row: list[Any], tags: dict[str, str]
) -> None:
    """level, id, message and duration are read from a column or a tag of that name."""
    [event] = parse_kapacitor(
        httppost({"name": "cpu", "tags": tags, "columns": columns, "values": [row]})
    )
    assert event.level is Level.WARNING
    assert event.id == "cpu:a"
    assert event.message == "cpu high"
    assert event.duration == (5_000_000_000 if "duration" in columns else 0)
    # The alert fields are not repeated as attributes.
    assert event.tags == {"host": "a"}
    assert event.fields == {"value": 9.5}


def test_httppost_column_wins_over_tag_of_the_same_name() -> None:
    """When a row has both a level column and a level tag, the column is used."""
    body = httppost(
        {
            "name": "cpu",
            "tags": {"level": "OK"},
            "columns": ["time", "level"],
            "values": [[T0, "CRITICAL"]],
        }
    )
    [event] = parse_kapacitor(body)
    assert event.level is Level.CRITICAL


def test_httppost_field_names_are_configurable() -> None:
    """ingest.httppost names the columns holding level, id, message and duration."""
    names = HttpPostFields(level="sev", id="alert_id", message="msg", duration="dur")
    body = httppost(
        {
            "name": "cpu",
            "columns": ["time", "sev", "alert_id", "msg", "dur", "level", "value"],
            "values": [[T0, "info", "my-id", "hello", 7, "CRITICAL", 1]],
        }
    )
    [event] = parse_kapacitor(body, httppost=names)
    assert event.level is Level.INFO
    assert (event.id, event.message, event.duration) == ("my-id", "hello", 7)
    # "level" is an ordinary column under these names.
    assert event.fields == {"level": "CRITICAL", "value": 1}


def test_httppost_default_level_applies_only_to_rows_without_one() -> None:
    """default_level fills in rows with no level; a row's own level still wins."""
    body = httppost(
        {"name": "a", "columns": ["time", "level"], "values": [[T0, "OK"]]},
        {"name": "b", "columns": ["time"], "values": [[T0]]},
    )
    events = parse_kapacitor(body, httppost=HttpPostFields(default_level=Level.WARNING))
    assert [e.level for e in events] == [Level.OK, Level.WARNING]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(42, "42"), (1.5, "1.5"), (True, "true"), ("x", "x")],
    ids=["int", "float", "bool", "string"],
)
def test_httppost_id_and_message_numbers_become_text(value: Any, expected: str) -> None:
    """A number or boolean in the id or message column is used as its JSON text."""
    body = httppost(
        {
            "name": "cpu",
            "columns": ["time", "level", "id", "message"],
            "values": [[T0, "OK", value, value]],
        }
    )
    [event] = parse_kapacitor(body)
    assert (event.id, event.message) == (expected, expected)


def test_httppost_task_is_the_caller_task() -> None:
    """httpPost bodies carry no task; the one from the path, query or header is used."""
    body = httppost({"name": "cpu", "columns": ["time", "level"], "values": [[T0, "OK"]]})
    assert parse_kapacitor(body, task="from_path")[0].task == "from_path"
    assert parse_kapacitor(body)[0].task == ""


def test_body_with_series_and_level_is_an_alert() -> None:
    """A top-level series next to a level is an alert body, not an httpPost body."""
    body = alert(series=[{"name": "ignored"}])
    [event] = parse_kapacitor(body)
    assert event.source is Source.KAPACITOR


# --------------------------------------------------------------------------- bad shapes


BAD_ALERTS: list[Any] = [
    pytest.param([], "body must be a JSON object, got a list", id="list-body"),
    pytest.param("CRITICAL", "body must be a JSON object, got a string", id="string-body"),
    pytest.param(None, "body must be a JSON object, got null", id="null-body"),
    pytest.param(alert(level=None), "level: missing", id="missing-level"),
    pytest.param(alert(level="SEVERE"), "level: unknown level 'SEVERE'", id="unknown-level"),
    pytest.param(alert(level=2), "level: unknown level", id="numeric-level"),
    pytest.param(alert(time=None), "time: missing", id="missing-time"),
    pytest.param(alert(time="yesterday"), "time: not an RFC 3339 timestamp", id="bad-time"),
    pytest.param(alert(time=True), "time: must be an RFC 3339 timestamp", id="bool-time"),
    pytest.param(alert(id=42), "id: must be a string, got a number", id="numeric-id"),
    pytest.param(alert(message=["a"]), "message: must be a string, got a list", id="list-msg"),
    pytest.param(alert(details={}), "details: must be a string, got an object", id="obj-details"),
    pytest.param(alert(duration="5s"), "duration: must be a number of nanoseconds", id="dur"),
    # Go's time.Duration is an int64: 2**63 ns does not exist.
    pytest.param(alert(duration=2**63), "duration: out of range", id="dur-past-int64"),
    pytest.param(alert(previousLevel="BAD"), "previousLevel: unknown level", id="prev-level"),
    pytest.param(alert(recoverable="yes"), "recoverable: must be true or false", id="recov"),
    pytest.param(alert(data=[]), "data: must be an object, got a list", id="data-list"),
    pytest.param(alert(data={"series": {}}), "data.series: must be a list", id="series-object"),
    pytest.param(with_series("cpu"), "data.series[0]: must be an object", id="series-item"),
    pytest.param(
        with_series({"name": 1}), "data.series[0].name: must be a string", id="series-name"
    ),
    pytest.param(
        with_series({"name": "cpu", "tags": ["host"]}),
        "data.series[0].tags: must be an object",
        id="tags-list",
    ),
    pytest.param(
        with_series({"name": "cpu", "tags": {"port": 80}}),
        "data.series[0].tags.port: must be a string, got a number",
        id="tag-not-string",
    ),
    pytest.param(
        with_series({"name": "cpu", "tags": []}),
        "data.series[0].tags: must be an object, got a list",
        id="tags-empty-list",
    ),
    pytest.param(
        with_series({"name": "cpu", "columns": ""}),
        "data.series[0].columns: must be a list of strings",
        id="columns-empty-string",
    ),
    pytest.param(
        with_series({"name": "cpu", "columns": ["time", 1]}),
        "data.series[0].columns: must be a list of strings",
        id="columns-not-strings",
    ),
    pytest.param(
        with_series({"name": "cpu", "columns": ["time"], "values": {}}),
        "data.series[0].values: must be a list of rows",
        id="values-object",
    ),
    pytest.param(
        with_series({"name": "cpu", "columns": ["time", "v"], "values": [[T0]]}),
        "data.series[0].values[0]: must be a list of 2 values, one per column",
        id="row-too-short",
    ),
    pytest.param(
        with_series({"name": "cpu", "columns": ["time"], "values": [[T0], [T0, 1]]}),
        "data.series[0].values[1]: must be a list of 1 values, one per column",
        id="second-row-too-long",
    ),
    pytest.param(
        with_series({"name": "cpu", "columns": ["time"], "values": ["row"]}),
        "data.series[0].values[0]: must be a list of 1 values",
        id="row-not-list",
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD_ALERTS)
def test_bad_alert_body_is_refused_saying_where(body: Any, message: str) -> None:
    """A wrongly shaped alert body raises a ParseError whose message names the place."""
    with pytest.raises(ParseError) as info:
        parse_kapacitor(body)
    assert info.value.reason == "bad_shape"
    assert info.value.message.startswith(message)


BAD_HTTPPOST: list[Any] = [
    pytest.param({"series": {}}, "series: must be a list, got an object", id="series-object"),
    pytest.param(
        httppost({"name": "cpu", "columns": ["time", "value"], "values": [[T0, 1]]}),
        "series[0].values[0]: no 'level' column or tag",
        id="no-level",
    ),
    pytest.param(
        httppost(
            {"name": "a", "columns": ["time", "level"], "values": [[T0, "OK"]]},
            {"name": "b", "columns": ["time", "level"], "values": [[T0, "OK"], [T0, "HIGH"]]},
        ),
        "series[1].values[1].level: unknown level 'HIGH'",
        id="bad-level-later-row",
    ),
    pytest.param(
        httppost({"name": "cpu", "columns": ["level"], "values": [["OK"]]}),
        "series[0].values[0]: no time column",
        id="no-time",
    ),
    pytest.param(
        httppost({"name": "cpu", "columns": ["time", "level"], "values": [["soon", "OK"]]}),
        "series[0].values[0].time: not an RFC 3339 timestamp",
        id="bad-time",
    ),
    pytest.param(
        httppost({"name": "cpu", "columns": ["time", "level", "id"], "values": [[T0, "OK", [1]]]}),
        "series[0].values[0].id: must be a string or number, got a list",
        id="id-list",
    ),
    pytest.param(
        httppost(
            {
                "name": "cpu",
                "columns": ["time", "level", "duration"],
                "values": [[T0, "OK", "5s"]],
            }
        ),
        "series[0].values[0].duration: must be a number of nanoseconds",
        id="duration-string",
    ),
    pytest.param(
        httppost({"name": "cpu", "columns": ["time", "level"], "values": [[T0]]}),
        "series[0].values[0]: must be a list of 2 values",
        id="row-length",
    ),
    pytest.param(
        httppost({"name": "cpu", "tags": {"n": 1}, "columns": ["time"], "values": [[T0]]}),
        "series[0].tags.n: must be a string",
        id="tag-not-string",
    ),
    pytest.param({"series": [7]}, "series[0]: must be an object, got a number", id="item-num"),
]


@pytest.mark.parametrize(("body", "message"), BAD_HTTPPOST)
def test_bad_httppost_body_is_refused_saying_where(body: Any, message: str) -> None:
    """A wrongly shaped httpPost body raises a ParseError whose message names the row."""
    with pytest.raises(ParseError) as info:
        parse_kapacitor(body)
    assert info.value.message.startswith(message)
