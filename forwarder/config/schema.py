"""The config schema: one frozen dataclass per section, defaults written once, here.

The loader (:mod:`forwarder.config.loader`) reads each default from these
classes and each set of allowed values from the ``Literal`` types below, so
neither is written twice.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, get_args

from forwarder.config.secrets import EMPTY_SECRET, Secret, dsn_passwords
from forwarder.model import Level

DEFAULT_CONFIG_PATH: Final = Path("config/forwarder.yaml")
# The queue file's folder when neither queue.path, $FORWARDER_DATA_DIR nor
# $STATE_DIRECTORY (systemd's StateDirectory=) says otherwise; relative to the config.
DEFAULT_DATA_DIR: Final = "data"
QUEUE_FILE: Final = "queue.db"
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
SYNCHRONOUS: Final[tuple[Synchronous, ...]] = get_args(Synchronous)
QueueBackend = Literal["sqlite", "postgres"]
QUEUE_BACKENDS: Final[tuple[QueueBackend, ...]] = get_args(QueueBackend)


@dataclass(frozen=True)
class QueueConfig:
    """The durable queue: an embedded SQLite file, or a shared PostgreSQL database.

    ``path``, ``synchronous``, ``reserve_bytes`` and ``ballast_bytes`` apply to
    SQLite only, ``dsn`` to PostgreSQL
    only; the loader refuses a key the chosen backend does not use.
    """

    path: Path = Path(DEFAULT_DATA_DIR, QUEUE_FILE)
    max_events: int = 1_000_000
    max_bytes: int = 1024**3
    synchronous: Synchronous = "full"
    lease_timeout: float = 120.0
    backend: QueueBackend = "sqlite"
    # A libpq connection string or postgresql:// URL; its password is a secret.
    dsn: Secret = EMPTY_SECRET
    # SQLite: free space the ingest leaves for delivery (503 below it), and the
    # ballast file given back when the disk fills (0: none). Each is capped at
    # a fraction of the volume, so a small disk is not all reserve.
    reserve_bytes: int = 64 * 1024**2
    ballast_bytes: int = 16 * 1024**2


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
TARGET_KINDS: Final[tuple[TargetKind, ...]] = get_args(TargetKind)
TokenPlace = Literal["authorization", "x-auth-token"]
TOKEN_PLACES: Final[tuple[TokenPlace, ...]] = get_args(TokenPlace)
AppKeyPlace = Literal["body", "header"]
APP_KEY_PLACES: Final[tuple[AppKeyPlace, ...]] = get_args(AppKeyPlace)
AutoAttribute = Literal["tags", "fields"]
AUTO_ATTRIBUTES: Final[tuple[AutoAttribute, ...]] = get_args(AutoAttribute)
LogLevel = Literal["debug", "info", "warning", "error"]
LOG_LEVELS: Final[tuple[LogLevel, ...]] = get_args(LogLevel)
LogFormat = Literal["auto", "json", "console"]
LOG_FORMATS: Final[tuple[LogFormat, ...]] = get_args(LogFormat)


@dataclass(frozen=True)
class TargetConfig:
    """A BigPanda endpoint (or the log, for dry runs) that batches are sent to."""

    name: str
    kind: TargetKind
    url: str
    token: Secret
    app_key: Secret
    token_in: TokenPlace = "authorization"
    app_key_in: AppKeyPlace = "body"
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

    auto_attributes: tuple[AutoAttribute, ...] = AUTO_ATTRIBUTES
    host: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    primary_property: str | None = None
    secondary_property: str | None = None
    status: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_STATUS_MAP))
    check: str | None = None
    description: str | None = None
    details: str | None = None


@dataclass(frozen=True)
class FlapConfig:
    """Flap damping (off while ``transitions`` is 0); see :mod:`forwarder.state`."""

    # More than this many status changes within ``window`` marks an identity flapping.
    transitions: int = 0
    window: float = 600.0
    # How long a flapping identity must hold one status before it is sent again.
    hold: float = 300.0


# BigPanda asks for state changes only; Alertmanager's default repeat_interval
# is 4h. An unchanged alert is sent again after this long, so an incident that
# lasts a working day is refreshed a few times, not 240 times an hour.
DEFAULT_REPEAT_INTERVAL: Final = 4 * 3600.0


@dataclass(frozen=True)
class StateConfig:
    """Alert state: deduplication, flap damping, auto-resolve and retention.

    ``repeat_interval`` 0 turns deduplication off; ``resolve_after`` 0 (the
    default) turns auto-resolve off. Durations are seconds.
    """

    repeat_interval: float = DEFAULT_REPEAT_INTERVAL
    dedup_on: tuple[str, ...] = ()
    retention: float = 7 * 86400.0
    flap: FlapConfig = field(default_factory=FlapConfig)
    resolve_after: float = 0.0

    @property
    def tracked(self) -> bool:
        """Whether any stage needs the state: with all three off, none is kept."""
        return self.repeat_interval > 0 or self.flap.transitions > 0 or self.resolve_after > 0


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
    state: StateConfig = field(default_factory=StateConfig)


@dataclass(frozen=True)
class LogConfig:
    """Log output defaults (the CLI flags override them)."""

    level: LogLevel = "info"
    format: LogFormat = "auto"


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
    state: StateConfig = field(default_factory=StateConfig)
    source_path: Path | None = None
    digest: str = ""
    # Key path -> the environment variables its value was expanded from, so an
    # error about an empty value can say which variable was empty.
    env_refs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def unconfigured_targets(self) -> list[str]:
        """Targets that send to BigPanda but have neither token nor app key."""
        return [t.name for t in self.targets.values() if t.kind != "log" and not t.has_credentials]

    def origin(self, key_path: str) -> str:
        """``key_path``, plus `` (from ${VAR})`` when its value came from the environment."""
        return key_path + env_suffix(self.env_refs, key_path)

    def empty_credentials(self) -> list[str]:
        """What to set to leave dry-run: each empty credential of a target without any.

        One entry per empty key, as :meth:`origin` spells it, e.g.
        ``targets.bigpanda.token (from ${BIGPANDA_TOKEN})``. Empty when every
        BigPanda target has credentials (or there is none).
        """
        out: list[str] = []
        for name in self.unconfigured_targets:
            out.append(self.origin(f"targets.{name}.token"))
            if not any(r.app_key for r in self.routes if r.target == name):
                out.append(self.origin(f"targets.{name}.app_key"))
        return out

    def secrets(self) -> list[str]:
        """Every secret value in this config, for the log redactor."""
        out: list[str] = list(dsn_passwords(self.queue.dsn.reveal()))
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


def env_suffix(env_refs: Mapping[str, tuple[str, ...]], key_path: str) -> str:
    """`` (from ${VAR})`` naming the variables ``key_path`` was expanded from, or nothing."""
    names = env_refs.get(key_path, ())
    return f" (from {', '.join('${' + n + '}' for n in names)})" if names else ""


def iter_route_mappings(cfg: Config) -> Iterator[tuple[str, MappingConfig]]:
    """Each (key path, mapping) pair, global first, for compiling templates."""
    yield "mapping", cfg.mapping
    for r in cfg.routes:
        if r.mapping is not cfg.mapping:
            yield f"{r.key_path}.mapping", r.mapping
