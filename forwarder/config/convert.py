"""Converters from YAML values to typed config values, each naming the key path on error."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from forwarder.config.errors import ConfigError
from forwarder.jsonio import kind_of
from forwarder.model import Level
from forwarder.timeparse import DURATION_UNITS, parse_duration, parse_size

T = TypeVar("T")


class Section:
    """Reads the keys of one mapping, then rejects the ones nobody asked for (strictness)."""

    def __init__(self, node: Any, path: str) -> None:
        if node is None:
            node = {}
        if not isinstance(node, dict):
            raise ConfigError(path, f"must be a mapping, got {kind(node)}")
        for key in node:
            if not isinstance(key, str):
                raise ConfigError(path, f"keys must be strings, got {key!r}")
        self.node: dict[str, Any] = node
        self.path = path
        self._seen: set[str] = set()

    def key(self, name: str) -> str:
        return join(self.path, name)

    def has(self, name: str) -> bool:
        self._seen.add(name)
        return self.node.get(name) is not None

    def raw(self, name: str) -> Any:
        self._seen.add(name)
        return self.node.get(name)

    def get(self, name: str, conv: Callable[[Any, str], T], default: T) -> T:
        self._seen.add(name)
        value = self.node.get(name)
        if value is None:
            return default
        return conv(value, self.key(name))

    def finish(self) -> None:
        """Refuse the first key nobody read, suggesting the closest one that is valid."""
        unknown = sorted(set(self.node) - self._seen)
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(self._seen), n=1, cutoff=0.6)
            hint = f" (did you mean `{close[0]}`?)" if close else ""
            raise ConfigError(self.key(unknown[0]), f"unknown key{hint}")


def kind(value: Any) -> str:
    return kind_of(value, mapping="a mapping")


def as_str(value: Any, path: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(path, f"must be a string, got {kind(value)}")
    return str(value)


def _from_env_text(value: Any) -> Any:
    """``${VAR}`` expands to text; read "5", "2.5", "true" as YAML would have."""
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"-?\d+", text):
            return int(text)
        if re.fullmatch(r"-?\d+\.\d*(?:[eE][-+]?\d+)?", text):
            return float(text)
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
    return value


def as_bool(value: Any, path: str) -> bool:
    value = _from_env_text(value)
    if not isinstance(value, bool):
        raise ConfigError(path, f"must be true or false, got {kind(value)}")
    return value


def as_int(lo: int, hi: int | None = None) -> Callable[[Any, str], int]:
    def conv(value: Any, path: str) -> int:
        value = _from_env_text(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"must be a whole number, got {kind(value)}")
        if value < lo or (hi is not None and value > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise ConfigError(path, f"must be {bound}, got {value}")
        return value

    return conv


def as_positive_float(value: Any, path: str) -> float:
    value = _from_env_text(value)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(path, f"must be a number above 0, got {value!r}")
    return float(value)


def as_duration(minimum: float = 0.0) -> Callable[[Any, str], float]:
    def conv(value: Any, path: str) -> float:
        if not isinstance(value, str):
            raise ConfigError(
                path,
                f"must be a duration with a unit ({DURATION_UNITS}) such as 250ms or 10s,"
                f" got {value!r}",
            )
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise ConfigError(path, str(exc)) from None
        if seconds < minimum:
            raise ConfigError(path, f"must be at least {minimum:g}s, got {value}")
        return seconds

    return conv


def as_size(value: Any, path: str) -> int:
    """A size above 0: bytes as an integer, or with a unit (``512KiB``, ``1MiB``)."""
    size = as_size_or_zero(value, path)
    if size == 0:
        raise ConfigError(path, "must be above 0")
    return size


def as_size_or_zero(value: Any, path: str) -> int:
    """A size, where 0 turns the feature off."""
    if isinstance(value, bool):
        raise ConfigError(path, "must be a size such as 1048576 or 1MiB")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        try:
            size = parse_size(value)
        except ValueError as exc:
            raise ConfigError(path, str(exc)) from None
    else:
        raise ConfigError(path, f"must be a size such as 1048576 or 1MiB, got {kind(value)}")
    if size < 0:
        raise ConfigError(path, "must be 0 or more")
    return size


def one_of(options: tuple[T, ...]) -> Callable[[Any, str], T]:
    """A converter accepting exactly one of ``options`` (a ``Literal``'s values)."""

    def conv(value: Any, path: str) -> T:
        for option in options:
            if value == option:
                return option
        shown = ", ".join(str(o) for o in options)
        raise ConfigError(path, f"must be one of {shown}, got {value!r}")

    return conv


def as_level(value: Any, path: str) -> Level:
    """A Kapacitor level name, in any case (the one way levels are read)."""
    if isinstance(value, str) and value.upper() in Level.__members__:
        return Level(value.upper())
    shown = repr(value) if isinstance(value, str) else kind(value)
    raise ConfigError(path, f"unknown level {shown} (want one of {', '.join(Level)})")


def as_nonempty_str(value: Any, path: str) -> str:
    text = as_str(value, path)
    if not text:
        raise ConfigError(path, "must not be empty")
    return text


def join(path: str, key: str) -> str:
    """``path.key``, or ``key`` at the top level."""
    return f"{path}.{key}" if path else key


def listen_address(value: Any, path: str) -> tuple[str, int]:
    """``host:port`` (``:port`` or ``[::]:port`` too) as a host and a port."""
    text = as_str(value, path)
    host, sep, port_text = text.rpartition(":")
    if not sep or not (port_text.isascii() and port_text.isdigit()):
        raise ConfigError(path, f"must be host:port, got {text!r}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ConfigError(path, f"port out of range: {port}")
    host = host.strip("[]") or "0.0.0.0"
    return host, port


def as_str_list(value: Any, path: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list):
        raise ConfigError(path, f"must be a string or a list of strings, got {kind(value)}")
    return tuple(as_str(v, f"{path}[{i}]") for i, v in enumerate(value))


def as_url(value: Any, path: str) -> str:
    text = as_str(value, path)
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  (parsing is the check: brackets, a port in range)
    except ValueError:
        raise ConfigError(path, "not a URL (want http:// or https://, host and port)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(path, "not a URL (want http:// or https://)")
    if parts.username or parts.password:
        raise ConfigError(path, "must not carry credentials; use token or token_file")
    return text
