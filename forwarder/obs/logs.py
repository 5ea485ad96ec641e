"""Structured logging: JSON lines off a TTY, readable console on one, secrets redacted.

Redaction is by value and by key. Every secret of the loaded config (tokens,
app keys, ingest passwords) is registered with :meth:`Redactor.set_secrets`;
any log field containing one has it replaced by ``***``, wherever it hides (an
error text, a URL, a nested dict). Fields named like credentials are masked too.

The :class:`Redactor` is made by the caller (the CLI, or a test) and injected:
into :func:`configure`, which puts it in the processor chain, and into the app
factory, which registers each loaded config's secrets with it and scrubs the
admin API's answers with it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

import structlog

REDACTED = "***"
_SENSITIVE_KEYS = frozenset(
    {"authorization", "token", "app_key", "password", "x-auth-token", "x-app-key", "bearer_token"}
)


class Redactor:
    """A structlog processor that masks known secret values and credential-named fields."""

    def __init__(self) -> None:
        self._secrets: tuple[str, ...] = ()

    def set_secrets(self, secrets: Iterable[str]) -> None:
        """Mask exactly these values from now on (a reload replaces the set)."""
        # Longest first, so a secret containing another is masked whole.
        self._secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def scrub(self, value: Any) -> Any:
        """``value`` with every secret masked, as JSON-ready data."""
        if isinstance(value, str):
            for s in self._secrets:
                if s in value:
                    value = value.replace(s, REDACTED)
            return value
        if isinstance(value, dict):
            return {
                k: (REDACTED if str(k).lower() in _SENSITIVE_KEYS and v else self.scrub(v))
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.scrub(v) for v in value]
        if isinstance(value, bytes):
            return self.scrub(value.decode("utf-8", "replace"))
        if isinstance(value, BaseException):
            return self.scrub(f"{type(value).__name__}: {value}")
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, set | frozenset):
            return [self.scrub(v) for v in value]
        # Anything else (a URL, a dataclass, a Secret) would be rendered through its
        # repr by the JSON renderer; mask that text instead of trusting the object.
        return self.scrub(repr(value))

    def __call__(
        self, logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in list(event_dict.items()):
            if key.lower() in _SENSITIVE_KEYS and value:
                event_dict[key] = REDACTED
            else:
                event_dict[key] = self.scrub(value)
        return event_dict


LogFormat = Literal["auto", "json", "console"]


def configure(
    level: str = "info",
    fmt: LogFormat = "auto",
    stream: TextIO | None = None,
    *,
    redactor: Redactor,
) -> None:
    """Set up structlog (and route stdlib logging through the same output).

    Every event, structlog's and the stdlib's, passes ``redactor`` last before
    it is rendered.
    """
    out = stream or sys.stdout
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if use_console
        else structlog.processors.JSONRenderer()
    )
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redactor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # aiohttp and asyncio log through the stdlib; keep their warnings, same stream.
    handler = logging.StreamHandler(out)
    handler.setFormatter(_StdlibFormatter(redactor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.WARNING))


class _StdlibFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        redactor = self._redactor
        text = redactor.scrub(record.getMessage())
        if record.exc_info:
            text += " | " + redactor.scrub(self.formatException(record.exc_info)).replace(
                "\n", " | "
            )
        event = {
            "event": text,
            "level": record.levelname.lower(),
            "logger": record.name,
            # The same form as structlog's TimeStamper(fmt="iso", utc=True).
            "timestamp": datetime.fromtimestamp(record.created, UTC)
            .isoformat()
            .replace("+00:00", "Z"),
        }
        rendered = structlog.processors.JSONRenderer()(None, "", event)
        return rendered if isinstance(rendered, str) else rendered.decode()


def get_logger(**bound: Any) -> Any:
    """A structlog logger, optionally with fields bound."""
    # A lazy proxy: modules take their logger at import, before the CLI has
    # called configure(); the proxy reads the configuration at first use.
    return structlog.get_logger("forwarder", **bound)
