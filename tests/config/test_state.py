"""The ``state`` section and ``routes[].state`` (forwarder.config.state).

Defaults, route inheritance key by key, and one-line errors naming the key path.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from forwarder.config import Config, ConfigError, FlapConfig, StateConfig, parse_config

HERE = Path(__file__).resolve().parent

TARGETS = """
targets:
  prod:
    kind: log
  dev:
    kind: log
"""


def config(text: str, *, targets: str = TARGETS) -> Config:
    """A config parsed from dedented YAML text after two credential-less targets."""
    return parse_config(targets + textwrap.dedent(text), base_dir=HERE, env={})


def error(text: str) -> str:
    """The one-line message of the ConfigError ``text`` raises."""
    with pytest.raises(ConfigError) as info:
        config(text)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults() -> None:
    """No ``state`` section: repeat every 4h, keep ok rows 7d, no flap damping, no resolve."""
    cfg = config("routes:\n  - target: prod\n")
    assert cfg.state == StateConfig()
    state = cfg.routes[0].state
    assert state.repeat_interval == 4 * 3600.0
    assert state.dedup_on == ()
    assert state.retention == 7 * 86400.0
    assert state.flap.transitions == 0  # off
    assert state.resolve_after == 0.0  # off
    assert state == cfg.state


def test_the_only_targets_default_route_takes_the_global_state() -> None:
    """No ``routes``: the one default route gets the global section."""
    cfg = parse_config(
        "targets:\n  only:\n    kind: log\nstate:\n  repeat_interval: 1h\n", base_dir=HERE, env={}
    )
    assert cfg.routes[0].state.repeat_interval == 3600.0


def test_a_full_global_section() -> None:
    """Every key, with units; ``dedup_on`` as a list."""
    cfg = config(
        """
        state:
          repeat_interval: 2h
          dedup_on: [description, runbook]
          retention: 3d
          flap:
            transitions: 4
            window: 10m
            hold: 5m
          resolve_after: 15m
        routes:
          - target: prod
        """
    )
    assert cfg.state == StateConfig(
        repeat_interval=7200.0,
        dedup_on=("description", "runbook"),
        retention=3 * 86400.0,
        flap=FlapConfig(transitions=4, window=600.0, hold=300.0),
        resolve_after=900.0,
    )
    assert cfg.routes[0].state == cfg.state


@pytest.mark.parametrize(
    "value", ["0", "'0'", "0s", "off", "'off'", "false"], ids=lambda v: f"repeat={v}"
)
def test_repeat_interval_zero_turns_deduplication_off(value: str) -> None:
    """``0`` (and ``off``, YAML's false) turns repeat_interval and resolve_after off."""
    cfg = config(
        f"""
        state:
          repeat_interval: {value}
          resolve_after: {value}
        routes:
          - target: prod
        """
    )
    assert cfg.state.repeat_interval == 0.0
    assert cfg.state.resolve_after == 0.0


def test_dedup_on_forms() -> None:
    """One key as a string; an empty list or null clears an inherited list."""
    cfg = config(
        """
        state:
          dedup_on: description
        routes:
          - name: cleared
            match: {tags: {team: a}}
            target: prod
            state:
              dedup_on: []
          - name: nulled
            match: {tags: {team: b}}
            target: prod
            state:
              dedup_on:
          - name: inherited
            target: dev
        """
    )
    assert cfg.state.dedup_on == ("description",)
    assert [r.state.dedup_on for r in cfg.routes] == [(), (), ("description",)]


def test_a_route_inherits_every_key_it_does_not_set() -> None:
    """Route overrides go key by key, and ``flap`` key by key too."""
    cfg = config(
        """
        state:
          repeat_interval: 2h
          dedup_on: [description]
          retention: 3d
          flap:
            transitions: 4
            window: 10m
            hold: 5m
          resolve_after: 15m
        routes:
          - name: httppost
            match: {source: httppost}
            target: prod
            state:
              resolve_after: 5m
              flap:
                hold: 1m
          - name: quiet
            match: {source: influxdb}
            target: prod
            state:
              repeat_interval: 0
              flap:
                transitions: 0
          - name: same
            target: dev
            state: {}
        """
    )
    httppost, quiet, same = cfg.routes
    assert httppost.state == StateConfig(
        repeat_interval=7200.0,
        dedup_on=("description",),
        retention=3 * 86400.0,
        flap=FlapConfig(transitions=4, window=600.0, hold=60.0),
        resolve_after=300.0,
    )
    assert quiet.state.repeat_interval == 0.0
    assert quiet.state.flap == FlapConfig(transitions=0, window=600.0, hold=300.0)
    assert quiet.state.resolve_after == 900.0
    assert same.state == cfg.state


def test_a_route_without_a_global_section_overrides_the_defaults() -> None:
    """Route overrides start from the defaults when there is no global ``state``."""
    cfg = config(
        """
        routes:
          - name: a
            match: {source: httppost}
            target: prod
            state:
              flap:
                transitions: 3
          - name: b
            target: dev
        """
    )
    a, b = cfg.routes
    assert a.state.flap == FlapConfig(transitions=3)
    assert a.state.repeat_interval == StateConfig().repeat_interval
    assert b.state == StateConfig()


@pytest.mark.parametrize(
    ("text", "path", "words"),
    [
        pytest.param(
            "state:\n  repet_interval: 1h\n",
            "state.repet_interval",
            "did you mean `repeat_interval`",
            id="unknown-key",
        ),
        pytest.param(
            "state:\n  flap:\n    windw: 5m\n",
            "state.flap.windw",
            "did you mean `window`",
            id="unknown-flap-key",
        ),
        pytest.param(
            "routes:\n  - target: prod\n    state:\n      flap:\n        windw: 5m\n",
            "routes[0].state.flap.windw",
            "unknown key",
            id="unknown-route-flap-key",
        ),
        pytest.param(
            "routes:\n  - target: prod\n    state:\n      retension: 1d\n",
            "routes[0].state.retension",
            "did you mean `retention`",
            id="unknown-route-key",
        ),
        pytest.param(
            "state:\n  repeat_interval: 3600\n", "state.repeat_interval", "unit", id="no-unit"
        ),
        pytest.param(
            "state:\n  repeat_interval: 4 hours\n", "state.repeat_interval", "", id="bad-duration"
        ),
        pytest.param(
            "state:\n  repeat_interval: true\n", "state.repeat_interval", "", id="boolean-true"
        ),
        pytest.param(
            "state:\n  resolve_after: soon\n", "state.resolve_after", "", id="bad-resolve-after"
        ),
        pytest.param("state:\n  retention: 0s\n", "state.retention", "above 0", id="retention-0"),
        pytest.param("state:\n  retention: 0\n", "state.retention", "", id="retention-bare-0"),
        pytest.param(
            "routes:\n  - target: prod\n    state:\n      flap:\n        hold: 0s\n",
            "routes[0].state.flap.hold",
            "above 0",
            id="route-hold-0",
        ),
        pytest.param(
            "state:\n  flap:\n    window: 10\n", "state.flap.window", "unit", id="window-no-unit"
        ),
        pytest.param(
            "state:\n  flap:\n    transitions: -1\n",
            "state.flap.transitions",
            "at least 0",
            id="negative-transitions",
        ),
        pytest.param(
            "state:\n  flap:\n    transitions: many\n",
            "state.flap.transitions",
            "whole number",
            id="transitions-not-a-number",
        ),
        pytest.param("state:\n  flap: 4\n", "state.flap", "mapping", id="flap-not-a-mapping"),
        pytest.param("state: 4h\n", "state", "mapping", id="state-not-a-mapping"),
        pytest.param(
            "routes:\n  - target: prod\n    state: [1]\n",
            "routes[0].state",
            "mapping",
            id="route-state-not-a-mapping",
        ),
        pytest.param(
            "state:\n  dedup_on: {a: 1}\n", "state.dedup_on", "list", id="dedup-on-mapping"
        ),
        pytest.param(
            "state:\n  dedup_on: [description, '']\n",
            "state.dedup_on[1]",
            "empty",
            id="dedup-on-empty-name",
        ),
        pytest.param(
            "state:\n  dedup_on: [[a]]\n", "state.dedup_on[0]", "string", id="dedup-on-nested"
        ),
    ],
)
def test_bad_state_config_is_one_line_naming_the_key(text: str, path: str, words: str) -> None:
    """Unknown keys and bad values: one line, starting with the key path."""
    if not text.startswith("routes"):
        text += "routes:\n  - target: prod\n"
    message = error(text)
    assert message.startswith(f"{path}: "), message
    assert words in message
