"""Transports: how a batch reaches a target (BigPanda v2, OIM, or the log).

A transport only sends and reports what came back; deciding what a response
means is :mod:`forwarder.delivery.retry`'s job, and queue bookkeeping the sender's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from forwarder import __version__, jsonio
from forwarder.config import TargetConfig


@dataclass(frozen=True, slots=True)
class Response:
    """What a target answered: status, the first KiB of the body, and ``Retry-After``."""

    status: int
    body: str
    retry_after: str | None = None


class Transport(Protocol):
    """Sends one batch of encoded alerts sharing an app key."""

    async def send(self, app_key: str, payloads: Sequence[bytes]) -> Response:
        """Send; raise ``aiohttp.ClientError``/``TimeoutError``/``OSError`` on no answer."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def encode_batch(app_key: str | None, payloads: Sequence[bytes]) -> bytes:
    """``{"app_key": K, "alerts": [...]}`` from already-encoded alerts, without re-encoding."""
    head = b'{"app_key":' + jsonio.dumps(app_key) + b"," if app_key is not None else b"{"
    return head + b'"alerts":[' + b",".join(payloads) + b"]}"


class HTTPTransport:
    """BigPanda's v2 Alerts API or OIM endpoint over one keep-alive session per target."""

    def __init__(self, cfg: TargetConfig) -> None:
        self.cfg = cfg
        self._session: aiohttp.ClientSession | None = None
        self._headers = {
            "Content-Type": "application/json",
            "User-Agent": f"forwarder/{__version__}",
        }
        token = cfg.token.reveal()
        if cfg.token_in == "x-auth-token":
            self._headers["x-auth-token"] = token
        else:
            self._headers["Authorization"] = f"Bearer {token}"

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self.cfg.max_in_flight, keepalive_timeout=30, enable_cleanup_closed=True
                ),
                timeout=aiohttp.ClientTimeout(
                    total=self.cfg.timeout,
                    connect=self.cfg.connect_timeout,
                    sock_connect=self.cfg.connect_timeout,
                ),
                headers=self._headers,
                auto_decompress=True,
            )
        return self._session

    async def send(self, app_key: str, payloads: Sequence[bytes]) -> Response:
        headers: dict[str, str] = {}
        if self.cfg.app_key_in == "header":
            headers["x-app-key"] = app_key
            body = encode_batch(None, payloads)
        else:
            body = encode_batch(app_key, payloads)
        session = self._get_session()
        async with session.post(
            self.cfg.url, data=body, headers=headers, allow_redirects=False
        ) as resp:
            raw = await resp.content.read(1024)
            return Response(
                status=resp.status,
                body=raw.decode("utf-8", "replace"),
                retry_after=resp.headers.get("Retry-After"),
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class LogTransport:
    """Writes each batch to the log instead of sending it (dry-run and ``kind: log``)."""

    def __init__(self, target: str, log: Any) -> None:
        self.target = target
        self.log = log

    async def send(self, app_key: str, payloads: Sequence[bytes]) -> Response:
        alerts = [jsonio.loads(p) for p in payloads]
        self.log.info("dry_run_batch", target=self.target, count=len(alerts), alerts=alerts)
        return Response(status=201, body="")

    async def close(self) -> None:
        return None
