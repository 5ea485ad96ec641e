"""The plain sections: server, ingest, queue, batch, retry and log.

Each function builds one section's dataclass from its YAML node, taking
every default from :mod:`forwarder.config.schema` and every allowed value
from its ``Literal``.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from forwarder.config.convert import (
    Section,
    as_bool,
    as_duration,
    as_int,
    as_level,
    as_nonempty_str,
    as_size,
    as_size_or_zero,
    as_str,
    listen_address,
    one_of,
)
from forwarder.config.errors import ConfigError
from forwarder.config.schema import (
    DEFAULT_DATA_DIR,
    LOG_FORMATS,
    LOG_LEVELS,
    QUEUE_BACKENDS,
    QUEUE_FILE,
    SYNCHRONOUS,
    AuthConfig,
    BasicAuth,
    BatchConfig,
    HttpPostFields,
    IngestConfig,
    LogConfig,
    QueueConfig,
    RetryConfig,
    ServerConfig,
    TLSConfig,
    env_suffix,
)
from forwarder.config.secrets import Secret


class Context:
    """What every section needs besides its node: paths, the environment, where values came from.

    It also remembers secrets read from files (``token_file``, …), which the
    document could not see, so an error can mask them too.
    """

    def __init__(
        self,
        base_dir: Path,
        env: Mapping[str, str],
        env_refs: Mapping[str, tuple[str, ...]],
    ) -> None:
        self.base_dir = base_dir
        self.env = env
        self.env_refs = env_refs
        self.file_secrets: list[str] = []
        self.file_keys: set[str] = set()

    def path(self, value: Any, key: str) -> Path:
        """A path, relative ones anchored at the config file's folder."""
        text = as_str(value, key)
        if not text:
            raise ConfigError(key, "must not be empty")
        p = Path(text).expanduser()
        return p if p.is_absolute() else Path(os.path.normpath(self.base_dir / p))

    def secret(self, sec: Section, name: str, file_key: str) -> Secret:
        """A secret given inline or by file (one of the two), file contents stripped."""
        inline = sec.get(name, as_str, "")
        if not sec.has(file_key):
            return Secret(inline)
        if inline:
            raise ConfigError(sec.key(file_key), f"set either {name} or {file_key}, not both")
        file_path = self.path(sec.raw(file_key), sec.key(file_key))
        try:
            value = file_path.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                sec.key(file_key), f"cannot read {file_path}: {exc.strerror}"
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(sec.key(file_key), f"{file_path} is not UTF-8 text") from None
        self.file_secrets.append(value)
        self.file_keys.add(sec.key(name))
        return Secret(value)

    def from_env(self, key_path: str) -> str:
        """`` (from ${VAR})`` when the environment filled ``key_path``, else nothing."""
        return env_suffix(self.env_refs, key_path)


def server(ctx: Context, node: Any) -> ServerConfig:
    sec = Section(node, "server")
    host, port = ServerConfig.host, ServerConfig.port
    if sec.has("listen"):
        host, port = listen_address(sec.raw("listen"), sec.key("listen"))
    cfg = ServerConfig(
        host=host,
        port=port,
        max_body_bytes=sec.get("max_body_bytes", as_size, ServerConfig.max_body_bytes),
        shutdown_timeout=sec.get("shutdown_timeout", as_duration(), ServerConfig.shutdown_timeout),
        access_log=sec.get("access_log", as_bool, ServerConfig.access_log),
        tls=tls(ctx, sec.raw("tls")) if sec.has("tls") else None,
        auth=auth(ctx, sec.raw("auth")) if sec.has("auth") else None,
    )
    sec.finish()
    return cfg


def tls(ctx: Context, node: Any) -> TLSConfig:
    sec = Section(node, "server.tls")
    for name in ("cert_file", "key_file"):
        if not sec.has(name):
            raise ConfigError(sec.key(name), "is required when server.tls is set")
    cert = ctx.path(sec.raw("cert_file"), sec.key("cert_file"))
    key = ctx.path(sec.raw("key_file"), sec.key("key_file"))
    for name, p in (("cert_file", cert), ("key_file", key)):
        if not p.is_file():
            raise ConfigError(sec.key(name), f"no such file: {p}")
    try:  # what `run` will do: a bad pair is a config error now, not a traceback then
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc.__class__.__name__
        raise ConfigError(
            sec.key("cert_file"), f"cannot load the certificate and key: {reason}"
        ) from None
    sec.finish()
    return TLSConfig(cert_file=cert, key_file=key)


def auth(ctx: Context, node: Any) -> AuthConfig | None:
    sec = Section(node, "server.auth")
    token = ctx.secret(sec, "bearer_token", "bearer_token_file")
    if not token and sec.has("bearer_token_file"):
        # A file that is there but empty must not turn authentication off.
        raise ConfigError(sec.key("bearer_token_file"), "the file is empty")
    basic: BasicAuth | None = None
    if sec.has("basic"):
        b = Section(sec.raw("basic"), "server.auth.basic")
        username = b.get("username", as_str, "")
        password = ctx.secret(b, "password", "password_file")
        b.finish()
        if not username:
            raise ConfigError(b.key("username"), "must not be empty")
        if not password:
            raise ConfigError(
                b.key("password"), "must not be empty" + ctx.from_env(b.key("password"))
            )
        basic = BasicAuth(username=username, password=password)
    sec.finish()
    if not token and basic is None:
        # An auth block whose variables all expanded empty means "auth off".
        return None
    return AuthConfig(bearer_token=token or None, basic=basic)


def ingest(node: Any) -> IngestConfig:
    sec = Section(node, "ingest")
    fields = HttpPostFields()
    if sec.has("httppost"):
        h = Section(sec.raw("httppost"), "ingest.httppost")
        d = HttpPostFields
        fields = HttpPostFields(
            level=h.get("level", as_nonempty_str, d.level),
            id=h.get("id", as_nonempty_str, d.id),
            message=h.get("message", as_nonempty_str, d.message),
            duration=h.get("duration", as_nonempty_str, d.duration),
            default_level=h.get("default_level", as_level, d.default_level),
        )
        h.finish()
    sec.finish()
    return IngestConfig(httppost=fields)


# Keys that only one backend reads; the other refuses them so a typo'd switch is loud.
_SQLITE_ONLY = ("path", "synchronous", "reserve_bytes", "ballast_bytes")
_POSTGRES_ONLY = ("dsn",)


def queue(ctx: Context, node: Any) -> QueueConfig:
    sec = Section(node, "queue")
    d = QueueConfig
    backend = sec.get("backend", one_of(QUEUE_BACKENDS), d.backend)
    # An empty dsn (``${FORWARDER_QUEUE_DSN:-}`` unset) counts as not given.
    dsn = Secret(sec.get("dsn", as_str, ""))
    given = {k for k, v in sec.node.items() if v is not None and (k != "dsn" or dsn)}
    foreign = _POSTGRES_ONLY if backend == "sqlite" else _SQLITE_ONLY
    for name in foreign:
        if name in given:
            raise ConfigError(
                sec.key(name),
                f"does not apply to queue.backend {backend}; remove it"
                + (" (or set queue.backend: postgres)" if backend == "sqlite" else ""),
            )
    if backend == "postgres":
        if not dsn:
            origin = ctx.from_env(sec.key("dsn"))
            raise ConfigError(
                sec.key("dsn"),
                (f"is empty{origin}; it " if origin else "")
                + "is required with queue.backend postgres"
                " (e.g. postgresql://forwarder@db.example:5432/forwarder)",
            )
        _check_dsn(dsn.reveal(), sec.key("dsn"))
    if sec.has("path"):
        path = ctx.path(sec.raw("path"), sec.key("path"))
    else:
        data_dir = ctx.env.get("FORWARDER_DATA_DIR") or ctx.env.get("STATE_DIRECTORY")
        path = ctx.path(str(Path(data_dir or DEFAULT_DATA_DIR) / QUEUE_FILE), sec.key("path"))
    cfg = QueueConfig(
        path=path,
        max_events=sec.get("max_events", as_int(1), d.max_events),
        max_bytes=sec.get("max_bytes", as_size, d.max_bytes),
        synchronous=sec.get("synchronous", one_of(SYNCHRONOUS), d.synchronous),
        lease_timeout=sec.get("lease_timeout", as_duration(1.0), d.lease_timeout),
        backend=backend,
        dsn=dsn,
        reserve_bytes=sec.get("reserve_bytes", as_size, d.reserve_bytes),
        ballast_bytes=sec.get("ballast_bytes", as_size_or_zero, d.ballast_bytes),
    )
    sec.finish()
    return cfg


def _check_dsn(dsn: str, key: str) -> None:
    """A postgresql:// URL or libpq ``key=value`` words; never quotes the DSN itself."""
    scheme, sep, _ = dsn.partition("://")
    if sep:
        if scheme not in ("postgresql", "postgres"):
            raise ConfigError(key, f"must be a postgresql:// URL, got a {scheme}:// one")
        try:
            urlsplit(dsn).port  # noqa: B018  (parsing is the check: host brackets, port)
        except ValueError:
            # Not the parser's words: they may quote a password ("cast ... as 'pw'").
            raise ConfigError(
                key,
                "is not a valid URL (check the host, the port, and that the password is"
                " percent-encoded: #, /, ? and @ in it must be written %23, %2F, %3F, %40)",
            ) from None
    elif "=" not in dsn:
        raise ConfigError(
            key, "must be a postgresql:// URL or libpq key=value words (host=… dbname=…)"
        )


def batch(node: Any) -> BatchConfig:
    sec = Section(node, "batch")
    cfg = BatchConfig(
        max_alerts=sec.get("max_alerts", as_int(1, 1000), BatchConfig.max_alerts),
        linger=sec.get("linger", as_duration(), BatchConfig.linger),
    )
    sec.finish()
    return cfg


def retry(node: Any) -> RetryConfig:
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


def log(node: Any) -> LogConfig:
    sec = Section(node, "log")
    cfg = LogConfig(
        level=sec.get("level", one_of(LOG_LEVELS), LogConfig.level),
        format=sec.get("format", one_of(LOG_FORMATS), LogConfig.format),
    )
    sec.finish()
    return cfg
