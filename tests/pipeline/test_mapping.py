"""The mapping from an event to a BigPanda alert: every rule of the issue, table by table.

The default mapping must be field for field what Kapacitor's own BigPanda handler
sends; templates run in an immutable Jinja sandbox with ``StrictUndefined``.
"""

from __future__ import annotations

import dataclasses
import textwrap
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from forwarder import jsonio
from forwarder.config import (
    EMPTY_SECRET,
    ConfigError,
    MappingConfig,
    iter_route_mappings,
    parse_config,
)
from forwarder.model import Event, Level, Source
from forwarder.pipeline import Pipeline, StageError, Work
from forwarder.pipeline.mapping import MappedAlert, Mapper, MapStage, RenderError, go_duration

HERE = Path(__file__).resolve().parent
# The smallest valid config; a mapping block is appended to it.
BASE = """
targets:
  bigpanda:
    kind: log
"""

EVENT = Event(
    source=Source.KAPACITOR,
    id="kapacitor.cpu.serverA",
    message="kapacitor.cpu.serverA is CRITICAL",
    details="",
    level=Level.CRITICAL,
    time=datetime(1971, 1, 1, 0, 0, 10, tzinfo=UTC),
    duration=5_000_000_000,
    name="cpu",
    task="cpu_alert",
    group="host=serverA",
    tags={"host": "serverA"},
    fields={"count": 10},
    previous_level=Level.OK,
    recoverable=True,
    raw={"id": "kapacitor.cpu.serverA", "extra": "from-raw"},
)


def event(**changes: Any) -> Event:
    """The reference event with some fields replaced."""
    return dataclasses.replace(EVENT, **changes)


def mapping_from(block: str = "") -> MappingConfig:
    """The global mapping of a config whose ``mapping:`` block is ``block`` (YAML)."""
    text = BASE + textwrap.dedent(block)
    return parse_config(text, base_dir=HERE, env={}).mapping


def mapped(ev: Event = EVENT, block: str = "") -> MappedAlert:
    """Map ``ev`` with the mapping given as YAML (empty: the default mapping)."""
    mapping = mapping_from(block)
    return Mapper([("mapping", mapping)]).map(ev, mapping)


def alert(ev: Event = EVENT, block: str = "") -> dict[str, Any]:
    """The alert object for ``ev``."""
    return mapped(ev, block).alert


# --------------------------------------------------------------------------- defaults


def test_default_mapping_is_kapacitors_bigpanda_handler() -> None:
    """With no templates the alert has exactly Kapacitor's handler fields, tags and fields."""
    assert alert() == {
        "check": "kapacitor.cpu.serverA",
        "description": "kapacitor.cpu.serverA is CRITICAL",
        "status": "critical",
        "timestamp": 31536010,
        "task": "cpu_alert:cpu",
        "host": "serverA",
        "count": "10",
    }


STATUS_OVERRIDES = """
mapping:
  status:
    INFO: warning
    WARNING: critical
    UNKNOWN: unknown
"""


@pytest.mark.parametrize(
    ("block", "level", "status"),
    [
        # The default: OK and INFO are ok, WARNING warning, CRITICAL and anything else critical.
        *[
            pytest.param("", level, status, id=f"default-{level}")
            for level, status in [
                (Level.OK, "ok"),
                (Level.INFO, "ok"),
                (Level.WARNING, "warning"),
                (Level.CRITICAL, "critical"),
                (Level.UNKNOWN, "critical"),
            ]
        ],
        # mapping.status replaces the levels it names and keeps the default for the others.
        *[
            pytest.param(STATUS_OVERRIDES, level, status, id=f"overridden-{level}")
            for level, status in [
                (Level.OK, "ok"),
                (Level.INFO, "warning"),
                (Level.WARNING, "critical"),
                (Level.CRITICAL, "critical"),
                (Level.UNKNOWN, "unknown"),
            ]
        ],
    ],
)
def test_status_map(block: str, level: Level, status: str) -> None:
    """The status is the level through mapping.status, whose defaults are Kapacitor's."""
    assert alert(event(level=level), block)["status"] == status


@pytest.mark.parametrize(
    ("field", "key", "value"),
    [
        pytest.param("id", "check", "cpu:a", id="check-set"),
        pytest.param("id", "check", "", id="check-empty"),
        pytest.param("message", "description", "CPU high", id="description-set"),
        pytest.param("message", "description", "", id="description-empty"),
    ],
)
def test_check_and_description_are_id_and_message_omitted_when_empty(
    field: str, key: str, value: str
) -> None:
    """check is the alert id and description the message; an empty one leaves the key out."""
    result = alert(event(**{field: value}))
    assert result.get(key) == (value or None)
    assert (key in result) is bool(value)


# Kapacitor's default details: the event as JSON, HTML-escaped by html/template.
DEFAULT_DETAILS = "{&#34;Name&#34;:&#34;cpu&#34;,&#34;TaskName&#34;:&#34;cpu_alert&#34;}"


@pytest.mark.parametrize(
    ("details", "expected"),
    [
        pytest.param("", None, id="empty"),
        pytest.param("see the runbook", "see the runbook", id="plain"),
        pytest.param("a &amp; b &lt;c&gt; &#34;d&#34;", 'a & b <c> "d"', id="unescaped"),
        pytest.param(DEFAULT_DETAILS, None, id="kapacitor-default-json"),
        pytest.param('{"plain": "json"}', None, id="unescaped-json"),
        pytest.param("&#123;&#34;a&#34;:1}", None, id="escaped-brace"),
        pytest.param(" {indented}", " {indented}", id="leading-space-kept"),
        pytest.param("[1, 2]", "[1, 2]", id="json-list-kept"),
    ],
)
def test_details_unescaped_and_dropped_when_json(details: str, expected: str | None) -> None:
    """details is HTML-unescaped and left out when empty or starting with ``{``."""
    result = alert(event(details=details))
    assert result.get("details") == expected
    assert ("details" in result) is (expected is not None)


@pytest.mark.parametrize(
    ("task", "name", "expected"),
    [
        ("cpu_alert", "cpu", "cpu_alert:cpu"),
        ("", "cpu", ":cpu"),
        ("cpu_alert", "", "cpu_alert:"),
        ("", "", ":"),
        ("a:b", "c:d", "a:b:c:d"),
    ],
    ids=["both", "no-task", "no-name", "neither", "colons-kept"],
)
def test_task_is_task_colon_name(task: str, name: str, expected: str) -> None:
    """task is ``<task>:<name>``, always present."""
    assert alert(event(task=task, name=name))["task"] == expected


@pytest.mark.parametrize(
    ("when", "seconds"),
    [
        pytest.param(datetime(1970, 1, 1, tzinfo=UTC), 0, id="epoch"),
        pytest.param(datetime(1971, 1, 1, 0, 0, 10, tzinfo=UTC), 31536010, id="sample"),
        pytest.param(datetime(2019, 9, 6, 19, 16, 15, 999999, tzinfo=UTC), 1567797375, id="floor"),
        pytest.param(datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC), -1, id="pre-1970"),
        pytest.param(
            datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC), -1, id="pre-1970-floor"
        ),
        pytest.param(
            datetime(1969, 12, 31, 23, 59, 58, 1, tzinfo=UTC), -2, id="pre-1970-floor-not-trunc"
        ),
        pytest.param(datetime(1900, 1, 1, tzinfo=UTC), -2208988800, id="1900"),
        pytest.param(
            datetime(1971, 1, 1, 2, 0, 10, tzinfo=timezone(timedelta(hours=2))),
            31536010,
            id="offset",
        ),
    ],
)
def test_timestamp_is_whole_unix_seconds_rounded_down(when: datetime, seconds: int) -> None:
    """timestamp is an int of Unix seconds, floored like Go's Time.Unix (also before 1970)."""
    value = alert(event(time=when))["timestamp"]
    assert type(value) is int
    assert value == seconds
    assert value == (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(seconds=1)


# --------------------------------------------------------------------------- attributes


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param("as is", "as is", id="string"),
        pytest.param("", "", id="empty-string"),
        pytest.param(10, "10", id="int"),
        pytest.param(0.5, "0.5", id="float"),
        pytest.param(91.12278069517379, "91.12278069517379", id="float-full-precision"),
        pytest.param(True, "true", id="true"),
        pytest.param(False, "false", id="false"),
        pytest.param(None, "null", id="null"),
        pytest.param([10, True, "a"], '[10,true,"a"]', id="list"),
        pytest.param({"a": 1, "b": [2]}, '{"a":1,"b":[2]}', id="object"),
        pytest.param({"b": 1, "a": 2}, '{"a":2,"b":1}', id="object-keys-sorted-as-go"),
        pytest.param(["é"], '["é"]', id="non-ascii-kept"),
        pytest.param([1.0, 1e21, None], "[1,1e+21,null]", id="floats-inside-lists"),
    ],
)
def test_field_values_are_encoded_as_compact_json(value: Any, text: str) -> None:
    """A string field stays as it is; any other field becomes compact JSON text."""
    assert alert(event(fields={"f": value}))["f"] == text


# What Go's encoding/json writes for a float64 (Kapacitor json.Marshal's each non-string
# field): strconv.FormatFloat(f, 'f', -1, 64) for 1e-6 <= |f| < 1e21 (and 0), else
# FormatFloat(f, 'e', -1, 64) with a two-digit negative exponent's zero removed.
GO_FLOATS = [
    (1e20, "100000000000000000000"),
    (1e21, "1e+21"),
    (-1e21, "-1e+21"),
    (1.5e300, "1.5e+300"),
    (1.7976931348623157e308, "1.7976931348623157e+308"),
    (1e-6, "0.000001"),
    (1.5e-6, "0.0000015"),
    (1e-7, "1e-7"),
    (1.5e-7, "1.5e-7"),
    (1e-10, "1e-10"),
    (5e-324, "5e-324"),
    (100.0, "100"),
    (1.0, "1"),
    (0.0, "0"),
    (-0.0, "-0"),
    (0.1, "0.1"),
    (1e16, "10000000000000000"),
    (1.2345678901234567e20, "123456789012345670000"),
    (12345678.9, "12345678.9"),
    (91.12278069517379, "91.12278069517379"),
    (0.000123, "0.000123"),
]


@pytest.mark.parametrize(("value", "text"), GO_FLOATS, ids=[t for _, t in GO_FLOATS])
def test_float_fields_are_written_as_go_writes_them(value: float, text: str) -> None:
    """Float fields read exactly as Kapacitor's handler sends them (Go's encoding/json)."""
    assert alert(event(fields={"f": value}))["f"] == text


@pytest.mark.parametrize(
    "literal",
    [
        "123456789012345678901234567890",
        "-18446744073709551617",
        "-9223372036854775809",  # one below int64, and only 19 digits
        "18446744073709551616",
        "18446744073709551615",
        "9223372036854775807",
        "1" + "0" * 300,  # orjson refuses literals past float64 range (about 1.8e308)
    ],
)
def test_integers_beyond_64_bits_are_kept_exact(literal: str) -> None:
    """An integer field of any size, read from the body, is written digit for digit."""
    body = (
        '{"id":"a","message":"","details":"","time":"1971-01-01T00:00:10Z","level":"CRITICAL",'
        '"data":{"series":[{"name":"cpu","tags":{"host":"a"},"columns":["time","n"],'
        f'"values":[["1971-01-01T00:00:10Z",{literal}]]}}]}}}}'
    )
    pipeline = Pipeline(parse_config(BASE, base_dir=HERE, env={}))
    [item] = pipeline.process("kapacitor", jsonio.loads(body.encode())).items
    assert jsonio.loads(item.payload)["n"] == literal


def test_json_filter_writes_as_go_does() -> None:
    """The json filter writes numbers as Go does too."""
    block = "mapping:\n  attributes:\n    j: '{{ fields | json }}'\n"
    assert alert(event(fields={"z": 1e20, "a": 1e-7}), block)["j"] == (
        '{"a":1e-7,"z":100000000000000000000}'
    )


# Go's time.Duration.String() (time/time.go): units below a second for sub-second
# values (ns, µs with U+00B5, ms), else h, m and s with a fraction of up to 9 digits.
GO_DURATIONS = [
    (0, "0s"),
    (1, "1ns"),
    (999, "999ns"),
    (1_000, "1µs"),
    (1_500, "1.5µs"),
    (1_000_000, "1ms"),
    (500_000_000, "500ms"),
    (1_000_000_000, "1s"),
    (1_000_000_001, "1.000000001s"),
    (1_500_000_000, "1.5s"),
    (60_000_000_000, "1m0s"),
    (90_000_000_000, "1m30s"),
    (7_200_000_000_000, "2h0m0s"),
    (3_600_500_000_000, "1h0m0.5s"),
    (-1_500_000_000, "-1.5s"),
    (-1, "-1ns"),
    (2**63 - 1, "2562047h47m16.854775807s"),
    (-(2**63), "-2562047h47m16.854775808s"),
    (timedelta(minutes=1, seconds=30), "1m30s"),
]


@pytest.mark.parametrize(("value", "text"), GO_DURATIONS, ids=[t for _, t in GO_DURATIONS])
def test_go_duration_prints_as_go(value: int | timedelta, text: str) -> None:
    """go_duration formats nanoseconds (or a timedelta) as Go's Duration.String()."""
    assert go_duration(value) == text


def test_go_duration_filter_renders_the_event_duration() -> None:
    """``{{ duration | go_duration }}`` is what Kapacitor's ``{{ .Duration }}`` prints."""
    block = "mapping:\n  description: 'down for {{ duration | go_duration }}'\n"
    assert alert(event(duration=90_000_000_000), block)["description"] == "down for 1m30s"


@pytest.mark.parametrize("value", ["5s", None, True, 1.5])
def test_go_duration_refuses_what_is_not_a_duration(value: Any) -> None:
    """Text, null, booleans and fractional nanoseconds are a template error, not a guess."""
    with pytest.raises(TypeError):
        go_duration(value)


@pytest.mark.parametrize(
    ("auto", "keys"),
    [
        pytest.param("[tags, fields]", {"host", "count"}, id="default"),
        pytest.param("[tags]", {"host"}, id="tags-only"),
        pytest.param("[fields]", {"count"}, id="fields-only"),
        pytest.param("[]", set(), id="none"),
    ],
)
def test_auto_attributes_choose_tags_and_fields(auto: str, keys: set[str]) -> None:
    """auto_attributes picks whether tags, fields, both or neither become attributes."""
    result = alert(block=f"mapping:\n  auto_attributes: {auto}\n")
    assert {"host", "count"} & set(result) == keys


ORDER_CASES: list[Any] = [
    pytest.param(
        {"tags": {"host": "tag"}, "fields": {"host": "field"}},
        "",
        {"host": "field"},
        id="fields-after-tags",
    ),
    pytest.param(
        {"tags": {"host": "tag"}},
        "mapping:\n  host: 'tpl-{{ tags.host }}'\n",
        {"host": "tpl-tag"},
        id="host-template-after-auto",
    ),
    pytest.param(
        {"tags": {"host": "tag"}},
        "mapping:\n  host: '{{ tags.missing | default(\"\") }}'\n",
        {"host": "tag"},
        id="empty-host-template-is-skipped",
    ),
    pytest.param(
        {"tags": {"host": "tag"}},
        "mapping:\n  host: tpl\n  attributes:\n    host: attr\n",
        {"host": "attr"},
        id="attributes-after-host",
    ),
    pytest.param(
        {"tags": {"service": "tag"}},
        "mapping:\n  attributes:\n    service: attr\n",
        {"service": "attr"},
        id="attributes-after-auto",
    ),
    pytest.param(
        {"tags": {"primary_property": "tag"}},
        "mapping:\n  attributes:\n    primary_property: attr\n    secondary_property: attr\n"
        "  primary_property: host\n  secondary_property: check\n",
        {"primary_property": "host", "secondary_property": "check"},
        id="properties-last",
    ),
]


@pytest.mark.parametrize(("changes", "block", "expected"), ORDER_CASES)
def test_attributes_apply_in_order_later_wins(
    changes: dict[str, Any], block: str, expected: dict[str, str]
) -> None:
    """auto_attributes, then host, then attributes, then primary/secondary; later writes win."""
    result = alert(event(**changes), block)
    for key, value in expected.items():
        assert result[key] == value


def test_templated_attributes_are_added() -> None:
    """Each attributes entry is a name and a template rendered against the event."""
    block = """
    mapping:
      attributes:
        runbook: "https://wiki/{{ name }}/{{ tags.host }}"
        level_lower: "{{ level | lower }}"
        nothing: "{{ '' }}"
    """
    result = alert(block=block)
    assert result["runbook"] == "https://wiki/cpu/serverA"
    assert result["level_lower"] == "critical"
    assert "nothing" not in result


def test_template_context_has_every_event_field() -> None:
    """Templates see the event fields under their model names."""
    names = [
        "source",
        "id",
        "message",
        "details",
        "level",
        "duration",
        "name",
        "task",
        "group",
        "previous_level",
        "recoverable",
    ]
    template = "|".join("{{ " + n + " }}" for n in names)
    template += "|{{ time.year }}|{{ tags.host }}|{{ fields.count }}|{{ raw.extra }}"
    block = f"mapping:\n  attributes:\n    ctx: '{template}'\n"
    assert alert(event(details="d"), block)["ctx"] == (
        "kapacitor|kapacitor.cpu.serverA|kapacitor.cpu.serverA is CRITICAL|d|CRITICAL|"
        "5000000000|cpu|cpu_alert|host=serverA|OK|True|1971|serverA|10|from-raw"
    )


@pytest.mark.parametrize(
    ("key", "template", "expected"),
    [
        pytest.param("check", "{{ name }}/{{ tags.host }}", "cpu/serverA", id="check"),
        pytest.param(
            "description",
            "[{{ level }}] {{ message }}",
            "[CRITICAL] kapacitor.cpu.serverA is CRITICAL",
            id="description",
        ),
        pytest.param(
            "details",
            "https://grafana/d/{{ tags.host }}",
            "https://grafana/d/serverA",
            id="details",
        ),
    ],
)
def test_check_description_details_templates_override(
    key: str, template: str, expected: str
) -> None:
    """Templates for check, description and details replace the defaults as rendered."""
    ev = event(details="default details")
    assert alert(ev, f"mapping:\n  {key}: '{template}'\n")[key] == expected


@pytest.mark.parametrize("key", ["check", "description", "details"])
def test_template_rendering_empty_omits_the_key(key: str) -> None:
    """A check, description or details template that renders empty leaves the key out."""
    result = alert(event(details="default"), f"mapping:\n  {key}: \"{{{{ '' }}}}\"\n")
    assert key not in result


# --------------------------------------------------------------------------- limits


@pytest.mark.parametrize(
    ("length", "kept", "truncations"),
    [
        pytest.param(3000, 2048, 1, id="cut-and-counted"),
        pytest.param(2048, 2048, 0, id="at-the-limit-untouched"),
        pytest.param(10, 10, 0, id="short"),
    ],
)
def test_description_is_cut_at_2048_characters(length: int, kept: int, truncations: int) -> None:
    """A description over 2048 characters is cut to 2048 and counted; one within is untouched."""
    result = mapped(event(message="x" * length))
    assert result.alert["description"] == "x" * kept
    assert result.truncations == truncations


def test_templated_description_is_cut_too() -> None:
    """The 2048 limit also applies to a description from a template."""
    result = mapped(block="mapping:\n  description: \"{{ 'z' * 5000 }}\"\n")
    assert result.alert["description"] == "z" * 2048
    assert result.truncations == 1


def test_attribute_values_are_cut_at_512_and_counted() -> None:
    """Each tag, field and templated attribute over 512 characters is cut to 512 and counted."""
    ev = event(tags={"host": "h" * 600, "ok": "o" * 512}, fields={"big": ["v" * 600]})
    result = mapped(ev, "mapping:\n  attributes:\n    runbook: \"{{ 'r' * 513 }}\"\n")
    assert result.alert["host"] == "h" * 512
    assert result.alert["ok"] == "o" * 512
    assert result.alert["big"] == ('["' + "v" * 600 + '"]')[:512]
    assert result.alert["runbook"] == "r" * 512
    assert result.truncations == 3


# --------------------------------------------------------------------------- template errors


@pytest.mark.parametrize(
    ("block", "key_path"),
    [
        pytest.param(
            "mapping:\n  attributes:\n    runbook: '{{ tags.nope }}'\n",
            "mapping.attributes.runbook",
            id="attribute-strict-undefined",
        ),
        pytest.param("mapping:\n  host: '{{ hostname }}'\n", "mapping.host", id="host"),
        pytest.param("mapping:\n  check: '{{ fields.nope }}'\n", "mapping.check", id="check"),
        pytest.param(
            "mapping:\n  description: '{{ raw.nope.deeper }}'\n",
            "mapping.description",
            id="description",
        ),
        pytest.param("mapping:\n  details: '{{ 1 // 0 }}'\n", "mapping.details", id="zero-div"),
        pytest.param(
            "mapping:\n  attributes:\n    t: '{{ time | unix }}{{ name | unix }}'\n",
            "mapping.attributes.t",
            id="filter-raises",
        ),
    ],
)
def test_render_error_names_the_key_path(block: str, key_path: str) -> None:
    """A template failing for one event raises RenderError naming the template's key path
    (and, for StrictUndefined, the missing name)."""
    with pytest.raises(RenderError) as info:
        mapped(block=block)
    assert info.value.key_path == key_path
    assert str(info.value).startswith(f"{key_path}: template error")
    if "nope" in block:
        assert "nope" in str(info.value)


def test_render_error_hits_only_the_event_that_fails() -> None:
    """The same mapping still renders events that have what the template needs."""
    mapping = mapping_from("mapping:\n  host: '{{ tags.host }}'\n")
    mapper = Mapper([("mapping", mapping)])
    with pytest.raises(RenderError):
        mapper.map(event(tags={}), mapping)
    assert mapper.map(EVENT, mapping).alert["host"] == "serverA"


def test_route_render_error_names_the_route_key_path() -> None:
    """A failing route template is reported with its routes[i].mapping path, as a 400."""
    text = BASE + textwrap.dedent(
        """
        routes:
          - name: special
            match:
              task: special_*
            mapping:
              attributes:
                team: "{{ tags.team }}"
          - name: default
        """
    )
    pipeline = Pipeline(parse_config(text, base_dir=HERE, env={}))
    with pytest.raises(StageError) as info:
        pipeline.run([event(task="special_cpu")])
    assert info.value.reason == "template_error"
    assert info.value.message.startswith("routes[0].mapping.attributes.team: template error")
    # The default route has no such template, so other events are fine.
    assert len(pipeline.run([EVENT]).items) == 1


@pytest.mark.parametrize(
    ("block", "key_path"),
    [
        pytest.param("mapping:\n  host: '{{ oops'\n", "mapping.host", id="host"),
        pytest.param("mapping:\n  check: '{% if %}'\n", "mapping.check", id="check"),
        pytest.param(
            "mapping:\n  attributes:\n    runbook: '{{ a b }}'\n",
            "mapping.attributes.runbook",
            id="attribute",
        ),
        pytest.param(
            "routes:\n  - mapping:\n      details: '{% endfor %}'\n",
            "routes[0].mapping.details",
            id="route",
        ),
    ],
)
def test_template_syntax_error_is_a_config_error(block: str, key_path: str) -> None:
    """Templates compile at load; a syntax error is a ConfigError naming the key path."""
    config = parse_config(BASE + block, base_dir=HERE, env={})
    with pytest.raises(ConfigError) as info:
        Mapper(iter_route_mappings(config))
    assert info.value.path == key_path
    assert "template syntax error" in str(info.value)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- the sandbox

# Ways a template could reach Python internals (classes, globals, builtins) or
# change the event. The sandbox must refuse each one.
ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ tags.__class__ }}",
    "{{ tags['__class__'] }}",
    "{{ tags | attr('__class__') }}",
    "{{ raw.__class__.__base__ }}",
    "{{ time.__class__.__subclasses__() }}",
    "{{ time.replace.__self__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ lipsum.__globals__ }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ self.__init__.__globals__ }}",
    "{{ dict.__base__ }}",
    "{{ '{0.__class__}'.format(tags) }}",
    "{{ '{0[__class__]}'.format(tags) }}",
    "{{ '%s' | format(tags.__class__) }}",
    "{{ tags.update({'host': 'pwned'}) }}",
    "{{ fields.pop('count') }}",
    "{% set _ = tags.setdefault('x', 'y') %}",
]
LEAK_MARKERS = ("<class", "<function", "<built-in", "<module", "0x", "__builtins__", "mro")


@pytest.mark.parametrize("template", ESCAPES)
def test_sandbox_refuses_python_internals(template: str) -> None:
    """A template cannot reach attributes such as __class__ or mutate the event."""
    ev = event(tags={"host": "serverA"}, fields={"count": 10}, raw={"extra": "r"})
    mapping = MappingConfig(attributes={"x": template})
    mapper = Mapper([("mapping", mapping)])
    try:
        result = mapper.map(ev, mapping)
    except RenderError as exc:
        message = str(exc)
        assert message.startswith("mapping.attributes.x: template not allowed")
        assert "unsafe" in message
    else:  # rendering empty is the other acceptable outcome
        message = str(result.alert.get("x", ""))
        assert message == ""
    assert not any(marker in message for marker in LEAK_MARKERS), message
    assert ev.tags == {"host": "serverA"}
    assert ev.fields == {"count": 10}


def test_sandbox_refusal_is_a_security_error() -> None:
    """The sandbox refusal is reported as 'not allowed', distinct from an ordinary failure."""
    mapping = MappingConfig(host="{{ tags.__class__ }}")
    with pytest.raises(RenderError, match="template not allowed: access to attribute"):
        Mapper([("mapping", mapping)]).map(EVENT, mapping)


# --------------------------------------------------------------------------- refused alerts

REFUSALS: list[Any] = [
    pytest.param({"tags": {}}, "", "no_primary_property", "none of host, service", id="no-host"),
    pytest.param(
        {"tags": {}},
        "mapping:\n  host: \"{{ tags.get('host', '') }}\"\n",
        "no_primary_property",
        "set mapping.host",
        id="host-template-empty",
    ),
    pytest.param(
        {},
        "mapping:\n  primary_property: cluster\n",
        "no_primary_property",
        "mapping.primary_property is 'cluster'",
        id="configured-primary-missing",
    ),
    pytest.param(
        {},
        "mapping:\n  attributes:\n    status: \"{{ 'broken' }}\"\n",
        "invalid_status",
        "status 'broken'",
        id="status-template",
    ),
]


@pytest.mark.parametrize(("changes", "block", "reason", "hint"), REFUSALS)
def test_alert_bigpanda_would_refuse_is_set_aside_with_reason_and_hint(
    changes: dict[str, Any], block: str, reason: str, hint: str
) -> None:
    """No primary property or an invalid status: refused at mapping time, not queued."""
    pipeline = Pipeline(parse_config(BASE + textwrap.dedent(block), base_dir=HERE, env={}))
    work = pipeline.run([event(**changes)])
    assert work.items == []
    [refused] = work.refused
    assert refused.reason == reason
    assert refused.hint.startswith("route 'default': ")
    assert hint in refused.hint
    assert jsonio.loads(refused.item.payload)["check"] == "kapacitor.cpu.serverA"


@pytest.mark.parametrize(
    ("changes", "block"),
    [
        pytest.param({"tags": {"service": "web"}}, "", id="service-is-a-primary-property"),
        pytest.param({"tags": {"device": "d1"}}, "", id="device-is-a-primary-property"),
        pytest.param({"tags": {}}, "mapping:\n  host: '{{ name }}'\n", id="host-template"),
        pytest.param(
            {"tags": {"cluster": "c1"}},
            "mapping:\n  primary_property: cluster\n",
            id="configured-primary-present",
        ),
        pytest.param(
            {}, "mapping:\n  attributes:\n    status: acknowledged\n", id="status-template-valid"
        ),
    ],
)
def test_alert_bigpanda_accepts_is_queued(changes: dict[str, Any], block: str) -> None:
    """Any of BigPanda's default primary properties, or the configured one, is enough."""
    pipeline = Pipeline(parse_config(BASE + textwrap.dedent(block), base_dir=HERE, env={}))
    work = pipeline.run([event(**changes)])
    assert len(work.items) == 1
    assert work.refused == []


def test_one_refused_alert_does_not_sink_the_others() -> None:
    """In a batch, only the alert BigPanda would refuse is set aside; the others are queued."""
    pipeline = Pipeline(parse_config(BASE, base_dir=HERE, env={}))
    work = pipeline.run([EVENT, event(id="no-host", tags={}), event(id="b")])
    assert [jsonio.loads(i.payload)["check"] for i in work.items] == [EVENT.id, "b"]
    assert [(jsonio.loads(r.item.payload)["check"], r.reason) for r in work.refused] == [
        ("no-host", "no_primary_property")
    ]


def test_route_without_app_key_is_refused_when_credentials_are_set() -> None:
    """A route with credentials but no app key (only reachable past validation) is refused.

    Without credentials (dry-run, or a log target) nothing leaves the process, so an
    empty app key is no reason to refuse.
    """
    text = BASE.replace("kind: log", "kind: alerts_v2\n    token: t0k3n\n    app_key: k3y")
    config = parse_config(text, base_dir=HERE, env={})
    [route] = config.routes
    keyless = dataclasses.replace(route, app_key=EMPTY_SECRET)
    stage = MapStage(Mapper(iter_route_mappings(config)), config.targets)
    work = Work([EVENT], routes=[keyless])
    stage(work)
    assert work.items == []
    [refused] = work.refused
    assert refused.reason == "no_app_key"
    assert "app_key" in refused.hint
    assert "k3y" not in refused.hint
    assert "t0k3n" not in refused.hint
    dry = Pipeline(parse_config(BASE, base_dir=HERE, env={}))
    assert len(dry.run([EVENT]).items) == 1


# --------------------------------------------------------------------------- costly templates


@pytest.mark.parametrize(
    ("template", "message"),
    [
        pytest.param("{{ (10 ** 100000) | string }}", "template refused", id="huge-power"),
        pytest.param("{{ 'x' * 10**9 }}", "repetition would be longer than", id="huge-string"),
        pytest.param("{{ 'x' | center(10**9) }}", "center filter's argument", id="center"),
        pytest.param("{% for i in range(10**6) %}{% endfor %}", "range of 1000000", id="range"),
        pytest.param("{{ 1 // 0 if false else (2 ** 99999) }}", "power", id="inside-if"),
    ],
)
def test_costly_template_is_a_one_line_config_error_at_load(template: str, message: str) -> None:
    """A template whose constants break a bound fails at load, naming the key, on one line."""
    block = f'mapping:\n  attributes:\n    big: "{template}"\n'
    config = parse_config(BASE + block, base_dir=HERE, env={})
    with pytest.raises(ConfigError) as info:
        Pipeline(config)
    assert info.value.path == "mapping.attributes.big"
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "template",
    [
        pytest.param("{{ " + "1" * 5000 + " }}", id="literal-past-python-int-text-limit"),
        pytest.param("{{ " + "(" * 400 + "1" + ")" * 400 + " }}", id="nesting-past-recursion"),
    ],
)
def test_template_failing_to_compile_is_a_one_line_config_error(template: str) -> None:
    """Whatever compiling raises (not only syntax errors) is a ConfigError naming the key."""
    mapping = MappingConfig(attributes={"x": template})
    with pytest.raises(ConfigError) as info:
        Mapper([("mapping", mapping)])
    assert info.value.path == "mapping.attributes.x"
    assert "template cannot be compiled" in str(info.value)
    assert "\n" not in str(info.value)
