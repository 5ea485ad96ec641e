"""The ``mapping`` and ``routes`` sections: how events become alerts, and where they go.

A route's mapping inherits every key it does not set from the global one.
Templates stay source text here; :mod:`forwarder.pipeline.mapping` compiles them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from forwarder.config.convert import Section, as_level, as_str, as_str_list, one_of
from forwarder.config.errors import ConfigError
from forwarder.config.schema import (
    AUTO_ATTRIBUTES,
    BIGPANDA_STATUSES,
    MappingConfig,
    Match,
    RouteConfig,
    StateConfig,
    TargetConfig,
)
from forwarder.config.secrets import Secret
from forwarder.config.state import read_state
from forwarder.model import Level, Source


def read_mapping(node: Any, path: str, base: MappingConfig | None) -> MappingConfig:
    """A mapping block; with ``base``, keys not given are inherited (route overrides)."""
    sec = Section(node, path)
    b = base or MappingConfig()
    auto = b.auto_attributes
    if sec.has("auto_attributes"):
        key = sec.key("auto_attributes")
        items = as_str_list(sec.raw("auto_attributes"), key)
        choose = one_of(AUTO_ATTRIBUTES)
        auto = tuple(choose(item, f"{key}[{i}]") for i, item in enumerate(items))
    elif sec.raw("auto_attributes") is None and "auto_attributes" in sec.node:
        auto = ()
    attributes = b.attributes
    if sec.has("attributes"):
        a = Section(sec.raw("attributes"), sec.key("attributes"))
        attributes = {k: a.get(k, as_str, "") for k in list(a.node)}
        a.finish()
    status = dict(b.status)
    if sec.has("status"):
        s = Section(sec.raw("status"), sec.key("status"))
        for level_name in list(s.node):
            level = as_level(level_name, s.key(level_name))
            value = s.get(level_name, as_str, "")
            if value not in BIGPANDA_STATUSES:
                raise ConfigError(
                    s.key(level_name),
                    "not a BigPanda status (want one of "
                    + ", ".join(sorted(BIGPANDA_STATUSES))
                    + ")",
                )
            status[level.value] = value
        s.finish()
    cfg = MappingConfig(
        auto_attributes=auto,
        host=sec.get("host", as_str, b.host or "") or None,
        attributes=attributes,
        primary_property=sec.get("primary_property", as_str, b.primary_property or "") or None,
        secondary_property=sec.get("secondary_property", as_str, b.secondary_property or "")
        or None,
        status=status,
        check=sec.get("check", as_str, b.check or "") or None,
        description=sec.get("description", as_str, b.description or "") or None,
        details=sec.get("details", as_str, b.details or "") or None,
    )
    sec.finish()
    return cfg


def read_routes(
    node: Any,
    targets: Mapping[str, TargetConfig],
    mapping: MappingConfig,
    state: StateConfig | None = None,
) -> tuple[RouteConfig, ...]:
    """The routes, in order; without a ``routes`` key, one default route to the only target.

    A route's ``mapping`` and ``state`` inherit what they do not set from the
    global ``mapping`` and ``state``.
    """
    state = state or StateConfig()
    if node is None:
        if len(targets) != 1:
            raise ConfigError("routes", "required when more than one target is configured")
        only = next(iter(targets.values()))
        return (RouteConfig("default", None, only.name, only.app_key, mapping, "routes", state),)
    if not isinstance(node, list) or not node:
        raise ConfigError("routes", "must be a non-empty list")
    out: list[RouteConfig] = []
    names: set[str] = set()
    for i, item in enumerate(node):
        path = f"routes[{i}]"
        sec = Section(item, path)
        name = sec.get("name", as_str, f"route{i}")
        if name in names:
            raise ConfigError(sec.key("name"), f"duplicate route name {name!r}")
        names.add(name)
        match = read_match(sec.raw("match"), sec.key("match")) if sec.has("match") else None
        if not sec.has("target"):
            if len(targets) != 1:
                raise ConfigError(sec.key("target"), "is required with several targets")
            target = next(iter(targets))
        else:
            target = sec.get("target", as_str, "")
            if target not in targets:
                raise ConfigError(
                    sec.key("target"),
                    f"no target named {target!r} (have {', '.join(sorted(targets))})",
                )
        app_key = Secret(sec.get("app_key", as_str, "")) or targets[target].app_key
        route_mapping = (
            read_mapping(sec.raw("mapping"), sec.key("mapping"), base=mapping)
            if sec.has("mapping")
            else mapping
        )
        route_state = (
            read_state(sec.raw("state"), sec.key("state"), base=state)
            if sec.has("state")
            else state
        )
        sec.finish()
        out.append(RouteConfig(name, match, target, app_key, route_mapping, path, route_state))
    for i, route in enumerate(out[:-1]):
        if route.match is None:
            raise ConfigError(
                f"routes[{i}].match",
                "a route without match catches everything, so the routes after it never run",
            )
    if out[-1].match is not None:
        raise ConfigError(
            f"routes[{len(out) - 1}]",
            "the last route must have no match (the default route), so no event is unrouted",
        )
    return tuple(out)


def read_match(node: Any, path: str) -> Match:
    """A route's conditions; levels are read like every other level (any case)."""
    sec = Section(node, path)
    sources: frozenset[str] | None = None
    if sec.has("source"):
        items = as_str_list(sec.raw("source"), sec.key("source"))
        valid = {s.value for s in Source}
        for item in items:
            if item not in valid:
                raise ConfigError(
                    sec.key("source"),
                    f"unknown source {item!r} (want {', '.join(sorted(valid))})",
                )
        sources = frozenset(items)
    tasks = as_str_list(sec.raw("task"), sec.key("task")) if sec.has("task") else None
    levels: frozenset[Level] | None = None
    if sec.has("level"):
        key = sec.key("level")
        names = as_str_list(sec.raw("level"), key)
        levels = frozenset(as_level(n, key) for n in names)
    tags: dict[str, str] = {}
    if sec.has("tags"):
        t = Section(sec.raw("tags"), sec.key("tags"))
        tags = {k: t.get(k, as_str, "") for k in list(t.node)}
        t.finish()
    sec.finish()
    return Match(sources=sources, tasks=tasks, levels=levels, tags=tags)
