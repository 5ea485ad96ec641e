"""One warning line per malformed request, rate-limited, instead of aiohttp's tracebacks.

aiohttp's connection handler logs every request it cannot parse, and every
connection that breaks while a request is in flight, with
``logger.exception`` — a traceback each time, at error level, for what is a
client's fault. It takes its logger as a parameter (``logger``, passed through
``web.Application(handler_args=...)``), and :func:`protocol_logger` is that
logger: each record becomes one structured warning naming the client and the
reason, at most :data:`PER_MINUTE` a minute for each kind, with a count of the
ones left out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp.http_exceptions import HttpProcessingError, InvalidURLError

from forwarder.obs.logs import Redactor, get_logger

PER_MINUTE = 10  # lines per kind (event and reason) per minute
WINDOW = 60.0


class RateLimiter:
    """Lets through at most ``per_window`` events of each key per ``window`` seconds.

    :meth:`allow` answers None for an event to leave out, or the number of
    events of that key left out since the last one let through.
    """

    def __init__(
        self,
        *,
        per_window: int = PER_MINUTE,
        window: float = WINDOW,
        clock: Callable[[], float],
        max_keys: int = 1024,
    ) -> None:
        self._per_window = per_window
        self._window = window
        self._clock = clock
        self._max_keys = max_keys
        # key -> [window start, events let through in it, events left out since]
        self._state: dict[str, list[float]] = {}

    def allow(self, key: str) -> int | None:
        """None to drop this event; otherwise how many of ``key`` were dropped before it."""
        now = self._clock()
        state = self._state.get(key)
        if state is None:
            if len(self._state) >= self._max_keys:
                # Keys come from client input (reasons); bound the memory they take.
                self._state.clear()
            state = self._state[key] = [now, 0.0, 0.0]
        if now - state[0] >= self._window:
            state[0], state[1] = now, 0.0
        if state[1] >= self._per_window:
            state[2] += 1
            return None
        state[1] += 1
        dropped, state[2] = int(state[2]), 0.0
        return dropped


class _ProtocolHandler(logging.Handler):
    """Turns aiohttp's connection-handler records into one rate-limited structured line."""

    def __init__(self, limiter: RateLimiter, redactor: Redactor) -> None:
        super().__init__(logging.INFO)
        self._limiter = limiter
        self._redactor = redactor

    def _one_line(self, text: str) -> str:
        # Masked, then cut: a secret straddling the cut is masked whole.
        return self._redactor.cut(" ".join(str(text).split()), 200)

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        client = record.args[0] if isinstance(record.args, tuple) and record.args else None
        if isinstance(exc, HttpProcessingError):
            event, level = "bad_request", logging.WARNING
            # Only the first line: the next ones quote the request's bytes,
            # which may hold a credential.
            lines = str(exc.message).strip().splitlines()
            first = lines[0].strip().rstrip(":") if lines else ""
            if isinstance(exc, InvalidURLError):
                first = "invalid request target"  # the message is the target, query and all
            name = type(exc).__name__
            reason = self._one_line(f"{name}: {first}" if first else name)
            key = f"{event}:{type(exc).__name__}"
        elif isinstance(exc, ConnectionError | TimeoutError):
            event, level = "client_disconnected", logging.WARNING
            reason = self._one_line(str(exc) or type(exc).__name__)
            key = f"{event}:{type(exc).__name__}"
        elif exc is not None:
            # Not the client's doing: keep the traceback, still one event.
            event, level = "request_failed", logging.ERROR
            reason = self._one_line(f"{type(exc).__name__}: {exc}")
            key = f"{event}:{type(exc).__name__}"
        else:
            event, level = "http_server", max(record.levelno, logging.WARNING)
            reason = self._one_line(record.getMessage())
            key = f"{event}:{record.msg}"
        dropped = self._limiter.allow(key)
        if dropped is None:
            return
        fields: dict[str, object] = {"reason": reason}
        if client is not None:
            fields["client"] = str(client)
        if dropped:
            fields["suppressed"] = dropped
        log = get_logger()
        if level >= logging.ERROR and exc is not None:
            log.error(event, exc_info=exc, **fields)
        else:
            log.warning(event, **fields)


def protocol_logger(
    clock: Callable[[], float], redactor: Redactor, name: str = "forwarder.http"
) -> logging.Logger:
    """A logger for aiohttp's connection handler (``handler_args={"logger": ...}``).

    It is made for one app and kept out of the logging module's registry
    (nothing global is touched); it drops aiohttp's debug chatter. Reasons
    are masked with ``redactor`` before they are cut.
    """
    logger = logging.Logger(name, logging.INFO)
    logger.propagate = False
    logger.addHandler(_ProtocolHandler(RateLimiter(clock=clock), redactor))
    return logger
