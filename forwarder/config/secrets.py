"""Secret values in the config: tokens, app keys, passwords, DSN passwords."""

from __future__ import annotations

from typing import Final


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
