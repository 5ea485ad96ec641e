"""Strict YAML configuration: the schema, its loading, and secrets.

* :mod:`~forwarder.config.schema`: one frozen dataclass per section, with
  the defaults and the allowed values (``Literal`` types) written once;
* :mod:`~forwarder.config.convert`: converters from YAML values, each naming
  the key path in its error;
* :mod:`~forwarder.config.document`: reading the YAML and ``${ENV}``
  expansion, recording which variable filled each key and which values are
  secrets (known before validation, so errors and logs can mask them);
* :mod:`~forwarder.config.sections`, :mod:`~forwarder.config.targets`,
  :mod:`~forwarder.config.routes`: one builder per section, and the
  cross-field rules;
* :mod:`~forwarder.config.loader`: the entry points tying those together;
* :mod:`~forwarder.config.secrets`: :class:`Secret`, which never prints
  itself, and the DSN password helpers;
* :mod:`~forwarder.config.packaged`: the commented default config shipped
  inside the package (``forwarder init``).

Every mistake is a :class:`ConfigError` whose text is one line naming the key
path, e.g. ``targets.bigpanda.url: not a URL``.
"""

from __future__ import annotations

from forwarder.config.document import Document, read_file, read_text
from forwarder.config.errors import ConfigError
from forwarder.config.loader import build_config, load_config, mask, parse_config
from forwarder.config.schema import (
    BIGPANDA_STATUSES,
    DEFAULT_CONFIG_PATH,
    DEFAULT_REPEAT_INTERVAL,
    DEFAULT_STATUS_MAP,
    QUEUE_BACKENDS,
    AuthConfig,
    BasicAuth,
    BatchConfig,
    Config,
    FlapConfig,
    HttpPostFields,
    IngestConfig,
    LogConfig,
    MappingConfig,
    Match,
    QueueBackend,
    QueueConfig,
    RetryConfig,
    RouteConfig,
    ServerConfig,
    StateConfig,
    Synchronous,
    TargetConfig,
    TLSConfig,
    iter_route_mappings,
)
from forwarder.config.secrets import EMPTY_SECRET, Secret, dsn_passwords, mask_dsn

__all__ = [
    "BIGPANDA_STATUSES",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_REPEAT_INTERVAL",
    "DEFAULT_STATUS_MAP",
    "EMPTY_SECRET",
    "QUEUE_BACKENDS",
    "AuthConfig",
    "BasicAuth",
    "BatchConfig",
    "Config",
    "ConfigError",
    "Document",
    "FlapConfig",
    "HttpPostFields",
    "IngestConfig",
    "LogConfig",
    "MappingConfig",
    "Match",
    "QueueBackend",
    "QueueConfig",
    "RetryConfig",
    "RouteConfig",
    "Secret",
    "ServerConfig",
    "StateConfig",
    "Synchronous",
    "TLSConfig",
    "TargetConfig",
    "build_config",
    "dsn_passwords",
    "iter_route_mappings",
    "load_config",
    "mask",
    "mask_dsn",
    "parse_config",
    "read_file",
    "read_text",
]
