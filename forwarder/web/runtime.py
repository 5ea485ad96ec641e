"""The reloadable runtime: everything derived from one config, swapped whole on reload."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from forwarder.config import Config, ConfigError, load_config
from forwarder.delivery.deliverer import Deliverer
from forwarder.obs.logs import Redactor, get_logger
from forwarder.obs.metrics import Metrics
from forwarder.pipeline import Pipeline
from forwarder.web.auth import Authenticator


@dataclass(frozen=True, slots=True)
class Runtime:
    """Everything derived from one config; swapped as a whole on reload."""

    config: Config
    pipeline: Pipeline
    auth: Authenticator


class RuntimeHolder:
    """A mutable cell for the current :class:`Runtime` (app state is frozen once started)."""

    def __init__(self, runtime: Runtime) -> None:
        self.current = runtime


class Reloader:
    """Loads a new config and swaps it in atomically, or keeps the old one on error."""

    def __init__(
        self,
        *,
        holder: RuntimeHolder,
        deliverer: Deliverer,
        metrics: Metrics,
        redactor: Redactor,
        path: Path | None,
    ) -> None:
        self.holder = holder
        self.deliverer = deliverer
        self.metrics = metrics
        self.redactor = redactor
        self.path = path
        self._lock = asyncio.Lock()

    async def reload(self) -> Config:
        """Reload from ``path``; raises :class:`ConfigError` and changes nothing if it is bad."""
        async with self._lock:
            metrics = self.metrics
            log = get_logger()
            if self.path is None:
                raise ConfigError("", "no config file to reload from")
            try:
                config = await asyncio.to_thread(load_config, self.path)
                runtime = build_runtime(config)
                old = self.holder.current
                _check_restart_keys(old.config, config)
            except ConfigError as exc:
                metrics.config_reload_ok.set(0)
                log.error("config_reload_failed", error=str(exc))
                raise
            deliverer = self.deliverer
            self.holder.current = runtime
            self.redactor.set_secrets(config.secrets())
            await deliverer.reconfigure(config, timeout=config.server.shutdown_timeout)
            metrics.config_loaded(config.digest, time.time())
            log.info("config_reloaded", config=str(self.path), digest=config.digest[:12])
            return config


def _check_restart_keys(old: Config, new: Config) -> None:
    """Keys that only take effect at start-up: refuse a reload that changes them."""
    if old.queue.path != new.queue.path:
        raise ConfigError("queue.path", "changing the queue file needs a restart")
    if (old.server.host, old.server.port) != (new.server.host, new.server.port):
        raise ConfigError("server.listen", "changing the listen address needs a restart")
    if old.server.tls != new.server.tls:
        raise ConfigError("server.tls", "changing TLS needs a restart")


def build_runtime(config: Config) -> Runtime:
    """Compile templates and build the pure pipeline; raises ConfigError on bad templates."""
    return Runtime(config=config, pipeline=Pipeline(config), auth=Authenticator(config.server.auth))
