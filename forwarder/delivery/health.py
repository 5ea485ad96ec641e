"""What readiness and ``forwarder_target_up`` report for each target."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class TargetHealth:
    """What readiness and ``forwarder_target_up`` report for a target."""

    auth_failed: bool = False
    up: bool = True
    last_error: str | None = None
    consecutive_failures: int = 0
