"""The reloadable runtime: everything derived from one config, swapped whole on reload."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from forwarder.config import (
    Config,
    ConfigError,
    build_config,
    mask,
    read_file,
)
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
        """Reload from ``path``; raises :class:`ConfigError` and changes nothing if it is bad.

        The new file's secrets are given to the redactor *before* it is
        validated (beside the running config's, which stay in use if it is
        refused), so no error about it, logged or answered, can show a new
        token; the error text is masked as well.
        """
        async with self._lock:
            metrics = self.metrics
            log = get_logger()
            if self.path is None:
                raise ConfigError("", "no config file to reload from")
            old = self.holder.current
            secrets = old.config.secrets()
            try:
                doc = await asyncio.to_thread(read_file, self.path)
                secrets += doc.secrets()
                self.redactor.set_secrets(secrets)
                config = await asyncio.to_thread(build_config, doc)
                secrets += config.secrets()  # token_file contents, read while building
                self.redactor.set_secrets(secrets)
                runtime = build_runtime(config)
                _check_restart_keys(old.config, config)
            except Exception as exc:
                # Any refusal, not only the loader's own (a value no check foresaw): one
                # masked line, the metric at 0, the old config running.
                if not isinstance(exc, ConfigError):
                    exc = ConfigError("", f"cannot load the config: {type(exc).__name__}: {exc}")
                failed = mask(exc, secrets)
                metrics.config_reload_ok.set(0)
                log.error("config_reload_failed", error=str(failed))
                raise failed from None
            deliverer = self.deliverer
            self.holder.current = runtime
            # The old secrets stay masked until the old senders are gone: an answer to
            # a request sent with the old token may still echo it.
            await deliverer.reconfigure(config, timeout=config.server.shutdown_timeout)
            self.redactor.set_secrets(config.secrets())
            metrics.config_loaded(config.digest, time.time())
            log.info("config_reloaded", config=str(self.path), digest=config.digest[:12])
            return config


def _check_restart_keys(old: Config, new: Config) -> None:
    """Keys that only take effect at start-up: refuse a reload that changes them."""
    if old.queue.backend != new.queue.backend:
        raise ConfigError("queue.backend", "changing the queue backend needs a restart")
    if old.queue.backend == "sqlite" and old.queue.path != new.queue.path:
        raise ConfigError("queue.path", "changing the queue file needs a restart")
    if old.queue.dsn != new.queue.dsn:
        raise ConfigError("queue.dsn", "changing the queue database needs a restart")
    if (old.server.host, old.server.port) != (new.server.host, new.server.port):
        raise ConfigError("server.listen", "changing the listen address needs a restart")
    if old.server.tls != new.server.tls:
        raise ConfigError("server.tls", "changing TLS needs a restart")


def build_runtime(config: Config) -> Runtime:
    """Compile templates and build the pure pipeline; raises ConfigError on bad templates.

    The mapping names the template key of any compile failure it knows of;
    anything else raised while building (a bug, or a Jinja failure mode not
    yet known) is still a one-line ConfigError, never a traceback or a 500.
    """
    try:
        pipeline = Pipeline(config)
    except ConfigError:
        raise
    except Exception as exc:  # any failure to build the pipeline is a config refusal
        text = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise ConfigError(
            "mapping", f"templates cannot be compiled: {type(exc).__name__}: {text}"
        ) from None
    return Runtime(config=config, pipeline=pipeline, auth=Authenticator(config.server.auth))
