"""What readiness and ``forwarder_target_up`` report for each target.

Two kinds of text are kept apart. ``last_error`` is the detail (BigPanda's
answer, the client's exception), masked, for the log. ``reason`` is written by
the forwarder from the status code or the failure class, and is what the
unauthenticated ``/-/ready`` shows: a BigPanda answer that echoes the token,
or an exception naming a URL with ``?access_token=``, never reaches it. The
one piece of upstream text it carries is a redirect's ``Location``, masked
and cut, because that is what the operator must act on.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class TargetHealth:
    """What readiness and ``forwarder_target_up`` report for a target."""

    auth_failed: bool = False
    up: bool = True
    last_error: str | None = None  # masked detail: logs and the admin API only
    reason: str | None = None  # the forwarder's own words: safe for /-/ready
    consecutive_failures: int = 0
    redirect_to: str | None = None  # masked, cut Location while the target redirects
    rate_limited_for: float | None = None  # seconds held back after the last 429

    @property
    def redirected(self) -> bool:
        """Whether the target's URL answered with a redirect (it is held until a reload)."""
        return self.redirect_to is not None

    def recovered(self) -> None:
        """A delivery succeeded: forget every failure."""
        self.up = True
        self.auth_failed = False
        self.last_error = None
        self.reason = None
        self.consecutive_failures = 0
        self.redirect_to = None
        self.rate_limited_for = None

    def public(self) -> dict[str, object]:
        """The target's state for ``/-/ready``: flags and the forwarder's own words only."""
        return {
            "up": self.up,
            "auth_failed": self.auth_failed,
            "redirected": self.redirected,
            "rate_limited": self.rate_limited_for is not None,
            "last_error": self.reason,
        }
