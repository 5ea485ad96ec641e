"""The state stage (forwarder.pipeline.state) through the real pipeline on a real config.

Every mapped alert leaves the pipeline with its observation: its route's
state policy, its status and the values of the route's ``dedup_on`` keys.
Feeding those to the group-commit decisions shows what a backend would
queue.
"""

from __future__ import annotations

import dataclasses
import json
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from forwarder import jsonio
from forwarder.config import parse_config
from forwarder.model import Event, Level, Source
from forwarder.pipeline import Pipeline
from forwarder.queue.putting import decide

HERE = Path(__file__).resolve().parent

CONFIG = """
targets:
  prod:
    kind: log
  dev:
    kind: log
state:
  repeat_interval: 2h
  dedup_on: [description]
routes:
  - name: db
    match:
      tags:
        team: db
    target: prod
    mapping:
      attributes:
        runbook: "https://runbooks.example/{{ tags.runbook }}"
    state:
      dedup_on: [description, runbook]
      flap:
        transitions: 3
  - name: rest
    target: dev
"""

EVENT = Event(
    source=Source.KAPACITOR,
    id="cpu:host=a",
    message="cpu high",
    details="",
    level=Level.CRITICAL,
    time=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    name="cpu",
    task="cpu_alert",
    tags={"team": "db", "host": "a", "runbook": "cpu"},
    fields={"usage": 97.5},
)


def event(**changes: Any) -> Event:
    """The reference event with some fields replaced."""
    return dataclasses.replace(EVENT, **changes)


def pipeline() -> Pipeline:
    return Pipeline(parse_config(textwrap.dedent(CONFIG), base_dir=HERE, env={}))


def test_each_item_carries_its_routes_policy_status_and_dedup_values() -> None:
    """The db route's own policy and keys; the other route the global ones."""
    p = pipeline()
    db, rest = p.config.routes
    work = p.run(
        [event(), event(tags={"team": "web", "host": "b"}, level=Level.WARNING, message="slow")]
    )
    first, second = work.items
    assert first.state is not None
    assert second.state is not None
    assert first.state.policy is db.state
    assert first.state.policy.flap.transitions == 3
    assert first.state.policy.repeat_interval == 7200.0  # inherited
    assert first.state.status == "critical"
    assert json.loads(first.state.dedup) == ["cpu high", "https://runbooks.example/cpu"]
    assert second.state.policy is rest.state
    assert second.state.status == "warning"
    assert json.loads(second.state.dedup) == ["slow"]


def test_the_status_is_the_mapped_alerts_status() -> None:
    """An OK event's observation says ``ok``, as the alert BigPanda would get does."""
    work = pipeline().run([event(level=Level.OK)])
    [item] = work.items
    assert item.state is not None
    assert item.state.status == "ok" == jsonio.loads(item.payload)["status"]


def test_a_missing_dedup_key_is_a_value_too() -> None:
    """A listed key the alert lacks compares as null, so gaining it later is a change."""
    p = pipeline()
    [without] = p.run([event(tags={"team": "web", "host": "b"}, message="")]).items
    [with_] = p.run([event(tags={"team": "web", "host": "b"}, message="now set")]).items
    assert without.state is not None
    assert with_.state is not None
    assert json.loads(without.state.dedup) == [None]
    assert without.state.dedup != with_.state.dedup


def test_no_dedup_keys_is_an_empty_dedup_value() -> None:
    """With no ``dedup_on`` (the default) only the status counts: the dedup value is ""."""
    p = Pipeline(parse_config("targets:\n  only:\n    kind: log\n", base_dir=HERE, env={}))
    [item] = p.run([event()]).items
    assert item.state is not None
    assert item.state.dedup == ""
    assert item.state.policy.dedup_on == ()


def test_what_the_observations_make_a_backend_queue() -> None:
    """Metric values moving are suppressed; a changed description or runbook goes out at once."""
    p = pipeline()
    puts = [
        p.run([event(fields={"usage": 97.5})]).items,
        p.run([event(fields={"usage": 99.1})]).items,  # only the metric moved
        p.run([event(message="cpu very high")]).items,  # the description changed
        p.run([event(message="cpu very high", tags={**EVENT.tags, "runbook": "cpu2"})]).items,
        p.run([event(message="cpu very high", level=Level.OK)]).items,  # status change
    ]
    got = decide(puts, {}, 1_700_000_000.0)
    assert [r.queued for r in got.results] == [1, 0, 1, 1, 1]
    assert [r.suppressed_total for r in got.results] == [0, 1, 0, 0, 0]
    assert dict(got.results[1].suppressed) == {("prod", "duplicate"): 1}
