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

# How much of an answer is read. More than the 1 KiB a dead letter keeps, so
# a secret echoed across the 1 KiB mark is still whole when it is masked.
READ_LIMIT = 8192


@dataclass(frozen=True, slots=True)
class Response:
    """What a target answered.

    ``body`` is the start of the answer (at most :data:`READ_LIMIT` bytes,
    ``truncated`` when there may be more), as BigPanda wrote it: it may echo
    credentials, so it is masked before it is logged or kept.
    ``body_error`` says why the body could not be read (a ``Content-Encoding``
    that does not match it, a connection closed mid-body): the status line
    still decides the outcome. ``location`` is the ``Location`` header of a
    redirect.
    """

    status: int
    body: str
    retry_after: str | None = None
    location: str | None = None
    body_error: str | None = None
    truncated: bool = False


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
        # Never follow a redirect: it would send the token to another URL.
        async with session.post(
            self.cfg.url, data=body, headers=headers, allow_redirects=False
        ) as resp:
            raw, truncated, body_error = await _read_start(resp, READ_LIMIT)
            return Response(
                status=resp.status,
                body=raw.decode("utf-8", "replace"),
                retry_after=resp.headers.get("Retry-After"),
                location=resp.headers.get("Location"),
                body_error=body_error,
                truncated=truncated,
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _read_start(resp: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool, str | None]:
    """Up to ``limit`` bytes of the body, whether more may follow, and why reading failed.

    The status line has arrived by now and decides the outcome; a body that
    cannot be read (undecodable ``Content-Encoding``, a connection closed or
    timed out mid-body) is reported, not raised, so a 2xx is not mistaken for
    a failure and the batch sent again.
    """
    chunks: list[bytes] = []
    size = 0
    try:
        while size < limit:
            chunk = await resp.content.read(limit - size)
            if not chunk:
                return b"".join(chunks), False, None
            chunks.append(chunk)
            size += len(chunk)
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        text = str(exc)
        name = type(exc).__name__
        return b"".join(chunks), True, f"{name}: {text}" if text else name
    return b"".join(chunks), not resp.content.at_eof(), None


class LogTransport:
    """Writes each batch to the log instead of sending it (dry-run and ``kind: log``).

    The sender then takes the batch off the queue (``dry_run_logged``): it is
    not kept to be sent later.
    """

    def __init__(self, target: str, log: Any) -> None:
        self.target = target
        self.log = log

    async def send(self, app_key: str, payloads: Sequence[bytes]) -> Response:
        alerts = [jsonio.loads(p) for p in payloads]
        self.log.info("dry_run_batch", target=self.target, count=len(alerts), alerts=alerts)
        return Response(status=201, body="")

    async def close(self) -> None:
        return None
