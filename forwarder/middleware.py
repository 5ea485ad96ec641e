"""JSON errors for every refusal, and optional ingest/admin authentication."""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from forwarder.config import AuthConfig
from forwarder.ingest.errors import IngestError
from forwarder.logs import get_logger

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Paths open without credentials: probes and scrapes must work for kubelet and
# Prometheus, and they reveal nothing about alerts.
PUBLIC_PATHS = frozenset({"/-/healthy", "/-/ready", "/metrics"})


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """``{"error": message}`` with ``status``."""
    return web.json_response({"error": message}, status=status, headers=headers)


def json_errors(handler: Handler) -> Handler:
    """Wrap a view so every refusal is JSON and an unexpected exception a logged 500.

    A decorator on the views that need it rather than an application
    middleware: a middleware puts two more coroutine frames between aiohttp and
    every handler, the ingest hot path included, which handles its own errors.
    """

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Exception as exc:
            return exception_response(request, exc)

    return wrapped


def exception_response(request: web.Request, exc: Exception) -> web.Response:
    """The JSON answer for an exception a view let through."""
    if isinstance(exc, IngestError):
        return error_response(exc.status, exc.message, headers=exc.headers)
    if isinstance(exc, web.HTTPException) and exc.status >= 400:
        message = exc.text if exc.text and not exc.text.startswith(str(exc.status)) else exc.reason
        return error_response(exc.status, message, headers=_keep_headers(exc))
    if isinstance(exc, web.HTTPException):
        raise exc  # a redirect or other non-error answer is aiohttp's to send
    get_logger().exception("internal_error", path=request.path, error=repr(exc))
    return error_response(500, "internal error; see the forwarder's log")


def _keep_headers(exc: web.HTTPException) -> dict[str, str]:
    keep = ("Allow", "Retry-After", "WWW-Authenticate")
    return {k: v for k, v in exc.headers.items() if k in keep}


class Authenticator:
    """Checks a bearer token or basic credentials in constant time."""

    def __init__(self, cfg: AuthConfig | None) -> None:
        self.cfg = cfg

    def allowed(self, header: str | None) -> bool:
        cfg = self.cfg
        if cfg is None:
            return True
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and cfg.bearer_token is not None:
            return hmac.compare_digest(value.encode(), cfg.bearer_token.reveal().encode())
        if scheme.lower() == "basic" and cfg.basic is not None:
            try:
                decoded = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return False
            user, sep, password = decoded.partition(b":")
            # Compare both parts always, so timing does not tell which was wrong.
            ok_user = hmac.compare_digest(user, cfg.basic.username.encode())
            ok_pass = hmac.compare_digest(password, cfg.basic.password.reveal().encode())
            return bool(sep) and ok_user and ok_pass
        return False

    def challenge(self) -> str:
        if self.cfg is not None and self.cfg.basic is not None and self.cfg.bearer_token is None:
            return 'Basic realm="forwarder"'
        return 'Bearer realm="forwarder"'
