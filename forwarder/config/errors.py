"""The one error type of configuration problems."""

from __future__ import annotations


class ConfigError(Exception):
    """A config mistake. ``str()`` is one line: ``key.path: what is wrong``."""

    def __init__(self, path: str, message: str) -> None:
        text = f"{path}: {message}" if path else message
        # One line always, even when a key or a value quoted in it holds a newline.
        super().__init__(text.replace("\r", "\\r").replace("\n", "\\n"))
        self.path = path
        self.message = message
