"""Routing: the first route whose match holds decides target, app key and mapping."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from forwarder.config import Config, Match, parse_config
from forwarder.model import Event, Level, Source
from forwarder.pipeline import Pipeline
from forwarder.pipeline.route import matches, route

HERE = Path(__file__).resolve().parent

EVENT = Event(
    source=Source.KAPACITOR,
    id="cpu:host=a",
    message="cpu high",
    details="",
    level=Level.CRITICAL,
    time=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    name="cpu",
    task="cpu_alert",
    tags={"team": "db", "env": "prod", "host": "a"},
)


def event(**changes: Any) -> Event:
    """The reference event with some fields replaced."""
    return dataclasses.replace(EVENT, **changes)


def config(text: str) -> Config:
    """A config parsed from dedented YAML text."""
    return parse_config(textwrap.dedent(text), base_dir=HERE, env={})


MATCH_CASES: list[Any] = [
    pytest.param(None, {}, True, id="no-match-matches-all"),
    pytest.param(Match(), {}, True, id="empty-match-matches-all"),
    pytest.param(Match(sources=frozenset({"kapacitor"})), {}, True, id="source"),
    pytest.param(
        Match(sources=frozenset({"kapacitor"})),
        {"source": Source.INFLUXDB},
        False,
        id="other-source",
    ),
    pytest.param(
        Match(sources=frozenset({"influxdb", "httppost"})),
        {"source": Source.HTTPPOST},
        True,
        id="one-of-sources",
    ),
    pytest.param(Match(tasks=("cpu_*",)), {}, True, id="task-glob"),
    pytest.param(Match(tasks=("cpu_*",)), {"task": "mem_alert"}, False, id="task-glob-miss"),
    pytest.param(Match(tasks=("cpu_*",)), {"task": ""}, False, id="no-task"),
    pytest.param(Match(tasks=("cpu_?lert",)), {}, True, id="task-question-mark"),
    pytest.param(Match(tasks=("mem_*", "cpu_alert")), {}, True, id="any-of-tasks"),
    pytest.param(Match(tasks=("cpu_*",)), {"task": "CPU_alert"}, False, id="task-case-sensitive"),
    pytest.param(Match(tasks=("cpu",)), {}, False, id="task-glob-is-whole-name"),
    pytest.param(Match(levels=frozenset({Level.CRITICAL})), {}, True, id="level"),
    pytest.param(
        Match(levels=frozenset({Level.CRITICAL, Level.WARNING})),
        {"level": Level.OK},
        False,
        id="level-miss",
    ),
    pytest.param(Match(tags={"team": "db"}), {}, True, id="tag"),
    pytest.param(Match(tags={"team": "web"}), {}, False, id="tag-other-value"),
    pytest.param(Match(tags={"owner": "db"}), {}, False, id="tag-missing"),
    pytest.param(Match(tags={"team": "db", "env": "prod"}), {}, True, id="all-tags"),
    pytest.param(Match(tags={"team": "db", "env": "dev"}), {}, False, id="one-tag-differs"),
    pytest.param(
        Match(
            sources=frozenset({"kapacitor"}),
            tasks=("cpu_*",),
            levels=frozenset({Level.CRITICAL}),
            tags={"team": "db"},
        ),
        {},
        True,
        id="all-conditions",
    ),
    pytest.param(
        Match(
            sources=frozenset({"kapacitor"}),
            tasks=("cpu_*",),
            levels=frozenset({Level.CRITICAL}),
            tags={"team": "db"},
        ),
        {"level": Level.WARNING},
        False,
        id="all-conditions-one-fails",
    ),
]


@pytest.mark.parametrize(("match", "changes", "expected"), MATCH_CASES)
def test_match_conditions(match: Match | None, changes: dict[str, Any], expected: bool) -> None:
    """A route matches when every condition it gives holds: source, task glob, level, tags."""
    assert matches(match, event(**changes)) is expected


ROUTES = """
targets:
  prod:
    kind: log
  dev:
    kind: log
routes:
  - name: critical-db
    match:
      level: critical
      tags:
        team: db
    target: prod
  - name: influx
    match:
      source: influxdb
    target: dev
  - name: cpu-tasks
    match:
      task: ["cpu_*", "load?"]
    target: prod
  - name: default
    target: dev
"""


@pytest.mark.parametrize(
    ("changes", "route_name"),
    [
        pytest.param({}, "critical-db", id="first-of-several-matches-wins"),
        pytest.param({"level": Level.WARNING}, "cpu-tasks", id="falls-to-next"),
        pytest.param(
            {"source": Source.INFLUXDB, "level": Level.WARNING}, "influx", id="source-route"
        ),
        pytest.param({"level": Level.OK, "task": "load1"}, "cpu-tasks", id="second-glob"),
        pytest.param({"level": Level.OK, "task": "disk"}, "default", id="default-route"),
        pytest.param({"tags": {}, "task": ""}, "default", id="nothing-matches"),
    ],
)
def test_first_matching_route_wins(changes: dict[str, Any], route_name: str) -> None:
    """Routes are tried in order; the first match wins and the last catches the rest."""
    cfg = config(ROUTES)
    assert route(cfg.routes, event(**changes)).name == route_name


def test_route_conditions_parse_from_config() -> None:
    """Config match keys become conditions: level names in any case, a string or a list."""
    cfg = config(ROUTES)
    critical_db, influx, cpu, default = cfg.routes
    assert critical_db.match == Match(levels=frozenset({Level.CRITICAL}), tags={"team": "db"})
    assert influx.match == Match(sources=frozenset({"influxdb"}))
    assert cpu.match == Match(tasks=("cpu_*", "load?"))
    assert default.match is None
    assert [r.target for r in cfg.routes] == ["prod", "dev", "prod", "dev"]


def test_no_routes_with_one_target_is_one_default_route() -> None:
    """With a single target and no routes, everything goes to that target."""
    cfg = config("targets:\n  only:\n    kind: log\n")
    [default] = cfg.routes
    assert default.match is None
    assert default.target == "only"


CREDENTIALS = """
targets:
  bigpanda:
    kind: alerts_v2
    url: http://127.0.0.1:9/data/v2/alerts
    token: a-token
    app_key: target-key
  other:
    kind: alerts_v2
    url: http://127.0.0.1:9/data/v2/alerts
    token: b-token
    app_key: other-key
mapping:
  attributes:
    env: prod
    owner: ops
routes:
  - name: db
    match:
      tags:
        team: db
    target: bigpanda
    app_key: db-key
    mapping:
      attributes:
        owner: dba
  - name: other
    match:
      task: other_*
    target: other
  - name: default
    target: bigpanda
"""


@pytest.mark.parametrize(
    ("changes", "target", "app_key"),
    [
        pytest.param({}, "bigpanda", "db-key", id="route-app-key-wins"),
        pytest.param(
            {"tags": {"host": "a"}, "task": "other_x"}, "other", "other-key", id="target-key"
        ),
        pytest.param({"tags": {"host": "a"}}, "bigpanda", "target-key", id="default-route"),
    ],
)
def test_route_sets_target_and_app_key(changes: dict[str, Any], target: str, app_key: str) -> None:
    """The matched route picks the target; its app_key, else the target's, goes with the alert."""
    item = Pipeline(config(CREDENTIALS)).run([event(**changes)]).items[0]
    assert item.target == target
    assert item.app_key == app_key


def test_route_mapping_overrides_only_the_keys_it_gives() -> None:
    """A route's mapping block overrides the keys it names and inherits the rest."""
    pipeline = Pipeline(config(CREDENTIALS))
    db, plain = pipeline.run([EVENT, event(tags={"host": "a"})]).items
    db_alert = json.loads(db.payload)
    plain_alert = json.loads(plain.payload)
    assert (db_alert["env"], db_alert["owner"]) == ("prod", "dba")
    assert (plain_alert["env"], plain_alert["owner"]) == ("prod", "ops")


def test_each_event_of_a_request_is_routed_on_its_own() -> None:
    """Several events in one request may go to different routes."""
    pipeline = Pipeline(config(CREDENTIALS))
    items = pipeline.run(
        [EVENT, event(tags={"host": "a"}, task="other_y"), event(tags={"host": "a"})]
    ).items
    assert [(i.target, i.app_key) for i in items] == [
        ("bigpanda", "db-key"),
        ("other", "other-key"),
        ("bigpanda", "target-key"),
    ]
