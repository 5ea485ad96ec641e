"""Mapping: event → BigPanda alert object, Kapacitor-compatible by default.

With no templates configured, the result is field for field what Kapacitor's
own BigPanda handler sends (``services/bigpanda/service.go``): alert ID →
``check``, message → ``description``, details → ``details`` (unless it is the
default JSON), ``"<task>:<name>"`` → ``task``, Unix seconds → ``timestamp``,
tags and fields → additional attributes. Every part can be replaced by a
Jinja template; templates run in an immutable sandbox with ``StrictUndefined``
and are compiled once, when the config is loaded.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from forwarder import jsonio
from forwarder.config import ConfigError, MappingConfig, RouteConfig
from forwarder.model import Event, Outgoing, identity_key
from forwarder.pipeline.stage import StageError, Work

# BigPanda limits (OIM alert object reference): description up to 2048
# characters; tag values are cut at 512 characters by this forwarder so one
# oversized field cannot get a whole batch refused.
MAX_DESCRIPTION: Final = 2048
MAX_ATTRIBUTE: Final = 512

# Keys that automatic attributes (tags and fields) may not overwrite: a field
# called "status" (an HTTP check's status code, say) would otherwise replace
# the alert status and get the alert refused by BigPanda. Explicit
# ``attributes`` templates may still set them, except ``app_key``.
_RESERVED_FOR_AUTO: Final = frozenset(
    {"app_key", "status", "timestamp", "primary_property", "secondary_property"}
)


class RenderError(Exception):
    """A template failed for one event; the event is refused, others are not affected."""

    def __init__(self, key_path: str, message: str) -> None:
        super().__init__(f"{key_path}: {message}")
        self.key_path = key_path


@dataclass(slots=True)  # not frozen: built once per alert on the ingest hot path
class MappedAlert:
    """A BigPanda alert object (without ``app_key``) and facts about how it was built.

    ``identity`` is the stored key of its :class:`~forwarder.model.Identity`.
    """

    alert: dict[str, Any]
    identity: str
    truncations: int


def _unescape(value: Any) -> str:
    return html.unescape(str(value))


def _unix(value: Any) -> int:
    if isinstance(value, datetime):
        return unix_seconds(value)
    raise TypeError("unix expects a datetime such as time")


def make_environment() -> ImmutableSandboxedEnvironment:
    """The sandboxed Jinja environment all mapping templates share."""
    env = ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False
    )
    env.filters["html_unescape"] = _unescape
    env.filters["json"] = jsonio.dumps_str
    env.filters["unix"] = _unix
    return env


class _Compiled:
    """One mapping block with its templates compiled."""

    def __init__(self, env: jinja2.Environment, cfg: MappingConfig, path: str) -> None:
        self.cfg = cfg
        self.path = path
        # Keyed by level name; Level is a StrEnum, so a Level member finds its entry.
        self.status = dict(cfg.status)
        self.primary_property = cfg.primary_property
        self.secondary_property = cfg.secondary_property
        self.auto_tags = "tags" in cfg.auto_attributes
        self.auto_fields = "fields" in cfg.auto_attributes
        self.host = self._compile(env, cfg.host, f"{path}.host")
        self.check = self._compile(env, cfg.check, f"{path}.check")
        self.description = self._compile(env, cfg.description, f"{path}.description")
        self.details = self._compile(env, cfg.details, f"{path}.details")
        self.attributes: list[tuple[str, jinja2.Template]] = []
        for name, source in cfg.attributes.items():
            tpl = self._compile(env, source, f"{path}.attributes.{name}")
            if tpl is not None:
                self.attributes.append((name, tpl))
        self.uses_templates = any(
            t is not None for t in (self.host, self.check, self.description, self.details)
        ) or bool(self.attributes)

    @staticmethod
    def _compile(env: jinja2.Environment, source: str | None, path: str) -> jinja2.Template | None:
        if not source:
            return None
        try:
            return env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(
                path, f"template syntax error: {exc.message} (line {exc.lineno})"
            ) from None


def _render(tpl: jinja2.Template, ctx: Mapping[str, Any], path: str) -> str:
    try:
        return tpl.render(ctx)
    except SecurityError as exc:
        raise RenderError(path, f"template not allowed: {exc}") from None
    except jinja2.UndefinedError as exc:
        raise RenderError(path, f"template error: {exc.message}") from None
    except Exception as exc:  # a template may raise anything a filter or test raises
        raise RenderError(path, f"template error: {type(exc).__name__}: {exc}") from None


def unix_seconds(ts: datetime) -> int:
    """Whole Unix seconds, rounded down like Go's ``Time.Unix``."""
    return math.floor(ts.timestamp())


def attribute_text(value: Any) -> str:
    """A tag or field as BigPanda gets it: strings as they are, anything else compact JSON."""
    return value if isinstance(value, str) else jsonio.dumps_str(value)


class Mapper:
    """Turns events into BigPanda alerts using a global mapping and per-route overrides.

    Construction compiles every template; a syntax error raises
    :class:`~forwarder.config.ConfigError` naming the key path.
    """

    def __init__(self, mappings: Iterable[tuple[str, MappingConfig]]) -> None:
        self._env = make_environment()
        self._compiled: dict[int, _Compiled] = {}
        for path, cfg in mappings:
            if id(cfg) not in self._compiled:
                self._compiled[id(cfg)] = _Compiled(self._env, cfg, path)

    def map(self, event: Event, mapping: MappingConfig) -> MappedAlert:
        """Build one alert. Raises :class:`RenderError` if a template fails for this event."""
        c = self._compiled.get(id(mapping))
        if c is None:  # a mapping not seen at construction (tests, render): compile now
            c = self._compiled[id(mapping)] = _Compiled(self._env, mapping, "mapping")
        ctx = event.context() if c.uses_templates else {}
        alert: dict[str, Any] = {}

        description = (
            _render(c.description, ctx, f"{c.path}.description") if c.description else event.message
        )
        if description:
            alert["description"] = description
        if c.details:
            details = _render(c.details, ctx, f"{c.path}.details")
        else:
            # Kapacitor's default details are the whole event as HTML-escaped
            # JSON; its BigPanda handler unescapes and drops them if they are.
            details = html.unescape(event.details) if event.details else ""
            if details.startswith("{"):
                details = ""
        if details:
            alert["details"] = details
        check = _render(c.check, ctx, f"{c.path}.check") if c.check else event.id
        if check:
            alert["check"] = check
        alert["status"] = c.status.get(event.level, "critical")
        alert["timestamp"] = math.floor(event.time.timestamp())  # unix_seconds, inlined
        alert["task"] = f"{event.task}:{event.name}"

        if c.auto_tags:
            for k, v in event.tags.items():
                if k not in _RESERVED_FOR_AUTO:
                    alert[k] = v
        if c.auto_fields:
            for k, fv in event.fields.items():
                if k not in _RESERVED_FOR_AUTO:
                    alert[k] = attribute_text(fv)
        if c.host:
            host = _render(c.host, ctx, f"{c.path}.host")
            if host:
                alert["host"] = host
        for name, tpl in c.attributes:  # empty unless templates are configured
            if name == "app_key":
                continue
            value = _render(tpl, ctx, f"{c.path}.attributes.{name}")
            if value:
                alert[name] = value
        if c.primary_property:
            alert["primary_property"] = c.primary_property
        if c.secondary_property:
            alert["secondary_property"] = c.secondary_property

        truncations = 0
        for k, v in alert.items():
            if type(v) is str and len(v) > MAX_ATTRIBUTE:
                limit = MAX_DESCRIPTION if k == "description" else MAX_ATTRIBUTE
                if len(v) > limit:
                    alert[k] = v[:limit]
                    truncations += 1
        return MappedAlert(alert=alert, identity=identity_key(alert), truncations=truncations)


class MapStage:
    """Maps each routed event to its BigPanda alert, encoded and ready to queue.

    A template failure refuses the whole request (Kapacitor sends one alert per
    request; an ``httpPost`` batch with a broken row is better refused whole
    than half-queued).
    """

    name = "map"

    def __init__(self, mapper: Mapper) -> None:
        self.mapper = mapper

    def __call__(self, work: Work) -> None:
        events = work.events
        items: list[Outgoing] = []
        truncations = 0
        mapper = self.mapper
        dumps = jsonio.dumps
        route: RouteConfig
        for i, (event, route) in enumerate(zip(events, work.routes, strict=True)):
            try:
                mapped = mapper.map(event, route.mapping)
            except RenderError as exc:
                where = f"event {i}: " if len(events) > 1 else ""
                raise StageError(f"{where}{exc}", reason="template_error") from None
            except ValueError as exc:  # a field too deeply nested to encode
                where = f"event {i}: " if len(events) > 1 else ""
                raise StageError(f"{where}{exc}") from None
            truncations += mapped.truncations
            alert = mapped.alert
            items.append(
                Outgoing(
                    route.target,
                    route.app_key.reveal(),
                    mapped.identity,
                    dumps(alert),
                    alert["timestamp"],
                )
            )
        work.items = items
        work.truncations = truncations
