"""The one error type the parsers raise for bad input."""

from __future__ import annotations

from typing import Literal

ParseReason = Literal["bad_json", "bad_shape"]


class ParseError(Exception):
    """A body the parsers refuse, with ``message`` saying which field is wrong and why.

    It knows nothing of HTTP: the web layer answers it with a 400 and counts
    ``reason`` in ``forwarder_events_rejected_total``.
    """

    def __init__(self, message: str, *, reason: ParseReason = "bad_shape") -> None:
        super().__init__(message)
        self.message = message
        self.reason: ParseReason = reason
