"""Strict YAML configuration: schema, defaults, environment expansion and validation.

Every section is a frozen dataclass with its defaults beside the schema. Loading
is strict: an unknown key, a wrong type or a broken cross-field rule raises
:class:`ConfigError`, whose text is one line naming the key path, e.g.
``targets.bigpanda.url: not a URL``. Relative paths resolve against the folder of
the config file, so a config and its templates can move together.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, cast
from urllib.parse import urlsplit

import yaml

from forwarder.jsonio import kind_of
from forwarder.model import Level, Source
from forwarder.timeparse import parse_duration, parse_size

DEFAULT_CONFIG_PATH: Final = Path("config/forwarder.yaml")
DEFAULT_V2_URL: Final = "https://api.bigpanda.io/data/v2/alerts"
DEFAULT_OIM_URL: Final = "https://integrations.bigpanda.io/oim/api/alerts"

# Kapacitor's BigPanda handler: OK and INFO are "ok", WARNING is "warning",
# CRITICAL and anything else "critical" (services/bigpanda/service.go).
DEFAULT_STATUS_MAP: Final[Mapping[str, str]] = {
    "OK": "ok",
    "INFO": "ok",
    "WARNING": "warning",
    "CRITICAL": "critical",
    "UNKNOWN": "critical",
}
# The statuses BigPanda's alert APIs accept.
BIGPANDA_STATUSES: Final = frozenset({"ok", "critical", "warning", "unknown", "acknowledged"})


class ConfigError(Exception):
    """A config mistake. ``str()`` is one line: ``key.path: what is wrong``."""

    def __init__(self, path: str, message: str) -> None:
        text = f"{path}: {message}" if path else message
        # One line always, even when a key or a value quoted in it holds a newline.
        super().__init__(text.replace("\r", "\\r").replace("\n", "\\n"))
        self.path = path
        self.message = message


class Secret:
    """A secret string (token, app key, password) that never prints itself.

    ``repr`` and ``str`` show ``***`` so a secret cannot leak through a log line,
    an exception or ``render`` output by accident; code that needs the value
    calls :meth:`reveal`.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value, for the one place that must send it."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__


EMPTY_SECRET: Final = Secret("")


@dataclass(frozen=True)
class BasicAuth:
    """HTTP basic credentials the ingest accepts."""

    username: str
    password: Secret


@dataclass(frozen=True)
class AuthConfig:
    """Optional ingest and admin authentication; either form is accepted when both are set."""

    bearer_token: Secret | None = None
    basic: BasicAuth | None = None


@dataclass(frozen=True)
class TLSConfig:
    """Certificate and key for serving HTTPS."""

    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class ServerConfig:
    """The HTTP listener."""

    host: str = "127.0.0.1"
    port: int = 9095
    max_body_bytes: int = 1024 * 1024
    shutdown_timeout: float = 10.0
    access_log: bool = False
    tls: TLSConfig | None = None
    auth: AuthConfig | None = None


@dataclass(frozen=True)
class HttpPostFields:
    """Which columns or tags of a Kapacitor ``httpPost`` row carry the alert fields.

    The defaults are what ``.levelField()``, ``.idField()``, ``.messageField()``
    and ``.durationField()`` write in Kapacitor's alert node.
    """

    level: str = "level"
    id: str = "id"
    message: str = "message"
    duration: str = "duration"
    default_level: Level | None = None


@dataclass(frozen=True)
class IngestConfig:
    """Parsing options for the ingest formats."""

    httppost: HttpPostFields = field(default_factory=HttpPostFields)


Synchronous = Literal["full", "normal", "off"]


@dataclass(frozen=True)
class QueueConfig:
    """The durable on-disk queue."""

    path: Path
    max_events: int = 1_000_000
    max_bytes: int = 1024**3
    synchronous: Synchronous = "full"
    lease_timeout: float = 120.0


@dataclass(frozen=True)
class BatchConfig:
    """How alerts are grouped into requests."""

    max_alerts: int = 100
    linger: float = 0.5


@dataclass(frozen=True)
class RetryConfig:
    """Backoff for retryable delivery failures."""

    initial: float = 1.0
    max: float = 300.0
    max_age: float = 24 * 3600.0


TargetKind = Literal["alerts_v2", "oim", "log"]


@dataclass(frozen=True)
class TargetConfig:
    """A BigPanda endpoint (or the log, for dry runs) that batches are sent to."""

    name: str
    kind: TargetKind
    url: str
    token: Secret
    app_key: Secret
    token_in: Literal["authorization", "x-auth-token"] = "authorization"
    app_key_in: Literal["body", "header"] = "body"
    timeout: float = 10.0
    connect_timeout: float = 3.0
    rate_limit: float = 2.5
    burst: int = 5
    max_in_flight: int = 4

    @property
    def has_credentials(self) -> bool:
        """Whether a token or an app key is set (a log target needs neither)."""
        return bool(self.token) or bool(self.app_key)


@dataclass(frozen=True)
class MappingConfig:
    """How an event becomes a BigPanda alert; see the README's mapping reference.

    Template fields hold Jinja source text; they are compiled by
    :mod:`forwarder.mapping`, which names the key path in any syntax error.
    """

    auto_attributes: tuple[str, ...] = ("tags", "fields")
    host: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    primary_property: str | None = None
    secondary_property: str | None = None
    status: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_STATUS_MAP))
    check: str | None = None
    description: str | None = None
    details: str | None = None


@dataclass(frozen=True)
class Match:
    """Conditions a route puts on an event; all given conditions must hold."""

    sources: frozenset[str] | None = None
    tasks: tuple[str, ...] | None = None
    levels: frozenset[Level] | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RouteConfig:
    """Where matching events go, with which app key and mapping."""

    name: str
    match: Match | None
    target: str
    app_key: Secret
    mapping: MappingConfig
    key_path: str


@dataclass(frozen=True)
class LogConfig:
    """Log output defaults (the CLI flags override them)."""

    level: str = "info"
    format: Literal["auto", "json", "console"] = "auto"


@dataclass(frozen=True)
class Config:
    """A whole, validated configuration."""

    server: ServerConfig
    ingest: IngestConfig
    queue: QueueConfig
    batch: BatchConfig
    retry: RetryConfig
    targets: Mapping[str, TargetConfig]
    mapping: MappingConfig
    routes: tuple[RouteConfig, ...]
    log: LogConfig
    source_path: Path | None = None
    digest: str = ""

    @property
    def unconfigured_targets(self) -> list[str]:
        """Targets that send to BigPanda but have neither token nor app key."""
        return [t.name for t in self.targets.values() if t.kind != "log" and not t.has_credentials]

    def secrets(self) -> list[str]:
        """Every secret value in this config, for the log redactor."""
        out: list[str] = []
        for t in self.targets.values():
            out += [t.token.reveal(), t.app_key.reveal()]
        for r in self.routes:
            out.append(r.app_key.reveal())
        auth = self.server.auth
        if auth is not None:
            if auth.bearer_token is not None:
                out.append(auth.bearer_token.reveal())
            if auth.basic is not None:
                out.append(auth.basic.password.reveal())
        return [s for s in out if s]


# --------------------------------------------------------------------------- loading


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
    return _replace_meta(cfg, source_path, hashlib.sha256(raw).hexdigest())


def _replace_meta(cfg: Config, source_path: Path | None, digest: str) -> Config:
    from dataclasses import replace

    return replace(cfg, source_path=source_path, digest=digest)


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
        return {k: _expand(v, _join(path, str(k)), env) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, f"{path}[{i}]", env) for i, v in enumerate(node)]
    return node


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


T = TypeVar("T")


class _Section:
    """Reads the keys of one mapping, then rejects the ones nobody asked for."""

    def __init__(self, node: Any, path: str) -> None:
        if node is None:
            node = {}
        if not isinstance(node, dict):
            raise ConfigError(path, f"must be a mapping, got {_kind(node)}")
        for key in node:
            if not isinstance(key, str):
                raise ConfigError(path, f"keys must be strings, got {key!r}")
        self.node: dict[str, Any] = node
        self.path = path
        self._seen: set[str] = set()

    def key(self, name: str) -> str:
        return _join(self.path, name)

    def has(self, name: str) -> bool:
        self._seen.add(name)
        return self.node.get(name) is not None

    def raw(self, name: str) -> Any:
        self._seen.add(name)
        return self.node.get(name)

    def get(self, name: str, conv: Callable[[Any, str], T], default: T) -> T:
        self._seen.add(name)
        value = self.node.get(name)
        if value is None:
            return default
        return conv(value, self.key(name))

    def finish(self) -> None:
        unknown = sorted(set(self.node) - self._seen)
        if unknown:
            raise ConfigError(self.key(unknown[0]), "unknown key")


def _kind(value: Any) -> str:
    return kind_of(value, mapping="a mapping")


def _str(value: Any, path: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(path, f"must be a string, got {_kind(value)}")
    return str(value)


def _from_env_text(value: Any) -> Any:
    """``${VAR}`` expands to text; read "5", "2.5", "true" as YAML would have."""
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"-?\d+", text):
            return int(text)
        if re.fullmatch(r"-?\d+\.\d*(?:[eE][-+]?\d+)?", text):
            return float(text)
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
    return value


def _bool(value: Any, path: str) -> bool:
    value = _from_env_text(value)
    if not isinstance(value, bool):
        raise ConfigError(path, f"must be true or false, got {_kind(value)}")
    return value


def _int(lo: int, hi: int | None = None) -> Callable[[Any, str], int]:
    def conv(value: Any, path: str) -> int:
        value = _from_env_text(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"must be a whole number, got {_kind(value)}")
        if value < lo or (hi is not None and value > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise ConfigError(path, f"must be {bound}, got {value}")
        return value

    return conv


def _positive_float(value: Any, path: str) -> float:
    value = _from_env_text(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(path, f"must be a number above 0, got {value!r}")
    return float(value)


def _duration(minimum: float = 0.0) -> Callable[[Any, str], float]:
    def conv(value: Any, path: str) -> float:
        if not isinstance(value, str):
            raise ConfigError(
                path, f"must be a duration with a unit such as 250ms or 10s, got {value!r}"
            )
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise ConfigError(path, str(exc)) from None
        if seconds < minimum:
            raise ConfigError(path, f"must be at least {minimum:g}s, got {value}")
        return seconds

    return conv


def _size(value: Any, path: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(path, "must be a size such as 1048576 or 1MiB")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        try:
            size = parse_size(value)
        except ValueError as exc:
            raise ConfigError(path, str(exc)) from None
    else:
        raise ConfigError(path, f"must be a size such as 1048576 or 1MiB, got {_kind(value)}")
    if size <= 0:
        raise ConfigError(path, "must be above 0")
    return size


def _choice(*options: str) -> Callable[[Any, str], str]:
    def conv(value: Any, path: str) -> str:
        if value not in options:
            raise ConfigError(path, f"must be one of {', '.join(options)}, got {value!r}")
        return str(value)

    return conv


def _str_list(value: Any, path: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list):
        raise ConfigError(path, f"must be a string or a list of strings, got {_kind(value)}")
    return tuple(_str(v, f"{path}[{i}]") for i, v in enumerate(value))


def _url(value: Any, path: str) -> str:
    text = _str(value, path)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(path, "not a URL (want http:// or https://)")
    if parts.username or parts.password:
        raise ConfigError(path, "must not carry credentials; use token or token_file")
    return text


class _Loader:
    def __init__(self, base_dir: Path, env: Mapping[str, str]) -> None:
        self.base_dir = base_dir
        self.env = env

    def path(self, value: Any, key: str) -> Path:
        text = _str(value, key)
        if not text:
            raise ConfigError(key, "must not be empty")
        p = Path(text).expanduser()
        return p if p.is_absolute() else Path(os.path.normpath(self.base_dir / p))

    def secret(self, sec: _Section, name: str, file_key: str) -> Secret:
        """A secret given inline or by file (one of the two), file contents stripped."""
        inline = sec.get(name, _str, "")
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
        top = _Section(doc, "")
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
        sec = _Section(node, "server")
        host, port = "127.0.0.1", 9095
        if sec.has("listen"):
            host, port = _listen(sec.raw("listen"), sec.key("listen"))
        cfg = ServerConfig(
            host=host,
            port=port,
            max_body_bytes=sec.get("max_body_bytes", _size, ServerConfig.max_body_bytes),
            shutdown_timeout=sec.get(
                "shutdown_timeout", _duration(), ServerConfig.shutdown_timeout
            ),
            access_log=sec.get("access_log", _bool, False),
            tls=self.tls(sec.raw("tls")) if sec.has("tls") else None,
            auth=self.auth(sec.raw("auth")) if sec.has("auth") else None,
        )
        sec.finish()
        return cfg

    def tls(self, node: Any) -> TLSConfig:
        sec = _Section(node, "server.tls")
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
        sec = _Section(node, "server.auth")
        token = self.secret(sec, "bearer_token", "bearer_token_file")
        basic: BasicAuth | None = None
        if sec.has("basic"):
            b = _Section(sec.raw("basic"), "server.auth.basic")
            username = b.get("username", _str, "")
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
        sec = _Section(node, "ingest")
        fields = HttpPostFields()
        if sec.has("httppost"):
            h = _Section(sec.raw("httppost"), "ingest.httppost")
            fields = HttpPostFields(
                level=h.get("level", _nonempty_str, "level"),
                id=h.get("id", _nonempty_str, "id"),
                message=h.get("message", _nonempty_str, "message"),
                duration=h.get("duration", _nonempty_str, "duration"),
                default_level=h.get("default_level", _level_name, None),
            )
            h.finish()
        sec.finish()
        return IngestConfig(httppost=fields)

    def queue(self, node: Any) -> QueueConfig:
        sec = _Section(node, "queue")
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
            max_events=sec.get("max_events", _int(1), QueueConfig.max_events),
            max_bytes=sec.get("max_bytes", _size, QueueConfig.max_bytes),
            synchronous=cast(
                Synchronous, sec.get("synchronous", _choice("full", "normal", "off"), "full")
            ),
            lease_timeout=sec.get("lease_timeout", _duration(1.0), QueueConfig.lease_timeout),
        )
        sec.finish()
        return cfg

    def batch(self, node: Any) -> BatchConfig:
        sec = _Section(node, "batch")
        cfg = BatchConfig(
            max_alerts=sec.get("max_alerts", _int(1, 1000), BatchConfig.max_alerts),
            linger=sec.get("linger", _duration(), BatchConfig.linger),
        )
        sec.finish()
        return cfg

    def retry(self, node: Any) -> RetryConfig:
        sec = _Section(node, "retry")
        cfg = RetryConfig(
            initial=sec.get("initial", _duration(0.001), RetryConfig.initial),
            max=sec.get("max", _duration(0.001), RetryConfig.max),
            max_age=sec.get("max_age", _duration(1.0), RetryConfig.max_age),
        )
        sec.finish()
        if cfg.max < cfg.initial:
            raise ConfigError("retry.max", "must not be below retry.initial")
        return cfg

    def targets(self, node: Any) -> dict[str, TargetConfig]:
        if node is None or node == {}:
            raise ConfigError("targets", "at least one target is required")
        sec = _Section(node, "targets")
        out: dict[str, TargetConfig] = {}
        for name in list(sec.node):
            sec.raw(name)
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                raise ConfigError(sec.key(name), "target names use letters, digits, _ . - only")
            out[name] = self.target(name, sec.node[name])
        return out

    def target(self, name: str, node: Any) -> TargetConfig:
        sec = _Section(node, f"targets.{name}")
        if not sec.has("kind"):
            raise ConfigError(sec.key("kind"), "is required (alerts_v2, oim or log)")
        kind = cast(TargetKind, sec.get("kind", _choice("alerts_v2", "oim", "log"), "log"))
        default_url = {"alerts_v2": DEFAULT_V2_URL, "oim": DEFAULT_OIM_URL, "log": ""}[kind]
        url = sec.get("url", _url, default_url) if kind != "log" else sec.get("url", _str, "")
        token = self.secret(sec, "token", "token_file")
        app_key = Secret(sec.get("app_key", _str, ""))
        token_in = sec.get("token_in", _choice("authorization", "x-auth-token"), "authorization")
        app_key_in = sec.get("app_key_in", _choice("body", "header"), "body")
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
            token_in=token_in,  # type: ignore[arg-type]
            app_key_in=app_key_in,  # type: ignore[arg-type]
            timeout=sec.get("timeout", _duration(0.01), TargetConfig.timeout),
            connect_timeout=sec.get(
                "connect_timeout", _duration(0.01), TargetConfig.connect_timeout
            ),
            rate_limit=sec.get("rate_limit", _positive_float, TargetConfig.rate_limit),
            burst=sec.get("burst", _int(1, 10_000), TargetConfig.burst),
            max_in_flight=sec.get("max_in_flight", _int(1, 256), TargetConfig.max_in_flight),
        )
        sec.finish()
        return cfg

    def mapping(self, node: Any, path: str, base: MappingConfig | None) -> MappingConfig:
        """A mapping block; with ``base``, keys not given are inherited (route overrides)."""
        sec = _Section(node, path)
        b = base or MappingConfig()
        auto = b.auto_attributes
        if sec.has("auto_attributes"):
            auto = _str_list(sec.raw("auto_attributes"), sec.key("auto_attributes"))
            for i, item in enumerate(auto):
                if item not in ("tags", "fields"):
                    raise ConfigError(
                        f"{sec.key('auto_attributes')}[{i}]",
                        f"must be tags or fields, got {item!r}",
                    )
        elif sec.raw("auto_attributes") is None and "auto_attributes" in sec.node:
            auto = ()
        attributes = b.attributes
        if sec.has("attributes"):
            a = _Section(sec.raw("attributes"), sec.key("attributes"))
            attributes = {k: a.get(k, _str, "") for k in list(a.node)}
            a.finish()
        status = dict(b.status)
        if sec.has("status"):
            s = _Section(sec.raw("status"), sec.key("status"))
            for level_name in list(s.node):
                if level_name not in Level.__members__:
                    raise ConfigError(
                        s.key(level_name),
                        f"not a level (want one of {', '.join(Level.__members__)})",
                    )
                value = s.get(level_name, _str, "")
                if value not in BIGPANDA_STATUSES:
                    raise ConfigError(
                        s.key(level_name),
                        "not a BigPanda status (want one of "
                        + ", ".join(sorted(BIGPANDA_STATUSES))
                        + ")",
                    )
                status[level_name] = value
            s.finish()
        cfg = MappingConfig(
            auto_attributes=auto,
            host=sec.get("host", _str, b.host or "") or None,
            attributes=attributes,
            primary_property=sec.get("primary_property", _str, b.primary_property or "") or None,
            secondary_property=sec.get("secondary_property", _str, b.secondary_property or "")
            or None,
            status=status,
            check=sec.get("check", _str, b.check or "") or None,
            description=sec.get("description", _str, b.description or "") or None,
            details=sec.get("details", _str, b.details or "") or None,
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
            sec = _Section(item, path)
            name = sec.get("name", _str, f"route{i}")
            if name in names:
                raise ConfigError(sec.key("name"), f"duplicate route name {name!r}")
            names.add(name)
            match = self.match(sec.raw("match"), sec.key("match")) if sec.has("match") else None
            if not sec.has("target"):
                if len(targets) != 1:
                    raise ConfigError(sec.key("target"), "is required with several targets")
                target = next(iter(targets))
            else:
                target = sec.get("target", _str, "")
                if target not in targets:
                    raise ConfigError(
                        sec.key("target"),
                        f"no target named {target!r} (have {', '.join(sorted(targets))})",
                    )
            app_key = Secret(sec.get("app_key", _str, "")) or targets[target].app_key
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
        sec = _Section(node, path)
        sources: frozenset[str] | None = None
        if sec.has("source"):
            items = _str_list(sec.raw("source"), sec.key("source"))
            valid = {s.value for s in Source}
            for item in items:
                if item not in valid:
                    raise ConfigError(
                        sec.key("source"),
                        f"unknown source {item!r} (want {', '.join(sorted(valid))})",
                    )
            sources = frozenset(items)
        tasks = _str_list(sec.raw("task"), sec.key("task")) if sec.has("task") else None
        levels: frozenset[Level] | None = None
        if sec.has("level"):
            names = _str_list(sec.raw("level"), sec.key("level"))
            for item in names:
                if item.upper() not in Level.__members__:
                    raise ConfigError(sec.key("level"), f"unknown level {item!r}")
            levels = frozenset(Level(n.upper()) for n in names)
        tags: dict[str, str] = {}
        if sec.has("tags"):
            t = _Section(sec.raw("tags"), sec.key("tags"))
            tags = {k: t.get(k, _str, "") for k in list(t.node)}
            t.finish()
        sec.finish()
        return Match(sources=sources, tasks=tasks, levels=levels, tags=tags)

    def log(self, node: Any) -> LogConfig:
        sec = _Section(node, "log")
        cfg = LogConfig(
            level=sec.get("level", _choice("debug", "info", "warning", "error"), "info"),
            format=sec.get("format", _choice("auto", "json", "console"), "auto"),  # type: ignore[arg-type]
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


def _level_name(value: Any, path: str) -> Level:
    text = _str(value, path).upper()
    if text not in Level.__members__:
        raise ConfigError(path, f"unknown level {value!r} (want OK, INFO, WARNING or CRITICAL)")
    return Level(text)


def _nonempty_str(value: Any, path: str) -> str:
    text = _str(value, path)
    if not text:
        raise ConfigError(path, "must not be empty")
    return text


def _listen(value: Any, path: str) -> tuple[str, int]:
    text = _str(value, path)
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ConfigError(path, f"must be host:port, got {text!r}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ConfigError(path, f"port out of range: {port}")
    host = host.strip("[]") or "0.0.0.0"
    return host, port


def iter_route_mappings(cfg: Config) -> Iterator[tuple[str, MappingConfig]]:
    """Each (key path, mapping) pair, global first, for compiling templates."""
    yield "mapping", cfg.mapping
    for r in cfg.routes:
        if r.mapping is not cfg.mapping:
            yield f"{r.key_path}.mapping", r.mapping
