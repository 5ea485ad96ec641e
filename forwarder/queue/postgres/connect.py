"""Connecting to PostgreSQL: the DSN without its password, and which failures are worth retrying.

A wrong password or a missing database will not fix itself: opening fails at
once with a one-line :class:`QueueOpenError`. A server that is down,
starting, failing over or out of connections will: opening retries it with
backoff, and a running queue answers :class:`~forwarder.queue.QueueUnavailable`
meanwhile. No message built here contains the password.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import asyncpg

from forwarder.config.secrets import dsn_passwords
from forwarder.queue.errors import QueueOpenError

_FATAL: Final = (
    asyncpg.InvalidAuthorizationSpecificationError,  # wrong password, unknown role, pg_hba
    asyncpg.InvalidCatalogNameError,  # the database does not exist
    asyncpg.InsufficientPrivilegeError,
    asyncpg.ClientConfigurationError,
    QueueOpenError,
    ValueError,  # an unparsable DSN
)
_RECONNECT: Final = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,  # the connection went away under a query
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,  # starting up or shutting down
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.ReadOnlySQLTransactionError,  # connected to a standby after a failover
)


def is_fatal(exc: BaseException) -> bool:
    """Whether retrying cannot help (credentials, database name, privileges, DSN syntax)."""
    return isinstance(exc, _FATAL)


def is_connection_error(exc: BaseException) -> bool:
    """Whether the connection (not the statement) failed: reconnect, with backoff."""
    return isinstance(exc, _RECONNECT)


# libpq's keyword form (PostgreSQL docs, "Connection Strings"): key = value,
# the value bare or in single quotes with backslash escapes.
_KEYWORD = re.compile(r"\s*([A-Za-z_]+)\s*=\s*('(?:[^'\\]|\\.)*'|\S*)")
_KEYWORDS: Final = {
    "host": "host",
    "hostaddr": "host",
    "port": "port",
    "user": "user",
    "password": "password",
    "dbname": "database",
    "sslmode": "ssl",
    "connect_timeout": "timeout",
}


def connect_kwargs(dsn: str) -> dict[str, Any]:
    """asyncpg's connect arguments for a ``postgresql://`` URL or a libpq keyword string.

    asyncpg reads only the URL form, so the keyword form (``host=db user=fwd
    dbname=forwarder``) is translated here; a keyword it has no equivalent
    for is a :class:`QueueOpenError` naming the keyword.
    """
    if "://" in dsn or not dsn.strip():
        return {"dsn": dsn}
    out: dict[str, Any] = {}
    pos = 0
    text = dsn.strip()
    while pos < len(text):
        m = _KEYWORD.match(text, pos)
        if m is None:
            raise QueueOpenError("queue.dsn: not a postgresql:// URL nor key=value pairs")
        key, raw = m.group(1), m.group(2)
        value = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith("'") else raw
        name = _KEYWORDS.get(key)
        if name is None:
            raise QueueOpenError(f"queue.dsn: keyword {key!r} is not supported; use a URL")
        out[name] = float(value) if name == "timeout" else int(value) if name == "port" else value
        pos = m.end()
    return out


def connect_args(dsn: str, open_timeout: float, command_timeout: float) -> dict[str, Any]:
    """Everything ``asyncpg.connect`` and ``create_pool`` take for the queue's connections."""
    return {
        **connect_kwargs(dsn),
        "timeout": min(10.0, open_timeout),
        "command_timeout": command_timeout,
        "server_settings": {
            "application_name": "forwarder",
            # A vanished replica's session (and its sender claims) is
            # dropped after about 5 + 2 * 3 seconds of silence.
            "tcp_keepalives_idle": "5",
            "tcp_keepalives_interval": "2",
            "tcp_keepalives_count": "3",
        },
    }


def scrub(message: str, dsn: str) -> str:
    """``message`` on one line with the DSN's password, however spelled, replaced by ``***``."""
    for secret in dsn_passwords(dsn):
        message = message.replace(secret, "***")
    return " ".join(message.split())


def describe(dsn: str) -> str:
    """``postgresql://user@host:port/db``: where the queue lives, without password or options."""
    if "://" not in dsn:
        try:
            kw = connect_kwargs(dsn)
        except (QueueOpenError, ValueError):
            return "postgresql (unparsable DSN)"
        who = f"{kw['user']}@" if "user" in kw else ""
        at = f":{kw['port']}" if "port" in kw else ""
        return f"postgresql://{who}{kw.get('host', 'localhost')}{at}/{kw.get('database', '')}"
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or "localhost"
        port = parts.port
    except ValueError:
        return "postgresql (unparsable DSN)"
    user = f"{unquote(parts.username)}@" if parts.username else ""
    if ":" in host:
        host = f"[{host}]"
    where = f"{host}:{port}" if port else host
    return f"{parts.scheme}://{user}{where}{parts.path}"


def reason(exc: BaseException, dsn: str) -> str:
    """A one-line, password-free account of ``exc``."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, asyncio.TimeoutError):
        text = "timed out"
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    return scrub(text, dsn)
