"""Optional ingest and admin authentication: a bearer token or basic credentials."""

from __future__ import annotations

import base64
import binascii
import hmac

from aiohttp import web

from forwarder.config import AuthConfig
from forwarder.web.errors import HTTPError

# Paths open without credentials: probes and scrapes must work for kubelet and
# Prometheus, and they reveal nothing about alerts.
PUBLIC_PATHS = frozenset({"/-/healthy", "/-/ready", "/metrics"})


class Authenticator:
    """Checks a bearer token or basic credentials in constant time."""

    def __init__(self, cfg: AuthConfig | None) -> None:
        self.cfg = cfg

    def allowed(self, header: str | None) -> bool:
        """Whether ``header`` (the ``Authorization`` value) carries valid credentials."""
        cfg = self.cfg
        if cfg is None:
            return True
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and cfg.bearer_token is not None:
            # aiohttp decodes header bytes as UTF-8 with surrogateescape; turning
            # them back into the bytes sent means a token that is not UTF-8 is
            # just a wrong token (401), not an encoding error (500).
            sent = value.encode("utf-8", "surrogateescape")
            return hmac.compare_digest(sent, cfg.bearer_token.reveal().encode())
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
        """The ``WWW-Authenticate`` value of a 401."""
        if self.cfg is not None and self.cfg.basic is not None and self.cfg.bearer_token is None:
            return 'Basic realm="forwarder"'
        return 'Bearer realm="forwarder"'


def authorize(request: web.Request, auth: Authenticator) -> None:
    """Refuse with 401 unless the request carries valid credentials (when auth is on)."""
    if auth.cfg is None or request.path in PUBLIC_PATHS:
        return
    if not auth.allowed(request.headers.get("Authorization")):
        raise HTTPError(
            "missing or wrong credentials (see server.auth in the config)",
            reason="unauthorized",
            status=401,
            headers={"WWW-Authenticate": auth.challenge()},
        )
