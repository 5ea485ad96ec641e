"""Secret values in the config: tokens, app keys, passwords, DSN passwords."""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import parse_qsl, unquote, urlsplit


class Secret:
    """A secret string (token, app key, password) that never prints itself.

    ``repr`` and ``str`` show ``***`` so a secret cannot leak through a log line,
    an exception or ``render`` output by accident; code that needs the value
    calls :meth:`reveal`.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value, for the one place that must send it."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__


EMPTY_SECRET: Final = Secret("")


# libpq's keyword form: ``password=secret`` or ``password='it''s \' quoted'``
# (PostgreSQL docs, "Connection Strings": single quotes, backslash escapes).
_KEYWORD_PASSWORD = re.compile(r"(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")


def dsn_passwords(dsn: str) -> tuple[str, ...]:
    """The password(s) a PostgreSQL DSN carries, as written and as decoded.

    Both spellings are secrets: the written one appears in the DSN text, the
    decoded one in a driver's error. Covers the URL form (``user:pw@host``
    and ``?password=``) and libpq's ``key=value`` form.
    """
    if not dsn:
        return ()
    found: list[str] = []
    if "://" in dsn:
        try:
            parts = urlsplit(dsn)
        except ValueError:  # e.g. an unclosed [IPv6 address: the loader refuses the DSN
            return tuple(re.findall(r"://[^:/@]*:([^@/]*)@", dsn))
        userinfo = parts.netloc.rpartition("@")[0]
        if ":" in userinfo:
            found.append(userinfo.partition(":")[2])
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key == "password":
                found.append(value)
                # The query text as written, before parse_qsl decoded it.
                found += re.findall(r"(?:^|&)password=([^&]*)", parts.query)
    else:
        for raw in _KEYWORD_PASSWORD.findall(dsn):
            found.append(raw)
            if raw.startswith("'"):
                found.append(re.sub(r"\\(.)", r"\1", raw[1:-1]))
    found += [unquote(p) for p in found]
    return tuple(sorted({p for p in found if p and p != "''"}, key=len, reverse=True))


def mask_dsn(dsn: str) -> str:
    """``dsn`` with its password replaced by ``***``, safe to print.

    Masks where a password stands (userinfo, ``password=``) rather than every
    occurrence of its text, so a short password does not garble the host name.
    """
    if "://" in dsn:
        scheme, sep, rest = dsn.partition("://")
        # The authority ends at the first "/", "?" or "#" (RFC 3986, section 3.2).
        netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
        tail = rest[len(netloc) :]
        user, at, hosts = netloc.rpartition("@")
        if at and ":" in user:
            netloc = f"{user.partition(':')[0]}:***@{hosts}"
        tail = re.sub(r"([?&]password=)[^&#]*", r"\1***", tail)
        return f"{scheme}{sep}{netloc}{tail}"
    return _KEYWORD_PASSWORD.sub(lambda m: m.group(0)[: m.start(1) - m.start(0)] + "***", dsn)
