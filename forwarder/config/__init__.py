"""Strict YAML configuration: the schema, its loading, and secrets.

* :mod:`~forwarder.config.schema`: one frozen dataclass per section, with
  the defaults and the allowed values (``Literal`` types) written once;
* :mod:`~forwarder.config.convert`: converters from YAML values, each naming
  the key path in its error;
* :mod:`~forwarder.config.loader`: reading, ``${ENV}`` expansion, and the
  cross-field rules;
* :mod:`~forwarder.config.secrets`: :class:`Secret`, which never prints itself.

Every mistake is a :class:`ConfigError` whose text is one line naming the key
path, e.g. ``targets.bigpanda.url: not a URL``.
"""

from __future__ import annotations

from forwarder.config.errors import ConfigError
from forwarder.config.loader import load_config, parse_config
from forwarder.config.schema import (
    BIGPANDA_STATUSES,
    DEFAULT_CONFIG_PATH,
    DEFAULT_STATUS_MAP,
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
    Synchronous,
    TargetConfig,
    TLSConfig,
    iter_route_mappings,
)
from forwarder.config.secrets import EMPTY_SECRET, Secret

__all__ = [
    "BIGPANDA_STATUSES",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_STATUS_MAP",
    "EMPTY_SECRET",
    "AuthConfig",
    "BasicAuth",
    "BatchConfig",
    "Config",
    "ConfigError",
    "HttpPostFields",
    "IngestConfig",
    "LogConfig",
    "MappingConfig",
    "Match",
    "QueueConfig",
    "RetryConfig",
    "RouteConfig",
    "Secret",
    "ServerConfig",
    "Synchronous",
    "TLSConfig",
    "TargetConfig",
    "iter_route_mappings",
    "load_config",
    "parse_config",
]
