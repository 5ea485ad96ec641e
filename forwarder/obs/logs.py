"""Structured logging: JSON lines off a TTY, readable console on one, secrets redacted.

Redaction is by value, by shape and by key. Every secret of the loaded config
(tokens, app keys, ingest passwords) is registered with
:meth:`Redactor.set_secrets`; any log field containing one has it replaced by
``***``, wherever it hides (an error text, a URL, a nested dict). Credentials
nobody registered are masked by their shape: the value after ``Bearer`` or
``Basic``, a URL's password, and URL query parameters named like credentials
(``?access_token=``). Fields named like credentials are masked too.

Text that must be cut to a length (an error to 200 characters, a response to
1 KiB) goes through :meth:`Redactor.cut`, which masks first and cuts after, so
a secret straddling the limit is not half kept.

The :class:`Redactor` is made by the caller (the CLI, or a test) and injected:
into :func:`configure`, which puts it in the processor chain, and into the app
factory, which registers each loaded config's secrets with it and scrubs the
admin API's answers with it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

import structlog

REDACTED = "***"
_SENSITIVE_KEYS = frozenset(
    {"authorization", "token", "app_key", "password", "x-auth-token", "x-app-key", "bearer_token"}
)
# Credentials recognised by their shape, registered or not. RFC 6750 2.1: a
# bearer token is b64token characters; at least 8 of them, so prose such as
# "invalid bearer token" keeps its words.
_SCHEME_CREDENTIAL = re.compile(r"(?i)\b((?:bearer|basic)\s+)[A-Za-z0-9\-._~+/]{8,}=*")
# RFC 3986 3.2.1: userinfo "user:password@" before the host.
_URL_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://[^/\s:@]*:)[^/\s@]+@")
# Query (or form) parameters named like credentials: ?access_token=, &api_key=, ...
_QUERY_CREDENTIAL = re.compile(
    r"(?i)([?&;](?:access_token|id_token|refresh_token|token|auth|api_key|apikey|app_key"
    r"|appkey|key|password|passwd|pwd|secret|client_secret|sig|signature)=)[^&;#\s\"'<>]+"
)
# A cut can leave the start of a credential at the very end of the text.
_TRAILING_SCHEME = re.compile(r"(?i)\b((?:bearer|basic)\s+)[A-Za-z0-9\-._~+/=]+$")
# Shortest tail of a cut text taken for the beginning of a registered secret.
_MIN_PREFIX = 4


class Redactor:
    """A structlog processor that masks known secret values, credential-shaped text and
    credential-named fields; :meth:`scrub` and :meth:`cut` do the same for any value."""

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
            return _mask_shapes(value)
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

    def cut(self, text: str | bytes, limit: int, *, already_cut: bool = False) -> str:
        """``text`` masked, then cut to at most ``limit`` characters.

        Masking first means a secret straddling ``limit`` is masked whole
        rather than half kept. Text that was cut before it got here
        (``already_cut``, e.g. the first bytes of a response) may end with the
        beginning of a secret; a tail of at least 4 characters that starts a
        registered secret, or follows ``Bearer``/``Basic``, is masked too (so
        the result may end in part of a mask, ``*``, or be two characters over
        ``limit`` when a short tail became ``***``).
        """
        value: str = self.scrub(text)
        if len(value) > limit:
            value = value[:limit]
            already_cut = True
        if already_cut:
            value = self._mask_tail(value)
        return value

    def _mask_tail(self, value: str) -> str:
        """Mask an end of ``value`` that is the beginning of a secret."""
        value = _TRAILING_SCHEME.sub(lambda m: m.group(1) + REDACTED, value)
        for s in self._secrets:
            # Longest candidate first, so the whole visible part of the secret goes.
            for n in range(min(len(s) - 1, len(value)), 0, -1):
                if n < min(_MIN_PREFIX, len(s)):
                    break
                if value.endswith(s[:n]):
                    return value[: len(value) - n] + REDACTED
        return value

    def __call__(
        self, logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in list(event_dict.items()):
            if key.lower() in _SENSITIVE_KEYS and value:
                event_dict[key] = REDACTED
            else:
                event_dict[key] = self.scrub(value)
        return event_dict


def _mask_shapes(value: str) -> str:
    """Mask credentials recognised by their shape (a cheap test skips the rarer patterns)."""
    lowered = value.lower()
    if "bearer" in lowered or "basic" in lowered:
        value = _SCHEME_CREDENTIAL.sub(lambda m: m.group(1) + REDACTED, value)
    if "=" in value:
        value = _QUERY_CREDENTIAL.sub(lambda m: m.group(1) + REDACTED, value)
    if "@" in value and "://" in value:
        value = _URL_PASSWORD.sub(lambda m: m.group(1) + REDACTED + "@", value)
    return value


LogFormat = Literal["auto", "json", "console"]


def configure(
    level: str = "info",
    fmt: LogFormat = "auto",
    stream: TextIO | None = None,
    *,
    redactor: Redactor,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Set up structlog (and route stdlib logging through the same output).

    Every event, structlog's and the stdlib's, passes ``redactor`` last before
    it is rendered. On a terminal (or with ``console``) events are rendered for
    a person: nested values (an alert, a list of ids) as compact JSON rather
    than Python reprs, and in colour unless ``NO_COLOR`` is set to a non-empty
    value (https://no-color.org) in ``environ`` (default: the process's).
    """
    out = stream or sys.stdout
    env = os.environ if environ is None else environ
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redactor,
    ]
    if use_console:
        colors = out.isatty() and not env.get("NO_COLOR")
        processors += [_json_values, structlog.dev.ConsoleRenderer(colors=colors)]
    else:
        processors.append(structlog.processors.JSONRenderer())
    numeric = logging.getLevelName(level.upper())
    global _debug
    _debug = numeric <= logging.DEBUG
    structlog.configure(
        processors=processors,
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


def _json_values(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """For the console: dict and list fields as compact JSON text, not Python reprs.

    The console renderer prints a field with ``repr``, which shows an alert as
    ``{'status': 'critical', ...}``; the JSON form can be pasted into ``render``
    or ``curl`` as is. Runs after the redactor, so the values are already masked.
    """
    for key, value in event_dict.items():
        if key != "event" and isinstance(value, dict | list):
            event_dict[key] = _RawText(
                json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
            )
    return event_dict


class _RawText(str):
    """A string the console renderer prints without quotes (its repr is itself)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


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


# Whether debug events are logged; structlog logs everything until configure().
_debug = True


def debug_enabled() -> bool:
    """Whether debug events are logged, as one global read.

    For the ingest hot path: asking the lazy logger proxy instead binds a new
    logger on every call.
    """
    return _debug


def get_logger(**bound: Any) -> Any:
    """A structlog logger, optionally with fields bound."""
    # A lazy proxy: modules take their logger at import, before the CLI has
    # called configure(); the proxy reads the configuration at first use.
    return structlog.get_logger("forwarder", **bound)
