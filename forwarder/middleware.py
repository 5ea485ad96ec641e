"""Middlewares: JSON errors for every refusal, and optional ingest/admin authentication."""

from __future__ import annotations

import base64
import binascii
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


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every refusal into JSON; an unexpected exception is a logged 500, never a crash."""
    try:
        return await handler(request)
    except IngestError as exc:
        return error_response(exc.status, exc.message, headers=exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text if exc.text and not exc.text.startswith(str(exc.status)) else exc.reason
        return error_response(exc.status, message, headers=_keep_headers(exc))
    except Exception as exc:
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
