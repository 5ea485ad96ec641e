"""Loading: read the YAML, expand ``${ENV}``, and build the schema's dataclasses strictly.

Loading is strict: an unknown key, a wrong type or a broken cross-field rule
raises :class:`ConfigError`, whose text is one line naming the key path, e.g.
``targets.bigpanda.url: not a URL``. Relative paths resolve against the folder
of the config file, so a config and its templates can move together.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from forwarder.config.convert import (
    Section,
    as_bool,
    as_duration,
    as_int,
    as_level,
    as_nonempty_str,
    as_positive_float,
    as_size,
    as_str,
    as_str_list,
    as_url,
    join,
    listen_address,
    one_of,
)
from forwarder.config.errors import ConfigError
from forwarder.config.schema import (
    APP_KEY_PLACES,
    AUTO_ATTRIBUTES,
    BIGPANDA_STATUSES,
    DEFAULT_OIM_URL,
    DEFAULT_V2_URL,
    LOG_FORMATS,
    LOG_LEVELS,
    SYNCHRONOUS,
    TARGET_KINDS,
    TOKEN_PLACES,
    AuthConfig,
    BasicAuth,
    BatchConfig,
    Config,
    HttpPostFields,
    IngestConfig,
    LogConfig,
    MappingConfig,
    Match,
    QueueConfig,
    RetryConfig,
    RouteConfig,
    ServerConfig,
    TargetConfig,
    TLSConfig,
)
from forwarder.config.secrets import Secret
from forwarder.model import Level, Source


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read, expand and validate the config file at ``path``."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {p}: {exc.strerror}") from None
    return parse_config(data, base_dir=p.resolve().parent, source_path=p, env=env)


def parse_config(
    data: bytes | str,
    *,
    base_dir: Path,
    source_path: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Validate config text; ``base_dir`` anchors relative paths."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError("", f"invalid YAML: {where}{problem}") from None
    if doc is None:
        doc = {}
    environ = os.environ if env is None else env
    doc = _expand(doc, "", environ)
    cfg = _Loader(base_dir, environ).config(doc)
    return replace(cfg, source_path=source_path, digest=hashlib.sha256(raw).hexdigest())


_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def _expand(node: Any, path: str, env: Mapping[str, str]) -> Any:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in every string scalar (``$$`` is a ``$``)."""
    if isinstance(node, str):
        if "$" not in node:
            return node

        def sub(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name, default = m.group(1), m.group(2)
            value = env.get(name)
            if value is None or (value == "" and default is not None):
                if default is None:
                    raise ConfigError(path, f"environment variable {name} is not set")
                return default
            return value

        return _ENV_REF.sub(sub, node)
    if isinstance(node, dict):
        return {k: _expand(v, join(path, str(k)), env) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, f"{path}[{i}]", env) for i, v in enumerate(node)]
    return node


class _Loader:
    """Builds each section from its YAML node; ``env`` also picks the default data folder."""

    def __init__(self, base_dir: Path, env: Mapping[str, str]) -> None:
        self.base_dir = base_dir
        self.env = env

    def path(self, value: Any, key: str) -> Path:
        text = as_str(value, key)
        if not text:
            raise ConfigError(key, "must not be empty")
        p = Path(text).expanduser()
        return p if p.is_absolute() else Path(os.path.normpath(self.base_dir / p))

    def secret(self, sec: Section, name: str, file_key: str) -> Secret:
        """A secret given inline or by file (one of the two), file contents stripped."""
        inline = sec.get(name, as_str, "")
        if sec.has(file_key):
            if inline:
                raise ConfigError(sec.key(file_key), f"set either {name} or {file_key}, not both")
            file_path = self.path(sec.raw(file_key), sec.key(file_key))
            try:
                return Secret(file_path.read_text().strip())
            except OSError as exc:
                raise ConfigError(
                    sec.key(file_key), f"cannot read {file_path}: {exc.strerror}"
                ) from None
        return Secret(inline)

    # ---------------------------------------------------------------- sections

    def config(self, doc: Any) -> Config:
        top = Section(doc, "")
        server = self.server(top.raw("server"))
        ingest = self.ingest(top.raw("ingest"))
        queue = self.queue(top.raw("queue"))
        batch = self.batch(top.raw("batch"))
        retry = self.retry(top.raw("retry"))
        targets = self.targets(top.raw("targets"))
        mapping = self.mapping(top.raw("mapping"), "mapping", base=None)
        routes = self.routes(top.raw("routes"), targets, mapping)
        log = self.log(top.raw("log"))
        top.finish()
        self.check_credentials(targets, routes)
        return Config(
            server=server,
            ingest=ingest,
            queue=queue,
            batch=batch,
            retry=retry,
            targets=targets,
            mapping=mapping,
            routes=routes,
            log=log,
        )

    def server(self, node: Any) -> ServerConfig:
        sec = Section(node, "server")
        host, port = "127.0.0.1", 9095
        if sec.has("listen"):
            host, port = listen_address(sec.raw("listen"), sec.key("listen"))
        cfg = ServerConfig(
            host=host,
            port=port,
            max_body_bytes=sec.get("max_body_bytes", as_size, ServerConfig.max_body_bytes),
            shutdown_timeout=sec.get(
                "shutdown_timeout", as_duration(), ServerConfig.shutdown_timeout
            ),
            access_log=sec.get("access_log", as_bool, False),
            tls=self.tls(sec.raw("tls")) if sec.has("tls") else None,
            auth=self.auth(sec.raw("auth")) if sec.has("auth") else None,
        )
        sec.finish()
        return cfg

    def tls(self, node: Any) -> TLSConfig:
        sec = Section(node, "server.tls")
        for name in ("cert_file", "key_file"):
            if not sec.has(name):
                raise ConfigError(sec.key(name), "is required when server.tls is set")
        cert = self.path(sec.raw("cert_file"), sec.key("cert_file"))
        key = self.path(sec.raw("key_file"), sec.key("key_file"))
        for name, p in (("cert_file", cert), ("key_file", key)):
            if not p.is_file():
                raise ConfigError(sec.key(name), f"no such file: {p}")
        sec.finish()
        return TLSConfig(cert_file=cert, key_file=key)

    def auth(self, node: Any) -> AuthConfig | None:
        sec = Section(node, "server.auth")
        token = self.secret(sec, "bearer_token", "bearer_token_file")
        basic: BasicAuth | None = None
        if sec.has("basic"):
            b = Section(sec.raw("basic"), "server.auth.basic")
            username = b.get("username", as_str, "")
            password = self.secret(b, "password", "password_file")
            b.finish()
            if not username:
                raise ConfigError(b.key("username"), "must not be empty")
            if not password:
                raise ConfigError(b.key("password"), "must not be empty")
            basic = BasicAuth(username=username, password=password)
        sec.finish()
        if not token and basic is None:
            # An auth block whose variables all expanded empty means "auth off".
            return None
        return AuthConfig(bearer_token=token or None, basic=basic)

    def ingest(self, node: Any) -> IngestConfig:
        sec = Section(node, "ingest")
        fields = HttpPostFields()
        if sec.has("httppost"):
            h = Section(sec.raw("httppost"), "ingest.httppost")
            fields = HttpPostFields(
                level=h.get("level", as_nonempty_str, "level"),
                id=h.get("id", as_nonempty_str, "id"),
                message=h.get("message", as_nonempty_str, "message"),
                duration=h.get("duration", as_nonempty_str, "duration"),
                default_level=h.get("default_level", as_level, None),
            )
            h.finish()
        sec.finish()
        return IngestConfig(httppost=fields)

    def queue(self, node: Any) -> QueueConfig:
        sec = Section(node, "queue")
        default_dir = (
            self.env.get("FORWARDER_DATA_DIR") or self.env.get("STATE_DIRECTORY") or "data"
        )
        path = (
            self.path(sec.raw("path"), sec.key("path"))
            if sec.has("path")
            else self.path(str(Path(default_dir) / "queue.db"), sec.key("path"))
        )
        cfg = QueueConfig(
            path=path,
            max_events=sec.get("max_events", as_int(1), QueueConfig.max_events),
            max_bytes=sec.get("max_bytes", as_size, QueueConfig.max_bytes),
            synchronous=sec.get("synchronous", one_of(SYNCHRONOUS), QueueConfig.synchronous),
            lease_timeout=sec.get("lease_timeout", as_duration(1.0), QueueConfig.lease_timeout),
        )
        sec.finish()
        return cfg

    def batch(self, node: Any) -> BatchConfig:
        sec = Section(node, "batch")
        cfg = BatchConfig(
            max_alerts=sec.get("max_alerts", as_int(1, 1000), BatchConfig.max_alerts),
            linger=sec.get("linger", as_duration(), BatchConfig.linger),
        )
        sec.finish()
        return cfg

    def retry(self, node: Any) -> RetryConfig:
        sec = Section(node, "retry")
        cfg = RetryConfig(
            initial=sec.get("initial", as_duration(0.001), RetryConfig.initial),
            max=sec.get("max", as_duration(0.001), RetryConfig.max),
            max_age=sec.get("max_age", as_duration(1.0), RetryConfig.max_age),
        )
        sec.finish()
        if cfg.max < cfg.initial:
            raise ConfigError("retry.max", "must not be below retry.initial")
        return cfg

    def targets(self, node: Any) -> dict[str, TargetConfig]:
        if node is None or node == {}:
            raise ConfigError("targets", "at least one target is required")
        sec = Section(node, "targets")
        out: dict[str, TargetConfig] = {}
        for name in list(sec.node):
            sec.raw(name)
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                raise ConfigError(sec.key(name), "target names use letters, digits, _ . - only")
            out[name] = self.target(name, sec.node[name])
        return out

    def target(self, name: str, node: Any) -> TargetConfig:
        sec = Section(node, f"targets.{name}")
        if not sec.has("kind"):
            raise ConfigError(sec.key("kind"), "is required (alerts_v2, oim or log)")
        kind = one_of(TARGET_KINDS)(sec.raw("kind"), sec.key("kind"))
        default_url = {"alerts_v2": DEFAULT_V2_URL, "oim": DEFAULT_OIM_URL, "log": ""}[kind]
        url = sec.get("url", as_url, default_url) if kind != "log" else sec.get("url", as_str, "")
        token = self.secret(sec, "token", "token_file")
        app_key = Secret(sec.get("app_key", as_str, ""))
        token_in = sec.get("token_in", one_of(TOKEN_PLACES), TargetConfig.token_in)
        app_key_in = sec.get("app_key_in", one_of(APP_KEY_PLACES), TargetConfig.app_key_in)
        if kind != "oim":
            if token_in != "authorization":
                raise ConfigError(sec.key("token_in"), "only an oim target can use x-auth-token")
            if app_key_in != "body":
                raise ConfigError(sec.key("app_key_in"), "only an oim target can send x-app-key")
        cfg = TargetConfig(
            name=name,
            kind=kind,
            url=url,
            token=token,
            app_key=app_key,
            token_in=token_in,
            app_key_in=app_key_in,
            timeout=sec.get("timeout", as_duration(0.01), TargetConfig.timeout),
            connect_timeout=sec.get(
                "connect_timeout", as_duration(0.01), TargetConfig.connect_timeout
            ),
            rate_limit=sec.get("rate_limit", as_positive_float, TargetConfig.rate_limit),
            burst=sec.get("burst", as_int(1, 10_000), TargetConfig.burst),
            max_in_flight=sec.get("max_in_flight", as_int(1, 256), TargetConfig.max_in_flight),
        )
        sec.finish()
        return cfg

    def mapping(self, node: Any, path: str, base: MappingConfig | None) -> MappingConfig:
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

    def routes(
        self, node: Any, targets: Mapping[str, TargetConfig], mapping: MappingConfig
    ) -> tuple[RouteConfig, ...]:
        if node is None:
            if len(targets) != 1:
                raise ConfigError("routes", "required when more than one target is configured")
            only = next(iter(targets.values()))
            return (RouteConfig("default", None, only.name, only.app_key, mapping, "routes"),)
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
            match = self.match(sec.raw("match"), sec.key("match")) if sec.has("match") else None
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
                self.mapping(sec.raw("mapping"), sec.key("mapping"), base=mapping)
                if sec.has("mapping")
                else mapping
            )
            sec.finish()
            out.append(RouteConfig(name, match, target, app_key, route_mapping, path))
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

    def match(self, node: Any, path: str) -> Match:
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

    def log(self, node: Any) -> LogConfig:
        sec = Section(node, "log")
        cfg = LogConfig(
            level=sec.get("level", one_of(LOG_LEVELS), LogConfig.level),
            format=sec.get("format", one_of(LOG_FORMATS), LogConfig.format),
        )
        sec.finish()
        return cfg

    def check_credentials(
        self, targets: Mapping[str, TargetConfig], routes: tuple[RouteConfig, ...]
    ) -> None:
        """Either every BigPanda target has credentials, or none has (dry-run)."""
        remote = [t for t in targets.values() if t.kind != "log"]
        configured = [t for t in remote if t.has_credentials]
        for t in configured:
            if not t.token:
                raise ConfigError(f"targets.{t.name}.token", "must be set (or token_file)")
        if configured and len(configured) != len(remote):
            missing = next(t for t in remote if not t.has_credentials)
            raise ConfigError(
                f"targets.{missing.name}.token",
                "has no credentials while other targets do; set them or remove the target",
            )
        for r in routes:
            t = targets[r.target]
            if t.kind != "log" and t.has_credentials and not r.app_key:
                raise ConfigError(
                    f"{r.key_path}.app_key",
                    f"empty, and targets.{t.name}.app_key is empty too; BigPanda needs an app key",
                )
