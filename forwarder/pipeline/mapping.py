"""Mapping: event → BigPanda alert object, Kapacitor-compatible by default.

With no templates configured, the result is field for field what Kapacitor's
own BigPanda handler sends (``services/bigpanda/service.go``): alert ID →
``check``, message → ``description``, details → ``details`` (unless it is the
default JSON), ``"<task>:<name>"`` → ``task``, Unix seconds → ``timestamp``,
tags and fields → additional attributes, non-string values written as Go's
``encoding/json`` writes them (see the README for the deliberate
differences). Every part can be replaced by a Jinja template; templates run
in a bounded immutable sandbox (:mod:`forwarder.pipeline.sandbox`) with
``StrictUndefined`` and are compiled once, when the config is loaded.

An alert BigPanda would refuse (no primary property, a status it does not
know, no app key) is not queued: the map stage sets it aside as
:class:`~forwarder.pipeline.stage.Refused`, with a reason and a hint, so it
goes straight to the dead-letter store while the rest of the request is
delivered.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import jinja2
from jinja2.exceptions import SecurityError

from forwarder import jsonio
from forwarder.config import (
    BIGPANDA_STATUSES,
    ConfigError,
    MappingConfig,
    RouteConfig,
    TargetConfig,
)
from forwarder.model import Event, Outgoing, identity_key
from forwarder.pipeline.sandbox import BoundedSandbox, check_constants
from forwarder.pipeline.stage import Refused, StageError, Work

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
# The attributes BigPanda takes as the primary property, in its order, when
# the alert names none (BigPanda's alert API reference: host, service,
# application, device); an alert with none of them is refused with a 400.
DEFAULT_PRIMARY: Final = ("host", "service", "application", "device")


class RenderError(Exception):
    """A template failed for one event; the event is refused, others are not affected."""

    def __init__(self, key_path: str, message: str) -> None:
        super().__init__(f"{key_path}: {message}")
        self.key_path = key_path


@dataclass(slots=True)  # not frozen: built once per alert on the ingest hot path
class MappedAlert:
    """A BigPanda alert object (without ``app_key``) and facts about how it was built.

    ``identity`` is the stored key of its :class:`~forwarder.model.Identity`.
    ``refusal`` is None, or why BigPanda would refuse the alert and how to fix
    the mapping: ``(reason, hint)``.
    """

    alert: dict[str, Any]
    identity: str
    truncations: int
    refusal: tuple[str, str] | None = None


def _unescape(value: Any) -> str:
    return html.unescape(str(value))


def _unix(value: Any) -> int:
    if isinstance(value, datetime):
        return unix_seconds(value)
    raise TypeError("unix expects a datetime such as time")


def go_duration(value: Any) -> str:
    """A duration as Go's ``time.Duration.String()`` prints it: the ``go_duration`` filter.

    ``value`` is nanoseconds (``duration``, as Kapacitor sends it) or a
    :class:`~datetime.timedelta`. Kapacitor's handler templates often show
    ``{{ .Duration }}``, which prints this way: ``0s``, ``500ms``, ``1.5µs``
    (U+00B5), ``1.5s``, ``1m30s``, ``2h0m0s``; the unit below a second is
    the largest that keeps the whole part non-zero, and trailing zeros of the
    fraction are left out.
    """
    if isinstance(value, timedelta):
        ns = (value // timedelta(microseconds=1)) * 1000
    elif isinstance(value, int) and not isinstance(value, bool):
        ns = value
    elif isinstance(value, float) and value.is_integer():
        ns = int(value)
    else:
        raise TypeError("go_duration expects nanoseconds such as duration")
    sign = "-" if ns < 0 else ""
    u = -ns if ns < 0 else ns
    if u == 0:
        return "0s"
    if u < 1_000:
        return f"{sign}{u}ns"
    if u < 1_000_000:
        return f"{sign}{_fraction(u, 3)}µs"
    if u < 1_000_000_000:
        return f"{sign}{_fraction(u, 6)}ms"
    seconds, nanos = divmod(u, 1_000_000_000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    text = f"{_fraction(seconds * 1_000_000_000 + nanos, 9)}s"
    if minutes or hours:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return sign + text


def _fraction(value: int, digits: int) -> str:
    """``value / 10**digits`` with no trailing zeros, and no point for a whole number."""
    whole, part = divmod(value, 10**digits)
    decimals = str(part).rjust(digits, "0").rstrip("0")
    return f"{whole}.{decimals}" if decimals else str(whole)


def make_environment() -> BoundedSandbox:
    """The sandboxed Jinja environment all mapping templates share.

    Besides Jinja's built-in filters: ``json`` (compact JSON as Kapacitor
    writes it), ``unix`` (a datetime as Unix seconds), ``go_duration``
    (nanoseconds as Go prints a duration) and ``html_unescape``.
    """
    env = BoundedSandbox(
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False
    )
    env.filters["html_unescape"] = _unescape
    env.filters["json"] = jsonio.go_text
    env.filters["unix"] = _unix
    env.filters["go_duration"] = go_duration
    return env


class _Compiled:
    """One mapping block with its templates compiled."""

    def __init__(self, env: BoundedSandbox, cfg: MappingConfig, path: str) -> None:
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
        # Only an attributes template can set status (the status map is
        # checked at load), so only then does each alert's status need a check.
        self.status_templated = "status" in cfg.attributes
        statuses = ", ".join(sorted(BIGPANDA_STATUSES))
        self.status_hint = f"make {path}.attributes.status render one of {statuses}"
        primary = cfg.primary_property
        if primary:
            self.primary_hint = (
                f"{path}.primary_property is {primary!r}, but the alert has no {primary!r}"
                f" attribute; set {path}.attributes.{primary} or another primary_property"
            )
        else:
            self.primary_hint = (
                f"the alert has none of {', '.join(DEFAULT_PRIMARY)}; set {path}.host"
                f" (for example '{{{{ tags.host }}}}') or {path}.primary_property"
            )

    @staticmethod
    def _compile(env: BoundedSandbox, source: str | None, path: str) -> jinja2.Template | None:
        """Compile one template at load; every failure is a one-line ConfigError naming ``path``."""
        if not source:
            return None
        try:
            tree = env.parse(source)
            check_constants(tree)
            return env.from_string(tree)
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(
                path, f"template syntax error: {exc.message} (line {exc.lineno})"
            ) from None
        except SecurityError as exc:
            raise ConfigError(path, f"template refused: {_one_line(exc)}") from None
        except (Exception, RecursionError) as exc:  # constant folding may raise anything
            raise ConfigError(
                path, f"template cannot be compiled: {type(exc).__name__}: {_one_line(exc)}"
            ) from None


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line, cut to a readable length."""
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."


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
    """A tag or field as BigPanda gets it: a string as it is, anything else JSON as Go writes it."""
    return value if isinstance(value, str) else jsonio.go_text(value)


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
            go_text = jsonio.go_text
            for k, fv in event.fields.items():
                if k not in _RESERVED_FOR_AUTO:
                    alert[k] = fv if type(fv) is str else go_text(fv)
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
        refusal: tuple[str, str] | None = None
        primary = c.primary_property
        if not (
            alert.get(primary)
            if primary
            else alert.get("host")
            or alert.get("service")
            or alert.get("application")
            or alert.get("device")
        ):
            refusal = ("no_primary_property", c.primary_hint)
        elif c.status_templated and alert["status"] not in BIGPANDA_STATUSES:
            refusal = ("invalid_status", f"status {str(alert['status'])[:64]!r}: {c.status_hint}")
        return MappedAlert(alert, identity_key(alert), truncations, refusal)


class MapStage:
    """Maps each routed event to its BigPanda alert, encoded and ready to queue.

    A template failure refuses the whole request (Kapacitor sends one alert per
    request; an ``httpPost`` batch with a broken row is better refused whole
    than half-queued). An alert BigPanda would refuse goes to
    :attr:`Work.refused` instead of :attr:`Work.items`, with the route's name
    in its hint.

    ``targets`` tells which routes need an app key: a target that sends to
    BigPanda with credentials. Without credentials the daemon runs dry and
    no alert leaves the process, so none is refused for that.
    """

    name = "map"

    def __init__(self, mapper: Mapper, targets: Mapping[str, TargetConfig] | None = None) -> None:
        self.mapper = mapper
        self._targets = dict(targets or {})
        # Keyed by id(route): routes are frozen but hold dicts, so not hashable.
        self._needs_key: dict[int, bool] = {}

    def _app_key_missing(self, route: RouteConfig) -> bool:
        needs = self._needs_key.get(id(route))
        if needs is None:
            target = self._targets.get(route.target)
            needs = (
                target is not None
                and target.kind != "log"
                and target.has_credentials
                and not route.app_key
            )
            self._needs_key[id(route)] = needs
        return needs

    def __call__(self, work: Work) -> None:
        events = work.events
        items: list[Outgoing] = []
        alerts: list[dict[str, Any]] = []
        item_routes: list[RouteConfig] = []
        refused: list[Refused] = []
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
            item = Outgoing(
                route.target,
                route.app_key.reveal(),
                mapped.identity,
                dumps(alert),
                alert["timestamp"],
            )
            refusal = mapped.refusal
            if refusal is None and self._app_key_missing(route):
                refusal = (
                    "no_app_key",
                    f"{route.key_path}.app_key and targets.{route.target}.app_key are empty",
                )
            if refusal is None:
                items.append(item)
                alerts.append(alert)
                item_routes.append(route)
            else:
                reason, hint = refusal
                refused.append(Refused(item, reason, f"route {route.name!r}: {hint}"))
        work.items = items
        work.alerts = alerts
        work.item_routes = item_routes
        work.refused = refused
        work.truncations = truncations
